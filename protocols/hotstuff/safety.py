"""Chained HotStuff's safety rules (Yin et al. PODC'19 §5, Algorithm 3; the event-driven
form of §6, Algorithm 4): quorum certificates, the vote rule, the lock and the three-chain
commit rule, and in-order delivery of committed blocks.

- QC (§4.2): n-f votes of distinct replicas for one (view, block); each vote an Ed25519
  signature through the injected Verifier (no threshold signatures: n-f of them per QC).
  A replica votes at most once per view, so at most one block per view is certified.
- Vote rule (safeNode, §4.2/§5): vote for a block of view v only if v is above the last view
  voted in and the block's QC is at least as recent as the lock. (Every block here extends
  the block its QC certifies, so "extends the locked block" implies it, and the paper's
  liveness clause, "QC newer than the lock", is the other half.)
- Lock (§5 "two-chain"): on every QC for a block b', lock on b'' = the block b' certifies
  (the head of the two-chain b'' <- b'), if that is newer than the lock.
- Commit (§5 "three-chain"): b <- b' <- b'' each certified, each the direct parent of the
  next *and in consecutive views* (the paper pads failed views with dummy nodes, so its
  "direct parent" is a block of the previous view): then b and its ancestors commit. The
  QC of b'' may arrive later, in any message: its collector may have crashed, and a new
  leader recovers it from the last votes in NEW-VIEWs (protocols/hotstuff/pacemaker.py).

``HotStuffSafety`` is a mixin of ``HotStuff`` (protocols/hotstuff/replica.py, which holds
the state). Must not live here: when to propose or time out (pacemaker.py), fetching
(catch_up.py), IO.
"""

from __future__ import annotations

import struct

from protocols.base import Action, Deliver, StableCheckpoint
from protocols.hotstuff.messages import GENESIS_DIGEST, QC, Block, vote_payload
from protocols.limits import MAX_WANTED_BLOCKS


class HotStuffSafety:
    """QC verification, the lock, the three-chain commit and delivery."""

    def _valid_qc(self, qc: QC) -> bool:
        """True if ``qc`` holds n-f valid votes of distinct replicas (checked once per QC)."""
        if qc.view == 0:
            return qc.block_digest == GENESIS_DIGEST and not qc.votes
        key = (qc.view, qc.block_digest)
        if key in self.verified_qcs:
            return True
        if qc.view < 0 or len(qc.votes) < self.quorum:
            return False
        seen: set[int] = set()
        for v in qc.votes:
            if (
                v.view != qc.view
                or v.block_digest != qc.block_digest
                or not 0 <= v.replica < self.n
                or v.replica in seen
            ):
                return False
            seen.add(v.replica)
        for v in qc.votes:
            if not self._valid_vote_signature(v.view, v.replica, v.block_digest, v.signature):
                return False
        self._remember_qc(key)
        return True

    def _valid_vote_signature(self, view: int, replica: int, digest: bytes, sig: bytes) -> bool:
        try:
            payload = vote_payload(view, replica, digest)
        except (struct.error, OverflowError):
            return False
        return bool(self.verifier.verify(replica, payload, sig))

    def _remember_qc(self, key: tuple[int, bytes]) -> None:
        self.verified_qcs[key] = None
        while len(self.verified_qcs) > self.max_verified_qcs:
            del self.verified_qcs[next(iter(self.verified_qcs))]

    def _safe_to_vote(self, block: Block) -> bool:
        """safeNode (§4.2), for a block of the current view not voted in yet."""
        return block.view > self.voted_view and block.justify.view >= self.lock_view

    def _on_qc(self, qc: QC, out: list[Action]) -> None:
        """A verified QC: raise the high QC, sync the view, lock, commit (Algorithm 3/4
        ``update``). A QC for a block not yet known waits for the block (fetched)."""
        if qc.view + 1 > self.view:
            self._enter_view(qc.view + 1, out, timed_out=False)
        b1 = self.tree.get(qc.block_digest)
        if b1 is None:
            if qc.view > self.high_qc.view and (
                qc.block_digest in self.waiting_qcs or len(self.waiting_qcs) < MAX_WANTED_BLOCKS
            ):
                self.waiting_qcs[qc.block_digest] = qc
                self._want(qc.block_digest, None, out)
            return
        if qc.view > self.high_qc.view:
            self.high_qc = qc
            for w in [w for w in self.votes if w <= qc.view]:
                del self.votes[w]  # a QC of that view exists: its votes are no use any more
        if qc.view > self._tip_view:
            self._tip_view, self._tip = qc.view, qc.block_digest
        if qc.view == 0:
            return
        if b1.justify.view > self.lock_view:  # two-chain b2 <- b1: lock on b2
            self.lock_view = b1.justify.view
            self.lock_digest = b1.parent_digest
            if self.tree.uncommitted * 2 > self.tree.max_uncommitted:
                self.pruned_forks += self.tree.prune_below_lock(
                    self.lock_digest, self.lock_view, self.high_qc.block_digest
                )
        b2 = self.tree.get(b1.parent_digest)
        if b2 is None or b2.view == 0:
            return
        b3 = self.tree.get(b2.parent_digest)
        if b3 is None or not self._three_chain(b1, b2, b3):
            return
        if b3.height > self.last_delivered:  # commit b3 and its ancestors
            self._commit(b2.parent_digest, out)

    def _three_chain(self, b1: Block, b2: Block, b3: Block) -> bool:
        """b3 <- b2 <- b1, each the direct parent of the next (every block here extends the
        block its QC certifies), also in consecutive views: the paper's dummy nodes make a
        failed view a node, so its "direct parent" is the block of the view before."""
        return b1.view == b2.view + 1 and b2.view == b3.view + 1

    def _commit(self, digest: bytes, out: list[Action]) -> None:
        """Commit the block ``digest`` and its uncommitted ancestors, in height order."""
        chain = self.tree.branch(digest)  # asserts it extends the last committed block
        delivered = self.delivered
        for d, block in chain:
            assert block.height == self.last_delivered + 1, "deliver in order, no gaps"
            self.last_delivered = block.height
            self.last_committed = d
            out.append(Deliver(block.height, block.view, block.batch))
            for req in block.batch.requests:
                delivered.add(req.client_id, req.timestamp)
            if block.batch.requests:
                self.batches_committed += 1
        self.tree.mark_committed(chain)
        if self._stable_unannounced and self.last_delivered >= self.low:
            self._stable_unannounced = False
            out.append(StableCheckpoint(self.low, self.stable_digest, self.stable_proof))


__all__ = ["HotStuffSafety"]
