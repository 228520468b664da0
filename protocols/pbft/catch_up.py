"""PBFT catch-up: state transfer by replaying delivered batches (Castro & Liskov OSDI'99
§4.3 names it, bringing a replica up to date from a stable checkpoint; here by batches).

A replica behind a stable checkpoint, or with a committed seq it cannot deliver because of a
gap, broadcasts FETCH for at most ``fetch_span`` seqs and accepts a batch once
``fetch_quorum`` (f+1) replicas answer the same (ReplicaCore._count_fetch_reply counts);
a timer (``fetch``) asks again when nothing moved for a period. Every replica answers from
its bounded history of delivered batches. Further behind than that history, the replica asks
for the state itself (pbft/checkpoints.py emits FetchState) and ``state_installed`` moves it
to the installed checkpoint, the same call a restarted replica's reloaded state takes. A mixin
of ``Pbft``. Must not live here: PoE's
catch-up (it fetches proposals and stable proofs, protocols/poe/), IO.
"""

from __future__ import annotations

from typing import Any

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
        if self._probes_left > 0:
            # ask again what follows: after a move too (a peer may hold committed batches
            # past its last stable checkpoint); a whole period without a move costs one probe
            if self.last_delivered == self._probe_mark:
                self._probes_left -= 1
            if self._probes_left > 0:
                self._send_probe(out)
        if self.last_delivered >= self._fetch_target():
            return
        if self.last_delivered == self._fetch_mark:  # no progress for a whole period
            self._fetch_now(out)
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def state_installed(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...] = ()
    ) -> list[Action]:
        """The execute stage holds the state after ``seq`` (a fetched snapshot, or what a
        restarted replica reloaded): take ``seq`` as delivered, stabilise it if ``proof``
        certifies it, then deliver / fetch the rest as after any stable checkpoint."""
        out: list[Action] = []
        if seq < self.last_delivered:
            self._ignore("state_not_needed")
            return out
        if seq > self.last_delivered:
            self._install_state(seq, state_digest, tuple(proof), out)
        # a restarted replica knows nothing of what happened while it was down: ask
        self._probe(out)
        self._deliver_ready(out)
        self._fetch_now(out)
        self._replay_held(out)
        self._drain_queue(out)
        return out

    def _install_state(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...], out: list[Action]
    ) -> None:
        self.states_installed += 1
        self.last_delivered = seq
        for table in (self.committed, self.fetch_votes, self.history):
            for s in [s for s in table if s <= seq]:
                del table[s]
        if self._max_accepted < seq:
            self._max_accepted = seq
        if self.last_assigned < seq:
            self.last_assigned = seq
        if seq > self.low and not seq % self.period and self._valid_checkpoint_proof(seq, proof):
            self._make_stable(seq, state_digest, proof, out, replay=False)

    def _probe(self, out: list[Action]) -> None:
        """Ask every peer for what follows ``last_delivered``: they answer with batches from
        their history and with their own vote for their stable checkpoint, so a replica that
        lost track (a restart) learns a certified checkpoint even when nothing new happens.
        Repeated by the fetch timer; ``max_probes`` periods without a move end it."""
        self._probes_left = self.max_probes
        self._send_probe(out)

    def _send_probe(self, out: list[Action]) -> None:
        self._probe_mark = self.last_delivered
        first = self.last_delivered + 1
        out.append(Broadcast(Fetch(self.instance, first, first + self.fetch_span - 1, self.id)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch(self, sender: int, m: Fetch, out: list[Action]) -> None:
        if not self._from_member(sender, m, others_only=True):
            return
        vote = self.stable_vote
        if vote is not None and m.first_seq <= vote.seq == self.low and self.serves_stable_vote:
            # the asker is at or below our stable checkpoint: our own signed vote for it
            # (f+1... 2f+1 of these make it stable there, and it fetches state or batches)
            out.append(Send(sender, vote))
        if m.first_seq > self.last_delivered + 1 and self._probes_left == 0 and self.fetches_state:
            # the asker delivered up to first_seq - 1, more than we did: ask what we miss
            self._probe(out)
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
