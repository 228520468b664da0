"""PoE normal case (Gupta, Hellings, Rahnama, Sadoghi, EDBT'21 §3: propose, support,
certify, view-commit, speculative execution).

The primary of view v (``v % n``) assigns seq in the watermark window and broadcasts
PROPOSE(v, k, batch) carrying its own support share. A backup that accepts it signs SUPPORT,
a share over (v, k, digest), and sends it to the primary; with n−f shares the primary forms a
``Certificate`` and broadcasts CERTIFY. A replica holding a valid certificate and the batch
*view-commits* it and executes it speculatively, in seq order: ``Deliver(seq, view, batch,
speculative=True)``; the execute stage INFORMs the client, which accepts on n−f matching
ones. With ``poe_certificate: macs`` nothing is signed here: SUPPORT goes to every replica
and each view-commits on n−f matching supports itself (no CERTIFY). Executed entries stay
speculative until final (timer ``final`` probes when they stay so); a rollback undoes
them. Requests: replay suppression per client, the backup's request timer (§4's trigger).

``PoeNormalCase`` is a mixin of ``Poe`` (protocols/poe/replica.py holds the state); ``_Slot``
is one seq's normal-case state. Must not live here: the view change (poe/view_change.py,
poe/new_view.py), catch-up (poe/catch_up.py), IO.
"""

from __future__ import annotations

from typing import Any

from protocols.base import (
    Action,
    Broadcast,
    Deliver,
    Rollback,
    Send,
)
from protocols.claims import note_pre_prepared
from protocols.common import Batch, Request, batch_is_valid
from protocols.limits import (
    MAX_FINAL_PROBE_DOUBLINGS,
)
from protocols.poe.certificate import Certificate, combine
from protocols.poe.messages import (
    Certify,
    Committed,
    Fetch,
    Propose,
    Support,
    support_payload,
)
from protocols.poe.states import ACTIVE, ACTIVE_UNPROVEN, EXECUTED


class _Slot:
    """Normal-case state of one seq in the current view (dropped on a view change)."""

    __slots__ = ("batch", "digest", "shares", "counts", "cert", "cert_digest", "committed")

    def __init__(self) -> None:
        self.batch: Batch | None = None  # the accepted proposal
        self.digest: bytes | None = None
        self.shares: dict[int, tuple[bytes, bytes]] = {}  # replica -> (digest, verified share)
        self.counts: dict[bytes, int] = {}  # digest -> distinct supporters
        self.cert: Certificate | None = None  # a verified certificate, maybe before the batch
        self.cert_digest: bytes | None = None
        self.committed = False


class PoeNormalCase:
    """Requests, PROPOSE / SUPPORT / CERTIFY, view-commit, speculative execution, rollback (§3)."""

    def _verify_share(self, signer: int, view: int, seq: int, digest: bytes, share: bytes) -> bool:
        try:
            payload = support_payload(view, seq, digest)
        except Exception:  # struct.error on absurd ints: cannot carry a valid share
            return False
        return bool(self.verifier.verify(signer, payload, share))

    def _valid_cert(self, view: int, seq: int, digest: bytes, cert: Certificate) -> bool:
        try:
            payload = support_payload(view, seq, digest)
        except Exception:
            return False
        return cert.verify(self.verifier, payload, self.quorum, self.n)

    def _sign_share(self, view: int, seq: int, digest: bytes) -> bytes:
        """Our share for (view, seq, digest); with MACs nothing is signed (b"") and the
        support is remembered for the view change instead (the Q-set)."""
        if self.macs:
            self._note_supported(view, seq, digest)
            return b""
        return self.verifier.sign(support_payload(view, seq, digest))

    def _note_supported(self, view: int, seq: int, digest: bytes) -> None:
        if seq > self.low:
            note_pre_prepared(self.supported, seq, digest, view)

    def was_executed(self, client_id: int, timestamp: int) -> bool:
        """True if (client, timestamp) is executed here (or older than the replay window)."""
        if timestamp <= self.ts_floor.get(client_id, -1):
            return True
        recent = self.executed_ts.get(client_id)
        return recent is not None and timestamp in recent

    def _request_done(self, client_id: int, timestamp: int) -> bool:
        return self.was_executed(client_id, timestamp)

    def _send_proposal(self, batch: Batch, out: list[Action]) -> None:
        """Primary: assign the next seq above the view's plan to ``batch``, PROPOSE it (§3)."""
        seq = max(self.last_assigned, self.plan_end, self.low) + 1
        # A slot of this view can hold a batch the primary never assigned: a certified entry
        # learnt from a FETCH answer, carrying a replayed share of its own key (run keys derive
        # from the cluster secret). Never propose over it: skip to the next free seq, and
        # queue the batch again when that leaves the window (tests/protocol/test_poe_own_seq).
        while (
            seq <= self.high
            and (taken := self.slots.get(seq)) is not None
            and taken.batch is not None
        ):
            self._ignore("proposal_seq_taken")
            seq += 1
        if seq > self.high:
            self.last_assigned = self.high
            self.queue.appendleft(batch)
            for req in batch.requests:
                self.in_flight[(req.client_id, req.timestamp)] = 0
            return
        assert self.low < seq <= self.high, "the primary assigns seqs within the watermarks"
        assert seq > self.plan_end, "fresh proposals stay above the view's plan"
        self.last_assigned = seq
        d = batch.digest
        share = self._sign_share(self.view, seq, d)
        for req in batch.requests:
            self.in_flight[(req.client_id, req.timestamp)] = seq
        slot = self._slot(seq)
        assert slot.batch is None, "the primary assigns each seq once per view"
        slot.batch, slot.digest = batch, d
        slot.shares[self.id] = (d, share)
        slot.counts[d] = slot.counts.get(d, 0) + 1
        out.append(Broadcast(Propose(self.view, seq, batch, share)))
        self._check_slot(seq, slot, out)

    def _on_request(self, sender: int, req: Request, out: list[Action]) -> None:
        """A client's request (re-sent to every replica after a timeout), or one forwarded."""
        key = (req.client_id, req.timestamp)
        if self.was_executed(*key):
            self._ignore("request_already_executed")
            if not 0 <= sender < self.n:
                self._client_still_waits(key, out)
            return
        if self._request_pending(key):
            return
        if not self.verifier.verify_request(req):
            self._ignore("bad_client_signature")
            return
        self._take_request(sender, key, req, out)  # proposed, or waited for and forwarded

    def _client_still_waits(self, key: tuple[int, int], out: list[Action]) -> None:
        """The client re-sent a request we executed (our reply was re-sent to it): it still
        lacks n−f matching replies. Once is a lost reply; again means replicas are out of
        step (a primary can starve one replica while f others lie): suspect the primary if
        the entry does not become final within a request timeout."""
        recent = self.executed_ts.get(key[0])
        seq = recent.get(key[1]) if recent is not None else None
        if seq is None or seq <= self.final_mark or self.mode != ACTIVE:
            return
        count = self.resent.get(key, 0) + 1
        if key not in self.resent and len(self.resent) >= self.max_waiting:
            self.resent.pop(next(iter(self.resent)))
        self.resent[key] = count
        if count < 2:
            return
        self.stuck.add(key)
        if self.t_request not in self.armed:
            self._arm_request_timer(out)

    def _still_stuck(self) -> bool:
        """True if a client re-sent an executed, not yet final request during this period."""
        stuck = False
        for key in self.stuck:
            recent = self.executed_ts.get(key[0])
            seq = recent.get(key[1]) if recent is not None else None
            if seq is not None and seq > self.final_mark:
                stuck = True
        self.stuck.clear()
        for key in [k for k in self.resent if not self._executed_unfinal(k)]:
            del self.resent[key]
        return stuck

    def _executed_unfinal(self, key: tuple[int, int]) -> bool:
        recent = self.executed_ts.get(key[0])
        seq = recent.get(key[1]) if recent is not None else None
        return seq is not None and seq > self.final_mark

    def _on_request_timer(self, out: list[Action]) -> None:
        if self.mode != ACTIVE:
            return
        self._purge_waiting()
        stuck = self._still_stuck()
        if not self.waiting and not stuck:
            return
        if self._probed_at != self.last_executed:
            # Before suspecting the primary, ask the others for certified entries we lack:
            # a primary may starve one replica of CERTIFY while the rest move on, and with
            # n−f replies needed the client then waits for us (bounded: once per progress).
            self._probed_at = self.last_executed
            first = self._trusted_to() + 1
            out.append(Broadcast(Fetch(first, first + self.fetch_span - 1, self.id, self.low)))
            self._arm_request_timer(out)
            return
        self._start_view_change(self.view + 1, out)

    def _gate(self, view: int, seq: int, sender: int, msg: Any) -> bool:
        """True when a normal-case message may be processed now; holds or drops it otherwise."""
        if view < self.view:
            self._ignore("old_view")
            return False
        if view > self.view or self.mode != ACTIVE:
            self._hold(sender, msg)
            return False
        if seq <= self.low or seq <= self.plan_end:
            self._ignore("below_window_or_plan")
            return False
        if seq > self.high:
            self._hold(sender, msg)
            return False
        return True

    def _on_propose(self, sender: int, m: Propose, out: list[Action]) -> None:
        if sender != self.primary_of(m.view) or sender == self.id:
            self._ignore("propose_not_from_primary")
            return
        self._note_view(sender, m.view, out)
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if slot.batch is not None:
            self._ignore("duplicate" if slot.digest == m.batch.digest else "conflicting_propose")
            return
        batch = m.batch
        if not batch_is_valid(batch):
            self._ignore("bad_batch_digest")
            return
        verify_request = self.verifier.verify_request
        for req in batch.requests:
            if not verify_request(req):
                self._ignore("bad_client_signature")
                return
        d = batch.digest
        if self.macs and sender not in slot.shares:
            # The proposal is the primary's support (its MAC-authenticated sender says so).
            slot.shares[sender] = (d, b"")
            slot.counts[d] = slot.counts.get(d, 0) + 1
        slot.batch, slot.digest = batch, d
        share = self._sign_share(self.view, m.seq, d)
        support = Support(self.view, m.seq, d, self.id, share)
        if self.macs:
            slot.shares[self.id] = (d, share)
            slot.counts[d] = slot.counts.get(d, 0) + 1
            out.append(Broadcast(support))
        else:
            out.append(Send(sender, support))
        self._check_slot(m.seq, slot, out)

    def _on_support(self, sender: int, m: Support, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        self._note_view(sender, m.view, out)
        if not self.macs and self.primary_of(m.view) != self.id:
            self._ignore("support_not_for_primary")
            return
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if sender in slot.shares:
            self._ignore("duplicate")
            return
        if slot.committed:
            return  # late support: the seq is already view-committed here
        if self.macs:
            share = b""  # the link's MAC authenticated it; nothing transferable to keep
        elif not self._verify_share(sender, m.view, m.seq, m.digest, m.share):
            self._ignore("bad_share")
            return
        else:
            share = m.share
        slot.shares[sender] = (m.digest, share)
        slot.counts[m.digest] = slot.counts.get(m.digest, 0) + 1
        self._check_slot(m.seq, slot, out)

    def _on_certify(self, sender: int, m: Certify, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        if self.macs:
            self._ignore("certify_with_macs")  # nobody signs shares: it cannot be valid
            return
        self._note_view(sender, m.view, out)
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if slot.committed or slot.cert is not None:
            self._ignore("duplicate")
            return
        if not self._valid_cert(m.view, m.seq, m.digest, m.cert):
            self._ignore("bad_certificate")
            return
        slot.cert, slot.cert_digest = m.cert, m.digest
        if slot.digest != m.digest:
            # We lack the certified batch (missed or conflicting PROPOSE): fetch it.
            slot.batch = slot.digest = None
            if self.t_fetch not in self.armed:
                self._arm_fetch_timer(out)
        self._check_slot(m.seq, slot, out)

    def _check_slot(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        """View-commit ``seq`` once we hold its batch and a certificate (or n−f shares)."""
        if slot.committed or slot.batch is None:
            return
        d = slot.digest
        assert d is not None
        cert = slot.cert if slot.cert_digest == d else None
        if cert is None:
            if slot.counts.get(d, 0) < self.quorum:
                return
            if not self.macs:
                shares = {r: s for r, (dd, s) in slot.shares.items() if dd == d}
                assert len(shares) >= self.quorum, "n−f distinct verified shares"
                cert = combine(shares, self.quorum)
                if self.id == self.primary:
                    out.append(Broadcast(Certify(self.view, seq, d, cert)))
        slot.committed = True
        slot.cert, slot.cert_digest = cert, d
        self._view_commit(seq, self.view, slot.batch, cert, out)

    def _view_commit(
        self, seq: int, view: int, batch: Batch, cert: Certificate | None, out: list[Action]
    ) -> None:
        """``batch`` is view-committed at ``seq``: keep the proof, execute it in order.

        At or below the stable checkpoint no proof is kept, but a replica behind it still
        executes the entry: a certificate of the current view agrees with the final state."""
        if seq > self.low:
            prev = self.evidence.get(seq)
            if prev is None or prev.view <= view:
                self.evidence[seq] = Committed(view, seq, batch, cert)
        if seq <= self.last_executed:
            old = self.log.get(seq)
            if old is not None and old[1].digest != batch.digest:
                self._ignore("certified_differs_from_executed")  # cannot happen in one view
            return
        self.ready[seq] = (view, batch)
        self._deliver_ready(out)
        if (
            self.ready
            and self.last_executed + 1 not in self.ready
            and self.t_fetch not in self.armed
        ):
            self._arm_fetch_timer(out)

    def _deliver_ready(self, out: list[Action]) -> None:
        ready = self.ready
        while True:
            seq = self.last_executed + 1
            if not self.reconciled and seq > self.verified_to:
                break
            entry = ready.pop(seq, None)
            if entry is None:
                break
            view, batch = entry
            self.last_executed = seq
            out.append(Deliver(seq, view, batch, speculative=True))
            self.log[seq] = entry
            self.log.pop(seq - self.history_len, None)
            self._mark_executed(seq, batch)
            if self.in_flight:
                for req in batch.requests:
                    self.in_flight.pop((req.client_id, req.timestamp), None)
            if self.waiting:
                self._waiting_done(batch, out)
            if self.view_state == ACTIVE_UNPROVEN and view == self.view:
                self._move(EXECUTED)
                self.backoff_exp = 0  # the view change succeeded: reset the doubling
        if self.t_final not in self.armed and self.last_executed > self.final_mark:
            self._arm_final_timer(out)

    def _arm_final_timer(self, out: list[Action]) -> None:
        self._final_probe_mark = (self.final_mark, self.last_executed)
        self._set_timer(self.t_final, self._timeout_ticks() << self._final_probe_exp, out)

    def _on_final_timer(self, out: list[Action]) -> None:
        """Executed entries are still not final a timeout later and nothing moved since: ask
        the others what is (f+1 final replies roll back what differs and bring in what we
        lack, and replies from a later view make us join it); the period doubles while
        nothing changes, and a replica that is executing never probes."""
        if self.last_executed <= self.final_mark:
            self._final_probe_exp = 0
            return
        if self.mode != ACTIVE:
            # a view change probes for finals itself (_probe_finals); one that completes
            # re-executes the unfinal suffix in the new view, which must stay unfinal here
            self._arm_final_timer(out)
            return
        if (self.final_mark, self.last_executed) != self._final_probe_mark:
            self._final_probe_exp = 0  # progress: executing, or entries becoming final
        else:
            self._probe_finals(out)
            self.final_probes += 1
            self._final_probe_exp = min(self._final_probe_exp + 1, MAX_FINAL_PROBE_DOUBLINGS)
        self._arm_final_timer(out)

    def _mark_executed(self, seq: int, batch: Batch) -> None:
        window = self.replay_window
        for req in batch.requests:
            recent = self.executed_ts.get(req.client_id)
            if recent is None:
                recent = self.executed_ts[req.client_id] = {}
            recent[req.timestamp] = seq
            if len(recent) > window:  # bounded: older timestamps fall below the floor
                oldest = next(iter(recent))
                del recent[oldest]
                if oldest > self.ts_floor.get(req.client_id, -1):
                    self.ts_floor[req.client_id] = oldest

    def _rollback_to(self, to_seq: int, out: list[Action]) -> None:
        """Undo executed entries above ``to_seq`` (never a final one)."""
        assert to_seq >= self.final_mark, "a final (stable, verified) entry is never rolled back"
        if to_seq >= self.last_executed:
            return
        out.append(Rollback(to_seq))
        self.rollbacks += 1
        for seq in range(to_seq + 1, self.last_executed + 1):
            entry = self.log.pop(seq, None)
            self.own_digest.pop(seq, None)
            if entry is None:
                continue
            self.rolled_back += 1
            for req in entry[1].requests:
                recent = self.executed_ts.get(req.client_id)
                if recent is not None:
                    recent.pop(req.timestamp, None)
        self.last_executed = to_seq
        self.verified_to = min(self.verified_to, to_seq)
