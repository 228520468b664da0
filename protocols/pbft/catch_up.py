"""PBFT catch-up: state transfer by replaying delivered batches (Castro & Liskov OSDI'99
§4.3 names it, bringing a replica up to date from a stable checkpoint; here by batches).

A replica behind a stable checkpoint, or with a committed seq it cannot deliver because of a
gap, broadcasts FETCH for at most ``fetch_span`` seqs and accepts a batch once
``fetch_quorum`` (f+1) replicas answer the same (ReplicaCore._count_fetch_reply counts);
a timer (``fetch``) asks again when nothing moved for a period. Every replica answers from
its bounded history of delivered batches. A mixin of ``Pbft``. Must not live here: PoE's
catch-up (it fetches proposals and stable proofs, protocols/poe/), IO.
"""

from __future__ import annotations

from protocols.base import Action, Broadcast, Send
from protocols.pbft.messages import Fetch, FetchReply
from protocols.pbft.normal import batch_is_valid


class PbftCatchUp:
    """FETCH / FETCH-REPLY: ask for delivered batches, answer from the history."""

    def _fetch_target(self) -> int:
        """Highest seq we know to be committed somewhere (stable, or committed here)."""
        target = self.low
        if self.committed:
            target = max(target, max(self.committed))
        return target

    def _arm_fetch_timer(self, out: list[Action]) -> None:
        self._fetch_mark = self.last_delivered
        self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _fetch_now(self, out: list[Action]) -> None:
        target = self._fetch_target()
        if self.last_delivered >= target:
            return
        first = self.last_delivered + 1
        last = min(target, self.last_delivered + self.fetch_span)
        self._fetch_requested_to = last
        out.append(Broadcast(Fetch(self.instance, first, last, self.id)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch_timer(self, out: list[Action]) -> None:
        if self.last_delivered >= self._fetch_target():
            return
        if self.last_delivered == self._fetch_mark:  # no progress for a whole period
            self._fetch_now(out)
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch(self, sender: int, m: Fetch, out: list[Action]) -> None:
        if not self._from_member(sender, m, others_only=True):
            return
        first = max(m.first_seq, self.last_delivered - self.history_len + 1, 1)
        last = min(m.last_seq, first + self.fetch_span - 1, self.last_delivered)
        for seq in range(first, last + 1):
            entry = self.history.get(seq)
            if entry is not None:
                out.append(
                    Send(sender, FetchReply(self.instance, seq, entry[0], entry[1], self.id))
                )

    def _on_fetch_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        if not self._from_member(sender, m, others_only=True):
            return
        seq = m.seq
        if (
            seq <= self.last_delivered
            or seq > self.last_delivered + self.fetch_span
            or seq in self.committed
        ):
            self._ignore("unneeded_fetch_reply")
            return
        matching = self._count_fetch_reply(self.fetch_votes.setdefault(seq, {}), sender, m)
        if matching is None:
            return
        batch = next((r.batch for r in matching if batch_is_valid(r.batch)), None)
        if batch is None:
            self._ignore("bad_batch_digest")
            return
        del self.fetch_votes[seq]
        self._commit(seq, max(r.view for r in matching), batch, out)
        # The requested range is done but we are still behind: ask for the next one now.
        if self.last_delivered >= self._fetch_requested_to:
            self._fetch_now(out)
