"""PoE checkpoints and finality (as PBFT §4.3, Castro & Liskov OSDI'99; PoE EDBT'21 §3.3).

Every ``checkpoint_period`` seqs replicas sign their state digest (the shared signed
``Checkpoint`` of protocols/checkpoints.py, instance ``CHECKPOINT_INSTANCE``); 2f+1 matching
make it stable: the log below is discarded, the watermarks move, and once this replica's own
state there matches, the entries up to it are final: ``StableCheckpoint``. f+1 votes above
our execution make us fetch (votes are sent once). A mixin of ``Poe``. Must not live here:
the vote counting (ReplicaCore / protocols/checkpoints.py), IO.
"""

from __future__ import annotations

from protocols.base import (
    Action,
    FetchState,
    StableCheckpoint,
)
from protocols.checkpoints import Checkpoint
from protocols.poe.states import ACTIVE

CHECKPOINT_INSTANCE = 0  # PoE's Checkpoint messages (protocols/checkpoints.py) carry instance 0


class PoeCheckpoints:
    """CHECKPOINT on execution, stability and finality (PBFT §4.3 as PoE uses it)."""

    # _on_checkpoint, _valid_checkpoint_proof: ReplicaCore (with checkpoint_revotes: a
    # replica that re-executed after a rollback votes again)

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        if seq < 1 or seq > self.last_executed or seq % self.period:
            return out  # stale feedback (rolled back since) or not a checkpoint seq
        self.own_digest[seq] = state_digest
        if seq > self.low:
            self._cast_checkpoint(seq, state_digest, out)
        self._check_final(out)
        return out

    def _make_stable(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        self._move_watermarks(
            seq, digest, proof, (self.slots, self.evidence, self.supported, self.commit_votes)
        )
        self._check_final(out)
        if replay:
            self._replay_held(out)
            self._drain_queue(out)

    def _check_final(self, out: list[Action]) -> None:
        """Make the stable checkpoint final here once our own state matches it."""
        if self.final_mark >= self.low:
            return
        own = self.own_digest.get(self.low) if self.last_executed >= self.low else None
        if own == self.stable_digest:
            if self.mode != ACTIVE:
                # Not while changing view: entering it re-executes the new plan above its
                # base in the new view (INFORMs of one request must agree on the view), and
                # what is final cannot be re-executed. _enter_view calls us again.
                return
            self._diverged = False
            self.final_mark = self.low
            self.verified_to = max(self.verified_to, self.low)
            for s in [s for s in self.own_digest if s < self.low]:
                del self.own_digest[s]
            for s in [s for s in self.finals if s <= self.low]:
                del self.finals[s]
            out.append(StableCheckpoint(self.low, self.stable_digest, self.stable_proof))
            if self.pending_plan is not None:
                self._reconcile(out)
            return
        if own is not None:
            self._diverged = True  # our state differs from the stable one: verify from finals
        if own is None and self.low - self.last_executed > self.state_fetch_gap:
            # further behind than the peers' history reliably covers: fetch the certified
            # state at the stable checkpoint (state transfer), finals for the rest
            if self._state_fetched_for < self.low and self.stable_proof:
                self._state_fetched_for = self.low
                self.state_fetches += 1
                out.append(FetchState(self.low, self.stable_digest, self.stable_proof))
        if own is not None or (
            self.last_executed < self.low and self.last_executed + 1 not in self.ready
        ):
            # Diverged below the stable checkpoint, or behind it with a gap: fetch finals.
            self._fetch_now(out)

    def _add_checkpoint(self, cp: Checkpoint, out: list[Action]) -> None:
        super()._add_checkpoint(cp, out)
        if (
            cp.seq > self.last_executed
            and self.t_fetch not in self.armed
            and self._checkpointed_above() > self.last_executed
        ):
            self._arm_fetch_timer(out)  # fetches if we make no progress before it fires
