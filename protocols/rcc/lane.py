"""One RCC instance: the existing PBFT state machine plus RCC's no-op and watch timers.

A lane wraps (composes, never copies) one ``Pbft`` built with ``instance=i``: its primary
of view v is ``(i + v) % n`` and every message it sends carries ``instance``. The lane
passes calls through and, after each, re-checks two duties against the *frontier* (the
highest round any instance of this replica has decided, told by ``observe_rounds``):

- No-op duty (RCC §III: an instance with nothing to propose must not hold the others
  back): when this replica is the instance's primary and the frontier is ahead of the
  rounds it has assigned, with no batch queued, it arms ``("rcc", i, "noop")`` for
  ``noop_ticks``; when that fires it proposes the null batch for every missing round up
  to the frontier (bounded by the high watermark).
- Watch duty (failure detection, RCC §III-B): when the instance has decided fewer rounds
  than the frontier, ``("rcc", i, "watch")`` runs. It fires after half the PBFT view-change
  timeout (doubling with PBFT's back-off), or after a short grace (the larger of
  ``2*noop_ticks + 2`` and a quarter of that half-timeout) once the instance lags by more
  than ``max_lag_rounds`` (default half the watermark window, in rounds). If
  the instance has not reached the round the frontier was at when the timer was armed,
  that is a strike: the lane first asks the others for the decided rounds (PBFT FETCH;
  f+1 matching replies make a batch trusted, so a replica that only missed messages
  catches up without accusing anyone); at the second strike in a row it suspects the
  primary and starts PBFT's view change for the next view (``Pbft.suspect_primary``).
  The view change makes the replicas agree on the instance's state (prepared rounds are
  re-proposed from the view-change certificates, gaps filled with null batches), the next
  primary fills the remaining rounds with no-ops through the no-op duty, and the instance
  resumes. Strikes restart whenever the instance's view changes.

Far-round gate (push-back instead of an unbounded wait, issue 19): the round coordinator
also tells the lane the *released* round (rounds this replica delivered globally). A lane
drops a Checkpoint, or a NEW-VIEW whose stable checkpoint, lies more than
``max_ahead_rounds`` beyond it (counted in ``far_rounds_refused``): adopting it would move
the instance's watermarks, and so its decisions, ahead of an instance that lags here, and
the round assembler would have to hold every round in between. Dropping is legal network
behaviour for PBFT (safety never depends on delivery); the instance keeps deciding within
its watermarks, and once the lagging instance catches up (fetch, then the watch duty's view
change) the released round moves and later checkpoints pass again. ``max_ahead_rounds``
defaults to PBFT's history (``history_len``): a replica further behind than that cannot be
caught up by fetching anyway (peers keep only that many decided batches). So the rounds an
instance can decide lie within ``released + max_ahead_rounds + window`` (own checkpoints
come from executed rounds, which are released): the assembler's bound holds by
construction, whatever the network does.

State transfer (issue 12): a replica further behind its peers than their history (a long
partition, or a restart) sees their Checkpoints beyond the far-round gate. The lane keeps
those votes aside (``RCC_FAR_VOTE_ROUNDS`` rounds, one vote per replica, signatures checked)
and, once ``checkpoint_quorum`` (2f+1) match at a round r, emits ``FetchState(r *
seqs_per_round, digest, votes)``: the global seq of the state after round r, certified by
this instance's signed votes (every instance checkpoints the same global state at r); so
does an instance stable (within the gate) more than PBFT's ``state_fetch_gap`` beyond what
it decided, with its stable certificate, as PBFT itself would. After
the execute side installed it, the replica's round coordinator skips to the installed round
and every lane gets ``installed(r, digest, proof)``: its PBFT takes round r as delivered
(stable there when the proof, or the lane's own far votes, certify it) and asks its peers
what follows (PBFT's probe; they answer with batches and their stable vote).

Inner PBFT actions are returned unchanged: ``Deliver(seq=round)``, ``StableCheckpoint
(seq=round)`` and ``ViewEntered(instance view)`` are per-instance and must go to the round
coordinator (``Rcc`` or the runtime's), everything else goes out as usual.

Threading: a lane is owned by one thread (the worker of instance i); ``observe_rounds``
and ``checkpoint`` are the only inputs that originate from other instances (plain values).

Must not live here: cross-instance state (protocols/rcc/rounds.py), IO, clocks, randomness.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from protocols.base import Action, Broadcast, CancelTimer, FetchState, SetTimer
from protocols.common import NULL_BATCH, Batch
from protocols.limits import RCC_FAR_VOTE_ROUNDS
from protocols.pbft import Checkpoint, Fetch, Pbft
from protocols.pbft import NewView as PbftNewView

SUSPECT_AFTER_STRIKES = 2  # watch expiries without progress before a view change


class RccLane:
    """Instance ``pbft.instance`` of one RCC replica."""

    def __init__(
        self,
        pbft: Pbft,
        *,
        noop_ticks: int,
        max_lag_rounds: int,
        max_ahead_rounds: int | None = None,
        seqs_per_round: int = 1,
    ) -> None:
        if noop_ticks < 1 or max_lag_rounds < 1:
            raise ValueError("noop_ticks and max_lag_rounds must be >= 1")
        ahead = pbft.history_len if max_ahead_rounds is None else max_ahead_rounds
        if ahead < 1:
            raise ValueError("max_ahead_rounds must be >= 1")
        self.pbft = pbft
        self.instance = pbft.instance
        self.id = pbft.id
        self.noop_ticks = noop_ticks
        self.max_lag_rounds = max_lag_rounds
        self.max_ahead_rounds = ahead
        self.seqs_per_round = max(1, seqs_per_round)  # global seqs of one round (m)
        # far checkpoint votes: round -> digest -> replica -> Checkpoint (bounded, see module)
        self._far_votes: dict[int, dict[bytes, dict[int, Checkpoint]]] = {}
        self._far_fetched = 0  # highest round a FetchState was emitted for
        self._far_proofs: dict[int, tuple[Checkpoint, ...]] = {}  # round -> certificate
        self.t_noop = ("rcc", self.instance, "noop")
        self.t_watch = ("rcc", self.instance, "watch")
        self.frontier = 0  # highest round any instance of this replica decided
        self.released = 0  # rounds this replica delivered globally (the coordinator's)
        self._noop_armed = False
        self._watch_armed = False
        self._watch_short = False  # armed with the short (lag bound) grace
        self._watch_target = 0  # the frontier when the watch was armed
        self._strikes = 0
        self._seen_view = (pbft.view, pbft.in_view_change)
        # counters
        self.noops_proposed = 0
        self.fetches_sent = 0
        self.suspicions = 0  # view changes this lane started
        self.lag_max_seen = 0  # largest lag (rounds) seen
        self.far_rounds_refused = 0  # checkpoints / new-views beyond the far-round gate
        self.state_fetches = 0  # FetchState emitted (a certified far checkpoint)

    # --- calls in (each returns the inner actions plus the lane's own) ---------------

    def propose(self, batch: Batch) -> list[Action]:
        out = self.pbft.propose(batch)
        self._reassess(out)
        return out

    @property
    def round_cap(self) -> int:
        """The highest round a stable checkpoint this lane adopts may have (see module)."""
        return self.released + self.max_ahead_rounds

    def _far(self, msg: Any) -> bool:
        t = type(msg)
        if t is Checkpoint:
            return msg.seq > self.round_cap
        if t is PbftNewView:
            cap = self.round_cap
            return any(vc.stable_seq > cap for vc in msg.view_changes)
        return False

    def receive(self, sender: int, msg: Any) -> list[Action]:
        if self._far(msg):
            self.far_rounds_refused += 1
            out: list[Action] = []
            if type(msg) is Checkpoint:
                self._far_vote(sender, msg, out)
            return out
        out = self.pbft.receive(sender, msg)
        self._reassess(out)
        return out

    def timeout(self, timer: Hashable) -> list[Action]:
        if timer == self.t_noop:
            out: list[Action] = []
            self._on_noop(out)
        elif timer == self.t_watch:
            out = []
            self._on_watch(out)
        else:
            out = self.pbft.timeout(timer)
        self._reassess(out)
        return out

    def checkpoint(self, round_: int, state_digest: bytes) -> list[Action]:
        """Every instance has decided ``round_`` and it was executed: PBFT checkpoint input."""
        out = self.pbft.executed(round_, state_digest)
        self._reassess(out)
        return out

    def installed(self, round_: int, state_digest: bytes, proof: tuple[Any, ...]) -> list[Action]:
        """The replica holds the state after round ``round_`` (its coordinator skipped
        there): the instance takes it as delivered, stable if certified (``proof``: this
        instance's votes among them, or the lane's own far votes), and asks what follows."""
        p = self.pbft
        own = tuple(cp for cp in proof if getattr(cp, "instance", -1) == self.instance)
        if not own:
            own = self._far_proofs.get(round_, ())
        if round_ > self.released:
            self.released = round_
        if round_ > self.frontier:
            self.frontier = round_
        for r in [r for r in self._far_votes if r <= round_]:
            del self._far_votes[r]
        for r in [r for r in self._far_proofs if r <= round_]:
            del self._far_proofs[r]
        out = p.state_installed(round_, state_digest, own)
        self._reassess(out)
        return out

    def _far_vote(self, sender: int, cp: Checkpoint, out: list[Action]) -> None:
        """A Checkpoint beyond the far-round gate: count it; 2f+1 matching -> FetchState."""
        p = self.pbft
        r = cp.seq
        if (
            cp.instance != self.instance
            or sender != cp.replica
            or not 0 <= sender < p.n
            or sender == self.id
            or r <= self._far_fetched
            or r % p.period
        ):
            return
        votes = self._far_votes.get(r)
        if votes is None:
            if len(self._far_votes) >= RCC_FAR_VOTE_ROUNDS:
                lowest = min(self._far_votes)
                if r < lowest:
                    return
                del self._far_votes[lowest]
            votes = self._far_votes[r] = {}
        if any(sender in by for by in votes.values()):
            return  # one vote per replica and round
        if not p._valid_checkpoint_signature(cp):
            return
        by_digest = votes.setdefault(cp.state_digest, {})
        by_digest[sender] = cp
        if len(by_digest) < p.checkpoint_quorum:
            return
        proof = tuple(by_digest[s] for s in sorted(by_digest)[: p.checkpoint_quorum])
        self._far_fetched = r
        self._far_proofs[r] = proof
        for old in [x for x in self._far_votes if x <= r]:
            del self._far_votes[old]
        for old in [x for x in self._far_proofs if x < r]:
            del self._far_proofs[old]
        self.state_fetches += 1
        out.append(FetchState(r * self.seqs_per_round, cp.state_digest, proof))

    def observe_rounds(self, frontier: int, released: int) -> list[Action]:
        """The coordinator's news: an instance of this replica decided round ``frontier``;
        rounds up to ``released`` were delivered globally (both only grow)."""
        out: list[Action] = []
        if released > self.released:
            self.released = released
        if frontier > self.frontier:
            self.frontier = frontier
            self._reassess(out)
        return out

    def status(self) -> dict[str, Any]:
        st = self.pbft.status()
        st.update(
            frontier=self.frontier,
            noops_proposed=self.noops_proposed,
            fetches_sent=self.fetches_sent,
            suspicions=self.suspicions,
            lag_max_seen=self.lag_max_seen,
            released=self.released,
            far_rounds_refused=self.far_rounds_refused,
            state_fetches=self.state_fetches,
        )
        return st

    # --- duties ----------------------------------------------------------------------

    def _slow_ticks(self) -> int:
        p = self.pbft
        return max(2, (p.base_ticks << p.backoff_exp) // 2)

    def _grace_ticks(self) -> int:
        return max(2 * self.noop_ticks + 2, self._slow_ticks() // 4)

    def _reassess(self, out: list[Action]) -> None:
        p = self.pbft
        decided = p.last_delivered
        if p.low - decided > p.state_fetch_gap and p.low > self._far_fetched:
            # stable (within the gate) further beyond what it decided than the peers'
            # history reliably covers: fetch the state there, as PBFT itself would
            self._far_fetched = p.low
            self.state_fetches += 1
            out.append(FetchState(p.low * self.seqs_per_round, p.stable_digest, p.stable_proof))
        if decided > self.frontier:
            self.frontier = decided
        frontier = self.frontier
        view_state = (p.view, p.in_view_change)
        if view_state != self._seen_view:  # a new view (or a view change): fresh chances
            self._seen_view = view_state
            self._strikes = 0
            if self._watch_armed:
                self._watch_armed = False
                out.append(CancelTimer(self.t_watch))
        # no-op duty: the primary fills rounds the others have already decided
        if (
            not self._noop_armed
            and frontier > p.last_assigned
            and p.last_assigned < p.high
            and not p.queue
            and p.is_proposer()
        ):
            self._noop_armed = True
            out.append(SetTimer(self.t_noop, self.noop_ticks))
        # watch duty: this instance lags the frontier
        if decided >= frontier:
            self._strikes = 0
            if self._watch_armed:
                self._watch_armed = False
                out.append(CancelTimer(self.t_watch))
            return
        lag = frontier - decided
        if lag > self.lag_max_seen:
            self.lag_max_seen = lag
        short = lag > self.max_lag_rounds
        if not self._watch_armed or (short and not self._watch_short):
            self._watch_armed = True
            self._watch_short = short
            self._watch_target = frontier
            out.append(SetTimer(self.t_watch, self._grace_ticks() if short else self._slow_ticks()))

    def _on_noop(self, out: list[Action]) -> None:
        self._noop_armed = False
        p = self.pbft
        target = min(self.frontier, p.high)
        while p.last_assigned < target and not p.queue and p.is_proposer():
            before = p.last_assigned
            out.extend(p.propose(NULL_BATCH))
            if p.last_assigned == before:  # refused (should not happen): do not loop
                break
            self.noops_proposed += 1

    def _on_watch(self, out: list[Action]) -> None:
        self._watch_armed = False
        p = self.pbft
        decided = p.last_delivered
        if decided >= self._watch_target:
            self._strikes = 0  # progress since armed; _reassess re-arms if still behind
            return
        self._strikes += 1
        last = min(self.frontier, decided + p.fetch_span)
        if last > decided:
            self.fetches_sent += 1
            out.append(Broadcast(Fetch(self.instance, decided + 1, last, self.id)))
        if self._strikes >= SUSPECT_AFTER_STRIKES and not p.in_view_change and p.primary != self.id:
            self._strikes = 0
            self.suspicions += 1
            out.extend(p.suspect_primary())


__all__ = ["SUSPECT_AFTER_STRIKES", "RccLane"]
