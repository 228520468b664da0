"""A lanes protocol (RCC) in the simulator, split over worker threads as the runtime splits it.

``SplitLanes(protocol, workers)`` is what ``fabric.runtime.replica`` builds when
``replica.worker_threads > 1``, with the threads taken out: one ``fabric.runtime.lanes.LaneGroup``
per worker (lane i on worker ``i % workers``), and the checkpoint thread's part played by
``fabric.runtime.lanes.coordinate`` / ``worker_item`` on the protocol's own ``RoundCoordinator``.
Items that cross threads in the runtime (a lane's ``ToCoordinator``, the coordinator's
``W_FRONTIER`` / ``W_CHECKPOINT``) are handed over here in FIFO order, breadth first (the
composite ``Rcc`` does the same work depth first, in one thread). It presents the
simulator's protocol interface (``propose``, ``receive``, ``timeout``, ``executed``,
``state_installed``, ``checkpoint_seq_period``,
``is_proposer``, ``proposal_room``, ``verifier``, ``status``).

Must not live here: round logic (protocols/rcc/coordinator.py), moving items between rings
(fabric/runtime/lanes.py), the event loop (simulator.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from fabric.runtime.lanes import LaneGroup, coordinate, has_lanes, worker_item
from fabric.runtime.stages import ToCoordinator
from protocols.base import Action
from protocols.common import Batch, Request, make_batch
from protocols.rcc.coordinator import LaneCheckpoint, LaneRounds


class SplitLanes:
    """One replica of a lanes protocol with its lanes on ``workers`` LaneGroups."""

    def __init__(self, protocol: Any, workers: int) -> None:
        if not has_lanes(protocol):
            raise ValueError(f"{type(protocol).__name__} has no lanes to split")
        m = len(protocol.lanes)
        w = max(1, min(workers, m))
        self.protocol = protocol
        self.verifier = protocol.verifier
        self.coordinator = protocol.coordinator
        self.groups = [LaneGroup(protocol, [i for i in range(m) if i % w == k]) for k in range(w)]
        self.ignored = 0

    def _group(self, instance: int) -> LaneGroup | None:
        return self.groups[instance % len(self.groups)] if instance >= 0 else None

    # --- the simulator's protocol interface ----------------------------------------------

    def is_proposer(self) -> bool:
        return any(g.is_proposer() for g in self.groups)

    def proposal_room(self) -> int:
        return sum(g.proposal_room() for g in self.groups if g.is_proposer())

    def propose(self, batch: Batch) -> list[Action]:
        """A batch of any clients: cut per instance, as the runtime's batch stage routes."""
        groups: dict[int, list[Request]] = {}
        for req in batch.requests:
            groups.setdefault(self.protocol.instance_of_client(req.client_id), []).append(req)
        out: list[Any] = []
        for i in sorted(groups):
            reqs = tuple(groups[i])
            group = self._group(i)
            assert group is not None
            one = batch if len(groups) == 1 else make_batch(reqs)
            out += group.propose(one)
        return self._settle(out)

    def receive(self, sender: int, msg: Any) -> list[Action]:
        group = self._group(self.protocol.instance_of(msg))
        if group is None:
            self.ignored += 1
            return []
        return self._settle(group.receive(sender, msg))

    def timeout(self, timer: Hashable) -> list[Action]:
        group = self._group(self.protocol.timer_instance(timer))
        if group is None:
            self.ignored += 1
            return []
        return self._settle(group.timeout(timer))

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        # the execute stage tells the checkpoint thread (C_EXECUTED), not the workers
        out: list[Action] = []
        work: deque[Callable[[], list[Any]]] = deque()
        self._route(self.coordinator.executed(seq, state_digest), out, work)
        return self._settle([], out, work)

    def state_installed(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...] = ()
    ) -> list[Action]:
        # the execute stage tells the checkpoint thread, which skips the coordinator and
        # hands W_STATE_INSTALLED to every worker (fabric.runtime.lanes.LaneCoordinator)
        out: list[Action] = []
        work: deque[Callable[[], list[Any]]] = deque()
        self._route(self.coordinator.state_installed(seq), out, work)
        for g in self.groups:
            work.append(partial(g.state_installed, seq, state_digest, tuple(proof)))
        return self._settle([], out, work)

    def checkpoint_seq_period(self) -> int:
        # the execute side digests (and keeps images of) the state at the protocol's
        # checkpoint seqs, as the runtime's execute stage asks the protocol itself
        return int(self.protocol.checkpoint_seq_period())

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.protocol.status()
        st["workers"] = len(self.groups)
        return st

    # --- items between threads ------------------------------------------------------------

    def _settle(
        self,
        actions: list[Any],
        out: list[Action] | None = None,
        work: deque[Callable[[], list[Any]]] | None = None,
    ) -> list[Action]:
        """Carry every cross-thread item until none is left; the actions for the simulator.
        ``work`` holds worker calls not yet made (a worker takes its ring items in order)."""
        out = [] if out is None else out
        work = deque() if work is None else work
        pending = actions
        while True:
            for a in pending:
                if type(a) is ToCoordinator:
                    self._route(coordinate(self.coordinator, a.item), out, work)
                else:
                    out.append(a)
            if not work:
                return out
            pending = work.popleft()()

    def _route(
        self, notes: list[Any], out: list[Action], work: deque[Callable[[], list[Any]]]
    ) -> None:
        """The coordinator's answers: notes to every worker (queued), the rest out."""
        for note in notes:
            if type(note) is LaneRounds or type(note) is LaneCheckpoint:
                item = worker_item(note)
                for g in self.groups:
                    work.append(partial(g.take, item))
            else:
                out.append(note)  # global Deliver, StableCheckpoint, ViewEntered


__all__ = ["SplitLanes"]
