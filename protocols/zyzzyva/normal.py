"""Zyzzyva's agreement protocol (Kotla et al., SOSP'07 §3.2 and §3.3): ordering, speculative
execution, the commit certificate, fill-hole, checkpoints.

§3.2, the normal case: the primary gives a client batch the next seq n, extends the history
digest h_n = H(h_{n-1}, d) and sends a signed ORDER-REQ ⟨v, n, h_n, d⟩ with the batch to
every replica; a replica accepts it when n is its next seq and h_n extends its own history,
and executes it at once, speculatively (``Deliver(speculative=True)``, with h_n and its
signature over (v, n, h_n): its SPEC-RESPONSE is the execute stage's Reply). The client
completes on 3f+1 matching speculative replies (fast path); on 2f+1 it sends a COMMIT with
the commit certificate, and replicas whose history at n matches keep it as their highest CC
and answer LOCAL-COMMIT (slow path; ``ReplyRule.commit_quorum``).

§3.3 (a faulty primary): a replica that receives ORDER-REQ n' > its next seq keeps it and
sends FILL-HOLE to the primary; unanswered, to every replica (who answer with the signed
ORDER-REQs they hold); still unanswered, it suspects the primary (view_change.py). A client
re-sending its request to every replica makes a replica that has not ordered it forward it
to the primary and time it (ReplicaCore's waiting requests): on expiry it suspects too.

Checkpoints (§3.4): every ``checkpoint_period`` seqs the replica signs its state digest; 2f+1
matching votes make it stable (protocols/checkpoints.py, as PBFT's) and the log below it is
dropped. A stable checkpoint is the only point at which speculative entries become final.

Must not live here: the view change (view_change.py), state and quorums (replica.py), IO.
"""

from __future__ import annotations

from typing import Any

from protocols.base import Action, Broadcast, Deliver, Send, StableCheckpoint
from protocols.checkpoints import Checkpoint
from protocols.common import Batch, Reply, Request, batch_is_valid
from protocols.zyzzyva.messages import (
    Commit,
    CommitCert,
    FillHole,
    OrderReq,
    extend_history,
    order_payload,
    spec_payload,
)

#: fill-hole stages: asked the primary, then every replica, then suspect the primary
FILL_ASKED_PRIMARY, FILL_ASKED_ALL = 1, 2


class ZyzzyvaNormalCase:
    """The normal case of one Zyzzyva replica (a mixin of ``Zyzzyva``; state in replica.py)."""

    # --- requests ---------------------------------------------------------------------

    def _on_request(self: Any, sender: int, req: Request, out: list[Action]) -> None:
        """A client's request (re-sent to every replica, §3.3): order it (primary) or pass
        it to the primary and time it (backup); executed ones are answered by the runtime."""
        if sender >= self.n and sender != req.client_id:  # (a replica may forward it)
            self._ignore("request_wrong_client")
            return
        key = (req.client_id, req.timestamp)
        if self._request_done(req.client_id, req.timestamp):
            seq = self.ordered_ts.get(req.client_id, {}).get(req.timestamp)
            order = self.log.get(seq) if seq is not None else None
            if 0 <= sender < self.n and order is not None and order.view == self.view:
                # §3.3: a replica forwards a request the primary ordered already: it missed
                # the ORDER-REQ, which the primary sends it again (a gap then fills)
                out.append(Send(sender, order))
                self._ignore("request_ordered_resent")
                return
            self._ignore("request_executed")
            return
        if self._request_pending(key):
            return
        if not self.verifier.verify_request(req):
            self._ignore("bad_request_signature")
            return
        self._take_request(sender, key, req, out)

    def _request_done(self, client_id: int, timestamp: int) -> bool:
        seen = self.ordered_ts.get(client_id)
        if seen is not None and timestamp in seen:
            return True
        return timestamp <= self.ts_floor.get(client_id, 0)

    def _remember_ordered(self: Any, batch: Batch, seq: int) -> None:
        for req in batch.requests:
            seen = self.ordered_ts.setdefault(req.client_id, {})
            seen[req.timestamp] = seq
            if len(seen) > self.replay_window:
                ts = next(iter(seen))
                del seen[ts]
                self.ts_floor[req.client_id] = max(self.ts_floor.get(req.client_id, 0), ts)
            self.in_flight.pop((req.client_id, req.timestamp), None)

    def _forget_ordered(self: Any, batch: Batch) -> None:
        for req in batch.requests:
            seen = self.ordered_ts.get(req.client_id)
            if seen is not None:
                seen.pop(req.timestamp, None)

    # --- §3.2: ordering and speculative execution ----------------------------------------

    def _send_proposal(self: Any, batch: Batch, out: list[Action]) -> None:
        """Primary: ORDER-REQ for the next seq, to every replica; execute it here too."""
        seq = self.last_assigned + 1
        history = extend_history(self.history, batch.digest)
        sig = self.verifier.sign(order_payload(self.view, seq, history, batch.digest))
        order = OrderReq(self.view, seq, history, batch, sig)
        self.last_assigned = seq
        out.append(Broadcast(order))
        self._execute(order, out)

    def _on_order_req(self: Any, sender: int, order: OrderReq, out: list[Action]) -> None:
        if self.in_vc and order.view <= self.view:
            self._ignore("order_req_in_view_change")
            return
        if order.view != self.view:
            if order.view > self.view:
                self._hold(sender, order)
            else:
                self._ignore("order_req_old_view")
            return
        if sender != self.primary and not self._valid_order(order):
            self._ignore("order_req_bad_signature")  # a fill-hole answer must be signed
            return
        if sender == self.id:
            return
        seq = order.seq
        if seq <= self.max_n:
            mine = self.log.get(seq)
            if mine is not None and mine.history != order.history and sender == self.primary:
                # two ORDER-REQs for one seq from the primary: proof of misbehaviour
                self._ignore("order_req_conflict")
                self._suspect(out)
            else:
                self._ignore("order_req_duplicate")
            return
        if seq > self.high:
            self._hold(sender, order)
            return
        if not batch_is_valid(order.batch):
            self._ignore("order_req_bad_batch")
            return
        if seq > self.max_n + 1:  # §3.3: a hole before it
            if len(self.future) < self.max_future and seq not in self.future:
                self.future[seq] = order
            self._ask_fill(out)
            return
        self._accept_next(order, out)

    def _accept_next(self: Any, order: OrderReq, out: list[Action]) -> None:
        """ORDER-REQ for max_n + 1: accept it if its history extends ours, then any held
        ones that follow it."""
        while True:
            if order.history != extend_history(self.history, order.batch.digest):
                self._ignore("order_req_history_mismatch")
                self._suspect(out)
                return
            if not all(self.verifier.verify_request(r) for r in order.batch.requests):
                self._ignore("order_req_bad_request")
                self._suspect(out)
                return
            self._execute(order, out)
            nxt = self.future.pop(self.max_n + 1, None)
            if nxt is None:
                break
            order = nxt
        for s in [s for s in self.future if s <= self.max_n]:
            del self.future[s]
        if not self.future and self.t_fill in self.armed:
            self._cancel_timer(self.t_fill, out)
            self.fill_stage = 0

    def _execute(self: Any, order: OrderReq, out: list[Action]) -> None:
        """Append ``order`` to the history and execute it speculatively (SPEC-RESPONSE)."""
        seq = order.seq
        self.log[seq] = order
        self.max_n = seq
        self.history = order.history
        self.history_at[seq] = order.history
        self.last_assigned = max(self.last_assigned, seq)
        self._remember_ordered(order.batch, seq)
        sig = self.verifier.sign(spec_payload(self.view, seq, order.history))
        out.append(Deliver(seq, self.view, order.batch, True, order.history, sig))
        self._waiting_done(order.batch, out)

    def _valid_order(self: Any, order: OrderReq) -> bool:
        """The ORDER-REQ carries the signature of its view's primary (and a valid batch)."""
        try:
            payload = order_payload(order.view, order.seq, order.history, order.batch.digest)
        except Exception:  # absurd ints cannot carry a valid signature
            return False
        return batch_is_valid(order.batch) and bool(
            self.verifier.verify(self.primary_of(order.view), payload, order.signature)
        )

    # --- §3.3: fill-hole ---------------------------------------------------------------

    def _ask_fill(self: Any, out: list[Action]) -> None:
        if self.t_fill in self.armed:
            return
        last = min(self.future) - 1 if self.future else self.max_n + 1
        out.append(Send(self.primary, FillHole(self.view, self.max_n + 1, last, self.id)))
        self.fill_stage = FILL_ASKED_PRIMARY
        self._set_timer(self.t_fill, self._timeout_ticks(), out)

    def _on_fill_timer(self: Any, out: list[Action]) -> None:
        if not self.future or self.in_vc:
            self.fill_stage = 0
            return
        if self.fill_stage == FILL_ASKED_PRIMARY:
            last = min(self.future) - 1
            out.append(Broadcast(FillHole(self.view, self.max_n + 1, last, self.id)))
            self.fill_stage = FILL_ASKED_ALL
            self._set_timer(self.t_fill, self._timeout_ticks(), out)
            return
        self.fill_stage = 0
        self._suspect(out)

    def _on_fill_hole(self: Any, sender: int, msg: FillHole, out: list[Action]) -> None:
        if sender != msg.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("fill_hole_wrong_replica")
            return
        if msg.view != self.view or msg.first_seq > msg.last_seq:
            self._ignore("fill_hole_stale")
            return
        last = min(msg.last_seq, msg.first_seq + self.fill_span - 1, self.max_n)
        for seq in range(max(msg.first_seq, self.low + 1), last + 1):
            order = self.log.get(seq)
            if order is not None and order.view == self.view:
                out.append(Send(sender, order))

    # --- §3.2: commit certificates (the slow path) -------------------------------------

    def _valid_cert(self: Any, cc: CommitCert) -> bool:
        """2f+1 distinct replicas signed spec_payload(view, seq, history)."""
        # exactly 2f+1 distinct signers: a longer list would only cost more checks
        if len(cc.signers) != self.cc_quorum or len(cc.signatures) != self.cc_quorum:
            return False
        if len(set(cc.signers)) != self.cc_quorum:
            return False
        if any(not 0 <= r < self.n for r in cc.signers):
            return False
        key = (cc.view, cc.seq, cc.history, cc.signers, cc.signatures)
        if key in self.certs_checked:
            return True
        try:
            payload = spec_payload(cc.view, cc.seq, cc.history)
        except Exception:
            return False
        for signer, sig in zip(cc.signers, cc.signatures, strict=True):
            if not self.verifier.verify(signer, payload, sig):
                return False
        if len(self.certs_checked) >= self.max_checked_certs:
            self.certs_checked.pop(next(iter(self.certs_checked)))
        self.certs_checked[key] = None
        return True

    def _on_commit(self: Any, sender: int, msg: Commit, out: list[Action]) -> None:
        """COMMIT from a client: a valid CC for our own history at its seq becomes our
        highest CC, and we answer LOCAL-COMMIT."""
        cc = msg.cert
        if sender < self.n or msg.client_id != sender:
            self._ignore("commit_wrong_client")
            return
        if not self._valid_cert(cc):
            self._ignore("commit_bad_cert")
            return
        if cc.seq > self.max_n:
            self._ignore("commit_ahead")
            return
        if self.history_at.get(cc.seq) != cc.history:
            self._ignore("commit_other_history")
            return
        if cc.seq > self.low and (self.max_cc is None or cc.seq > self.max_cc.seq):
            self.max_cc = cc
            self.max_cc_order = self.log[cc.seq]
        ack = Reply(
            cc.view, cc.seq, self.id, msg.client_id, msg.timestamp, msg.result, False, cc.history
        )
        out.append(Send(sender, ack))

    # --- §3.4: checkpoints ------------------------------------------------------------

    def executed(self: Any, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        if seq % self.period or seq <= self.low:
            return out
        self._cast_checkpoint(seq, state_digest, out)
        return out

    def _make_stable(
        self: Any,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        if seq <= self.low:
            return
        if seq > self.max_n:
            self._ignore("stable_ahead")  # no state transfer: we cannot jump to it
            return
        self.history_low = self.history_at[seq]
        self._move_watermarks(seq, digest, proof, (self.log,))
        # h_seq stays known a window below the checkpoint: a late COMMIT is still answered
        for s in [s for s in self.history_at if s <= seq - self.window]:
            del self.history_at[s]
        if self.max_cc is not None and self.max_cc.seq <= seq:
            self.max_cc = self.max_cc_order = None
        out.append(StableCheckpoint(seq, digest, proof))
        self._drain_queue(out)
        if replay:
            self._replay_held(out)


__all__ = ["ZyzzyvaNormalCase"]
