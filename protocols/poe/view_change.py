"""PoE view change, first half (Gupta et al., EDBT'21 §4): VC-REQUEST, the plan, NV-PROPOSE.

A backup whose forwarded request is not executed in time sends VC-REQUEST(v+1) with its
stable checkpoint proof and, per seq above it, the highest-view certificate it holds; f+1
replicas speaking from a later view make a replica join it. The new primary, with n−f of
them, sends NV-PROPOSE. Every replica recomputes the new view's *plan* from it
(``make_plan``): the highest stable checkpoint h, then for each seq in (h, h + window] the
batch with the highest-view certificate in the set, else the null batch. Accepting it starts
the plan lock (poe/new_view.py). With ``poe_certificate: macs`` the plan is decided from
claims (poe/mac_view_change.py).

The view states (ACTIVE / ACTIVE_UNPROVEN / VIEW_CHANGE / NV_PENDING) are one table,
protocols/poe/states.py; ``_move`` is the only writer of ``view_state``. A mixin of ``Poe``.
Must not live here: the plan lock and entering the view (poe/new_view.py), IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.base import (
    Action,
    Broadcast,
    Send,
)
from protocols.checkpoints import Checkpoint
from protocols.claims import well_formed
from protocols.common import NULL_BATCH, Batch, batch_is_valid
from protocols.limits import (
    MAX_BACKOFF_EXP,
    MAX_NV_RETRIES,
)
from protocols.poe.messages import (
    Committed,
    Fetch,
    NvCommit,
    NvPropose,
    NvSupport,
    Supported,
    VcRequest,
    plan_digest,
    vc_request_payload,
)
from protocols.poe.states import (
    ACCEPT_NV,
    ACTIVE,
    LEAVE_VIEW,
    MODE_OF,
    NV_PENDING,
    TRANSITIONS,
    VIEW_CHANGE,
)
from protocols.view_states import step


@dataclass(frozen=True, slots=True)
class Plan:
    """The new view's plan, recomputed by every replica from the NV-PROPOSE."""

    view: int
    base: int  # highest stable checkpoint among the VC-REQUESTs
    base_digest: bytes
    proof: tuple[Checkpoint, ...]
    batches: tuple[Batch, ...]  # seqs base+1 .. base+len
    digest: bytes  # plan_digest(view, base, digests)

    @property
    def end(self) -> int:
        return self.base + len(self.batches)


class PoeViewChange:
    """VC-REQUEST, the plan, NV-PROPOSE (§4), and the view-state table's one writer."""

    view_state: str

    @property
    def mode(self) -> str:
        """active / view_change / nv_pending: the coarse view state (poe/states.py MODE_OF)."""
        return MODE_OF[self.view_state]

    def _move(self, event: str) -> None:
        """Take the view-state transition ``event`` (protocols/poe/states.py); an illegal one
        raises AssertionError."""
        self.view_state = step(TRANSITIONS, self.view_state, event)

    def _note_view(self, sender: int, view: int, out: list[Action]) -> None:
        """Remember the view ``sender`` speaks from; join when f+1 replicas are ahead."""
        if not 0 <= sender < self.n or sender == self.id:
            return
        if view <= self.peer_view.get(sender, 0):
            return
        self.peer_view[sender] = view
        if view <= self.view:
            return
        ahead = sorted((v for v in self.peer_view.values() if v > self.view), reverse=True)
        if len(ahead) >= self.join_quorum:
            self._start_view_change(ahead[self.join_quorum - 1], out)

    def _start_view_change(self, new_view: int, out: list[Action]) -> None:
        assert new_view > self.view, "views only move forward"
        if self.view_state != ACTIVE:  # the last view change has not been proven yet
            self.backoff_exp = min(self.backoff_exp + 1, MAX_BACKOFF_EXP)
        self.view_changes_started += 1
        self._leave_view(new_view, out)  # moves to VIEW_CHANGE
        vc = self._make_vc_request(new_view)
        self.vc_latest[self.id] = vc
        out.append(Broadcast(vc))
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.primary_of(new_view) == self.id:
            self._try_new_view(out)
        cert = self.certify_seen.get(new_view)
        if cert is not None:  # we learnt the plan was certified before we got here
            self._on_nv_certify(self.primary_of(new_view), cert, out)

    def _leave_view(self, new_view: int, out: list[Action]) -> None:
        """Stop taking part in the current view (common to VC-REQUEST and a jump by NV)."""
        self.view = new_view
        self._move(LEAVE_VIEW)
        self._cancel_request_timer(out)
        self.slots.clear()
        self.ready.clear()  # undelivered entries of the old view; their evidence stays
        self._fetch_requested_to = 0  # what we asked for may be answered for the old view only
        self.reconciled = False
        self.pending_plan = None
        self.nv = None
        self.plan = None
        self.nv_shares = {}
        self.nv_certify = None
        self.own_nv_support = None
        self.own_nv_commit = None
        if self.pending_nv is not None and self.pending_nv.view < new_view:
            self.pending_nv = None
        self.nv_retries = 0
        self.plan_prepared = False
        self.commit_votes.clear()  # claims about the view we leave
        for v in [v for v in self.nv_commits if v < new_view]:
            del self.nv_commits[v]
        for v in [v for v in self.nv_supports if v < new_view]:
            del self.nv_supports[v]
        for v in [v for v in self.certify_seen if v < new_view]:
            del self.certify_seen[v]
        self.in_flight = {(r.client_id, r.timestamp): 0 for b in self.queue for r in b.requests}

    def _make_vc_request(self, new_view: int) -> VcRequest:
        low = self.low
        entries = tuple(
            self.evidence[s] for s in sorted(self.evidence) if low < s <= low + self.window
        )
        supported = tuple(
            Supported(s, v, d)
            for s in sorted(self.supported)
            if low < s <= low + self.window
            for d, v in sorted(self.supported[s].items())
        )
        vc = VcRequest(new_view, self.id, low, self.stable_proof, entries, supported, b"")
        sig = self.verifier.sign(vc_request_payload(vc))
        return VcRequest(new_view, self.id, low, self.stable_proof, entries, supported, sig)

    def _probe_finals(self, out: list[Action]) -> None:
        """While alone in a view change, keep up with what the others made final (safe to
        execute: final entries are locked); a replica in a view change executes nothing else."""
        first = self.verified_to + 1
        out.append(Broadcast(Fetch(first, first + self.fetch_span - 1, self.id, self.low)))

    def _on_view_change_timer(self, out: list[Action]) -> None:
        if self.mode == VIEW_CHANGE:
            w = self.view
            have = sum(1 for vc in self.vc_latest.values() if vc.new_view >= w)
            if have >= self.quorum:
                # n−f moved to w (or beyond) but no valid NV-PROPOSE came in time: next primary.
                self._start_view_change(w + 1, out)
                return
            own = self.vc_latest.get(self.id)
            if own is not None and own.new_view == w:
                out.append(Broadcast(own))  # messages may be lost: retransmit ours
            self._probe_finals(out)
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        elif self.mode == NV_PENDING:
            if self.nv_retries >= MAX_NV_RETRIES:
                self._start_view_change(self.view + 1, out)
                return
            self.nv_retries += 1
            if self.own_nv_commit is not None:
                out.append(Broadcast(self.own_nv_commit))
            elif self.own_nv_support is not None and self.macs:
                out.append(Broadcast(self.own_nv_support))
            elif self.own_nv_support is not None and self.primary != self.id:
                out.append(Send(self.primary, self.own_nv_support))
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)

    def _on_vc_request(self, sender: int, vc: VcRequest, out: list[Action]) -> None:
        if sender != vc.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        w = vc.new_view
        if w < self.view:
            self._ignore("old_view")
            return
        if w == self.view and self.mode != VIEW_CHANGE:
            self._help_lagging(sender, out)  # it has not entered the view we are in
            return
        prev = self.vc_latest.get(sender)
        if prev is not None and prev.new_view >= w:
            self._ignore("duplicate")
            return
        if not self._valid_vc_request(vc):
            self._ignore("invalid_vc_request")
            return
        self.vc_latest[sender] = vc
        self._note_view(sender, w, out)
        if w == self.view and self.mode == VIEW_CHANGE and self.primary_of(w) == self.id:
            self._try_new_view(out)

    def _help_lagging(self, sender: int, out: list[Action]) -> None:
        """``sender`` asks for the view we are entering or in: send what it needs (bounded)."""
        if self.view < 1:
            return
        if self.nv is not None and (self.primary == self.id or self.plan_prepared):
            out.append(Send(sender, self.nv))
        if self.nv_certify is not None:
            out.append(Send(sender, self.nv_certify))
        sup = self.own_nv_support
        if self.macs and sup is not None and self.plan_prepared:
            out.append(Send(sender, NvSupport(sup.view, self.id, sup.plan_digest, (), False)))
        own = self.own_nv_commit
        if own is not None:
            waiting = self.mode != ACTIVE
            out.append(Send(sender, NvCommit(own.view, self.id, own.plan_digest, waiting)))

    def _valid_vc_request(self, vc: VcRequest) -> bool:
        """Shape, proofs and signature of a VC-REQUEST (§4)."""
        if not 0 <= vc.replica < self.n or vc.new_view < 1:
            return False
        stable = vc.stable_seq
        if not self._valid_stable_claim(stable, vc.checkpoint_proof):
            return False
        seqs: set[int] = set()
        for e in vc.entries:
            if (
                not stable < e.seq <= stable + self.window
                or e.seq in seqs
                or not 0 <= e.view < vc.new_view
                or not batch_is_valid(e.batch)
                or (e.cert is None) != self.macs
                or (
                    e.cert is not None
                    and not self._valid_cert(e.view, e.seq, e.batch.digest, e.cert)
                )
            ):
                return False
            seqs.add(e.seq)
        if vc.supported and not self.macs:
            return False
        if not well_formed(vc.supported, stable, self.window, vc.new_view):
            return False
        try:
            payload = vc_request_payload(vc)
        except Exception:  # an unencodable value cannot carry a valid signature
            return False
        return bool(self.verifier.verify(vc.replica, payload, vc.signature))

    def make_plan(self, view: int, requests: tuple[VcRequest, ...]) -> Plan | None:
        """The plan every replica derives from the same VC-REQUESTs (deterministic); None
        when, with MACs, some seq cannot be decided from them yet (the new primary waits
        for more VC-REQUESTs; with all honest replicas' in hand every seq is decided)."""
        stable_vc = max(requests, key=lambda vc: (vc.stable_seq, -vc.replica))
        base_seq = stable_vc.stable_seq
        seqs = range(base_seq + 1, base_seq + self.window + 1)
        if self.macs:
            decided = self._decide_from_claims(requests, seqs)
            if decided is None:
                return None
            batches = decided
        else:
            best: dict[int, Committed] = {}
            for vc in requests:
                for e in vc.entries:
                    if e.seq <= base_seq:
                        continue
                    cur = best.get(e.seq)
                    if cur is None or (e.view, e.batch.digest) > (cur.view, cur.batch.digest):
                        best[e.seq] = e
            assert all(s <= seqs[-1] for s in best), "certificates stay in one window"
            batches = tuple(best[s].batch if s in best else NULL_BATCH for s in seqs)
        proof = stable_vc.checkpoint_proof
        return Plan(
            view=view,
            base=base_seq,
            base_digest=proof[0].state_digest if proof else b"",
            proof=proof,
            batches=batches,
            digest=plan_digest(view, base_seq, [b.digest for b in batches]),
        )

    def _try_new_view(self, out: list[Action]) -> None:
        w = self.view
        size = self.quorum
        if self.macs:  # every VC-REQUEST we hold for w: each seq must be decided (above)
            size = max(size, sum(1 for vc in self.vc_latest.values() if vc.new_view == w))
        chosen = self._new_view_set(size)
        if chosen is None:
            return
        nv = NvPropose(w, chosen)
        plan = self.make_plan(w, nv.requests)
        if plan is None:
            return  # MACs: some seq is undecided; the next VC-REQUEST may decide it
        out.append(Broadcast(nv))
        self._accept_nv(nv, plan, out)

    def _validate_nv(self, nv: NvPropose) -> Plan | None:
        w = nv.view
        seen: set[int] = set()
        for vc in nv.requests:
            if vc.new_view != w or vc.replica in seen:
                return None
            if self.vc_latest.get(vc.replica) != vc and not self._valid_vc_request(vc):
                return None
            seen.add(vc.replica)
        if len(seen) < self.quorum:
            return None
        return self.make_plan(w, nv.requests)

    def _nv_wanted(self, view: int) -> bool:
        """True if an NV-PROPOSE for ``view`` could still move us (a later view, or ours)."""
        return view >= 1 and (view > self.view or (view == self.view and self.mode == VIEW_CHANGE))

    def _on_nv_propose(self, sender: int, nv: NvPropose, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        w = nv.view
        if not self._nv_wanted(w):
            self._ignore("old_view")
            return
        plan = self._validate_nv(nv)
        if plan is None:
            self._ignore("invalid_nv_propose")
            return
        if sender != self.primary_of(w):
            # Relayed: take it only if it is the plan the new view certified (with MACs:
            # one that f+1 replicas supported, so an honest one took it from the primary).
            if self.macs:
                if self._plan_backers(w, plan.digest) < self.f + 1:
                    self.pending_nv = nv
                    return
            else:
                cert = self.certify_seen.get(w)
                if cert is None:
                    self.pending_nv = nv
                    return
                if plan_digest(w, cert.base, cert.digests) != plan.digest:
                    self._ignore("relayed_nv_not_certified")
                    return
        self._take_nv(nv, plan, out)

    def _try_relayed_nv(self, out: list[Action]) -> None:
        """MACs: a relayed NV-PROPOSE we hold may now be backed by f+1 replicas."""
        nv = self.pending_nv
        if nv is None or self.mode != VIEW_CHANGE or nv.view != self.view:
            return
        plan = self._validate_nv(nv)
        if plan is None or self._plan_backers(nv.view, plan.digest) < self.f + 1:
            return
        self.pending_nv = None
        self._take_nv(nv, plan, out)

    def _take_nv(self, nv: NvPropose, plan: Plan, out: list[Action]) -> None:
        if nv.view > self.view:
            self._leave_view(nv.view, out)  # n−f replicas asked for it: jump there
        self._accept_nv(nv, plan, out)

    def _accept_nv(self, nv: NvPropose, plan: Plan, out: list[Action]) -> None:
        """Support the new view's plan (one share per entry) and wait for it to lock."""
        w = nv.view
        self._move(ACCEPT_NV)
        self.nv = nv
        self.plan = plan
        self.pending_nv = None
        self.nv_retries = 0
        if plan.base > self.low:
            # The plan's checkpoint proof is a valid stable proof: adopt it now, so the plan's
            # certificates fall inside our window (and into any later VC-REQUEST of ours).
            self._make_stable(plan.base, plan.base_digest, plan.proof, out, replay=False)
        shares = tuple(
            self._sign_share(w, plan.base + 1 + i, b.digest) for i, b in enumerate(plan.batches)
        )
        if self.macs:
            shares = ()
        sup = NvSupport(w, self.id, plan.digest, shares, True)
        self.own_nv_support = sup
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.macs:  # all-to-all: each replica prepares the plan on n−f supports
            out.append(Broadcast(sup))
            self._count_nv_support(self.id, sup, out)
            return
        if self.primary_of(w) == self.id:
            self._add_nv_support(self.id, sup, out)
        else:
            out.append(Send(self.primary_of(w), sup))
        cert = self.certify_seen.get(w)
        if cert is not None:
            self._on_nv_certify(self.primary_of(w), cert, out)
