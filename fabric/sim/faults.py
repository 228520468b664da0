"""Fault plans of the simulator (named mixes drawn from a seed) and generic Byzantine senders.

A ``FaultPlan`` is a pure function of (mix, seed's generator, n, f, initial primary): which
network faults happen in the fault window (drops, duplicates, extra jitter that reorders,
partitions that heal), which replicas crash and when, which are Byzantine and how. After
``fault_end`` the network is reliable and every partition has healed; crashed replicas stay
down (PBFT keeps no durable state, so a restart is not simulated) and Byzantine replicas
keep lying (a BFT protocol must stay live with f of them once the network is synchronous).

``ByzantineMutator`` rewrites a Byzantine replica's outgoing messages per recipient with the
runtime's own rewriting (fabric.runtime.byzantine: ``rewrite`` over Batch and digest fields,
``Alternatives`` for batch A -> batch B), so it works for PBFT, PoE and RCC unchanged and the
simulator tests the code a real Byzantine run uses. It never signs in another replica's
name: a mutated message that carries a signature fails verification at the receiver, except
where fabric/runtime/forgery.py knows how the liar re-signs its own message (claims a
protocol accepts without proof) and the simulator handed in its key.
So that an equivocating proposer can still sign both versions, the simulator proposes
the alternative batch on a copy of the Byzantine replica's state (which holds only that
replica's own key) and sends the copy's messages to group B (simulator._propose_twice);
``alternative`` keeps batch A -> batch B stable so later votes follow the same split.

Must not live here: the event loop (simulator.py), checks (simulator.py), randomness not
drawn from the generator handed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fabric.runtime.byzantine import Alternatives, rewrite
from fabric.runtime.forgery import AMNESIA, FORGERS
from protocols.common import Batch, Reply, Request

MIXES = ("none", "lossy", "reorder", "partition", "crash", "byzantine", "mixed")
# Targeted schedules: named and replayable like MIXES, but not part of "all" (so the seed ->
# mix mapping of the big runs stays put). lane_cut: every message of one consensus instance
# (``msg.instance``) stops reaching one replica for most of the fault window while the other
# instances go on (RCC: that replica's other lanes run ahead; issue 19).
# twins (Bano et al., "Twins: BFT systems made robust"): f replica ids run as two copies of
# the honest replica, same id and keys; while faults last, phases split the replicas into
# two sides (copy c of a twin is on side c) and only one side hears each copy; after
# ``fault_end`` both copies talk to everyone (a Byzantine node that keeps equivocating).
# stale_cc (Abraham, Gueta, Malkhi, Alvisi, Kotla, Martin, "Revisiting Fast Practical
# Byzantine Fault Tolerance", 2017): the schedule of their Zyzzyva counter-example, for a
# primary-based protocol with a commit certificate (``stale_cc_plan``); other protocols run
# it as a Byzantine primary with message cuts.
# restart: one replica crashes and is started again (durable state or none) long after, so
# it must catch up, by batches or by state transfer (issue 12).
TARGETED_MIXES = ("lane_cut", "twins", "stale_cc", "restart")
ALL_MIXES = MIXES + TARGETED_MIXES
BEHAVIOURS = ("equivocate", "conflicting_votes", "bad_digest", "silence")
#: behaviours only targeted schedules use (not drawn by the byzantine mix): amnesia = the
#: replica's first view-change message claims it ordered nothing (forgery.AMNESIA), its
#: later ones tell the truth
SCRIPTED_BEHAVIOURS = ("amnesia",)


@dataclass(frozen=True, slots=True)
class Partition:
    """From ``start`` to ``heal`` (ticks) replicas in different groups cannot exchange messages."""

    start: float
    heal: float
    groups: tuple[tuple[int, ...], ...]

    def splits(self, a: int, b: int, now: float) -> bool:
        if not self.start <= now < self.heal:
            return False
        for group in self.groups:
            if a in group:
                return b not in group
        return False


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault of one run. Times are virtual ticks; probabilities apply before ``fault_end``."""

    mix: str
    fault_end: float = 0.0
    drop_p: float = 0.0
    dup_p: float = 0.0
    jitter_ticks: float = 0.0  # mean of the extra exponential delay before fault_end (reorders)
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[tuple[int, float], ...] = ()  # (replica, at tick); permanent
    # (replica, down at tick, up at tick, durable): crashed, then started again with what
    # it persisted (durable: its final state; else nothing, memory storage); honest after
    restarts: tuple[tuple[int, float, float, bool], ...] = ()
    byzantine: tuple[tuple[int, str], ...] = ()  # (replica, behaviour in BEHAVIOURS)
    byz_group_b: tuple[int, ...] = ()  # recipients that get the "other" version
    lane_cuts: tuple[LaneCut, ...] = ()  # one instance's messages to one replica lost
    kind_cuts: tuple[KindCut, ...] = ()  # messages of one class between given nodes lost
    twins: tuple[int, ...] = ()  # replica ids that run as two honest copies (Twins)
    twin_phases: tuple[TwinPhase, ...] = ()  # who hears which copy, over time

    def faulty(self) -> frozenset[int]:
        return frozenset(
            [r for r, _ in self.crashes] + [r for r, _ in self.byzantine] + list(self.twins)
        )

    def byzantine_ids(self) -> frozenset[int]:
        return frozenset([r for r, _ in self.byzantine] + list(self.twins))

    def twin_side(self, replica: int, copy: int, now: float) -> int | None:
        """The side (0/1) ``replica`` (copy ``copy`` if it is a twin) is on at ``now``, or
        None when no phase is active (everyone hears both copies)."""
        for phase in self.twin_phases:
            if phase.start <= now < phase.end:
                return copy if replica in self.twins else phase.sides[replica]
        return None

    def describe(self) -> str:
        parts = [f"mix={self.mix}"]
        if self.fault_end:
            parts.append(f"faults_until={self.fault_end:.0f}")
        if self.drop_p:
            parts.append(f"drop={self.drop_p:.3f}")
        if self.dup_p:
            parts.append(f"dup={self.dup_p:.3f}")
        if self.jitter_ticks:
            parts.append(f"jitter={self.jitter_ticks:.1f}")
        for p in self.partitions:
            groups = "|".join(",".join(map(str, g)) for g in p.groups)
            parts.append(f"partition[{p.start:.0f},{p.heal:.0f})={groups}")
        for r, at in self.crashes:
            parts.append(f"crash(r{r}@{at:.0f})")
        for r, down, up, durable in self.restarts:
            parts.append(f"restart(r{r}@{down:.0f}-{up:.0f},{'durable' if durable else 'memory'})")
        for r, how in self.byzantine:
            parts.append(f"byzantine(r{r}:{how})")
        if self.byz_group_b:
            parts.append("group_b=" + ",".join(map(str, self.byz_group_b)))
        for c in self.lane_cuts:
            parts.append(f"lane_cut[{c.start:.0f},{c.heal:.0f})=i{c.instance}->r{c.target}")
        for k in self.kind_cuts:
            src = ",".join(map(str, k.sources)) or "*"
            seq = f"(seq>={k.min_seq})" if k.min_seq else ""
            dst = ",".join(map(str, k.targets))
            parts.append(f"cut[{k.start:.0f},{k.heal:.0f})={k.kind}{seq}:{src}->{dst}")
        if self.twins:
            parts.append("twins=" + ",".join(f"r{t}" for t in self.twins))
        for ph in self.twin_phases:
            sides = "".join(
                "T" if r in self.twins else str(side) for r, side in enumerate(ph.sides)
            )
            parts.append(f"phase[{ph.start:.0f},{ph.end:.0f})={sides}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class TwinPhase:
    """From ``start`` to ``end`` replica r is on side ``sides[r]``; a twin's copy c on side c.

    Nodes on different sides cannot exchange messages (clients reach every node)."""

    start: float
    end: float
    sides: tuple[int, ...]


def _twin_phases(
    rng: random.Random, n: int, twins: tuple[int, ...], window: float
) -> tuple[TwinPhase, ...]:
    """2-4 phases that cover the fault window, each a fresh random split of the others."""
    count = rng.randint(2, 4)
    cuts = sorted(rng.uniform(0, window) for _ in range(count - 1))
    bounds = [0.0, *cuts, window]
    phases = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        sides = tuple(0 if r in twins else rng.randint(0, 1) for r in range(n))
        phases.append(TwinPhase(start, end, sides))
    return tuple(phases)


@dataclass(frozen=True, slots=True)
class LaneCut:
    """From ``start`` to ``heal`` (ticks) messages of ``instance`` to ``target`` are lost."""

    start: float
    heal: float
    instance: int
    target: int

    def cuts(self, dst: int, msg: Any, now: float) -> bool:
        return (
            dst == self.target
            and self.start <= now < self.heal
            and getattr(msg, "instance", None) == self.instance
        )


def _split(rng: random.Random, replicas: list[int]) -> tuple[tuple[int, ...], ...]:
    """Two non-empty groups: a lone replica cut off, or an even split (no quorum anywhere)."""
    shuffled = replicas[:]
    rng.shuffle(shuffled)
    cut = 1 if rng.random() < 0.5 else len(shuffled) // 2
    return (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))


def _partitions(rng: random.Random, n: int, window: float) -> tuple[Partition, ...]:
    episodes = []
    start = rng.uniform(0, window / 3)
    for _ in range(rng.randint(1, 2)):
        heal = min(window, start + rng.uniform(window / 6, window / 2))
        episodes.append(Partition(start, heal, _split(rng, list(range(n)))))
        start = heal + rng.uniform(0, window / 6)
        if start >= window:
            break
    return tuple(episodes)


@dataclass(frozen=True, slots=True)
class KindCut:
    """From ``start`` to ``heal`` (ticks) messages of class ``kind`` from ``sources`` (any
    node, clients too, if empty) to ``targets`` are lost; with ``min_seq``, only those whose
    ``seq`` field is at least that."""

    start: float
    heal: float
    kind: str
    sources: tuple[int, ...]
    targets: tuple[int, ...]
    min_seq: int = 0

    def cuts(self, src: int, dst: int, msg: Any, now: float) -> bool:
        return (
            self.start <= now < self.heal
            and dst in self.targets
            and (not self.sources or src in self.sources)
            and type(msg).__name__ == self.kind
            and getattr(msg, "seq", 0) >= self.min_seq
        )


def stale_cc_plan(n: int, primary: int, window: float) -> FaultPlan:
    """The Zyzzyva counter-example of Abraham et al. (2017) as a schedule, for n = 3f+1
    with views whose primary is view mod n (``primary`` leads view 0, the next id view 1,
    the one after view 2). While the faults last (4 windows):

    - the view-0 primary is Byzantine (``amnesia``): it orders the first batch for every
      replica but the last, and nothing after it reaches anyone (so the next requests
      starve and every honest replica suspects it);
    - clients' COMMITs reach only that primary: the client of the first batch holds 2f+1
      speculative replies, a valid commit certificate, which only the liar keeps;
    - the view-2 primary's VIEW-CHANGE for view 1 does not reach the view-1 primary, which
      so builds its NEW-VIEW from its own, the liar's (amnesia: "I ordered nothing") and
      the last replica's: the first batch is in one of three, so view 1 drops it and orders
      other requests from seq 1, which every replica executes: 3f+1 matching speculative
      replies, the fast path, no certificate;
    - the view-1 primary's ORDER-REQs from seq 3 on reach nobody (so those requests starve
      and the replicas suspect it; it stays honest: one faulty replica in all) and its
      VIEW-CHANGE does not reach the view-2 primary, whose NEW-VIEW so holds the liar's
      VIEW-CHANGE, honest this time: its certificate of view 0 for seq 1 is the highest
      one, and the published rule puts the view-0 batch back at seq 1 over the batch a
      client accepted there on the fast path in view 1.
    """
    liar = primary
    second = (primary + 1) % n
    third = (primary + 2) % n
    last = (primary - 1) % n
    end = 4 * window
    others = tuple(r for r in range(n) if r != liar)
    return FaultPlan(
        "stale_cc",
        end,
        byzantine=((liar, "amnesia"),),
        kind_cuts=(
            KindCut(0.0, end, "OrderReq", (liar,), (last,)),
            KindCut(0.0, end, "OrderReq", (liar,), others, min_seq=2),
            KindCut(0.0, end, "Commit", (), others),
            KindCut(0.0, end, "ViewChange", (third,), (second,)),
            KindCut(0.0, end, "OrderReq", (second,), tuple(r for r in range(n) if r != second), 3),
            KindCut(0.0, end, "ViewChange", (second,), (third,)),
        ),
    )


def _pick_faulty(
    rng: random.Random, n: int, count: int, primary: int, p_primary: float
) -> list[int]:
    chosen: list[int] = []
    if count and rng.random() < p_primary:
        chosen.append(primary)
    others = [r for r in range(n) if r not in chosen]
    rng.shuffle(others)
    chosen += others[: count - len(chosen)]
    return chosen


def _byzantine(
    rng: random.Random, n: int, nodes: list[int], exclude: frozenset[int]
) -> tuple[tuple[tuple[int, str], ...], tuple[int, ...]]:
    byz = tuple((r, rng.choice(BEHAVIOURS)) for r in nodes)
    honest = [r for r in range(n) if r not in nodes and r not in exclude]
    group_b = tuple(sorted(rng.sample(honest, rng.randint(1, max(1, len(honest) - 1)))))
    return byz, group_b


def make_plan(
    mix: str, rng: random.Random, n: int, f: int, primary: int, window: float
) -> FaultPlan:
    """The fault plan of one run; ``window`` is the fault window in ticks."""
    if mix == "none":
        return FaultPlan(mix)
    if mix == "lossy":
        return FaultPlan(mix, window, drop_p=rng.uniform(0.02, 0.2), dup_p=rng.uniform(0.0, 0.1))
    if mix == "reorder":
        return FaultPlan(mix, window, dup_p=rng.uniform(0.0, 0.2), jitter_ticks=rng.uniform(3, 20))
    if mix == "partition":
        return FaultPlan(mix, window, partitions=_partitions(rng, n, window))
    if mix == "crash":
        nodes = _pick_faulty(rng, n, rng.randint(1, f), primary, 0.5)
        return FaultPlan(
            mix, window, crashes=tuple((r, rng.uniform(0, 0.6 * window)) for r in sorted(nodes))
        )
    if mix == "restart":
        # one replica (the primary half the time) down for a long stretch of the fault
        # window, then started again from its durable state or from nothing
        (node,) = _pick_faulty(rng, n, 1, primary, 0.5)
        down = rng.uniform(0, 0.3 * window)
        up = down + rng.uniform(0.4, 0.7) * window
        return FaultPlan(mix, window, restarts=((node, down, up, rng.random() < 0.5),))
    if mix == "byzantine":
        nodes = _pick_faulty(rng, n, rng.randint(1, f), primary, 0.6)
        byz, group_b = _byzantine(rng, n, sorted(nodes), frozenset())
        return FaultPlan(
            mix, window, jitter_ticks=rng.uniform(0, 3), byzantine=byz, byz_group_b=group_b
        )
    if mix == "mixed":
        faulty = _pick_faulty(rng, n, rng.randint(0, f), primary, 0.5)
        cut = rng.randint(0, len(faulty))
        crashed, byz_nodes = sorted(faulty[:cut]), sorted(faulty[cut:])
        byz, group_b = _byzantine(rng, n, byz_nodes, frozenset(crashed)) if byz_nodes else ((), ())
        return FaultPlan(
            mix,
            window,
            drop_p=rng.uniform(0.0, 0.1),
            dup_p=rng.uniform(0.0, 0.05),
            jitter_ticks=rng.uniform(0, 8),
            partitions=_partitions(rng, n, window) if rng.random() < 0.5 else (),
            crashes=tuple((r, rng.uniform(0, 0.6 * window)) for r in crashed),
            byzantine=byz,
            byz_group_b=group_b,
        )
    if mix == "twins":
        twins = tuple(sorted(_pick_faulty(rng, n, rng.randint(1, f), primary, 0.5)))
        return FaultPlan(
            mix,
            window,
            jitter_ticks=rng.uniform(0, 3),
            twins=twins,
            twin_phases=_twin_phases(rng, n, twins, window),
        )
    if mix == "stale_cc":
        return stale_cc_plan(n, primary, window)
    if mix == "lane_cut":
        return FaultPlan(
            mix, window, jitter_ticks=rng.uniform(0, 3), lane_cuts=_lane_cuts(rng, n, window)
        )
    raise ValueError(f"unknown fault mix {mix!r}; choose from {', '.join(ALL_MIXES)}")


def _lane_cuts(rng: random.Random, n: int, window: float) -> tuple[LaneCut, ...]:
    """One replica stops hearing one instance (an instance index < n; a protocol with a
    single instance has instance 0 on every message, so there it is an inbound cut)."""
    target = rng.randrange(n)
    instance = rng.randrange(n)
    start = rng.uniform(0, window / 4)
    return (LaneCut(start, window, instance, target),)


# --- Byzantine senders -------------------------------------------------------------------


class ByzantineMutator:
    """Rewrites the outgoing messages of the plan's Byzantine replicas, per recipient.

    Colluding Byzantine replicas share one table of alternative batches, so an equivocating
    primary and a Byzantine backup vote consistently: recipients in group B see batch B and
    votes for B, the others batch A and votes for A.
    """

    def __init__(
        self,
        plan: FaultPlan,
        rng: random.Random,
        max_alternatives: int = 4096,
        pool_size: int = 64,
        sign: Callable[[int, bytes], bytes] | None = None,
    ) -> None:
        self.behaviour = dict(plan.byzantine)
        self.sign = sign  # (replica, payload) -> that replica's signature: own-key lies
        self.group_b = frozenset(plan.byz_group_b)
        self.rng = rng
        # batch A -> batch B, the runtime's own table (fabric.runtime.byzantine)
        self.alt = Alternatives(rng, max_alternatives, pool_size)
        self.alternatives = self.alt.alternatives
        self.alternative = self.alt.alternative
        self.observe = self.alt.observe  # remember requests a Byzantine replica saw
        self.mutated: Counter[str] = Counter()  # behaviour -> messages changed or dropped
        self.amnesia_view: dict[int, int] = {}  # amnesia: the view of the liar's first lie

    def _swap_digest(self, digest: bytes) -> bytes:
        return self.alt.swap_digest(digest)

    def _garbage(self, _: bytes) -> bytes:
        return self.rng.randbytes(32)

    def outgoing(self, src: int, dst: int, msg: Any) -> Any | None:
        """The message ``dst`` receives from Byzantine ``src`` (None: dropped)."""
        how = self.behaviour[src]
        if how == "silence":
            self.mutated[how] += 1
            return None
        if isinstance(msg, Request):
            return msg
        if how == "amnesia":
            return self._amnesia(src, msg)
        if how == "equivocate":
            if dst not in self.group_b:
                return self._forged(src, msg, msg, how)
            out = rewrite(msg, self.alternative, self._swap_digest)
        elif how == "conflicting_votes":
            if dst not in self.group_b:
                return self._forged(src, msg, msg, how)
            out = rewrite(
                msg,
                lambda b: b,
                lambda d: (
                    self._swap_digest(d)
                    if d in self.alternatives
                    else hashlib.sha256(b"byz-conflict" + d).digest()
                ),
            )
        else:  # bad_digest: half the messages carry garbage digests
            if self.rng.random() >= 0.5:
                return msg
            out = rewrite(msg, lambda b: Batch(b.requests, self._garbage(b.digest)), self._garbage)
            if out is not msg:
                self.mutated[how] += 1
            return out
        return self._forged(src, msg, out, how)

    def _amnesia(self, src: int, msg: Any) -> Any:
        """``src``'s first view-change message (per view it names) claims it ordered
        nothing; once it has sent one, its later view changes are honest."""
        forget = AMNESIA.get(type(msg))
        if forget is None or self.sign is None:
            return msg
        view = msg.new_view
        first = self.amnesia_view.setdefault(src, view)
        if view != first:
            return msg
        sign = self.sign
        self.mutated["amnesia"] += 1
        return forget(msg, lambda payload: sign(src, payload))

    def _forged(self, src: int, msg: Any, out: Any, how: str) -> Any:
        """``out`` re-signed by ``src`` as a lie where forgery.py knows one (else as is)."""
        forge = FORGERS.get(type(out))
        if forge is not None and self.sign is not None:
            sign = self.sign
            out = forge(out, lambda payload: sign(src, payload))
            if out != msg:
                self.mutated["forged"] += 1
        if out is not msg:
            self.mutated[how] += 1
        return out

    def reply(self, src: int, reply: Reply) -> Reply | None:
        """A Byzantine replica's reply to a client: silent, or a lie about the result."""
        how = self.behaviour[src]
        if how == "amnesia":
            return reply  # the liar answers clients truthfully
        self.mutated[how] += 1
        if how == "silence":
            return None
        lie = hashlib.sha256(b"byz-lie" + reply.result).digest()
        return dataclasses.replace(reply, result=lie)
