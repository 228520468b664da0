"""Helpers the socket-level tests share: a plain TCP peer (no ZeroMQ on its side) against a
real ``transport.zmq_io.Receiver``, and reading a Receiver until a condition holds.

Must not live here: assertions (the test modules make them).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from transport import zmq_io


def raw_connect(endpoint: str) -> socket.socket:
    """A plain TCP connection to a Receiver's tcp:// endpoint (no ZeroMQ on this side)."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def closed_by_peer(conn: socket.socket, timeout_s: float = 5) -> bool:
    """True when the other side closed ``conn`` (EOF or reset) within ``timeout_s``."""
    conn.settimeout(timeout_s)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def drain(
    rx: zmq_io.Receiver, until: Callable[[list[Any]], bool], timeout_s: float = 20
) -> list[tuple[int, Any]]:
    """Read ``rx`` (as an input stage does: a cut completes only while its owner reads) until
    ``until(received so far)`` holds or ``timeout_s`` passes; return what was received."""
    got: list[tuple[int, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not until(got) and time.monotonic() < deadline:
        got += rx.recv_batch(64, 20)
    return got
