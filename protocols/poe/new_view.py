"""PoE view change, second half: the plan is certified and locked before anyone executes it
(beyond EDBT'21 §4, for safety), then the replica enters the view and reconciles.

Clients accept n−f identical INFORMs, and a reply may be rolled back after it is counted:
executing the plan straight from NV-PROPOSE could make a batch a client accepted lose to a
certificate a Byzantine replica hid. So replicas send NV-SUPPORT (one share per plan entry)
to the new primary, which combines them into NV-CERTIFY (a view-v certificate per entry); a
replica holding it broadcasts NV-COMMIT and enters the view on n−f of them. Then at least
f+1 honest replicas hold view-v certificates for the whole plan, and every later view change
ranks them first. Fresh proposals start above the plan (h + window). Entering the view, a
replica rolls back (``Rollback``) every executed entry above its final mark and executes the
plan from there in view v (``_reconcile``), so every replica INFORMs the client from view v.
With MACs NV-SUPPORT goes to every replica without shares (poe/mac_view_change.py counts
them). A mixin of ``Poe``. Must not live here: the plan itself (poe/view_change.py), IO.
"""

from __future__ import annotations

from protocols import base
from protocols.base import (
    Action,
    Broadcast,
    Send,
    StableCheckpoint,
)
from protocols.poe.certificate import combine
from protocols.poe.messages import (
    Committed,
    NvCertify,
    NvCommit,
    NvSupport,
    plan_digest,
)
from protocols.poe.states import ACTIVE, ENTER_VIEW, NV_PENDING, VIEW_CHANGE
from protocols.poe.view_change import Plan


class PoeNewView:
    """NV-SUPPORT / NV-CERTIFY / NV-COMMIT: lock the plan, enter the view, reconcile."""

    def _on_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if self.macs:
            self._on_nv_support_macs(sender, m, out)
            return
        if m.view != self.view or self.primary != self.id or self.plan is None:
            self._ignore("nv_support_not_for_us")
            return
        if self.nv_certify is not None:  # it missed NV-CERTIFY: send it again
            out.append(Send(sender, self.nv_certify))
            return
        if m.plan_digest != self.plan.digest or sender in self.nv_shares:
            self._ignore("nv_support_mismatch_or_duplicate")
            return
        plan = self.plan
        if len(m.shares) != len(plan.batches):
            self._ignore("bad_share")
            return
        for i, (b, share) in enumerate(zip(plan.batches, m.shares, strict=True)):
            if not self._verify_share(sender, m.view, plan.base + 1 + i, b.digest, share):
                self._ignore("bad_share")
                return
        self._add_nv_support(sender, m, out)

    def _tally(
        self,
        table: dict[int, dict[bytes, set[int]]],
        sender: int,
        view: int,
        digest: bytes,
        kind: str,
    ) -> bool:
        """Add ``sender``'s vote for ``digest`` in ``view`` to ``table`` (NV-SUPPORTs or
        NV-COMMITs); False if it was known or refused. Bounded: at most n plans per view,
        and only the current view and one later view are kept."""
        by_plan = table.setdefault(view, {})
        if digest not in by_plan and len(by_plan) >= self.n:
            self._ignore(f"{kind}_table_full")
            return False
        voters = by_plan.setdefault(digest, set())
        if sender in voters:
            return False  # a retransmission (replicas that entered the view answer those)
        voters.add(sender)
        while len(table) > 2:
            del table[min(v for v in table if v != self.view)]
        return True

    def _add_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        plan = self.plan
        assert plan is not None and m.plan_digest == plan.digest
        self.nv_shares[sender] = m.shares
        if len(self.nv_shares) < self.quorum or self.nv_certify is not None:
            return
        certs = tuple(
            combine({r: shares[i] for r, shares in self.nv_shares.items()}, self.quorum)
            for i in range(len(plan.batches))
        )
        certify = NvCertify(plan.view, plan.base, tuple(b.digest for b in plan.batches), certs)
        out.append(Broadcast(certify))
        self._take_certify(plan.view, certify, out)

    def _valid_nv_certify(self, m: NvCertify) -> bool:
        if len(m.digests) != self.window or len(m.certs) != self.window or m.base < 0:
            return False
        return all(
            self._valid_cert(m.view, m.base + 1 + i, d, cert)
            for i, (d, cert) in enumerate(zip(m.digests, m.certs, strict=True))
        )

    def _on_nv_certify(self, sender: int, m: NvCertify, out: list[Action]) -> None:
        if not 0 <= sender < self.n:
            self._ignore("non_member")
            return
        if self.macs:
            self._ignore("certify_with_macs")  # nobody signs shares: it cannot be valid
            return
        w = m.view
        if w < self.view or (w == self.view and self.mode == ACTIVE) or w < 1:
            self._ignore("old_view")
            return
        if self.certify_seen.get(w) != m:
            if not self._valid_nv_certify(m):
                self._ignore("invalid_nv_certify")
                return
            if self.certify_seen and max(self.certify_seen) > w:
                self._ignore("old_view")
                return
            self.certify_seen = {w: m}  # only the highest view we may still enter
        self._note_view(sender, w, out)
        if w > self.view:
            # n−f replicas supported view w's plan: it is established. Ask to join it.
            self._start_view_change(w, out)
            return
        plan = self.plan
        if self.mode == NV_PENDING and plan is not None:
            if plan.digest == plan_digest(w, m.base, m.digests) and not self.plan_prepared:
                self._take_certify(w, m, out)
            return
        nv = self.pending_nv
        if self.mode == VIEW_CHANGE and nv is not None and nv.view == w:
            self.pending_nv = None
            relayed = self._validate_nv(nv)
            if relayed is not None and relayed.digest == plan_digest(w, m.base, m.digests):
                self._take_nv(nv, relayed, out)

    def _take_certify(self, view: int, m: NvCertify | None, out: list[Action]) -> None:
        """We hold view-w certificates for the whole plan (NV-CERTIFY; with MACs n−f
        NV-SUPPORTs, i.e. the plan's entries are view-committed in w): announce it
        (NV-COMMIT)."""
        plan = self.plan
        assert plan is not None and plan.view == view
        self.plan_prepared = True
        self.nv_certify = m
        self.certify_seen.pop(view, None)
        certs = (None,) * len(plan.batches) if m is None else m.certs
        for i, (batch, cert) in enumerate(zip(plan.batches, certs, strict=True)):
            seq = plan.base + 1 + i
            if seq > self.low:
                self.evidence[seq] = Committed(view, seq, batch, cert)
        commit = NvCommit(view, self.id, plan.digest, True)
        self.own_nv_commit = commit
        out.append(Broadcast(commit))
        self._count_nv_commit(self.id, commit, out)

    def _on_nv_commit(self, sender: int, m: NvCommit, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        w = m.view
        if w < self.view:
            self._ignore("old_view")
            return
        self._note_view(sender, w, out)
        if w == self.view and self.mode == ACTIVE:
            # The sender is still entering our view: help it finish (answers are not answered).
            own = self.own_nv_commit
            if m.waiting and own is not None and own.plan_digest == m.plan_digest:
                out.append(Send(sender, NvCommit(own.view, self.id, own.plan_digest, False)))
            return
        self._count_nv_commit(sender, m, out)

    def _count_nv_commit(self, sender: int, m: NvCommit, out: list[Action]) -> None:
        if not self._tally(self.nv_commits, sender, m.view, m.plan_digest, "nv_commit"):
            return
        if self.macs:
            self._try_relayed_nv(out)
        self._check_enter(out)

    def _check_enter(self, out: list[Action]) -> None:
        plan = self.plan
        if self.mode != NV_PENDING or plan is None or not self.plan_prepared:
            return
        voters = self.nv_commits.get(self.view, {}).get(plan.digest, set())
        if len(voters) < self.quorum:
            return
        self._enter_view(plan, out)

    def _enter_view(self, plan: Plan, out: list[Action]) -> None:
        """The plan is locked (n−f NV-COMMITs): take part in view ``plan.view``."""
        w = plan.view
        assert w == self.view and self.mode == NV_PENDING
        self._move(ENTER_VIEW)
        self._probed_at = -1
        self._cancel_timer(self.t_view_change, out)
        for r in [r for r, vc in self.vc_latest.items() if vc.new_view <= w]:
            del self.vc_latest[r]
        self.plan_end = plan.end
        self.last_assigned = max(plan.end, self.low)
        self.pending_plan = plan
        if self.primary_of(w) == self.id:  # the plan's requests are ordered already
            for i, batch in enumerate(plan.batches):
                for req in batch.requests:
                    self.in_flight[(req.client_id, req.timestamp)] = plan.base + 1 + i
        self._reconcile(out)
        out.append(base.ViewEntered(w, self.primary_of(w)))
        self._resume_requests(w, out)  # waiting requests: proposed, or sent to the primary
        self._replay_held(out)
        self._check_final(out)

    def _reconcile(self, out: list[Action]) -> None:
        """Bring executed entries in line with the plan: keep what it keeps, roll back from
        the first entry it replaces, execute the rest (needs our state final at its base)."""
        plan = self.pending_plan
        if plan is None or self.mode != ACTIVE or plan.view != self.view:
            return
        if (
            self.final_mark < plan.base <= self.last_executed
            and self.own_digest.get(plan.base) == plan.base_digest
        ):
            # our state matches the plan's (proven stable) base: final there, not above
            self.final_mark = plan.base
            self.verified_to = max(self.verified_to, plan.base)
            out.append(StableCheckpoint(plan.base, plan.base_digest, plan.proof))
        if self.final_mark < plan.base:
            return  # catch up to the plan's base first (fetch); _check_final calls us again
        self.pending_plan = None
        final = max(self.final_mark, self.verified_to)
        # Entries above the final mark were executed in an older view: re-execute them in
        # this one even where the plan keeps the same batch, so every replica INFORMs the
        # client with this view (clients match on view, seq and result, as in the paper).
        first = max(final, plan.base) + 1
        if self.last_executed >= first:
            self.reexecuted += self.last_executed - first + 1
            self._rollback_to(first - 1, out)
        for i, batch in enumerate(plan.batches):
            seq = plan.base + 1 + i
            if seq <= final:
                old = self.log.get(seq)
                if old is not None and old[1].digest != batch.digest:
                    self._ignore("plan_conflicts_final")  # would be a safety bug
                continue
            self.ready[seq] = (plan.view, batch)
        if self.last_executed > max(plan.end, final):
            # Entries above the plan come from an older view (certificates of older views
            # stay inside the plan's window) unless they are final (fetched): undo the rest.
            self._ignore("executed_beyond_plan")
            self._rollback_to(max(plan.end, final), out)
        self.reconciled = True
        self._deliver_ready(out)
