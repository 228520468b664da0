"""Zyzzyva's view change as published (Kotla et al., SOSP'07 §3.5; TOCS'09 §3.5), and the
rule that makes it unsafe (Abraham, Gueta, Malkhi, Alvisi, Kotla, Martin, "Revisiting Fast
Practical Byzantine Fault Tolerance", 2017).

1. A replica that suspects the primary of view v (request timer, fill-hole unanswered, an
   ORDER-REQ that contradicts its history) broadcasts I-HATE-THE-PRIMARY(v).
2. f+1 I-HATEs for v commit a replica to the view change: it stops taking part in view v,
   sends its own I-HATE (so the others reach f+1) and broadcasts VIEW-CHANGE(v+1) with its
   stable checkpoint and proof, its highest commit certificate with the ORDER-REQ at that
   seq, and its ORDER-REQs after the checkpoint; it times the new view (doubling on each
   failure: then it changes to v+2).
3. The primary of v+1, holding 2f+1 valid VIEW-CHANGEs (its own and the first 2f to arrive),
   computes the new history (``new_view_history``) and broadcasts NEW-VIEW with them and its
   ORDER-REQs (view v+1) for that history; every replica recomputes the history from the
   same VIEW-CHANGEs, checks the ORDER-REQs against it, rolls back its speculative history to
   where the two agree, executes the rest and enters v+1.

The history rule, as published: start at the highest stable checkpoint; the commit
certificate with the highest seq fixes the history up to it; after it, a seq takes the batch
that at least f+1 VIEW-CHANGEs hold there, up to the first seq where none does. It weighs
a certificate by its seq alone, not by its view: a certificate of view v for seq n beats
the 3f+1 speculative replies a client accepted for another batch at n in a later view,
because those leave no certificate and (with one Byzantine replica that held back its
history from an earlier view change) only f+1 of 2f+1 VIEW-CHANGEs show them. That is the
counter-example of Abraham et al.; tests/protocol/test_zyzzyva_unsafe.py replays it in the
simulator, which flags the lost result.

Must not live here: the normal case (normal.py), state and quorums (replica.py), IO.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from protocols.base import Action, Broadcast, Rollback, ViewEntered
from protocols.common import NULL_BATCH, Batch, batch_is_valid
from protocols.limits import MAX_BACKOFF_EXP
from protocols.zyzzyva.messages import (
    IHatePrimary,
    NewView,
    OrderReq,
    ViewChange,
    extend_history,
    order_payload,
    view_change_payload,
)


def new_view_history(vcs: tuple[ViewChange, ...], f: int) -> tuple[int, list[Batch]]:
    """The history a NEW-VIEW of ``vcs`` (2f+1 valid VIEW-CHANGEs) determines: the seq it
    starts after (the highest stable checkpoint) and its batches from there on."""
    start = max(vc.stable_seq for vc in vcs)
    held: dict[int, list[Batch]] = {}  # seq -> the batch each VIEW-CHANGE holds there
    for vc in vcs:
        for order in vc.history:
            if order.seq > start:
                held.setdefault(order.seq, []).append(order.batch)
    best = None  # the certificate with the highest seq (its view does not count)
    for vc in vcs:
        cc = vc.cc
        if cc is not None and cc.seq > start and (best is None or cc.seq > best.cc.seq):  # type: ignore[union-attr]
            best = vc
    batches: dict[int, Batch] = {}
    end = start
    if best is not None:
        cc = best.cc
        assert cc is not None and best.cc_order is not None
        # the prefix up to the certificate: a VIEW-CHANGE whose history reaches it
        prefix = next(
            (
                vc
                for vc in vcs
                if any(o.seq == cc.seq and o.history == cc.history for o in vc.history)
            ),
            None,
        )
        for seq in range(start + 1, cc.seq):
            if prefix is not None:
                batch = next((o.batch for o in prefix.history if o.seq == seq), None)
            else:
                batch = _held_by_quorum(held.get(seq, []), f)
            batches[seq] = batch if batch is not None else NULL_BATCH
        batches[cc.seq] = best.cc_order.batch
        end = cc.seq
    seq = end + 1
    while True:  # after the certificate: what f+1 VIEW-CHANGEs hold, up to the first gap
        batch = _held_by_quorum(held.get(seq, []), f)
        if batch is None:
            break
        batches[seq] = batch
        end = seq
        seq += 1
    return start, [batches[s] for s in range(start + 1, end + 1)]


def _held_by_quorum(batches: list[Batch], f: int) -> Batch | None:
    """The batch at least f+1 of ``batches`` agree on (at most one can, of 2f+1)."""
    counts: dict[bytes, int] = {}
    for b in batches:
        counts[b.digest] = counts.get(b.digest, 0) + 1
        if counts[b.digest] >= f + 1:
            return b
    return None


class ZyzzyvaViewChange:
    """The view change of one Zyzzyva replica (a mixin of ``Zyzzyva``; state in replica.py)."""

    def _new_view_history(self: Any, vcs: tuple[ViewChange, ...]) -> tuple[int, list[Batch]]:
        """The published rule (``new_view_history``); a test may swap in another."""
        return new_view_history(vcs, self.f)

    # --- 1, 2: suspicion and commitment ------------------------------------------------

    def _suspect(self: Any, out: list[Action]) -> None:
        """We suspect the primary of the current view: I-HATE-THE-PRIMARY to everyone."""
        if self.in_vc:
            return
        haters = self.haters.setdefault(self.view, set())
        if self.id not in haters:
            haters.add(self.id)
            self.suspicions += 1
            out.append(Broadcast(IHatePrimary(self.view, self.id)))
        self._check_haters(out)

    def _on_request_timer(self: Any, out: list[Action]) -> None:
        self._purge_waiting()
        if self.waiting:
            self._suspect(out)

    def _on_i_hate(self: Any, sender: int, msg: IHatePrimary, out: list[Action]) -> None:
        if sender != msg.replica or not 0 <= sender < self.n:
            self._ignore("i_hate_wrong_replica")
            return
        if msg.view != self.view:
            self._ignore("i_hate_other_view")
            return
        self.haters.setdefault(msg.view, set()).add(sender)
        self._check_haters(out)

    def _check_haters(self: Any, out: list[Action]) -> None:
        if not self.in_vc and len(self.haters.get(self.view, ())) >= self.f + 1:
            self._start_view_change(self.view + 1, out)

    def _start_view_change(self: Any, target: int, out: list[Action]) -> None:
        """Commit to the view change to ``target``: stop the view, send VIEW-CHANGE."""
        if self.id not in self.haters.setdefault(target - 1, set()):
            self.haters[target - 1].add(self.id)
            out.append(Broadcast(IHatePrimary(target - 1, self.id)))
        self.in_vc = True
        self.vc_target = target
        self.view_changes_started += 1
        for timer in (self.t_request, self.t_fill):
            if timer in self.armed:
                self._cancel_timer(timer, out)
        self.future.clear()
        vc = ViewChange(
            new_view=target,
            replica=self.id,
            stable_seq=self.low,
            stable_proof=self.stable_proof,
            cc=self.max_cc,
            cc_order=self.max_cc_order,
            history=tuple(self.log[s] for s in sorted(self.log)),
            signature=b"",
        )
        vc = replace(vc, signature=self.verifier.sign(view_change_payload(vc)))
        self.vc_latest = {r: v for r, v in self.vc_latest.items() if v.new_view >= target}
        self.vc_latest[self.id] = vc
        out.append(Broadcast(vc))
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        self._try_new_view(out)

    def _on_view_change_timer(self: Any, out: list[Action]) -> None:
        """No NEW-VIEW in time: change to the next view (timeout doubled)."""
        if not self.in_vc:
            return
        self.backoff_exp = min(self.backoff_exp + 1, MAX_BACKOFF_EXP)
        self._start_view_change(self.vc_target + 1, out)

    # --- 2, 3: VIEW-CHANGE, NEW-VIEW ---------------------------------------------------

    def _valid_view_change(self: Any, vc: ViewChange) -> bool:
        if not 0 <= vc.replica < self.n or len(vc.history) > self.max_history:
            return False
        try:
            payload = view_change_payload(vc)
        except Exception:
            return False
        if not self.verifier.verify(vc.replica, payload, vc.signature):
            return False
        if not self._valid_stable_claim(vc.stable_seq, vc.stable_proof):
            return False
        prev = None
        for i, order in enumerate(vc.history):
            if order.seq != vc.stable_seq + 1 + i or order.view >= vc.new_view:
                return False
            if prev is not None and order.history != extend_history(
                prev.history, order.batch.digest
            ):
                return False
            if not self._valid_order(order):
                return False
            prev = order
        if (vc.cc is None) != (vc.cc_order is None):
            return False
        if vc.cc is not None:
            cc, order = vc.cc, vc.cc_order
            assert order is not None
            if (order.view, order.seq, order.history) != (cc.view, cc.seq, cc.history):
                return False
            if cc.view >= vc.new_view or not self._valid_order(order):
                return False
            if not self._valid_cert(cc):
                return False
        return True

    def _on_view_change(self: Any, sender: int, vc: ViewChange, out: list[Action]) -> None:
        if sender != vc.replica or sender == self.id:
            self._ignore("view_change_wrong_replica")
            return
        if vc.new_view <= self.view:
            self._ignore("view_change_old")
            return
        known = self.vc_latest.get(sender)
        if known is not None and known.new_view >= vc.new_view:
            self._ignore("duplicate")
            return
        if not self._valid_view_change(vc):
            self._ignore("view_change_invalid")
            return
        self.vc_latest[sender] = vc
        self._try_new_view(out)

    def _try_new_view(self: Any, out: list[Action]) -> None:
        """New primary: NEW-VIEW once it holds its own VIEW-CHANGE and 2f others (in the
        order they arrived)."""
        target = self.vc_target
        if not self.in_vc or self.primary_of(target) != self.id or self.nv_sent >= target:
            return
        mine = self.vc_latest.get(self.id)
        if mine is None or mine.new_view != target:
            return
        others = [vc for r, vc in self.vc_latest.items() if r != self.id and vc.new_view == target]
        if 1 + len(others) < self.vc_quorum:
            return
        proofs = (mine, *others[: self.vc_quorum - 1])
        start, batches = self._new_view_history(proofs)
        if start > self.max_n:
            self._ignore("new_view_behind_stable")  # we cannot sign a history we lack
            return
        history = self.history_low if start == self.low else self.history_at.get(start)
        if history is None:
            self._ignore("new_view_unknown_base")
            return
        orders = []
        for i, batch in enumerate(batches):
            seq = start + 1 + i
            history = extend_history(history, batch.digest)
            sig = self.verifier.sign(order_payload(target, seq, history, batch.digest))
            orders.append(OrderReq(target, seq, history, batch, sig))
        nv = NewView(target, self.id, proofs, start, tuple(orders))
        self.nv_sent = target
        out.append(Broadcast(nv))
        self._enter_view(nv, out)

    def _on_new_view(self: Any, sender: int, nv: NewView, out: list[Action]) -> None:
        if sender != nv.replica or sender != self.primary_of(nv.view) or sender == self.id:
            self._ignore("new_view_wrong_primary")
            return
        if nv.view <= self.view:
            self._ignore("new_view_old")
            return
        replicas = {vc.replica for vc in nv.proofs}
        if len(nv.orders) > self.max_history:
            self._ignore("new_view_too_long")
            return
        if len(nv.proofs) != self.vc_quorum or len(replicas) != self.vc_quorum:
            self._ignore("new_view_bad_quorum")
            return
        for vc in nv.proofs:
            if vc.new_view != nv.view or not self._valid_view_change(vc):
                self._ignore("new_view_bad_proof")
                return
        start, batches = self._new_view_history(nv.proofs)
        if start != nv.start_seq or len(nv.orders) != len(batches):
            self._ignore("new_view_wrong_history")
            return
        prev = None
        for i, (order, batch) in enumerate(zip(nv.orders, batches, strict=True)):
            if (
                order.view != nv.view
                or order.seq != start + 1 + i
                or order.batch.digest != batch.digest
                or not batch_is_valid(order.batch)
                or (prev is not None and order.history != extend_history(prev, batch.digest))
                or not self._valid_order(order)
            ):
                self._ignore("new_view_wrong_history")
                return
            prev = order.history
        self._enter_view(nv, out)

    def _enter_view(self: Any, nv: NewView, out: list[Action]) -> None:
        """Roll back to the new view's start and execute its history in the new view."""
        start = nv.start_seq
        view = nv.view
        self.view = view
        self.in_vc = False
        self.backoff_exp = 0
        self.haters = {v: h for v, h in self.haters.items() if v >= view}
        self.vc_latest = {r: vc for r, vc in self.vc_latest.items() if vc.new_view > view}
        self.future.clear()
        if self.t_view_change in self.armed:
            self._cancel_timer(self.t_view_change, out)
        out.append(ViewEntered(view, self.primary))
        if start > self.max_n or start < self.low:
            self._ignore("new_view_behind_stable")  # no state transfer here
            self.behind = True
        else:
            # Everything after the start is rolled back and executed again in the new view,
            # the same batches too: SPEC-RESPONSEs match on the view, and a client holding
            # old-view replies from some replicas and new-view ones from others would match
            # neither quorum.
            keep = start
            if keep < self.max_n:
                if keep < self.low:
                    self._ignore("new_view_below_stable")
                    keep = self.low
                out.append(Rollback(keep))
                self.rolled_back += self.max_n - keep
                for s in range(keep + 1, self.max_n + 1):
                    order = self.log.pop(s, None)
                    self.history_at.pop(s, None)
                    if order is not None:
                        self._forget_ordered(order.batch)
                self.max_n = keep
                self.history = self.history_low if keep == self.low else self.history_at[keep]
            for order in nv.orders:
                if order.seq > self.max_n:
                    if order.history != extend_history(self.history, order.batch.digest):
                        self._ignore("new_view_history_mismatch")
                        break
                    self._execute(order, out)
        self.last_assigned = max(self.max_n, self.low)
        self._resume_requests(view, out)
        self._replay_held(out)


__all__ = ["ZyzzyvaViewChange", "new_view_history"]
