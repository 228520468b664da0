"""Free loopback port blocks, for runs, benchmarks and tests that start clusters side by side.

Must not live here: the port layout of a cluster (transport.zmq_io.Addressing owns it).
"""

from __future__ import annotations

import random
import socket


def ports_free(base: int, span: int) -> bool:
    """True if base..base+span-1 can all be bound on 127.0.0.1 right now.

    SO_REUSEADDR as ZeroMQ sets it: a port a finished run left in TIME_WAIT counts as
    free (ZeroMQ binds it fine); only a live listener makes it busy.
    """
    socks: list[socket.socket] = []
    try:
        for port in range(base, base + span):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port_block(span: int, attempts: int = 200) -> int:
    """A base port such that base..base+span-1 are all free on 127.0.0.1 right now.

    Free "right now" only: another process may take a port before the cluster binds it,
    which the cluster then reports as a clean start-up error.
    """
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 60000 - span)
        if ports_free(base, span):
            return base
    raise RuntimeError(f"no free block of {span} ports on 127.0.0.1")
