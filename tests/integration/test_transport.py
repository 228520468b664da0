"""ZeroMQ transport over real sockets on 127.0.0.1: two OS processes exchange authenticated
frames; malformed frames are counted by reason and dropped while good traffic flows.

The links are ZMQ_STREAM sockets carrying wire frames on raw streams (transport.zmq_io), so
malformed input is sent over plain TCP connections. Child processes run PEER_SCRIPT (below) with this interpreter; every test kills what it
started (by PID) in a finally block. Ports come from tests/conftest.py's base_port.
Must not live here: protocol logic, replica pipelines (fabric/ tests).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from protocols import codec
from protocols.common import Batch, Reply, Request, make_batch
from tests.integration.raw_peers import closed_by_peer, drain, raw_connect
from transport import auth, wire, zmq_io

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-secret"

# A peer: sends COUNT Requests to its peer while receiving COUNT from it, checks sender,
# order and content, prints one JSON summary line, then waits for "quit" on stdin.
PEER_SCRIPT = r"""
import hashlib, json, sys, time
from protocols.common import Request
from transport import auth, zmq_io

me, peer, base_port, count = (int(a) for a in sys.argv[1:5])
kind, scheme, ipc_dir = sys.argv[5], sys.argv[6], sys.argv[7]

def payload(sender, seq):
    return hashlib.sha256(b"%d/%d" % (sender, seq)).digest() * 5  # 160 bytes

keys = auth.derive_keys("integration-secret", 2, only_node=me)
link = auth.LinkAuth(scheme, me, keys)
addressing = zmq_io.Addressing(kind, ("127.0.0.1",), base_port, ipc_dir, 1)
ctx = zmq_io.new_context()
rx = zmq_io.Receiver(ctx, addressing.address(me, 0), link, recv_hwm=count + 100)
tx = zmq_io.Sender(ctx, addressing, me, link, send_hwm=count + 100)
sent = received = out_of_order = bad_content = bad_sender = 0
expected = 0
deadline = time.monotonic() + 60
while (sent < count or received < count) and time.monotonic() < deadline:
    for _ in range(min(250, count - sent)):
        tx.send(peer, Request(me, sent, payload(me, sent), b""))
        sent += 1
    for sender, msg in rx.recv_batch(500, 0 if sent < count else 50):
        received += 1
        bad_sender += sender != peer or msg.client_id != peer
        out_of_order += msg.timestamp != expected
        expected = msg.timestamp + 1
        bad_content += msg.txns != payload(peer, msg.timestamp)
summary = dict(
    sent=sent, received=received, out_of_order=out_of_order, bad_content=bad_content,
    bad_sender=bad_sender, drops=dict(rx.drops), send_drops=sum(tx.send_drops.values()),
    sent_frames=tx.sent_frames, received_frames=rx.received_frames,
    received_by_kind={str(k): v for k, v in rx.received_by_kind.items()},
)
print(json.dumps(summary), flush=True)
sys.stdin.readline()
rx.close()
tx.close()
sys.exit(0 if zmq_io.close_context(ctx) else 3)
"""


def _start_peer(args: list[Any], stderr_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", PEER_SCRIPT, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
    )


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """One stdout line from ``proc`` within ``timeout_s`` (a reader thread, so never stuck)."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"peer {proc.pid} printed nothing in {timeout_s} s") from None


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kind", "scheme"), [("tcp", "cmac-aes"), ("tcp", "hmac-sha256"), ("ipc", "cmac-aes")]
)
def test_two_processes_exchange_10000_authenticated_frames(
    kind: str, scheme: str, base_port: int, tmp_path: Path
) -> None:
    count = 10_000
    ipc_dir = str(tmp_path)
    procs: list[subprocess.Popen[str]] = []
    try:
        for me, peer in ((0, 1), (1, 0)):
            args = [me, peer, base_port, count, kind, scheme, ipc_dir]
            procs.append(_start_peer(args, tmp_path / f"peer{me}.err"))
        summaries = []
        for proc in procs:
            line = _read_line(proc, timeout_s=90)
            err = (tmp_path / f"peer{procs.index(proc)}.err").read_text()
            assert line, f"peer exited early: {err}"
            summaries.append(json.loads(line))
        for proc in procs:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(timeout=20) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()
    for summary in summaries:
        assert summary["sent"] == summary["sent_frames"] == count
        assert summary["received"] == summary["received_frames"] == count, summary
        assert summary["received_by_kind"] == {str(Request.KIND): count}
        assert summary["out_of_order"] == 0
        assert summary["bad_content"] == 0
        assert summary["bad_sender"] == 0
        assert summary["drops"] == {}
        assert summary["send_drops"] == 0


# --- malformed frames on raw TCP connections (in this process, real sockets) ------------


def _unregistered_kind() -> int:
    return next(k for k in range(60000, 65536) if k not in codec.registered_kinds())


def _sealed(link: auth.LinkAuth, i: int) -> bytes:
    return link.seal(0, wire.encode(Request(1, i, b"good %d" % i, b""), 1))


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["cmac-aes", "hmac-sha256"])
def test_bad_frames_with_a_known_boundary_are_dropped_and_the_link_goes_on(
    scheme: str, base_port: int
) -> None:
    """A bad MAC, an unknown sender and an authentic frame whose body is not msgpack are
    each counted and skipped: their headers passed, so the next frame's start is known."""
    keys = auth.derive_keys(SECRET, 2)
    receiver_link, sender_link = auth.LinkAuth(scheme, 0, keys), auth.LinkAuth(scheme, 1, keys)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    good_count = 600
    bad_body = b"\xc1"  # the one byte msgpack never uses
    garbage_body = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 1, len(bad_body)) + bad_body
    stranger = wire.encode(Request(1, 0, b"x", b""), 5)  # node 5 shares no key with node 0
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), receiver_link, max_frame_bytes=4096)
    raw = raw_connect(addressing.address(0, 0))
    try:
        expected: Counter[str] = Counter()
        stream = bytearray()
        for i in range(good_count):
            good = _sealed(sender_link, i)
            stream += good
            if i % 3 == 0:  # a bad frame after every third good one
                reason, bad = [
                    ("mac", good[:-1] + bytes([good[-1] ^ 0x01])),
                    ("body", sender_link.seal(0, garbage_body)),
                    ("unknown_sender", stranger + b"\x00" * sender_link.tag_size),
                ][(i // 3) % 3]
                stream += bad
                expected[reason] += 1
        for at in range(0, len(stream), 1000):  # in pieces that cut frames anywhere
            raw.sendall(stream[at : at + 1000])
        total = good_count + sum(expected.values())
        got = drain(rx, lambda got: rx.received_frames >= total and len(got) >= good_count)
        assert [(s, m.timestamp) for s, m in got] == [(1, i) for i in range(good_count)]
        assert all(m.txns == b"good %d" % m.timestamp for _, m in got)
        assert rx.received_frames == total and rx.received_bytes == len(stream)
        assert rx.drops == expected
        assert rx.connections == 1 and rx.buffered_bytes == 0
        assert rx.received_by_kind == Counter({Request.KIND: good_count})
    finally:
        raw.close()
        rx.close()
        assert zmq_io.close_context(ctx)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_bad_header_cuts_its_connection_and_is_counted(base_port: int) -> None:
    """Past a header it refuses, a stream cannot be trusted: the Receiver counts the reason,
    closes the connection and reads nothing more from it; other connections go on."""
    keys = auth.derive_keys(SECRET, 2)
    receiver_link, sender_link = (
        auth.LinkAuth("cmac-aes", 0, keys),
        auth.LinkAuth("cmac-aes", 1, keys),
    )
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    max_frame = 4096

    def header(kind: int, length: int, version: int = wire.VERSION) -> bytes:
        return wire.HEADER.pack(wire.MAGIC, version, kind, 1, length)

    bad_headers = {
        "magic": b"\xee" * 64,
        "version": header(Request.KIND, 10, version=wire.VERSION + 1) + b"x" * 26,
        "unknown_kind": header(_unregistered_kind(), 1) + b"\x90" + b"t" * 16,
        "too_long": header(Request.KIND, max_frame) + b"z" * 100,  # announces > the bound
        # a Reply's fields are bounded: its kind's body bound is far below 1000 bytes
        "too_long_for_kind": header(Reply.KIND, 1000) + b"r" * 100,
        # a ZMTP peer (a PUSH socket) opens with its greeting: 0xff, padding, 0x7f
        "magic-zmtp": b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL" + b"\x00" * 48,
    }
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), receiver_link, max_frame_bytes=max_frame)
    conns: list[socket.socket] = []
    try:
        for i, bad in enumerate(bad_headers.values()):
            raw = raw_connect(addressing.address(0, 0))
            conns.append(raw)
            # one good frame, the bad header, then a good frame that must never be read
            raw.sendall(_sealed(sender_link, i) + bad + _sealed(sender_link, 100 + i))
        got = drain(rx, lambda got: sum(rx.drops.values()) >= len(bad_headers))
        got += drain(rx, lambda got: False, timeout_s=0.3)
        assert sorted(m.timestamp for _, m in got) == list(range(len(bad_headers)))
        assert rx.drops == Counter(
            {"magic": 2, "version": 1, "unknown_kind": 1, "too_long": 1, "too_long_for_kind": 1}
        )
        assert all(closed_by_peer(raw) for raw in conns)
        assert rx.connections == 0 and rx.buffered_bytes == 0
        # a connection that closes halfway through a frame: counted, its bytes released
        raw = raw_connect(addressing.address(0, 0))
        raw.sendall(_sealed(sender_link, 7)[:-5])
        drain(rx, lambda got: rx.buffered_bytes > 0)
        raw.close()
        drain(rx, lambda got: rx.drops["partial_frame"] == 1)
        assert rx.drops["partial_frame"] == 1 and rx.buffered_bytes == 0
        # a header refused when its second half arrives: its first half is released too
        too_long = bad_headers["too_long"]
        raw = raw_connect(addressing.address(0, 0))
        conns.append(raw)
        raw.sendall(too_long[:5])
        drain(rx, lambda got: rx.buffered_bytes == 5)
        assert rx.buffered_bytes == 5
        raw.sendall(too_long[5:])
        drain(rx, lambda got: rx.drops["too_long"] == 2)
        assert rx.drops["too_long"] == 2 and rx.buffered_bytes == 0 and rx.connections == 0
    finally:
        for raw in conns:
            raw.close()
        rx.close()
        assert zmq_io.close_context(ctx)


# --- sender and receiver behaviour ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_broadcast_encodes_once_and_reaches_every_input(base_port: int) -> None:
    keys = auth.derive_keys(SECRET, 5)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", {1: 1, 2: 2, 3: 1})
    ctx = zmq_io.new_context()
    receivers = {
        (node, k): zmq_io.Receiver(
            ctx, addressing.address(node, k), auth.LinkAuth("cmac-aes", node, keys)
        )
        for node in (1, 2, 3)
        for k in range(addressing.inputs_of(node))
    }
    tx = zmq_io.Sender(ctx, addressing, 4, auth.LinkAuth("cmac-aes", 4, keys))
    batch: Batch = make_batch((Request(4, 1, b"t" * 100, b""),))
    try:
        assert tx.broadcast([1, 2, 3], batch) == 3
        assert tx.sent_frames == 3 and tx.sent_by_kind == Counter({Batch.KIND: 3})
        got: dict[tuple[int, int], list[Any]] = {key: [] for key in receivers}
        deadline = time.monotonic() + 20
        while sum(map(len, got.values())) < 3 and time.monotonic() < deadline:
            for key, rx in receivers.items():
                got[key] += rx.recv_batch(8, 20)
        # node 2 has two inputs: sender 4 writes to input 4 % 2 == 0
        assert got == {(1, 0): [(4, batch)], (2, 0): [(4, batch)], (2, 1): [], (3, 0): [(4, batch)]}
        assert tx.sent_bytes == sum(rx.received_bytes for rx in receivers.values())
    finally:
        tx.close()
        for rx in receivers.values():
            rx.close()
        assert zmq_io.close_context(ctx)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_full_peer_drops_and_counts_instead_of_blocking(base_port: int) -> None:
    keys = auth.derive_keys(SECRET, 2)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    tx = zmq_io.Sender(ctx, addressing, 0, auth.LinkAuth("hmac-sha256", 0, keys), send_hwm=10)
    try:
        # nobody listens on node 1: frames queue up to the HWM, the rest are dropped
        results = [tx.send(1, Request(0, i, b"x", b"")) for i in range(200)]
        assert not all(results) and any(results)
        assert tx.send_drops[1] == results.count(False)
        assert tx.sent_frames == results.count(True) < 200
    finally:
        tx.close()
        assert zmq_io.close_context(ctx)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_recv_batch_bounds_and_timeout(base_port: int) -> None:
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), auth.LinkAuth("none", 0, None))
    tx = zmq_io.Sender(ctx, addressing, 1, auth.LinkAuth("none", 1, None))
    try:
        assert rx.recv_batch(10, 20) == []  # nothing waiting: returns empty after the poll
        for i in range(10):
            assert tx.send(0, Request(1, i, b"", b""))
        got: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            chunk = rx.recv_batch(3, 100)
            assert len(chunk) <= 3
            got += chunk
        assert [m.timestamp for _, m in got] == list(range(10))
        assert rx.recv_batch(0, 100) == []
    finally:
        tx.close()
        rx.close()
        assert zmq_io.close_context(ctx)


# --- addressing (no sockets) ----------------------------------------------------------------


def test_addressing_tcp_ports_hosts_and_inputs() -> None:
    a = zmq_io.Addressing("tcp", ("10.0.0.1", "10.0.0.2"), 17000, "", {0: 3, 5: 2})
    assert a.address(0, 2) == "tcp://10.0.0.1:17002"
    assert a.address(1, 0) == "tcp://10.0.0.2:17008"
    assert a.address(5, 1) == "tcp://10.0.0.2:17041"
    assert a.inputs_of(0) == 3 and a.inputs_of(1) == 1
    assert [a.input_for(s, 0) for s in range(5)] == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError):
        a.address(1, 1)  # node 1 has one input
    with pytest.raises(ValueError):
        zmq_io.Addressing("tcp", inputs_per_node=9)
    with pytest.raises(ValueError):
        zmq_io.Addressing("udp")


def test_addressing_ipc_and_from_config() -> None:
    a = zmq_io.Addressing("ipc", ipc_dir="/tmp/run", inputs_per_node=2)
    assert a.address(3, 1) == "ipc:///tmp/run/node-3-1"
    with pytest.raises(ValueError, match="ipc path"):
        zmq_io.Addressing("ipc", ipc_dir="/" + "d" * 120).address(0, 0)
    cfg = {
        "cluster": {"replicas": 4, "clients": 2, "hosts": ["127.0.0.1"]},
        "replica": {"input_threads": 2},
        "transport": {"kind": "tcp", "base_port": 20000},
    }
    b = zmq_io.Addressing.from_config(cfg)
    assert b.inputs_of(3) == 2 and b.inputs_of(4) == 1
    assert zmq_io.address(4, 0, cfg) == "tcp://127.0.0.1:20032"
    assert zmq_io.address(3, 1, b) == "tcp://127.0.0.1:20025"


class _CountingSocket:
    """The Receiver's socket, counting ZMQ_EVENTS calls and the zmq.Again recv raises."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.events = 0
        self.agains = 0

    def getsockopt(self, option: int) -> Any:
        self.events += option == zmq_io.zmq.EVENTS
        return self.sock.getsockopt(option)

    def recv(self, flags: int = 0) -> bytes:
        try:
            return self.sock.recv(flags)
        except zmq_io.zmq.Again:
            self.agains += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.mark.timeout(60)
def test_a_drain_of_one_read_raises_no_again_and_a_wait_asks_no_events_first(
    base_port: int,
) -> None:
    """Issue 16: between batches a drain is one read; it ends on one ZMQ_EVENTS call, not a
    raised zmq.Again (~3x its cost). A waiting recv_batch waits in its first read (no
    ZMQ_EVENTS call, no zmq_poll). Longer drains still end with one zmq.Again."""
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), auth.LinkAuth("none", 0, None))
    tx = zmq_io.Sender(ctx, addressing, 1, auth.LinkAuth("none", 1, None))
    counting = rx._sock = _CountingSocket(rx._sock)
    try:
        got: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 20
        assert tx.send(0, Request(1, 0, b"", b""))
        while not got and time.monotonic() < deadline:
            got = rx.recv_batch(10, 100)  # the connect notice and the frame
        assert [m.timestamp for _, m in got] == [0]
        agains = counting.agains
        assert tx.send(0, Request(1, 1, b"", b""))
        got = []
        while not got and time.monotonic() < deadline:
            got = rx.recv_batch(10, 100)  # one read
        assert [m.timestamp for _, m in got] == [1]
        assert counting.agains == agains
        events = counting.events
        assert rx.recv_batch(10, 30) == []  # idle: one read that times out
        assert counting.events == events and counting.agains == agains + 1
        agains += 1
        # a drain of several reads (a 20 KB frame: reads of at most 8 KiB) ends with one
        # zmq.Again
        reads = rx.reads
        assert tx.send(0, Request(1, 2, b"x" * 20_000, b""))
        time.sleep(0.3)  # all of it queued
        got = []
        while not got and time.monotonic() < deadline:
            got += rx.recv_batch(10, 100)
        assert [m.timestamp for _, m in got] == [2]
        assert rx.reads >= reads + 3 and counting.agains - agains <= 1
    finally:
        tx.close()
        rx.close()
        assert zmq_io.close_context(ctx)
