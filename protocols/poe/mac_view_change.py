"""PoE's view change with MACs (``poe_certificate: macs``; Castro & Liskov TOCS'02 §4.5's
claims, view-commit in the role of "prepared", SUPPORT in that of "pre-prepared").

Nothing is transferable, so a VC-REQUEST (still signed: view changes are rare) carries
*claims*: per seq the highest-view view-commit (with its batch) and the digests it
supported, each with the latest view. The plan takes, per seq, a claimed (view v, batch d)
when n−f requests claim nothing newer or conflicting (A1) and f+1 claim to have supported d
in a view ≥ v (A2), else the null batch when n−f claim nothing; otherwise the new primary
waits for more VC-REQUESTs (protocols/claims.py holds the rule and its safety argument).
NV-SUPPORT goes to every replica without shares; n−f of them prepare the plan as NV-CERTIFY
does, then NV-COMMIT as with signatures; a relayed NV-PROPOSE counts once f+1 replicas back
its plan. A mixin of ``Poe``. Must not live here: the decision rule (protocols/claims.py), IO.
"""

from __future__ import annotations

from protocols.base import (
    Action,
    Send,
)
from protocols.claims import decide
from protocols.common import NULL_BATCH, Batch
from protocols.poe.messages import (
    NvSupport,
    VcRequest,
)
from protocols.poe.states import ACTIVE, NV_PENDING


class PoeMacViewChange:
    """The plan decided from claims, and NV-SUPPORT counted without shares."""

    def _decide_from_claims(
        self, requests: tuple[VcRequest, ...], seqs: range
    ) -> tuple[Batch, ...] | None:
        """MACs: each seq's batch from unproven claims by protocols.claims.choose (Castro &
        Liskov's rule: view-commits are the "prepared" claims, supports the "pre-prepared"
        ones); None while some seq is undecided."""
        decided = decide(
            [{e.seq: (e.view, e.batch.digest, e.batch) for e in vc.entries} for vc in requests],
            [vc.supported for vc in requests],
            seqs,
            self.quorum,
            self.f,
        )
        if decided is None:
            return None  # wait for more VC-REQUESTs
        return tuple(NULL_BATCH if b is None else b for b in decided)

    def _plan_backers(self, view: int, digest: bytes) -> int:
        """MACs: replicas that sent NV-SUPPORT or NV-COMMIT for plan ``digest`` of ``view``."""
        supports = self.nv_supports.get(view, {}).get(digest, set())
        commits = self.nv_commits.get(view, {}).get(digest, set())
        return len(supports | commits)

    def _on_nv_support_macs(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        w = m.view
        if w < self.view or w < 1 or m.shares:
            self._ignore("old_view" if w < self.view else "bad_nv_support")
            return
        self._note_view(sender, w, out)
        if w == self.view and self.mode == ACTIVE:
            # The sender is still entering our view: answer with ours (answers are not answered).
            own = self.own_nv_support
            if m.waiting and own is not None and own.plan_digest == m.plan_digest:
                out.append(Send(sender, NvSupport(w, self.id, own.plan_digest, (), False)))
            return
        self._count_nv_support(sender, m, out)

    def _count_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        """MACs: tally NV-SUPPORTs per plan; n−f for our plan prepare it (like NV-CERTIFY)."""
        if not self._tally(self.nv_supports, sender, m.view, m.plan_digest, "nv_support"):
            return
        self._try_relayed_nv(out)
        plan = self.plan
        if self.mode != NV_PENDING or plan is None or plan.view != m.view or self.plan_prepared:
            return
        if len(self.nv_supports.get(plan.view, {}).get(plan.digest, ())) >= self.quorum:
            self._take_certify(plan.view, None, out)
