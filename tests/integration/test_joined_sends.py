"""Issue 16 item 3: the output stage hands the frames of one chunk to a destination in one
ZeroMQ send (transport.zmq_io.Sender.send_frames); the stream receiver delimits them, so
every frame arrives, in order, MAC-checked, counted per frame on both sides."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import ReplicaShared
from fabric.runtime.stages.output import OutputStage
from protocols.common import Request
from transport import auth, wire, zmq_io

SECRET = "joined-sends-secret"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_send_frames_joins_per_destination_and_every_frame_arrives(base_port: int) -> None:
    keys = auth.derive_keys(SECRET, 2)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), auth.LinkAuth("cmac-aes", 0, keys))
    tx = zmq_io.Sender(ctx, addressing, 1, auth.LinkAuth("cmac-aes", 1, keys))
    # small frames share a message; a 40 KiB one starts a new message past the join bound
    reqs = [Request(1, i, (b"x" * 40_000) if i == 5 else b"t" * 50, b"") for i in range(12)]
    try:
        assert tx.send_frames(0, [wire.encode(r, 1) for r in reqs]) == 12
        assert tx.sent_frames == 12 and tx.sent_by_kind == Counter({Request.KIND: 12})
        got: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 20
        while len(got) < 12 and time.monotonic() < deadline:
            got += rx.recv_batch(64, 50)
        assert got == [(1, r) for r in reqs]
        assert rx.received_bytes == tx.sent_bytes and not rx.drops
    finally:
        tx.close()
        rx.close()
        assert zmq_io.close_context(ctx)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_send_frames_to_a_full_peer_counts_every_frame_dropped(base_port: int) -> None:
    keys = auth.derive_keys(SECRET, 2)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    tx = zmq_io.Sender(ctx, addressing, 0, auth.LinkAuth("hmac-sha256", 0, keys), send_hwm=2)
    try:
        frames = [wire.encode(Request(0, i, b"x", b""), 0) for i in range(3)]
        sent = [tx.send_frames(1, frames) for _ in range(50)]  # nobody listens on node 1
        assert set(sent) <= {0, 3} and 0 in sent and 3 in sent
        assert tx.send_drops[1] == 3 * sent.count(0) and tx.sent_frames == 3 * sent.count(3)
    finally:
        tx.close()
        assert zmq_io.close_context(ctx)


class _RecordingSender:
    def __init__(self) -> None:
        self.calls: list[tuple[int, list[bytes]]] = []

    def send_frame(self, to: int, frame: bytes) -> bool:
        self.calls.append((to, [frame]))
        return True

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        self.calls.append((to, list(frames)))
        return len(frames)

    def close(self) -> None:
        pass


def test_output_stage_groups_a_chunk_per_destination_in_order() -> None:
    shared = ReplicaShared(0, 4)
    ring = Ring(64, "o")
    sender = _RecordingSender()
    stage = OutputStage("output-0", shared, sender, ring)
    msgs = [Request(5, i, b"", b"") for i in range(4)]
    ring.push_many([((1, 2), msgs[0]), (1, msgs[1]), ((2, 3), msgs[2]), (1, msgs[3])])
    stage.start()
    deadline = time.monotonic() + 10
    while sum(len(f) for _, f in sender.calls) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    shared.stop.set()
    ring.close()
    stage.join(5)
    by_dest = {to: [wire.decode(f)[1].timestamp for f in frames] for to, frames in sender.calls}
    assert len(sender.calls) == 3  # one hand-over per destination
    assert by_dest == {1: [0, 1, 3], 2: [0, 2], 3: [2]}


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sends_skip_pyzmq_python_layer_and_still_arrive(base_port: int, monkeypatch: Any) -> None:
    """Issue 16: the Sender calls the backend's send (what zmq.Socket.send ends in once it
    has checked for DRAFT routing_id/group arguments), half the cost per send; frames
    still arrive whole and in order, joined or alone."""
    import zmq

    assert issubclass(zmq.Socket, zmq.backend.Socket)

    def python_layer(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("zmq.Socket.send called")

    keys = auth.derive_keys(SECRET, 2)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), auth.LinkAuth("cmac-aes", 0, keys))
    tx = zmq_io.Sender(ctx, addressing, 1, auth.LinkAuth("cmac-aes", 1, keys))
    reqs = [Request(1, i, b"t" * 50, b"") for i in range(4)]
    try:
        monkeypatch.setattr(zmq.Socket, "send", python_layer)
        assert tx.send(0, reqs[0])
        assert tx.send_frames(0, [wire.encode(r, 1) for r in reqs[1:]]) == 3
        got: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            got += rx.recv_batch(64, 50)
        assert got == [(1, r) for r in reqs]
    finally:
        monkeypatch.undo()
        tx.close()
        rx.close()
        assert zmq_io.close_context(ctx)
