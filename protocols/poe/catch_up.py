"""PoE catch-up: FETCH of final and certified entries and of stable proofs (beyond EDBT'21,
which leaves state transfer to the PBFT machinery it builds on).

A lagging replica catches up by FETCH: a batch counts when f+1 replicas report it final (at
or below their verified stable checkpoint) or when it comes with a valid certificate of the
current view (MACs: when f+1 replicas claim they view-committed it in the current view; one
is honest, so n−f supported it). A replica answering the FETCH of one with an older stable
checkpoint sends its proof (STABLE-PROOF: 2f+1 signed checkpoints, transferable). What PBFT
and PoE fetch the same way (counting matching replies) is ReplicaCore._count_fetch_reply; the
rest differs (PBFT fetches delivered batches only: protocols/pbft/catch_up.py). A mixin of
``Poe``. Must not live here: the normal case, IO.
"""

from __future__ import annotations

from typing import Any

from protocols.base import (
    Action,
    Broadcast,
    Send,
)
from protocols.common import batch_is_valid
from protocols.poe.messages import (
    Fetch,
    FetchReply,
    StableProof,
)
from protocols.poe.normal import _Slot
from protocols.poe.states import ACTIVE


class PoeCatchUp:
    """FETCH / FETCH-REPLY / STABLE-PROOF: final and certified entries, stable proofs."""

    def _trusted_to(self) -> int:
        """Our executed prefix known to agree with the final state: the part checked against
        final entries, or, in a view we entered and reconciled (and did not diverge in),
        everything executed (the plan's locked entries and certificates of this view)."""
        if self.mode == ACTIVE and self.reconciled and not self._diverged:
            return max(self.verified_to, self.last_executed)
        return self.verified_to

    def _fetch_range(self) -> tuple[int, int]:
        """(first, last) seqs to ask for; first > last when nothing is missing."""
        first = self._trusted_to() + 1
        target = self.low if self.final_mark < self.low else 0
        if self.ready:
            target = max(target, max(self.ready) - 1)
        behind = self._checkpointed_above()
        if behind > target:
            target = behind
        for seq, slot in self.slots.items():
            if slot.committed:
                continue
            if slot.cert is not None or (self.macs and self._quorum_elsewhere(slot)):
                target = max(target, seq)
        return first, min(target, first + self.fetch_span - 1)

    def _checkpointed_above(self) -> int:
        """The highest checkpoint seq above our execution that f+1 replicas voted for (so
        an honest one executed that far: we are behind and should fetch), else 0."""
        best = 0
        for seq, by_digest in self.ckpt_votes.items():
            if seq > self.last_executed and seq > best:
                if sum(len(v) for v in by_digest.values()) >= self.fetch_quorum:
                    best = seq
        return best

    def state_installed(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...] = ()
    ) -> list[Action]:
        """The execute stage holds the final state after ``seq`` (a snapshot fetched after
        FetchState, certified by ``proof``; or what a restarted replica reloaded: persisted
        blocks are final). Take it as executed and final, stabilise it if ``proof`` certifies
        it, then ask the others what follows (they answer with their stable proof and final
        entries, which is also how a restarted replica learns where the cluster is)."""
        out: list[Action] = []
        if seq < self.last_executed:
            self._ignore("state_not_needed")
            return out
        if seq > self.last_executed:
            self.states_installed += 1
            self.last_executed = seq
            for table in (self.ready, self.finals, self.fetch_votes, self.log, self.own_digest):
                for s in [s for s in table if s <= seq]:
                    del table[s]
            if not seq % self.period:
                self.own_digest[seq] = state_digest
            self.verified_to = max(self.verified_to, seq)
            self.final_mark = max(self.final_mark, seq)
            if self.last_assigned < seq:
                self.last_assigned = seq
            proof = tuple(proof)
            if (
                seq > self.low
                and not seq % self.period
                and self._valid_checkpoint_proof(seq, proof)
            ):
                self._make_stable(seq, state_digest, proof, out)
        first = self.last_executed + 1
        out.append(Broadcast(Fetch(first, first + self.fetch_span - 1, self.id, self.low)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)
        self._deliver_ready(out)
        return out

    def _on_stable_proof(self, sender: int, m: StableProof, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        if m.seq <= self.low:
            self._ignore("old_checkpoint")
            return
        if not self._valid_stable_claim(m.seq, m.proof):
            self._ignore("invalid_stable_proof")
            return
        self._make_stable(m.seq, m.proof[0].state_digest, m.proof, out)

    def _quorum_elsewhere(self, slot: _Slot) -> bool:
        """MACs: n−f replicas support a batch we do not hold (missed or other PROPOSE)."""
        return any(c >= self.quorum and d != slot.digest for d, c in slot.counts.items())

    def _arm_fetch_timer(self, out: list[Action]) -> None:
        self._fetch_mark = (self.last_executed, self.verified_to)
        self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _fetch_now(self, out: list[Action], force: bool = False) -> None:
        """Ask every replica for what we miss, unless that range is already asked for."""
        first, last = self._fetch_range()
        if first > last:
            return
        if not force and self.t_fetch in self.armed and last <= self._fetch_requested_to:
            return
        self._fetch_requested_to = last
        out.append(Broadcast(Fetch(first, last, self.id, self.low)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch_timer(self, out: list[Action]) -> None:
        first, last = self._fetch_range()
        if first > last:
            return
        if (self.last_executed, self.verified_to) == self._fetch_mark:  # no progress
            self._fetch_now(out, force=True)
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch(self, sender: int, m: Fetch, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if self.low > m.stable_seq and self.stable_proof:
            out.append(Send(sender, StableProof(self.low, self.stable_proof)))
        first = max(m.first_seq, 1)
        last = min(m.last_seq, first + self.fetch_span - 1)
        for seq in range(first, last + 1):
            ev = self.evidence.get(seq)
            if ev is not None and ev.view == self.view and self.mode == ACTIVE:
                reply = FetchReply(seq, ev.view, ev.batch, self.id, False, ev.cert, self.view)
                out.append(Send(sender, reply))
                continue
            entry = self.log.get(seq)
            if entry is not None and seq <= self.final_mark:
                reply = FetchReply(seq, entry[0], entry[1], self.id, True, None, self.view)
                out.append(Send(sender, reply))

    def _on_fetch_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if not batch_is_valid(m.batch):
            self._ignore("bad_batch_digest")
            return
        self._note_view(sender, m.sender_view, out)
        if m.final:
            if m.sender_view > self.view:
                self._diverged = True  # later views exist: do not trust our prefix, verify it
            self._on_final_reply(sender, m, out)
            return
        cert = m.cert
        seq = m.seq
        if (cert is None) != self.macs or m.view != self.view or self.mode != ACTIVE:
            self._ignore("unneeded_fetch_reply")
            return
        if seq <= self.last_executed or seq in self.ready or seq > self.high:
            self._ignore("unneeded_fetch_reply")
            return
        slot = self.slots.get(seq)
        if slot is not None and slot.committed:
            return
        d = m.batch.digest
        if cert is None:
            self._on_commit_claim(sender, m, out)
            return
        if not self._valid_cert(m.view, seq, d, cert):
            self._ignore("bad_certificate")
            return
        if seq <= self.low:  # behind the stable checkpoint: execute it, keep no slot
            self._view_commit(seq, m.view, m.batch, cert, out)
            return
        slot = self._slot(seq)
        slot.batch, slot.digest, slot.cert, slot.cert_digest = m.batch, d, cert, d
        self._check_slot(seq, slot, out)

    def _on_commit_claim(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        """MACs: ``sender`` says it view-committed ``m.batch`` at ``m.seq`` in our view. With
        f+1 matching claims one honest replica holds n−f supports for it, and no other batch
        can gather n−f in this view: view-commit it as if we had seen those supports."""
        seq = m.seq
        votes = self.commit_votes.get(seq)
        if votes is None:
            if len(self.commit_votes) >= self.fetch_span:
                self._ignore("commit_votes_full")  # bounded: one fetch span of seqs
                return
            votes = self.commit_votes[seq] = {}
        if self._count_fetch_reply(votes, sender, m) is None:
            return
        del self.commit_votes[seq]
        if seq <= self.low:  # behind the stable checkpoint: execute it, keep no slot
            self._view_commit(seq, m.view, m.batch, None, out)
            return
        slot = self._slot(seq)
        slot.batch, slot.digest = m.batch, m.batch.digest
        slot.committed = True
        slot.cert, slot.cert_digest = None, slot.digest
        self._view_commit(seq, m.view, m.batch, None, out)

    def _on_final_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        seq = m.seq
        # f+1 matching "final" replies: one honest replica's stable state has it at seq, so
        # it is final even above our own stable checkpoint (we may miss checkpoint votes).
        trusted = self._trusted_to()
        if seq <= trusted or seq > trusted + self.fetch_span:
            self._ignore("unneeded_fetch_reply")
            return
        if seq in self.finals:
            return
        matching = self._count_fetch_reply(self.fetch_votes.setdefault(seq, {}), sender, m)
        if matching is None:
            return
        del self.fetch_votes[seq]
        # the latest view it was executed in among f+1 (one honest) replicas that agree
        self.finals[seq] = (max(r.view for r in matching), m.batch)
        self._apply_finals(out)

    def _apply_finals(self, out: list[Action]) -> None:
        """Check our entries against trusted final ones, in order; roll back on a mismatch."""
        trusted = self._trusted_to()
        for s in [s for s in self.finals if s <= trusted]:
            del self.finals[s]
        while trusted + 1 in self.finals:
            seq = trusted + 1
            view, batch = self.finals.pop(seq)
            if seq <= self.last_executed:
                old = self.log.get(seq)
                # Same batch executed in an older view: execute it again with the view the
                # others hold it in, or our INFORM never matches theirs (view, seq, result).
                if old is None or old[1].digest != batch.digest or old[0] < view:
                    self._rollback_to(seq - 1, out)
                    self.ready[seq] = (view, batch)
            else:
                self.ready[seq] = (view, batch)
            if seq == self.verified_to + 1:
                self.verified_to = seq
            trusted = seq
            self._deliver_ready(out)
        for s in [s for s in self.fetch_votes if s <= trusted]:
            del self.fetch_votes[s]
        if trusted >= self._fetch_requested_to:
            self._fetch_now(out, force=True)  # the asked range is done: more missing?
