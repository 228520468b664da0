"""PBFT normal case (Castro & Liskov OSDI'99 §4.1 client requests, §4.2 normal-case operation).

The primary of view v, ``(instance + v) % n``, assigns seq in (low, high] and broadcasts
PRE-PREPARE; a backup accepts one pre-prepare per (view, seq) and broadcasts PREPARE;
*prepared* = pre-prepare + ``prepare_quorum`` (2f) matching prepares from distinct backups;
then COMMIT; *committed-local* = prepared + ``commit_quorum`` (2f+1) matching commits. Many
seqs are in flight at once; committed batches are delivered strictly in seq order. Replay
suppression: per client, the last ``pbft_replay_window`` delivered timestamps and a floor
below them (clients keep several requests in flight). A replica whose accepted pre-prepares
stop being delivered for a whole timeout suspects the primary (timer ``progress``), as does
a backup waiting for a client's re-sent request (timer ``request``).

``PbftNormalCase`` is a mixin of ``Pbft`` (protocols/pbft/replica.py, which holds the
state); ``_Slot`` is one seq's normal-case state. Must not live here: view changes
(pbft/view_change.py), catch-up (pbft/catch_up.py), checkpoints, IO.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from protocols.base import Action, Broadcast, Deliver, StableCheckpoint
from protocols.claims import note_pre_prepared
from protocols.common import Batch, Request
from protocols.common import batch_is_valid as _batch_is_valid
from protocols.pbft.messages import (
    Commit,
    Prepare,
    PreparedCert,
    PrePrepare,
    pre_prepare_payload,
    prepare_payload,
)
from protocols.pbft.states import DELIVERED, NEW_VIEW_UNPROVEN, VIEW_CHANGE


class _Slot:
    """Normal-case state of one seq in the current view (dropped on a view change)."""

    __slots__ = (
        "pre_prepare",
        "digest",
        "prepares",
        "prepare_counts",
        "commits",
        "commit_counts",
        "prepared",
        "committed",
    )

    def __init__(self) -> None:
        self.pre_prepare: PrePrepare | None = None
        self.digest: bytes | None = None
        self.prepares: dict[int, Prepare] = {}  # replica -> its (first) prepare
        self.prepare_counts: dict[bytes, int] = {}  # digest -> distinct backups
        self.commits: dict[int, bytes] = {}  # replica -> digest of its (first) commit
        self.commit_counts: dict[bytes, int] = {}
        self.prepared = False
        self.committed = False


def batch_is_valid(batch: Batch) -> bool:
    """protocols.common.batch_is_valid that answers False (never raises) for a batch holding a
    request whose client id or timestamp does not fit the signed header (hostile input)."""
    try:
        return _batch_is_valid(batch)
    except (struct.error, OverflowError):
        return False


class _ClientReplay:
    """One client's delivered timestamps: the last ``replay_window`` of them, and a floor at
    or below which every timestamp counts as delivered (bounded memory per client)."""

    __slots__ = ("floor", "recent", "order")

    def __init__(self) -> None:
        self.floor = -1  # highest timestamp evicted from ``recent``
        self.recent: set[int] = set()
        self.order: deque[int] = deque()  # ``recent`` in delivery order (eviction order)


class PbftNormalCase:
    """Requests, proposals, PRE-PREPARE / PREPARE / COMMIT and in-order delivery (§4.1, §4.2)."""

    def _valid_pre_prepare_signature(self, pp: PrePrepare) -> bool:
        return self._verify(
            self.primary_of(pp.view),
            pre_prepare_payload,
            pp.instance,
            pp.view,
            pp.seq,
            pp.batch.digest,
            signature=pp.signature,
        )

    def _valid_prepare_signature(self, p: Prepare) -> bool:
        return self._verify(
            p.replica,
            prepare_payload,
            p.instance,
            p.view,
            p.seq,
            p.replica,
            p.digest,
            signature=p.signature,
        )

    def _make_pre_prepare(self, view: int, seq: int, batch: Batch) -> PrePrepare:
        sig = b""
        if self.sign_votes:
            sig = self.verifier.sign(pre_prepare_payload(self.instance, view, seq, batch.digest))
        return PrePrepare(self.instance, view, seq, batch, sig)

    def was_delivered(self, client_id: int, timestamp: int) -> bool:
        """True if (client, timestamp) was delivered (or is older than the replay window)."""
        rec = self.clients.get(client_id)
        return rec is not None and (timestamp <= rec.floor or timestamp in rec.recent)

    def _request_done(self, client_id: int, timestamp: int) -> bool:
        return self.was_delivered(client_id, timestamp)

    def _without_replays(self, batch: Batch) -> Batch | None:
        """ReplicaCore's filter, but a batch with nothing delivered or in flight passes as
        it is, even when it repeats a request (the execute stage answers it again)."""
        was_delivered = self.was_delivered
        in_flight = self.in_flight
        for req in batch.requests:
            if (req.client_id, req.timestamp) in in_flight or was_delivered(
                req.client_id, req.timestamp
            ):
                return super()._without_replays(batch)
        return batch

    def _send_proposal(self, batch: Batch, out: list[Action]) -> None:
        """Primary: assign the next seq to ``batch`` and broadcast its PRE-PREPARE (§4.2)."""
        seq = self.last_assigned + 1
        assert self.low < seq <= self.high, "primary assigns seqs within the watermarks"
        self.last_assigned = seq
        pp = self._make_pre_prepare(self.view, seq, batch)
        for req in batch.requests:
            self.in_flight[(req.client_id, req.timestamp)] = seq
        slot = self._slot(seq)
        assert slot.pre_prepare is None, "the primary assigns each seq once per view"
        slot.pre_prepare = pp
        slot.digest = batch.digest
        if not self.sign_votes:
            note_pre_prepared(self.pre_prepared, seq, batch.digest, self.view)
        out.append(Broadcast(pp))
        if seq > self._max_accepted:
            self._max_accepted = seq
        if self.t_progress not in self.armed:
            self._arm_progress(out)
        self._check_prepared(seq, slot, out)

    def _on_request(self, sender: int, req: Request, out: list[Action]) -> None:
        """A client's request (or one forwarded by a replica)."""
        if self.was_delivered(req.client_id, req.timestamp):
            self._ignore("request_already_delivered")
            return
        key = (req.client_id, req.timestamp)
        if self._request_pending(key):
            return
        try:
            signed = self.verifier.verify_request(req)
        except (struct.error, OverflowError):  # ids that do not fit the signed header
            signed = False
        if not signed:
            self._ignore("bad_client_signature")
            return
        self._take_request(sender, key, req, out)  # proposed, or waited for and forwarded

    def _on_request_timer(self, out: list[Action]) -> None:
        if self.in_view_change:
            return
        self._purge_waiting()
        if self.waiting:
            self._start_view_change(self.view + 1, out)

    def _arm_progress(self, out: list[Action]) -> None:
        self._progress_mark = self.last_delivered
        self._set_timer(self.t_progress, self._timeout_ticks(), out)

    def _on_progress_timer(self, out: list[Action]) -> None:
        if self.in_view_change:
            return
        if self._max_accepted <= self.last_delivered and not self.committed:
            return  # nothing accepted is waiting: idle, not stuck
        if self.last_delivered > self._progress_mark:
            self._arm_progress(out)  # slow but moving
            return
        self._start_view_change(self.view + 1, out)

    def _normal_case_gate(
        self, view: int, seq: int, sender: int, msg: Any, out: list[Action]
    ) -> bool:
        """True when a normal-case message may be processed now; holds or drops it otherwise."""
        if view == self.view and self.low < seq <= self.high and self.view_state != VIEW_CHANGE:
            return True  # the common case, checked first (in_view_change without its property)
        if view < self.view:
            self._ignore("old_view")
            return False
        if view > self.view or self.in_view_change:
            self._hold(sender, msg)
            if self.in_view_change:
                self._ask_for_new_view(sender, view, out)
            return False
        if seq <= self.low:
            self._ignore("below_low_watermark")
            return False
        if seq > self.high:
            self._hold(sender, msg)
            return False
        return True

    def _on_pre_prepare(self, sender: int, pp: PrePrepare, out: list[Action]) -> None:
        if pp.instance != self.instance:
            self._ignore("wrong_instance")
            return
        if sender != (self.instance + pp.view) % self.n or sender == self.id:
            self._ignore("pre_prepare_not_from_primary")
            return
        if not self._normal_case_gate(pp.view, pp.seq, sender, pp, out):
            return
        slot = self.slots.get(pp.seq)
        if slot is not None and slot.pre_prepare is not None:
            if slot.digest == pp.batch.digest:
                self._ignore("duplicate")
            else:
                self._ignore("conflicting_pre_prepare")  # evidence of a faulty primary
            return
        if self.sign_votes and not self._valid_pre_prepare_signature(pp):
            self._ignore("bad_signature")
            return
        batch = pp.batch
        if not batch_is_valid(batch):
            self._ignore("bad_batch_digest")
            return
        verify_request = self.verifier.verify_request
        for req in batch.requests:  # batch_is_valid passed: ids fit the signed header
            if not verify_request(req):
                self._ignore("bad_client_signature")
                return
        self._accept_pre_prepare(pp, slot if slot is not None else self._slot(pp.seq), out)

    def _accept_pre_prepare(self, pp: PrePrepare, slot: _Slot, out: list[Action]) -> None:
        seq = pp.seq
        assert self.low < seq <= self.high, "accepted seqs lie within the watermarks"
        assert pp.view == self.view and not self.in_view_change
        if seq > self._max_accepted:
            self._max_accepted = seq
            if self.t_progress not in self.armed and seq > self.last_delivered:
                self._arm_progress(out)
        slot.pre_prepare = pp
        d = slot.digest = pp.batch.digest
        if not self.sign_votes:
            note_pre_prepared(self.pre_prepared, seq, d, pp.view)
        if self.id == self.primary:  # only from a NEW-VIEW: the primary does not prepare
            for req in pp.batch.requests:
                self.in_flight[(req.client_id, req.timestamp)] = seq
        else:
            sig = b""
            if self.sign_votes:
                sig = self.verifier.sign(prepare_payload(self.instance, self.view, seq, self.id, d))
            prepare = Prepare(self.instance, self.view, seq, d, self.id, sig)
            slot.prepares[self.id] = prepare
            slot.prepare_counts[d] = slot.prepare_counts.get(d, 0) + 1
            out.append(Broadcast(prepare))
        self._check_prepared(seq, slot, out)

    def _from_member(self, sender: int, msg: Any, others_only: bool = False) -> bool:
        """A vote-like message is for this instance and its ``replica`` field is its
        authenticated sender, a replica (not this one, with ``others_only``); else ignored."""
        if msg.instance != self.instance:
            self._ignore("wrong_instance")
            return False
        if sender != msg.replica or not 0 <= sender < self.n or (others_only and sender == self.id):
            self._ignore("wrong_replica_field")
            return False
        return True

    def _on_prepare(self, sender: int, p: Prepare, out: list[Action]) -> None:
        # our own vote is recorded where we cast it; one "from us" is forged (it would count
        # twice: found by fuzzing)
        if not self._from_member(sender, p, others_only=True):
            return
        if sender == (self.instance + p.view) % self.n:
            self._ignore("prepare_from_primary")
            return
        if not self._normal_case_gate(p.view, p.seq, sender, p, out):
            return
        slot = self.slots.get(p.seq)
        if slot is None:
            slot = self._slot(p.seq)
        if sender in slot.prepares:
            self._ignore("duplicate")
            return
        if slot.prepared:
            # §4.2: the prepared certificate holds 2f matching prepares; a later one adds
            # nothing, so it is neither verified (an Ed25519 verify with signed votes) nor kept
            self._ignore("after_prepared")
            return
        if self.sign_votes and not self._valid_prepare_signature(p):
            self._ignore("bad_signature")
            return
        slot.prepares[sender] = p
        d = p.digest
        counts = slot.prepare_counts
        counts[d] = counts.get(d, 0) + 1
        if d == slot.digest:  # (not prepared: refused above)
            self._check_prepared(p.seq, slot, out)

    def _check_prepared(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        pp = slot.pre_prepare
        if slot.prepared or pp is None:
            return
        d = slot.digest
        assert d is not None
        if slot.prepare_counts.get(d, 0) < self.prepare_quorum:
            return
        quorum = self.prepare_quorum
        prepares = [p for p in slot.prepares.values() if p.digest == d]
        replicas = [p.replica for p in prepares]
        assert len(set(replicas)) == len(replicas) >= quorum
        assert self.primary_of(pp.view) not in replicas, "prepares come from backups"
        slot.prepared = True
        self.certs[seq] = PreparedCert(pp, tuple(prepares[:quorum]))
        commit = Commit(self.instance, self.view, seq, d, self.id)
        if self.id not in slot.commits:
            slot.commits[self.id] = d
            slot.commit_counts[d] = slot.commit_counts.get(d, 0) + 1
        out.append(Broadcast(commit))
        self._check_committed(seq, slot, out)

    def _on_commit(self, sender: int, c: Commit, out: list[Action]) -> None:
        if not self._from_member(sender, c, others_only=True):
            return
        if not self._normal_case_gate(c.view, c.seq, sender, c, out):
            return
        slot = self.slots.get(c.seq)
        if slot is None:
            slot = self._slot(c.seq)
        if sender in slot.commits:
            self._ignore("duplicate")
            return
        d = c.digest
        slot.commits[sender] = d
        counts = slot.commit_counts
        counts[d] = counts.get(d, 0) + 1
        if slot.prepared and not slot.committed and d == slot.digest:
            self._check_committed(c.seq, slot, out)

    def _check_committed(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        if slot.committed or not slot.prepared:
            return
        d = slot.digest
        if slot.commit_counts.get(d, 0) < self.commit_quorum:
            return
        assert list(slot.commits.values()).count(d) >= self.commit_quorum
        slot.committed = True
        pp = slot.pre_prepare
        assert pp is not None
        self._commit(seq, pp.view, pp.batch, out)

    def _commit(self, seq: int, view: int, batch: Batch, out: list[Action]) -> None:
        """``batch`` is committed at ``seq``: deliver it (in order) unless already done."""
        if seq <= self.last_delivered:
            old = self.history.get(seq)
            assert old is None or old[1].digest == batch.digest, (
                f"seq {seq} committed as a batch different from the one delivered (safety)"
            )
            return
        old = self.committed.get(seq)
        if old is not None:
            assert old[1].digest == batch.digest, f"seq {seq} committed twice differently"
            return
        self.committed[seq] = (view, batch)
        if seq == self.last_delivered + 1:
            self._deliver_ready(out)
        elif self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _deliver_ready(self, out: list[Action]) -> None:
        committed = self.committed
        history = self.history
        clients = self.clients
        window = self.replay_window
        while True:
            seq = self.last_delivered + 1
            entry = committed.pop(seq, None)
            if entry is None:
                break
            view, batch = entry
            assert seq == self.last_delivered + 1, "deliver in order, no gaps"
            self.last_delivered = seq
            out.append(Deliver(seq, view, batch))
            history[seq] = entry
            history.pop(seq - self.history_len, None)
            for req in batch.requests:
                rec = clients.get(req.client_id)
                if rec is None:
                    rec = clients[req.client_id] = _ClientReplay()
                ts = req.timestamp
                if ts <= rec.floor or ts in rec.recent:
                    continue  # a replay inside a batch: the execute stage answers it again
                rec.recent.add(ts)
                order = rec.order
                order.append(ts)
                if len(order) > window:  # bounded: older timestamps fall below the floor
                    oldest = order.popleft()
                    rec.recent.discard(oldest)
                    if oldest > rec.floor:
                        rec.floor = oldest
            if self.in_flight:
                for req in batch.requests:
                    self.in_flight.pop((req.client_id, req.timestamp), None)
            if self.waiting:
                self._waiting_done(batch, out)
            if self.fetch_votes:
                self.fetch_votes.pop(seq, None)
            if self.view_state == NEW_VIEW_UNPROVEN:
                self._move(DELIVERED)
                self.backoff_exp = 0  # the view change succeeded: reset the doubling
        if self._stable_unannounced and self.last_delivered >= self.low:
            self._stable_unannounced = False
            out.append(StableCheckpoint(self.low, self.stable_digest, self.stable_proof))
        if self.t_idle not in self.armed:
            self._arm_idle(out)
