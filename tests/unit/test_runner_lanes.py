"""Lanes glue (fabric.runtime.lanes): one worker per instance group, a coordinator for rounds.

Fake lanes stand in for protocols/rcc's RccLane (the round coordinator is the real
sans-IO one: fabric.runtime.lanes must only move items to and from it), so these tests pin the
runtime's side of the threading contract on their own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fabric.runtime.lanes import L_DELIVER, L_STABLE, L_VIEW, LaneCoordinator, LaneGroup, has_lanes
from fabric.runtime.ring import Ring
from fabric.runtime.stages import (
    C_EXECUTED,
    C_LANE,
    E_COMMIT,
    E_DELIVER,
    W_CHECKPOINT,
    W_FRONTIER,
    W_MSG,
    ReplicaShared,
    ToCoordinator,
    WorkerStage,
)
from protocols.base import Broadcast, Deliver, StableCheckpoint, ViewEntered
from protocols.common import NULL_BATCH, Request, make_batch
from protocols.rcc.coordinator import RoundCoordinator

pytestmark = pytest.mark.timeout(30)
N, M = 4, 2


def req(client: int, ts: int = 1) -> Request:
    return Request(client, ts, b"t", b"s")


class FakePbft:
    def __init__(self, proposer: bool) -> None:
        self.proposer = proposer

    def is_proposer(self) -> bool:
        return self.proposer

    def proposal_room(self) -> int:
        return 3


class FakeLane:
    def __init__(self, i: int, proposer: bool) -> None:
        self.i = i
        self.pbft = FakePbft(proposer)
        self.calls: list[tuple[Any, ...]] = []

    def propose(self, batch):
        self.calls.append(("propose", batch))
        return [Deliver(1, 0, batch)]

    def receive(self, sender, msg):
        self.calls.append(("receive", sender, msg))
        return [Broadcast(msg), StableCheckpoint(4, b"d"), ViewEntered(2, 3)]

    def timeout(self, timer):
        self.calls.append(("timeout", timer))
        return []

    def observe_rounds(self, frontier, released):
        self.calls.append(("rounds", frontier, released))
        return []

    def checkpoint(self, round_, digest):
        self.calls.append(("checkpoint", round_, digest))
        return []


class FakeRcc:
    def __init__(self, proposers=(True, False)) -> None:
        self.lanes = [FakeLane(i, p) for i, p in enumerate(proposers)]
        # the real, sans-IO coordinator: the runtime only moves items to and from it
        self.coordinator = RoundCoordinator(len(self.lanes), 1, permute=False)

    def instance_of(self, msg: Any) -> int:
        if type(msg) is Request:
            return msg.client_id % len(self.lanes)
        return getattr(msg, "instance", -1)

    def instance_of_client(self, client_id: int) -> int:
        return client_id % len(self.lanes)

    def timer_instance(self, timer: Any) -> int:
        return timer[1] if type(timer) is tuple else -1


def drain(ring: Ring, want: int, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += ring.pop_many(want - len(got), 0.05)
    return got


def test_has_lanes_recognises_the_contract():
    assert has_lanes(FakeRcc())
    assert not has_lanes(object())


def test_lane_group_routes_by_instance_and_wraps_decisions_for_the_coordinator():
    rcc = FakeRcc()
    group = LaneGroup(rcc, [0, 1])
    acts = group.receive(1, req(client=5))  # client 5 -> instance 1
    assert rcc.lanes[1].calls == [("receive", 1, req(5))] and rcc.lanes[0].calls == []
    assert acts[0] == Broadcast(req(5))
    assert acts[1] == ToCoordinator((C_LANE, L_STABLE, 1, 4, b"d"))
    assert acts[2] == ToCoordinator((C_LANE, L_VIEW, 1, 2, 3))
    batch = make_batch((req(4),))  # instance 0, whose primary this replica is
    assert group.propose(batch) == [ToCoordinator((C_LANE, L_DELIVER, 0, 1, 0, batch))]
    # instance 1's primary is elsewhere: its requests take the backup path (forwarding)
    group.propose(make_batch((req(7, ts=3),)))
    assert rcc.lanes[1].calls[-1] == ("receive", 7, req(7, ts=3))
    assert group.timeout(("rcc", 0, "noop")) == [] and rcc.lanes[0].calls[-1][0] == "timeout"
    group.observe_frontier(9, 3)  # (W_FRONTIER, frontier, released): to every lane it owns
    assert all(lane.calls[-1] == ("rounds", 9, 3) for lane in rcc.lanes)
    group.checkpoint(10, b"h")
    assert all(lane.calls[-1] == ("checkpoint", 10, b"h") for lane in rcc.lanes)
    assert group.is_proposer() and group.proposal_room() == 3


def test_lane_group_ignores_what_belongs_to_another_worker():
    rcc = FakeRcc()
    group = LaneGroup(rcc, [0])  # this worker owns instance 0 only
    assert group.receive(1, req(client=5)) == []
    assert group.timeout(("rcc", 1, "watch")) == []
    assert group.ignored == 2 and rcc.lanes[1].calls == []


def test_worker_with_lanes_sends_decisions_to_the_checkpoint_ring_and_takes_frontiers():
    rcc = FakeRcc()
    shared = ReplicaShared(0, N, workers=2)
    rings = {k: Ring(64, k, multi_producer=True) for k in ("w", "o", "e", "c")}
    worker = WorkerStage(
        "worker-1", shared, LaneGroup(rcc, [1]), *rings.values(), tick_s=0.01, index=1
    )
    assert shared.proposer_flags == [False, False] and not shared.is_proposer
    worker.start()
    try:
        rings["w"].push_many([(W_MSG, 2, req(5)), (W_FRONTIER, 7, 0), (W_CHECKPOINT, 8, b"x")])
        chk = drain(rings["c"], 2)
        out = drain(rings["o"], 1)
    finally:
        shared.stop.set()
        worker.join(5)
    assert chk == [(C_LANE, L_STABLE, 1, 4, b"d"), (C_LANE, L_VIEW, 1, 2, 3)]
    assert out == [((1, 2, 3), req(5))]
    assert rcc.lanes[1].calls[1:] == [("rounds", 7, 0), ("checkpoint", 8, b"x")]
    assert drain(rings["e"], 1, timeout=0.2) == []  # lane decisions never go to execute


def test_coordinator_assembles_rounds_tells_frontiers_and_checkpoints():
    rcc = FakeRcc()
    shared = ReplicaShared(0, N, workers=2)
    chk, w0, w1, exe = Ring(64, "c"), Ring(64, "w0"), Ring(64, "w1"), Ring(64, "e")
    coord = LaneCoordinator("checkpoint", shared, rcc, chk, [w0, w1], exe, checkpoint_period=1)
    b0, b1 = make_batch((req(4),)), NULL_BATCH
    coord.start()
    try:
        chk.push((C_LANE, L_DELIVER, 0, 1, 0, b0))
        assert drain(w0, 1) == [(W_FRONTIER, 1, 0)] and drain(w1, 1) == [(W_FRONTIER, 1, 0)]
        assert drain(exe, 1, timeout=0.2) == []  # round 1 waits for instance 1
        chk.push((C_LANE, L_DELIVER, 1, 1, 0, b1))
        delivered = drain(exe, 2)
        assert delivered == [(E_DELIVER, 1, 0, b0, False), (E_DELIVER, 2, 0, b1, False)]
        # round 1 released: every lane hears it (its far-round gate moves)
        assert drain(w0, 1) == [(W_FRONTIER, 1, 1)] and drain(w1, 1) == [(W_FRONTIER, 1, 1)]
        chk.push((C_EXECUTED, 1, b"s1"))  # mid-round: no checkpoint
        chk.push((C_EXECUTED, 2, b"s2"))  # last seq of round 1 (period 1)
        assert drain(w0, 1) == [(W_CHECKPOINT, 1, b"s2")] and drain(w1, 1) == [
            (W_CHECKPOINT, 1, b"s2")
        ]
        chk.push_many([(C_LANE, L_STABLE, 0, 1, b"s2"), (C_LANE, L_STABLE, 1, 1, b"s2")])
        assert drain(exe, 1) == [(E_COMMIT, 2, b"s2", ())]  # (seq, digest, certificate)
        chk.push((C_LANE, L_VIEW, 1, 1, 2))
        deadline = time.monotonic() + 5
        while coord.view == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        shared.stop.set()
        coord.join(5)
    assert coord.view == 1 and coord.view_changes[0][1:] == (1, 2)
    assert coord.stable_seq == 2 and coord.frontier == 1


def test_coordinator_refuses_a_checkpoint_period_that_disagrees_with_the_protocols():
    shared = ReplicaShared(0, N, workers=2)
    rings = [Ring(8, k) for k in ("c", "w", "e")]
    with pytest.raises(ValueError, match="checkpoint_period"):
        LaneCoordinator("checkpoint", shared, FakeRcc(), rings[0], [rings[1]], rings[2], 5)
