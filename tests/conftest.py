"""Shared test fixtures: free loopback ports for tests that open real sockets."""

from __future__ import annotations

import pytest

from fabric.harness.ports import free_port_block

__all__ = ["free_port_block"]


@pytest.fixture
def base_port() -> int:
    """A free block of 200 loopback ports for one test's cluster."""
    return free_port_block(200)
