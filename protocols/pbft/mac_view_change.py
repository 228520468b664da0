"""PBFT's view change with MACs (Castro & Liskov TOCS'02 §4.5, "view changes with MACs").

With ``pbft_signed_votes: false`` votes are not signed (the links' MACs authenticate them)
and nothing about them is transferable: a view-change (still signed, as are checkpoints:
both are rare) *claims* what its sender prepared (the P-set: certificates without their
meaningless prepares) and pre-prepared (the Q-set, ``Pbft.pre_prepared``), and the new
primary decides each seq by counting claims (protocols/claims.py holds the rule), waiting
for more view-changes while a seq is undecided; a NEW-VIEW then counts only from the new
primary, which every replica re-checks by recomputation. A mixin of ``Pbft``; the signed
view change it replaces in these steps is pbft/view_change.py. Must not live here: the
decision rule itself (protocols/claims.py), IO.
"""

from __future__ import annotations

from protocols.claims import decide
from protocols.common import NULL_BATCH, Batch
from protocols.pbft.messages import PreparedCert, PrePrepared, ViewChange


class PbftMacViewChange:
    """The claims a view-change carries with unsigned votes, and the plan decided from them."""

    def _claims(
        self, certs: tuple[PreparedCert, ...]
    ) -> tuple[tuple[PreparedCert, ...], tuple[PrePrepared, ...]]:
        """Our P-set (``certs`` without their prepares) and Q-set within the window."""
        low = self.low
        prepared = tuple(PreparedCert(c.pre_prepare, ()) for c in certs)
        table = self.pre_prepared
        claims = tuple(
            PrePrepared(s, v, d)
            for s in sorted(table)
            if low < s <= low + self.window
            for d, v in sorted(table[s].items())
        )
        return prepared, claims

    def _claims_size(self) -> int:
        """How many view-changes the new primary waits for: every one it holds for the view
        (each seq must be decided), at least ``view_change_quorum``."""
        w = self.view
        return max(
            self.view_change_quorum, sum(1 for vc in self.vc_latest.values() if vc.new_view == w)
        )

    def _plan_from_claims(
        self, view_changes: tuple[ViewChange, ...], min_s: int
    ) -> list[tuple[int, Batch]] | None:
        """Unsigned votes: Castro & Liskov's MAC view change (protocols.claims.choose) for
        each seq from min-s+1 to the highest one anybody claims prepared."""
        prepared = [
            {
                c.pre_prepare.seq: (
                    c.pre_prepare.view,
                    c.pre_prepare.batch.digest,
                    c.pre_prepare.batch,
                )
                for c in vc.prepared
            }
            for vc in view_changes
        ]
        max_s = max((s for p in prepared for s in p), default=min_s)
        seqs = range(min_s + 1, max_s + 1)
        decided = decide(
            prepared,
            [vc.pre_prepared for vc in view_changes],
            seqs,
            self.view_change_quorum,
            self.f,
        )
        if decided is None:
            return None
        return [(s, NULL_BATCH if b is None else b) for s, b in zip(seqs, decided, strict=True)]
