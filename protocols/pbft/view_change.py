"""PBFT view change (Castro & Liskov OSDI'99 §4.4 view changes, §4.5.2 liveness).

A replica waiting too long for a request sends VIEW-CHANGE for v+1 (stable checkpoint
proof + prepared certificates). The new primary, with ``view_change_quorum`` (2f+1) valid
view-changes, sends NEW-VIEW with a pre-prepare for every seq between the highest stable
checkpoint (min-s) and the highest prepared seq (max-s): the certificate's batch with the
highest view, else the null batch. Replicas recompute that set before entering the view.
Timeouts double on consecutive failed view changes; ``join_quorum`` (f+1) view-changes for
higher views make a replica join the smallest of them (§4.5.2). Additions over lossy links
(bounded): view-change retransmission while fewer than 2f+1 replicas change; a replica that
sees peers working in the view it waits for asks them for the NEW-VIEW (a signed NEW-VIEW
proves itself, any replica may hand it over).

The view states (NORMAL / VIEW_CHANGE / NEW_VIEW_UNPROVEN) are one table,
protocols/pbft/states.py; ``_move`` is the only writer of ``view_state``. With unsigned
votes the plan is decided from claims (pbft/mac_view_change.py). A mixin of ``Pbft``.
Must not live here: the normal case, the claims decision rule (protocols/claims.py), IO.
"""

from __future__ import annotations

import dataclasses

from protocols import base
from protocols.base import Action, Broadcast, Send
from protocols.claims import well_formed
from protocols.common import NULL_BATCH, Batch
from protocols.limits import ASKED_NEW_VIEW_PER_REPLICA, MAX_BACKOFF_EXP, MAX_NEW_VIEW_RESENDS
from protocols.pbft.messages import (
    NewView,
    PreparedCert,
    PrePrepare,
    PrePrepared,
    ViewChange,
    pre_prepare_payload,
    view_change_payload,
)
from protocols.pbft.normal import batch_is_valid
from protocols.pbft.states import (
    ENTER_VIEW,
    NORMAL,
    START_VIEW_CHANGE,
    TRANSITIONS,
    VIEW_CHANGE,
)
from protocols.view_states import step


class PbftViewChange:
    """VIEW-CHANGE / NEW-VIEW and the view-state table's one writer, ``_move``."""

    view_state: str

    @property
    def in_view_change(self) -> bool:
        """Sent VIEW-CHANGE for ``view`` and waiting for its NEW-VIEW (read-only: ``_move``)."""
        return self.view_state == VIEW_CHANGE

    def _move(self, event: str) -> None:
        """Take the view-state transition ``event`` (protocols/pbft/states.py); an illegal one
        raises AssertionError."""
        self.view_state = step(TRANSITIONS, self.view_state, event)

    def suspect_primary(self) -> list[Action]:
        """Start a view change to the next view now (RCC: this instance lags the others).

        Nothing while a view change is already under way (its own timer escalates it).
        """
        out: list[Action] = []
        if not self.in_view_change:
            self._start_view_change(self.view + 1, out)
        return out

    def _ask_for_new_view(self, sender: int, view: int, out: list[Action]) -> None:
        """``sender`` already works in ``view`` >= ours while we wait for its NEW-VIEW: we
        probably lost it, so send our VIEW-CHANGE to ``sender``, which answers with its
        NEW-VIEW (once per sender and view, bounded)."""
        own = self.vc_latest.get(self.id)
        key = (sender, view)
        if (
            own is None
            or key in self._asked_new_view
            or len(self._asked_new_view) >= ASKED_NEW_VIEW_PER_REPLICA * self.n
        ):
            return
        self._asked_new_view.add(key)
        out.append(Send(sender, own))

    def _start_view_change(self, new_view: int, out: list[Action]) -> None:
        assert new_view > self.view, "views only move forward"
        if self.view_state != NORMAL:  # the last view change has not been proven yet
            self.backoff_exp = min(self.backoff_exp + 1, MAX_BACKOFF_EXP)
        self.view_changes_started += 1
        self.view = new_view
        self._move(START_VIEW_CHANGE)
        self._asked_new_view = set()
        self._reasked = False
        self._cancel_request_timer(out)
        if self.t_progress in self.armed:
            self._cancel_timer(self.t_progress, out)
        self._max_accepted = 0
        self.slots.clear()  # stop taking part in the old view
        self.in_flight = {(r.client_id, r.timestamp): 0 for b in self.queue for r in b.requests}
        vc = self._make_view_change(new_view)
        self.vc_latest[self.id] = vc
        out.append(Broadcast(vc))
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.primary_of(new_view) == self.id:
            self._try_new_view(out)

    def _make_view_change(self, new_view: int) -> ViewChange:
        """Our view-change, always signed: with signed votes it carries certificates; with
        unsigned ones claims (a certificate's prepares would prove nothing) and what we
        pre-prepared (protocols/claims.py weighs them)."""
        low = self.low
        prepared = tuple(self.certs[s] for s in sorted(self.certs) if s > low)
        claims: tuple[PrePrepared, ...] = ()
        if not self.sign_votes:  # pbft/mac_view_change.py
            prepared, claims = self._claims(prepared)
        vc = ViewChange(
            self.instance, new_view, self.id, low, self.stable_proof, prepared, b"", claims
        )
        return dataclasses.replace(vc, signature=self.verifier.sign(view_change_payload(vc)))

    def _on_view_change_timer(self, out: list[Action]) -> None:
        if not self.in_view_change:
            return
        w = self.view
        have = sum(1 for vc in self.vc_latest.values() if vc.new_view >= w)
        if have >= self.view_change_quorum:
            own = self.vc_latest.get(self.id)
            working = sorted({s for s, m in self.held if m.view == w})
            if not self._reasked and own is not None and working:
                # Peers already work in view w: our NEW-VIEW was probably lost. Ask them once
                # more (bounded: once per view change) before giving up on this view.
                self._reasked = True
                for peer in working[: self.f + 1]:
                    out.append(Send(peer, own))
                self._set_timer(self.t_view_change, self._timeout_ticks(), out)
                return
            # 2f+1 moved to w (or beyond) but no valid NEW-VIEW came in time: next primary.
            self._start_view_change(w + 1, out)
        else:
            # Not enough replicas are changing yet: retransmit ours (messages may be lost).
            own = self.vc_latest.get(self.id)
            if own is not None and own.new_view == w:
                out.append(Broadcast(own))
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)

    def _on_view_change(self, sender: int, vc: ViewChange, out: list[Action]) -> None:
        if not self._from_member(sender, vc, others_only=True):
            return
        w = vc.new_view
        if w < self.view or (w == self.view and not self.in_view_change):
            # The sender is behind: it missed the NEW-VIEW of our view. A NEW-VIEW proves
            # itself, so hand ours over (at most MAX_NEW_VIEW_RESENDS per sender and view).
            nv = self.new_view_msg
            sent = self._new_view_resent.get(sender, 0)
            if not self.in_view_change and nv is not None and sent < MAX_NEW_VIEW_RESENDS:
                self._new_view_resent[sender] = sent + 1
                out.append(Send(sender, nv))
            else:
                self._ignore("old_view")
            return
        prev = self.vc_latest.get(sender)
        if prev is not None and prev.new_view >= w:
            self._ignore("duplicate")
            return
        if not self._valid_view_change(vc):
            self._ignore("invalid_view_change")
            return
        self.vc_latest[sender] = vc
        # §4.5.2: f+1 replicas ask for views above ours: join the smallest of them.
        higher = [
            x.new_view for r, x in self.vc_latest.items() if r != self.id and x.new_view > self.view
        ]
        if len(higher) >= self.join_quorum:
            self._start_view_change(min(higher), out)
            return
        if w == self.view and self.in_view_change and self.primary_of(w) == self.id:
            self._try_new_view(out)

    def _valid_cert(self, cert: PreparedCert) -> bool:
        pp = cert.pre_prepare
        d = pp.batch.digest
        primary = self.primary_of(pp.view)
        if not self._valid_pre_prepare_signature(pp) or not batch_is_valid(pp.batch):
            return False
        seen: set[int] = set()
        for p in cert.prepares:
            if (
                p.instance != self.instance
                or p.view != pp.view
                or p.seq != pp.seq
                or p.digest != d
                or p.replica == primary
                or not 0 <= p.replica < self.n
                or p.replica in seen
                or not self._valid_prepare_signature(p)
            ):
                return False
            seen.add(p.replica)
        return len(seen) >= self.prepare_quorum

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """Shape, proofs and signature of a view-change (§4.4)."""
        if vc.instance != self.instance or not 0 <= vc.replica < self.n or vc.new_view < 1:
            return False
        stable = vc.stable_seq
        if not self._valid_stable_claim(stable, vc.checkpoint_proof):
            return False
        seqs: set[int] = set()
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if (
                pp.instance != self.instance
                or not stable < pp.seq <= stable + self.window
                or pp.seq in seqs
                or not 0 <= pp.view < vc.new_view
            ):
                return False
            if self.sign_votes and not self._valid_cert(cert):
                return False
            if not self.sign_votes and (cert.prepares or not batch_is_valid(pp.batch)):
                return False  # a claim: the batch, no (meaningless unsigned) prepares
            seqs.add(pp.seq)
        if vc.pre_prepared and (
            self.sign_votes or not well_formed(vc.pre_prepared, stable, self.window, vc.new_view)
        ):
            return False
        try:
            payload = view_change_payload(vc)
        except Exception:  # an unencodable value cannot carry a valid signature
            return False
        return bool(self.verifier.verify(vc.replica, payload, vc.signature))

    def _new_view_plan(
        self, view_changes: tuple[ViewChange, ...]
    ) -> tuple[ViewChange, list[tuple[int, Batch]]] | None:
        """(the view-change holding min-s, [(seq, batch) for min-s < seq <= max-s]) (§4.4);
        with unsigned votes decided from claims, None while a seq is undecided."""
        stable_vc = max(view_changes, key=lambda vc: (vc.stable_seq, -vc.replica))
        min_s = stable_vc.stable_seq
        if not self.sign_votes:
            decided = self._plan_from_claims(view_changes, min_s)
            return None if decided is None else (stable_vc, decided)
        best: dict[int, PrePrepare] = {}
        for vc in view_changes:
            for cert in vc.prepared:
                pp = cert.pre_prepare
                if pp.seq <= min_s:
                    continue
                cur = best.get(pp.seq)
                if cur is None or (pp.view, pp.batch.digest) > (cur.view, cur.batch.digest):
                    best[pp.seq] = pp
        max_s = max(best, default=min_s)
        assert max_s - min_s <= self.window, "re-proposals stay within one window"
        plan = [
            (s, best[s].batch if s in best else NULL_BATCH) for s in range(min_s + 1, max_s + 1)
        ]
        return stable_vc, plan

    def _try_new_view(self, out: list[Action]) -> None:
        w = self.view
        size = self.view_change_quorum
        if not self.sign_votes:  # every view-change we hold for w: each seq must be decided
            size = self._claims_size()
        chosen = self._new_view_set(size)
        if chosen is None:
            return
        planned = self._new_view_plan(chosen)
        if planned is None:
            return  # unsigned votes: a seq is undecided; the next view-change may decide it
        stable_vc, plan = planned
        pps = tuple(self._make_pre_prepare(w, s, batch) for s, batch in plan)
        nv = NewView(self.instance, w, chosen, pps)
        out.append(Broadcast(nv))
        self._enter_view(nv, stable_vc, out)

    def _on_new_view(self, sender: int, nv: NewView, out: list[Action]) -> None:
        if nv.instance != self.instance:
            self._ignore("wrong_instance")
            return
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        w = nv.view
        if w < self.view or (w == self.view and not self.in_view_change) or w < 1:
            self._ignore("old_view")
            return
        # A signed NEW-VIEW proves itself, so any replica may relay it; unsigned only the primary.
        if not self.sign_votes and sender != self.primary_of(w):
            self._ignore("new_view_not_from_primary")
            return
        stable_vc = self._validate_new_view(nv)
        if stable_vc is None:
            self._ignore("invalid_new_view")
            return
        self._enter_view(nv, stable_vc, out)

    def _validate_new_view(self, nv: NewView) -> ViewChange | None:
        """Recompute the NEW-VIEW's pre-prepares from its view-changes; None if it differs."""
        w = nv.view
        seen: set[int] = set()
        for vc in nv.view_changes:
            if vc.new_view != w or vc.replica in seen:
                return None
            if self.vc_latest.get(vc.replica) != vc and not self._valid_view_change(vc):
                return None
            seen.add(vc.replica)
        if len(seen) < self.view_change_quorum:
            return None
        planned = self._new_view_plan(nv.view_changes)
        if planned is None:
            return None
        stable_vc, plan = planned
        if len(plan) != len(nv.pre_prepares):
            return None
        primary = self.primary_of(w)
        for pp, (seq, batch) in zip(nv.pre_prepares, plan, strict=True):
            if pp.instance != self.instance or pp.view != w or pp.seq != seq or pp.batch != batch:
                return None
            if self.sign_votes and not self._verify(
                primary,
                pre_prepare_payload,
                pp.instance,
                w,
                seq,
                batch.digest,
                signature=pp.signature,
            ):
                return None
        return stable_vc

    def _enter_view(self, nv: NewView, stable_vc: ViewChange, out: list[Action]) -> None:
        w = nv.view
        was_changing = self.in_view_change
        self.view = w
        self._move(ENTER_VIEW)
        self.new_view_msg = nv
        self._new_view_resent = {}
        self._cancel_timer(self.t_view_change, out)
        for r in [r for r, vc in self.vc_latest.items() if vc.new_view <= w]:
            del self.vc_latest[r]
        if not was_changing:
            self._cancel_request_timer(out)
        if self.t_progress in self.armed:
            self._cancel_timer(self.t_progress, out)
        self._max_accepted = 0
        self.slots = {}
        if stable_vc.stable_seq > self.low:
            cp = stable_vc.checkpoint_proof
            self._make_stable(stable_vc.stable_seq, cp[0].state_digest, cp, out, replay=False)
        max_s = nv.pre_prepares[-1].seq if nv.pre_prepares else stable_vc.stable_seq
        self.last_assigned = max(max_s, self.low)
        is_primary = self.primary_of(w) == self.id
        if not is_primary:
            self.in_flight = {}
        for pp in nv.pre_prepares:
            if self.low < pp.seq <= self.high:
                self._accept_pre_prepare(pp, self._slot(pp.seq), out)
        out.append(base.ViewEntered(w, self.primary_of(w)))
        self._resume_requests(w, out)  # waiting requests: proposed, or sent to the primary
        self._replay_held(out)
        if self.last_delivered < self._fetch_target():
            self._fetch_now(out)
