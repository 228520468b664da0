"""Shared test fixtures: free loopback ports for tests that open real sockets."""

from __future__ import annotations

import random
import socket

import pytest


def free_port_block(span: int, attempts: int = 200) -> int:
    """A base port such that base..base+span-1 are all free on 127.0.0.1 right now."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 60000 - span)
        socks = []
        try:
            for port in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no free block of {span} ports on 127.0.0.1")


@pytest.fixture
def base_port() -> int:
    """A free block of 200 loopback ports for one test's cluster."""
    return free_port_block(200)
