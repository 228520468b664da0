"""Multi-instance protocols (RCC) with one worker thread per instance group: moving items only.

A protocol that exposes lanes (protocols/rcc: ``lanes``, ``instance_of(msg)``,
``timer_instance(timer)``, ``instance_of_client(client_id)`` and a ``coordinator``, the
sans-IO ``RoundCoordinator`` of protocols/rcc/coordinator.py; see its threading contract)
can run its instances on ``replica.worker_threads`` workers:

- ``LaneGroup`` is what one worker owns: the lanes ``i`` with ``i % workers ==
  k``, presented to ``fabric.runtime.stages.WorkerStage`` as a protocol. A lane's
  ``Deliver`` (its round), ``StableCheckpoint`` and ``ViewEntered`` do not go to the
  execute ring: they are wrapped in ``ToCoordinator`` for the coordinator.
- ``LaneCoordinator`` is the checkpoint thread of such a replica: it hands each lane item
  and each executed seq to the protocol's ``RoundCoordinator`` (``coordinate``) and moves
  the answers: global Delivers to the execute ring, the merged stable checkpoint as
  ``E_COMMIT``, ``LaneRounds`` as ``(W_FRONTIER, frontier, released)`` and
  ``LaneCheckpoint`` as ``(W_CHECKPOINT, round, digest)`` to every worker ring. An
  installed state (``C_STATE_INSTALLED``) skips the coordinator to its round, then goes to
  every worker ring as ``W_STATE_INSTALLED`` (``LaneGroup.state_installed``). Like the
  plain checkpoint stage it never blocks on a push (bounded backlogs per ring).

Every decision about rounds (assembly, permutation, frontier, released round, checkpoints
in rounds, views) is the coordinator's; nothing here decides. The simulator runs the same
``LaneGroup``s and ``coordinate`` with lanes split over workers (fabric/sim/lanes.py).
Nothing else is shared between workers: each lane is touched by its worker only, the
coordinator by the checkpoint thread only.

Must not live here: the protocol's logic (protocols/rcc), generic stages (fabric.runtime.stages).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages import (
    C_EXECUTED,
    C_LANE,
    C_STATE_INSTALLED,
    CHUNK,
    E_COMMIT,
    E_DELIVER,
    MAX_BACKLOG,
    PARK_S,
    W_CHECKPOINT,
    W_FRONTIER,
    W_STATE_INSTALLED,
    ReplicaShared,
    Stage,
    ToCoordinator,
)
from protocols.base import Action, Deliver, StableCheckpoint, ViewEntered
from protocols.common import Batch
from protocols.rcc.coordinator import (
    CoordinatorOutput,
    LaneCheckpoint,
    LaneRounds,
    RoundCoordinator,
    install_round,
)

# what a lane hands the coordinator (inside ToCoordinator, on the checkpoint ring):
L_DELIVER = 0  # (C_LANE, L_DELIVER, instance, round, view, batch)
L_STABLE = 1  # (C_LANE, L_STABLE, instance, round, digest)
L_VIEW = 2  # (C_LANE, L_VIEW, instance, view, primary)


def has_lanes(protocol: Any) -> bool:
    """True if ``protocol`` follows the lanes threading contract (protocols/rcc)."""
    return all(
        hasattr(protocol, name)
        for name in ("lanes", "instance_of", "timer_instance", "coordinator")
    )


def coordinate(coordinator: RoundCoordinator, item: tuple[Any, ...]) -> list[CoordinatorOutput]:
    """A lane's item ``(C_LANE, kind, instance, ...)`` handed to the coordinator; its answer."""
    kind, i = item[1], item[2]
    if kind == L_DELIVER:
        return coordinator.decided(i, item[3], item[4], item[5])
    if kind == L_STABLE:
        return coordinator.stable_at(i, item[3], item[4])
    if kind == L_VIEW:
        return coordinator.view_changed(i, item[3], item[4])
    return []


def worker_item(note: LaneRounds | LaneCheckpoint) -> tuple[Any, ...]:
    """The worker-ring item that carries a coordinator's note to every LaneGroup."""
    if type(note) is LaneRounds:
        return (W_FRONTIER, note.frontier, note.released)
    return (W_CHECKPOINT, note.round, note.state_digest)


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

    def observe_frontier(self, frontier: int, released: int) -> list[Any]:
        """``(W_FRONTIER, frontier, released)``: the coordinator's LaneRounds."""
        out: list[Any] = []
        for i, lane in self.lanes.items():
            out += self._wrap(i, lane.observe_rounds(frontier, released))
        return out

    def take(self, item: tuple[Any, ...]) -> list[Any]:
        """A coordinator's worker item (``worker_item``), as WorkerStage dispatches it."""
        if item[0] == W_FRONTIER:
            return self.observe_frontier(item[1], item[2])
        return self.checkpoint(item[1], item[2])

    def state_installed(self, seq: int, state_digest: bytes, proof: tuple[Any, ...]) -> list[Any]:
        """``(W_STATE_INSTALLED, seq, digest, proof)``: the execute stage holds the state
        after global ``seq`` (the coordinator already skipped there): every lane installs
        its checkpoint round."""
        round_ = install_round(seq, self.protocol.m, self.protocol.period)
        out: list[Any] = []
        for i, lane in self.lanes.items():
            out += self._wrap(i, lane.installed(round_, state_digest, tuple(proof)))
        return out

    def checkpoint(self, round_: int, state_digest: bytes) -> list[Any]:
        """``(W_CHECKPOINT, round, digest)``: the coordinator's LaneCheckpoint."""
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
            elif tp is ViewEntered:
                out.append(ToCoordinator((C_LANE, L_VIEW, i, a.view, a.primary)))
            else:
                out.append(a)
        return out


class LaneCoordinator(Stage):
    """The checkpoint thread of a lanes replica: moves items to and from the protocol's
    RoundCoordinator (see module)."""

    role = "checkpoint"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        protocol: Any,
        checkpoint_ring: Ring,
        worker_rings: Sequence[Ring],
        execute_ring: Ring,
        checkpoint_period: int | None = None,
    ) -> None:
        super().__init__(name, shared)
        self.coordinator: RoundCoordinator = protocol.coordinator
        # the coordinator counts checkpoint rounds itself; a caller's period must agree
        if checkpoint_period is not None and checkpoint_period != self.coordinator.period:
            raise ValueError(
                f"checkpoint_period={checkpoint_period}, but the protocol's coordinator "
                f"checkpoints every {self.coordinator.period} rounds"
            )
        self.checkpoint_ring = checkpoint_ring
        self.worker_rings = list(worker_rings)
        self.execute_ring = execute_ring
        self.backlogs: dict[int, deque[Any]] = {id(r): deque() for r in self.worker_rings}
        self.to_execute: deque[Any] = deque()
        self._rounds_due: LaneRounds | None = None  # the latest, posted once per pass
        self.view = 0
        self.view_changes: list[tuple[float, int, int]] = []  # (epoch, total view, primary)
        self.stable_seq = 0
        self.stable_count = 0
        self.executed_seq = 0
        self.rounds = 0  # global Delivers handed to the execute ring

    @property
    def frontier(self) -> int:
        return self.coordinator.frontier

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.checkpoint_ring
        while not stop.is_set():
            backlog = bool(self.to_execute) or any(self.backlogs.values())
            for item in self.pop(ring, 0.002 if backlog else PARK_S):
                if item[0] == C_EXECUTED:
                    self.executed_seq = item[1]
                    self._route(self.coordinator.executed(item[1], item[2]))
                elif item[0] == C_LANE:
                    self._route(coordinate(self.coordinator, item))
                elif item[0] == C_STATE_INSTALLED:  # a state image, or a restart's reload
                    self.executed_seq = item[1]
                    self._route(self.coordinator.state_installed(item[1]))
                    self._to_workers((W_STATE_INSTALLED, *item[1:]))
                else:
                    self.drops["unexpected_checkpoint_item"] += 1
            if self._rounds_due is not None:
                self._to_workers(worker_item(self._rounds_due))
                self._rounds_due = None
            for r in self.worker_rings:
                if self.backlogs[id(r)]:
                    _flush(r, self.backlogs[id(r)])
            if self.to_execute:
                _flush(self.execute_ring, self.to_execute)

    def _route(self, notes: list[CoordinatorOutput]) -> None:
        for note in notes:
            t = type(note)
            if t is Deliver:
                self._queue(
                    self.to_execute,
                    (E_DELIVER, note.seq, note.view, note.batch, note.speculative),
                )
                self.rounds += 1
            elif t is LaneRounds:
                self._rounds_due = note
            elif t is LaneCheckpoint:
                self._to_workers(worker_item(note))
            elif t is StableCheckpoint:
                if note.seq > self.stable_seq:
                    self.stable_seq = note.seq
                    self.stable_count += 1
                    proof = note.proof  # the certificate (2f+1 signed votes; () if none)
                    self._queue(self.to_execute, (E_COMMIT, note.seq, note.digest, proof))
            elif t is ViewEntered:
                self.view = note.view
                if len(self.view_changes) < 1000:
                    self.view_changes.append((time.time(), note.view, note.primary))

    def _to_workers(self, item: tuple[Any, ...]) -> None:
        for r in self.worker_rings:
            self._queue(self.backlogs[id(r)], item)

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
