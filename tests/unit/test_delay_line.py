"""transport.delay_line: the per-destination delay line of ``network.emulation: transport``.

A fake Sender records when the delay thread hands it each frame; the checks are on the
model (a frame never leaves before its link's delay, a link stays in order under jitter, a
lost segment costs a retransmission timeout, the line is bounded, close drops what waits)
and on parking (the thread burns no CPU while it waits). Nothing here asserts speed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from transport.delay_line import (
    MIN_RTO_S,
    SEGMENT_BYTES,
    DelayedSender,
    LinkShape,
    line_stats,
)


class FakeSender:
    node_id = 0

    def __init__(self) -> None:
        self.got: list[tuple[float, int, bytes]] = []
        self.sent_frames = 0
        self.sent_bytes = 0
        self.sent_by_kind: Counter[int] = Counter()
        self.send_drops: Counter[int] = Counter()
        self.closed = False
        self.arrived = threading.Event()

    def send_frame(self, to: int, frame: bytes) -> bool:
        return self.send_frames(to, [frame]) == 1

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        now = time.monotonic()
        for frame in frames:
            self.got.append((now, to, frame))
        self.sent_frames += len(frames)
        self.arrived.set()
        return len(frames)

    def close(self) -> None:
        self.closed = True


def _wait_for(fake: FakeSender, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(fake.got) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake.got) >= count, f"{len(fake.got)} of {count} frames left the line"


def test_each_destination_waits_its_own_delay_and_frames_keep_their_order() -> None:
    fake = FakeSender()
    line = DelayedSender(fake, {1: LinkShape(delay_s=0.05), 2: LinkShape(delay_s=0.15)})
    try:
        start = time.monotonic()
        for k in range(5):
            assert line.send_frames(2, [b"slow%d" % k]) == 1
            assert line.send_frame(1, b"fast%d" % k)
        _wait_for(fake, 10)
    finally:
        line.close()
    by_dest: dict[int, list[tuple[float, bytes]]] = {1: [], 2: []}
    for at, to, frame in fake.got:
        by_dest[to].append((at, frame))
    assert [f for _, f in by_dest[1]] == [b"fast%d" % k for k in range(5)]
    assert [f for _, f in by_dest[2]] == [b"slow%d" % k for k in range(5)]
    assert min(at for at, _ in by_dest[1]) - start >= 0.05
    assert min(at for at, _ in by_dest[2]) - start >= 0.15
    assert fake.closed


def test_jitter_never_reorders_a_link() -> None:
    fake = FakeSender()
    line = DelayedSender(fake, {1: LinkShape(delay_s=0.02, jitter_s=0.02)}, seed=3)
    try:
        for k in range(200):
            line.send_frame(1, k.to_bytes(2, "big"))
        _wait_for(fake, 200)
    finally:
        line.close()
    assert [int.from_bytes(f, "big") for _, _, f in fake.got] == list(range(200))


def test_a_lost_segment_costs_a_retransmission_timeout_not_the_message() -> None:
    fake = FakeSender()
    shape = LinkShape(delay_s=0.01, loss=0.3)
    line = DelayedSender(fake, {1: shape}, seed=7)
    try:
        start = time.monotonic()
        for k in range(20):
            line.send_frame(1, bytes([k]) * (SEGMENT_BYTES * 2))  # two segments each
        _wait_for(fake, 20, timeout_s=30)
    finally:
        line.close()
    assert len(fake.got) == 20  # nothing lost
    assert line.retransmits > 0
    assert line.network_stats()["modelled_retransmits"] == line.retransmits
    assert fake.got[-1][0] - start >= shape.delay_s + MIN_RTO_S  # someone paid an RTO
    assert shape.rto_s == MIN_RTO_S
    assert LinkShape(delay_s=0.2, jitter_s=0.01).rto_s == pytest.approx(0.44)


def test_the_line_is_bounded_and_a_full_line_counts_its_drops() -> None:
    fake = FakeSender()
    line = DelayedSender(fake, {1: LinkShape(delay_s=5.0)}, max_frames=3)
    try:
        assert line.send_frames(1, [b"a", b"b", b"c", b"d", b"e"]) == 3
        assert not line.send_frame(1, b"f")
        assert line.send_drops[1] == 3
        assert line_stats([line, object()])["line_full_drops"] == 3
    finally:
        line.close()
    assert fake.got == []  # what still waited at close is dropped, like LINGER 0
    assert fake.closed
    assert line.send_frame(1, b"late") is False


def test_the_delay_thread_parks_while_frames_wait() -> None:
    fake = FakeSender()
    line = DelayedSender(fake, {1: LinkShape(delay_s=0.4)})
    try:
        line.send_frame(1, b"x")
        cpu_before = time.process_time()
        assert fake.arrived.wait(10)
        cpu_used = time.process_time() - cpu_before
    finally:
        line.close()
    # a spinning thread would burn ~0.4 CPU-s here; a parked one next to nothing
    assert cpu_used < 0.1, f"{cpu_used:.3f} CPU-s while one frame waited 0.4 s"


def test_link_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        LinkShape(delay_s=-1)
    with pytest.raises(ValueError):
        LinkShape(loss=1.0)
