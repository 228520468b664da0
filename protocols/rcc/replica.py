"""RCC (Gupta, Hellings, Sadoghi, ICDE 2021) as one sans-IO protocol: m PBFT instances side by side.

How it works:
- m = ``params["rcc_instances"]`` (0 or absent = n; 1..n) instances, each the existing PBFT
  state machine (``Pbft(config, verifier, instance=i)``, wrapped in an ``RccLane``), so
  instance i is led by replica i in view 0 and by ``(i + v) % n`` in its view v.
  ``receive`` routes by ``msg.instance`` (client Requests by ``client_id % m``), timers by
  their second element; every instance's actions are collected.
- Rounds: instance i's inner Deliver of seq r is its decision for round r. The
  ``RoundCoordinator``'s assembler holds it until every instance decided round r, then
  emits round r as m global Delivers, global seq ``(r-1)*m + position + 1``, in a per-round deterministic
  order (permuted when ``rcc_permute_rounds``). A Deliver's ``view`` is the view of the
  instance that decided the batch, so a client (whose requests all go through one
  instance) learns its instance's view from the replies it accepts.
- Clients: client c belongs to instance ``c % m`` and sends to that instance's primary,
  ``client_target(view, c) = (c % m + view) % n`` for the view of its last accepted reply.
  A client that times out re-sends to every replica; a replica that is not the current
  primary of the client's instance forwards the request there and arms PBFT's request
  timer (a view change if it is not executed), as PBFT does. ``propose`` accepts a batch
  of any clients: requests of instances this replica leads are proposed there (split by
  instance), the others take that forwarding path. Requests of a client of another
  instance inside a decided batch are dropped at assembly (no double execution).
- No-ops and failures: see protocols/rcc/lane.py (a primary with nothing to propose fills
  rounds with the null batch after ``rcc_noop_ticks``; a lagging instance fetches, then
  starts PBFT's view change, after which the next primary fills the missing rounds).
- Checkpoints: ``checkpoint_period`` and ``watermark_window`` count *rounds* (each inner
  PBFT's sequence numbers). ``executed(seq, digest)`` at the last seq of a round r with
  r % checkpoint_period == 0 feeds ``executed(r, digest)`` to every instance, so every
  instance checkpoints the same global state at the same round and each inner PBFT's
  watermarks, view-change proofs and catch-up stay self-consistent. The global
  StableCheckpoint is ``r*m`` once every instance is stable at r (``StableMerger``).
- State transfer: a lane far behind its peers emits ``FetchState`` for the global seq of a
  certified checkpoint round (protocols/rcc/lane.py); ``state_installed`` skips the round
  coordinator to the installed round, then every lane (``RccLane.installed``).
- ``ViewEntered`` actions carry the sum of the instances' views (it grows by one per instance
  view change) and the new primary of the instance that changed.

Threading contract (the runtime's seam; this class itself is single-threaded):
- ``instances`` are the inner Pbft objects and ``lanes`` their RccLane wrappers; the runtime
  may give lane i its own worker thread and route each message with ``instance_of(msg)``
  (-1: no instance, drop and count it), each timer with ``timer_instance(timer)``, and
  each client batch with ``instance_of_client(client_id)``; a worker calls only its
  lane's methods.
- A lane's ``Deliver``/``StableCheckpoint``/``ViewEntered`` go to one ``RoundCoordinator``
  (protocols/rcc/coordinator.py: round assembly, permutation, frontier, released round,
  checkpoints in rounds, views), here ``self.coordinator``; whoever owns it (this class in
  one thread, or the runtime's checkpoint thread, fabric.runtime.lanes.LaneCoordinator) only routes
  its answers: global Delivers and StableCheckpoints to the execute side,
  ``LaneRounds(frontier, released)`` as ``lane.observe_rounds`` and ``LaneCheckpoint(r,
  digest)`` as ``lane.checkpoint`` to every lane (through the lanes' worker rings).
  Nothing else is shared between lanes (the verifier must be thread-safe).

Must not live here: the PBFT logic itself (protocols/pbft), IO, clocks, randomness.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from protocols import base
from protocols.base import (
    Action,
    Deliver,
    Protocol,
    ProtocolConfig,
    Rollback,
    StableCheckpoint,
    Verifier,
)
from protocols.common import Batch, Request, make_batch
from protocols.pbft import Pbft
from protocols.rcc.coordinator import (
    CoordinatorOutput,
    LaneCheckpoint,
    LaneRounds,
    RoundCoordinator,
)
from protocols.rcc.lane import RccLane
from protocols.rcc.params import LAG_ROUNDS_DIVISOR, NOOP_TICKS_DIVISOR, RccParams


def instance_count(n: int, params: Mapping[str, Any]) -> int:
    """m from ``params["rcc_instances"]`` (0 or absent means n); ValueError outside 1..n."""
    raw = RccParams.from_params(params).instances
    m = raw or n
    if not 1 <= m <= n:
        raise ValueError(f"rcc_instances={raw}: need 1..{n} (0 = n)")
    return m


class Rcc(Protocol):
    """One RCC replica: m PBFT lanes, a round assembler and a stable-checkpoint merger."""

    name = "rcc"
    # every instance is a PBFT lane: its proposals and votes are PBFT's
    proposal_messages = Pbft.proposal_messages
    vote_messages = Pbft.vote_messages
    #: the instance state machine (a test may put a broken PBFT here on purpose)
    pbft_class: ClassVar[type[Pbft]] = Pbft

    def __init__(self, config: ProtocolConfig, verifier: Verifier) -> None:
        super().__init__(config, verifier)
        self.params = params = RccParams.from_params(config.params)
        self.m = m = instance_count(self.n, config.params)
        self.period = config.checkpoint_period
        window = config.watermark_window
        self.noop_ticks = max(
            1, params.noop_ticks or config.view_change_ticks // NOOP_TICKS_DIVISOR
        )
        self.max_lag_rounds = max(1, params.max_lag_rounds or window // LAG_ROUNDS_DIVISOR)
        self.instances: list[Pbft] = [
            self.pbft_class(config, verifier, instance=i) for i in range(m)
        ]
        for p in self.instances:
            # an instance checkpoints rounds, not global seqs: its PBFT never asks for the
            # state itself; its lane does, from the votes beyond its far-round gate
            p.fetches_state = False
        self.lanes: list[RccLane] = [
            RccLane(
                p,
                noop_ticks=self.noop_ticks,
                max_lag_rounds=self.max_lag_rounds,
                seqs_per_round=m,
            )
            for p in self.instances
        ]
        # The far-round gate keeps every decided round within released + max_ahead + window
        # (protocols/rcc/lane.py), so this bound is an invariant of the code, never reached
        # by network behaviour; the slack of a window covers fetched rounds up to a high mark.
        max_ahead = max(lane.max_ahead_rounds for lane in self.lanes)
        self.coordinator = RoundCoordinator(
            m,
            self.period,
            permute=params.permute_rounds,
            max_pending_rounds=max_ahead + 2 * window + self.period,
            max_digests=max(64, 8 * window),
        )
        self.assembler = self.coordinator.assembler  # introspection (status, tests)
        self.stable = self.coordinator.stable
        self.ignored: dict[str, int] = {}

    # --- who proposes ----------------------------------------------------------------

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return f + 1

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return (client_id % instance_count(n, params) + view) % n

    def is_proposer(self) -> bool:
        return any(p.is_proposer() for p in self.instances)

    def proposal_room(self) -> int:
        return sum(p.proposal_room() for p in self.instances if p.is_proposer())

    # --- routing (the runtime's seam) -------------------------------------------------

    def instance_of_client(self, client_id: int) -> int:
        return client_id % self.m

    def instance_of(self, msg: Any) -> int:
        """The instance that owns ``msg`` (0..m-1), or -1 when none does."""
        if type(msg) is Request:
            return msg.client_id % self.m
        inst = getattr(msg, "instance", None)
        if type(inst) is int and 0 <= inst < self.m:
            return inst
        return -1

    def timer_instance(self, timer: Hashable) -> int:
        """The instance that owns ``timer`` (0..m-1), or -1 when none does."""
        if type(timer) is tuple and len(timer) == 3:
            inst = timer[1]
            if type(inst) is int and 0 <= inst < self.m:
                return inst
        return -1

    # --- calls in --------------------------------------------------------------------

    def propose(self, batch: Batch) -> list[Action]:
        out: list[Action] = []
        m = self.m
        reqs = batch.requests
        if not reqs:
            self._ignore("empty_proposal")
            return out
        first = reqs[0].client_id % m
        if all(r.client_id % m == first for r in reqs):
            self._propose_to(first, batch, reqs, out)
            return out
        groups: dict[int, list[Request]] = {}
        for req in reqs:
            groups.setdefault(req.client_id % m, []).append(req)
        for i in sorted(groups):
            group = tuple(groups[i])
            self._propose_to(i, None, group, out)
        return out

    def _propose_to(
        self, i: int, batch: Batch | None, reqs: tuple[Request, ...], out: list[Action]
    ) -> None:
        lane = self.lanes[i]
        if lane.pbft.is_proposer():
            self._collect(i, lane.propose(batch if batch is not None else make_batch(reqs)), out)
            return
        # Not this instance's primary (now): forward like a backup, with PBFT's request timer.
        for req in reqs:
            self._collect(i, lane.receive(req.client_id, req), out)

    def receive(self, sender: int, msg: Any) -> list[Action]:
        out: list[Action] = []
        i = self.instance_of(msg)
        if i < 0:
            self._ignore("no_instance")
            return out
        self._collect(i, self.lanes[i].receive(sender, msg), out)
        return out

    def timeout(self, timer: Hashable) -> list[Action]:
        out: list[Action] = []
        i = self.timer_instance(timer)
        if i < 0:
            self._ignore("unknown_timer")
            return out
        self._collect(i, self.lanes[i].timeout(timer), out)
        return out

    def checkpoint_seq_period(self) -> int:
        return self.m * self.period  # a checkpoint every ``period`` rounds of m seqs

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        self._apply(self.coordinator.executed(seq, state_digest), out)
        return out

    def state_installed(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...] = ()
    ) -> list[Action]:
        """The execute stage holds the state after global ``seq`` (a fetched image, or a
        restart's reloaded state): the coordinator skips to its checkpoint round, then every
        lane installs that round and asks what follows (the runtime's lanes mode does the
        same across threads: fabric.runtime.lanes)."""
        out: list[Action] = []
        self._apply(self.coordinator.state_installed(seq), out)
        round_ = self.coordinator.install_round(seq)
        for i, lane in enumerate(self.lanes):
            self._collect(i, lane.installed(round_, state_digest, tuple(proof)), out)
        return out

    # --- merging the instances' actions (the coordinator decides, this only routes) -----

    def _collect(self, i: int, actions: list[Action], out: list[Action]) -> None:
        coord = self.coordinator
        rounds: LaneRounds | None = None
        for a in actions:
            t = type(a)
            if t is Deliver:
                notes = coord.decided(i, a.seq, a.view, a.batch)
            elif t is StableCheckpoint:
                notes = coord.stable_at(i, a.seq, a.digest)
            elif t is base.ViewEntered:
                notes = coord.view_changed(i, a.view, a.primary)
            elif t is Rollback:
                raise AssertionError("a PBFT instance never rolls back")
            else:
                out.append(a)
                continue
            for note in notes:
                if type(note) is LaneRounds:
                    rounds = note  # told once, after this lane's actions (the latest wins)
                else:
                    self._apply([note], out)
        if rounds is not None:
            self._apply([rounds], out)

    def _apply(self, notes: list[CoordinatorOutput], out: list[Action]) -> None:
        for note in notes:
            t = type(note)
            if t is LaneRounds:
                for j, lane in enumerate(self.lanes):
                    self._collect(j, lane.observe_rounds(note.frontier, note.released), out)
            elif t is LaneCheckpoint:
                for j, lane in enumerate(self.lanes):
                    self._collect(j, lane.checkpoint(note.round, note.state_digest), out)
            else:
                out.append(note)  # type: ignore[arg-type]  # Deliver, StableCheckpoint, ViewEntered

    def total_view(self) -> int:
        """Sum of the instances' views: grows by one with every instance's view change."""
        return self.coordinator.total_view

    @property
    def frontier(self) -> int:
        """The highest round any instance decided."""
        return self.coordinator.frontier

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    # --- introspection -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        asm = self.assembler
        return {
            "instances": self.m,
            "view": self.total_view(),
            "views": [p.view for p in self.instances],
            "primaries": [p.primary for p in self.instances],
            "last_delivered": (asm.next_round - 1) * self.m,
            "rounds_delivered": asm.rounds_delivered,
            "frontier": self.frontier,
            "pending_rounds": asm.pending_rounds,
            "pending_rounds_max_seen": asm.pending_max_seen,
            "stable_seq": self.stable.announced * self.m,
            "null_batches": asm.null_batches,
            "foreign_requests": asm.foreign_requests,
            "noops_proposed": sum(lane.noops_proposed for lane in self.lanes),
            "suspicions": sum(lane.suspicions for lane in self.lanes),
            "far_rounds_refused": sum(lane.far_rounds_refused for lane in self.lanes),
            "ignored": dict(self.ignored),
            "per_instance": [lane.status() for lane in self.lanes],
        }


__all__ = ["Rcc", "instance_count"]
