"""RCC's round coordinator, once: what joins the m instances of one replica (sans-IO).

How it works (Gupta, Hellings, Sadoghi, ICDE 2021, §III): each instance (an ``RccLane``)
decides one batch per round and reports it here with ``decided``; the coordinator's
``RoundAssembler`` turns complete rounds into global ``Deliver``s (permuted order, foreign
requests filtered, protocols/rcc/rounds.py), its ``StableMerger`` turns the instances'
stable checkpoints into the global one (``stable_at``), and instance view changes become one
``ViewEntered`` carrying the sum of the instances' views (``view_changed``). After the execute
side ran the last seq of a checkpoint round r, ``executed`` answers ``LaneCheckpoint(r,
digest)`` for every lane. ``state_installed`` (a state image or a restart's reloaded state)
skips the assembler to the installed checkpoint round. Whenever the frontier (highest round any instance decided) or the
released round (rounds delivered globally) moves, ``decided`` answers one ``LaneRounds``
for every lane: the lane's no-op and watch duties read the frontier, its far-round gate
reads the released round (protocols/rcc/lane.py: a lane never adopts a stable checkpoint
more than ``max_ahead_rounds`` beyond the released round, so the other instances cannot run
unboundedly ahead of a lagging one and the assembler's bound is an invariant, not a limit
that legal network behaviour can reach).

Who calls it: the composite ``Rcc`` (one thread: protocols/rcc/replica.py) and, when a
replica spreads its lanes over several worker threads, the runtime's checkpoint thread
(``fabric.runtime.lanes.LaneCoordinator``) and the simulator's stand-in for it (fabric/sim/lanes.py).
Those only move items between rings; every decision about rounds is made here.

Threading: not thread-safe; one owner calls it.

Must not live here: PBFT, the lanes' timers, rings or threads (fabric.runtime.lanes), IO, clocks,
randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols import base
from protocols.base import Deliver, StableCheckpoint
from protocols.common import Batch
from protocols.rcc.rounds import RoundAssembler, StableMerger


@dataclass(frozen=True, slots=True)
class LaneRounds:
    """For every lane: the highest round any instance decided, and the rounds released."""

    frontier: int
    released: int


@dataclass(frozen=True, slots=True)
class LaneCheckpoint:
    """For every lane: round ``round`` was executed; the state digest after it."""

    round: int
    state_digest: bytes


CoordinatorOutput = Deliver | StableCheckpoint | base.ViewEntered | LaneRounds | LaneCheckpoint


class RoundCoordinator:
    """Rounds, frontier, released round, checkpoints in rounds and views of m instances."""

    def __init__(
        self,
        m: int,
        checkpoint_period: int,
        *,
        permute: bool = True,
        max_pending_rounds: int = 4096,
        max_digests: int = 4096,
    ) -> None:
        if checkpoint_period < 1:
            raise ValueError("checkpoint_period must be >= 1")
        self.m = m
        self.period = checkpoint_period
        self.assembler = RoundAssembler(
            m,
            permute=permute,
            max_pending_rounds=max_pending_rounds,
            chain_period=checkpoint_period,
        )
        self.stable = StableMerger(m, max_digests=max_digests)
        self.frontier = 0  # highest round any instance decided
        self.released = 0  # rounds delivered globally (the assembler's next_round - 1)
        self.views = [0] * m

    @property
    def total_view(self) -> int:
        """Sum of the instances' views: grows by one with every instance's view change."""
        return sum(self.views)

    def decided(
        self, instance: int, round_: int, view: int, batch: Batch
    ) -> list[CoordinatorOutput]:
        """Instance ``instance`` decided ``batch`` for ``round_``: the global Delivers it
        completes, then a LaneRounds if the frontier or the released round moved."""
        out: list[CoordinatorOutput] = list(self.assembler.add(instance, round_, view, batch))
        released = self.assembler.next_round - 1
        if round_ > self.frontier or released > self.released:
            self.frontier = max(self.frontier, round_)
            self.released = released
            out.append(LaneRounds(self.frontier, released))
        return out

    def stable_at(self, instance: int, round_: int, digest: bytes) -> list[CoordinatorOutput]:
        """Instance ``instance`` is stable at ``round_``: the global checkpoint it completes."""
        merged = self.stable.add(instance, round_, digest)
        return [merged] if merged is not None else []

    def view_changed(self, instance: int, view: int, primary: int) -> list[CoordinatorOutput]:
        """Instance ``instance`` entered ``view`` led by ``primary``."""
        if not 0 <= instance < self.m:
            return []
        self.views[instance] = view
        return [base.ViewEntered(self.total_view, primary)]

    def install_round(self, seq: int) -> int:
        """The checkpoint round a state installed after global ``seq`` resumes from: the
        last checkpoint round whose seqs all lie at or below ``seq`` (a restart's durable
        state may end inside a round; the execute side skips what it already holds)."""
        return install_round(seq, self.m, self.period)

    def state_installed(self, seq: int) -> list[CoordinatorOutput]:
        """The execute side holds the state after global ``seq``: rounds up to
        ``install_round(seq)`` are done (every lane is told ``installed`` with that round
        next). The Delivers of later rounds already complete, then a LaneRounds."""
        round_ = self.install_round(seq)
        if round_ <= self.released:
            return []
        out: list[CoordinatorOutput] = list(self.assembler.install(round_))
        self.released = self.assembler.next_round - 1
        self.frontier = max(self.frontier, self.released)
        out.append(LaneRounds(self.frontier, self.released))
        return out

    def executed(self, seq: int, state_digest: bytes) -> list[CoordinatorOutput]:
        """The execute side ran global ``seq``: a LaneCheckpoint at the end of a checkpoint round."""
        if seq < 1 or seq % self.m:
            return []
        round_ = seq // self.m
        if round_ % self.period:
            return []
        return [LaneCheckpoint(round_, state_digest)]


def install_round(seq: int, m: int, period: int) -> int:
    """The last checkpoint round (every ``period`` rounds of ``m`` seqs) ending at or below
    global ``seq`` (see ``RoundCoordinator.install_round``)."""
    return max(0, seq) // m // period * period


__all__ = ["CoordinatorOutput", "LaneCheckpoint", "LaneRounds", "RoundCoordinator", "install_round"]
