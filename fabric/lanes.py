"""Multi-instance protocols (RCC) with one worker thread per instance group.

A protocol that exposes lanes (protocols/rcc: ``lanes``, ``instance_of(msg)``,
``timer_instance(timer)``, ``instance_of_client(client_id)``, an ``assembler``
(RoundAssembler) and a ``stable`` merger (StableMerger), see its threading
contract) can run its instances on ``replica.worker_threads`` workers:

- ``LaneGroup`` is what one worker owns: the lanes ``i`` with ``i % workers ==
  k``, presented to ``fabric.stages.WorkerStage`` as a protocol. A lane's
  ``Deliver`` (its round), ``StableCheckpoint`` and ``NewView`` do not go to the
  execute ring: they are wrapped in ``ToCoordinator`` for the coordinator.
- ``LaneCoordinator`` is the checkpoint thread of such a replica: it owns the
  assembler and the merger. Lane decisions become global Delivers (execute ring);
  a higher decided round is told to every other lane (``W_FRONTIER`` through
  the lanes' worker rings); after the execute stage ran the last seq of a
  checkpoint round it posts ``W_CHECKPOINT`` to every lane; lane stable
  checkpoints merge into the global one (``E_COMMIT``). Like the plain
  checkpoint stage it never blocks on a push (bounded backlogs per ring).

Nothing else is shared between workers: each lane is touched by its worker
only, the assembler and merger by the coordinator only.

Must not live here: the protocol's logic (protocols/rcc), generic stages (fabric.stages).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

from fabric.ring import Ring
from fabric.stages import (
    C_EXECUTED,
    C_LANE,
    CHUNK,
    E_COMMIT,
    E_DELIVER,
    MAX_BACKLOG,
    PARK_S,
    W_CHECKPOINT,
    W_FRONTIER,
    ReplicaShared,
    Stage,
    ToCoordinator,
)
from protocols.base import Action, Deliver, NewView, StableCheckpoint
from protocols.common import Batch

# what a lane hands the coordinator (inside ToCoordinator, on the checkpoint ring):
L_DELIVER = 0  # (C_LANE, L_DELIVER, instance, round, view, batch)
L_STABLE = 1  # (C_LANE, L_STABLE, instance, round, digest)
L_VIEW = 2  # (C_LANE, L_VIEW, instance, view, primary)


def has_lanes(protocol: Any) -> bool:
    """True if ``protocol`` follows the lanes threading contract (protocols/rcc)."""
    return all(
        hasattr(protocol, name)
        for name in ("lanes", "instance_of", "timer_instance", "assembler", "stable")
    )


class LaneGroup:
    """The lanes one worker owns, presented to WorkerStage as one protocol."""

    def __init__(self, protocol: Any, indices: Sequence[int]) -> None:
        self.protocol = protocol
        self.lanes = {i: protocol.lanes[i] for i in indices}
        self.ignored = 0

    def is_proposer(self) -> bool:
        return any(lane.pbft.is_proposer() for lane in self.lanes.values())

    def proposal_room(self) -> int:
        return sum(
            lane.pbft.proposal_room() for lane in self.lanes.values() if lane.pbft.is_proposer()
        )

    def propose(self, batch: Batch) -> list[Any]:
        """A batch of one instance's clients (the batch stage routes by client)."""
        i = self.protocol.instance_of_client(batch.requests[0].client_id) if batch.requests else -1
        lane = self.lanes.get(i)
        if lane is None:
            self.ignored += 1
            return []
        if lane.pbft.is_proposer():
            return self._wrap(i, lane.propose(batch))
        out: list[Any] = []
        for req in batch.requests:  # not this instance's primary now: forward like a backup
            out += self._wrap(i, lane.receive(req.client_id, req))
        return out

    def receive(self, sender: int, msg: Any) -> list[Any]:
        i = self.protocol.instance_of(msg)
        lane = self.lanes.get(i)
        if lane is None:
            self.ignored += 1
            return []
        return self._wrap(i, lane.receive(sender, msg))

    def timeout(self, timer: Hashable) -> list[Any]:
        i = self.protocol.timer_instance(timer)
        lane = self.lanes.get(i)
        if lane is None:
            self.ignored += 1
            return []
        return self._wrap(i, lane.timeout(timer))

    def executed(self, seq: int, state_digest: bytes) -> list[Any]:
        return []  # lanes learn executed checkpoint rounds through checkpoint()

    def observe_frontier(self, round_: int, decider: int) -> list[Any]:
        out: list[Any] = []
        for i, lane in self.lanes.items():
            if i != decider:
                out += self._wrap(i, lane.observe_frontier(round_))
        return out

    def checkpoint(self, round_: int, state_digest: bytes) -> list[Any]:
        out: list[Any] = []
        for i, lane in self.lanes.items():
            out += self._wrap(i, lane.checkpoint(round_, state_digest))
        return out

    @staticmethod
    def _wrap(i: int, actions: list[Action]) -> list[Any]:
        out: list[Any] = []
        for a in actions:
            tp = type(a)
            if tp is Deliver:
                out.append(ToCoordinator((C_LANE, L_DELIVER, i, a.seq, a.view, a.batch)))
            elif tp is StableCheckpoint:
                out.append(ToCoordinator((C_LANE, L_STABLE, i, a.seq, a.digest)))
            elif tp is NewView:
                out.append(ToCoordinator((C_LANE, L_VIEW, i, a.view, a.primary)))
            else:
                out.append(a)
        return out


class LaneCoordinator(Stage):
    """The checkpoint thread of a lanes replica: rounds, frontier, checkpoints (see module)."""

    role = "checkpoint"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        protocol: Any,
        checkpoint_ring: Ring,
        worker_rings: Sequence[Ring],
        execute_ring: Ring,
        checkpoint_period: int,
    ) -> None:
        super().__init__(name, shared)
        self.assembler = protocol.assembler
        self.merger = protocol.stable
        self.m = len(protocol.lanes)
        self.period = checkpoint_period
        self.checkpoint_ring = checkpoint_ring
        self.worker_rings = list(worker_rings)
        self.execute_ring = execute_ring
        self.backlogs: dict[int, deque[Any]] = {id(r): deque() for r in self.worker_rings}
        self.to_execute: deque[Any] = deque()
        self.frontier = 0
        self.views = [0] * self.m
        self.view = 0
        self.view_changes: list[tuple[float, int, int]] = []  # (epoch, total view, primary)
        self.stable_seq = 0
        self.stable_count = 0
        self.executed_seq = 0
        self.rounds = 0

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.checkpoint_ring
        while not stop.is_set():
            backlog = bool(self.to_execute) or any(self.backlogs.values())
            for item in self.pop(ring, 0.002 if backlog else PARK_S):
                if item[0] == C_EXECUTED:
                    self._executed(item[1], item[2])
                elif item[0] == C_LANE:
                    self._lane(item)
                else:
                    self.drops["unexpected_checkpoint_item"] += 1
            for r in self.worker_rings:
                if self.backlogs[id(r)]:
                    _flush(r, self.backlogs[id(r)])
            if self.to_execute:
                _flush(self.execute_ring, self.to_execute)

    def _lane(self, item: tuple[Any, ...]) -> None:
        kind, i = item[1], item[2]
        if kind == L_DELIVER:
            round_, view, batch = item[3], item[4], item[5]
            for d in self.assembler.add(i, round_, view, batch):
                self._queue(self.to_execute, (E_DELIVER, d.seq, d.view, d.batch, d.speculative))
                self.rounds += 1
            if round_ > self.frontier:
                self.frontier = round_
                for r in self.worker_rings:
                    self._queue(self.backlogs[id(r)], (W_FRONTIER, round_, i))
        elif kind == L_STABLE:
            merged = self.merger.add(i, item[3], item[4])
            if merged is not None and merged.seq > self.stable_seq:
                self.stable_seq = merged.seq
                self.stable_count += 1
                self._queue(self.to_execute, (E_COMMIT, merged.seq))
        elif kind == L_VIEW:
            self.views[i] = item[3]
            self.view = sum(self.views)
            if len(self.view_changes) < 1000:
                self.view_changes.append((time.time(), self.view, item[4]))

    def _executed(self, seq: int, digest: bytes) -> None:
        self.executed_seq = seq
        if seq < 1 or seq % self.m:
            return
        round_ = seq // self.m
        if round_ % self.period:
            return
        for r in self.worker_rings:
            self._queue(self.backlogs[id(r)], (W_CHECKPOINT, round_, digest))

    def _queue(self, backlog: deque[Any], item: Any) -> None:
        if len(backlog) >= MAX_BACKLOG:
            self.drops["coordinator_backlog_full"] += 1
            return
        backlog.append(item)


def _flush(ring: Ring, backlog: deque[Any]) -> None:
    """Push what fits now (never blocks); the rest waits for the next pass."""
    items = [backlog[i] for i in range(min(len(backlog), CHUNK))]
    done = ring.push_many(items, 0)
    for _ in range(done):
        backlog.popleft()
