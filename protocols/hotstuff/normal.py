"""Chained HotStuff's normal case (Yin et al. PODC'19 §5, Algorithm 3): the leader of view v
proposes one block extending the block of its highest QC, carrying that QC; each replica
checks it, votes (safety.py's rule) and sends the vote to the leader of view v+1, which
makes the n-f votes a QC and proposes the next block with it. One proposal per view: a
block waits for its parent's QC, so the chain is sequential (no out-of-order instances as
in PBFT); three consecutive certified blocks commit the first (safety.py).

A block's payload is the leader's own pending client batches (mempool.py), up to
``hotstuff_batches_per_block`` of them merged, without requests delivered or pending in
the branch it extends; an empty block (the null batch) when it has none but the chain must
move (a non-empty block is not yet committed everywhere, or a replica asked with WAKE).
Watermarks: a leader puts no payload into a block more than ``COMMIT_LAG`` above its high
watermark (its stable checkpoint + window); empty blocks may go past, as they commit the
blocks below (so the next checkpoint becomes stable and the watermarks move).
Voters do not apply their own watermarks: a replica that missed the checkpoint messages
of a period would otherwise refuse every later block (checkpoints are not re-sent).

``HotStuffNormal`` is a mixin of ``HotStuff`` (replica.py holds the state). Must not live
here: timeouts and NEW-VIEW (pacemaker.py), fetching (catch_up.py), IO.
"""

from __future__ import annotations

import struct

from protocols.base import Action, Broadcast, Send
from protocols.common import NULL_BATCH, Request, batch_is_valid, make_batch
from protocols.hotstuff.messages import (
    QC,
    Block,
    Proposal,
    Vote,
    block_digest,
    vote_payload,
)
from protocols.limits import MAX_BATCH_REQUESTS, MAX_VIEWS_AHEAD

#: heights between a block and the one whose proposal commits it at the others (the block
#: three above carries the QC that completes its three-chain), plus one: a leader may put a
#: payload this far past its high watermark, so the blocks that commit the next
#: checkpoint's height are not all empty (with a small window they would always be)
COMMIT_LAG = 4


def _valid_batch(block: Block) -> bool:
    try:
        return batch_is_valid(block.batch)
    except (struct.error, OverflowError):  # ids that do not fit the signed header
        return False


class HotStuffNormal:
    """Propose, check a proposal, vote, collect votes into a QC (§5)."""

    def _well_formed(self, block: Block) -> bool:
        """The fields of a block agree with each other (parent and QC, views, proposer)."""
        return (
            block.parent_digest == block.justify.block_digest
            and block.view > block.justify.view >= 0
            and block.height >= 1
            and block.proposer == block.view % self.n
        )

    # --- leader ------------------------------------------------------------------------

    def _branch_keys(self, digest: bytes) -> set[tuple[int, int]]:
        """Requests in the uncommitted blocks from ``digest`` down to the committed one."""
        keys: set[tuple[int, int]] = set()
        for _, block in self.tree.ancestors(digest, self.tree.max_uncommitted + 1):
            if block.height <= self.last_delivered:
                break
            for req in block.batch.requests:
                keys.add((req.client_id, req.timestamp))
        return keys

    def _propose_now(self, out: list[Action]) -> None:
        """Leader of the current view, ready: propose one block extending the high QC."""
        parent_digest = self.high_qc.block_digest
        parent = self.tree.get(parent_digest)
        assert parent is not None, "the leader extends a block it holds"
        height = parent.height + 1
        if self.tree.full():
            self._ignore("tree_full")
            return
        pending = self._branch_keys(parent_digest)
        delivered = self.delivered

        def skip(key: tuple[int, int]) -> bool:
            return key in delivered or key in pending

        whole, requests = None, []
        if height <= self.high + COMMIT_LAG:  # past it only empty blocks (they commit the
            # chain below them, so the next checkpoint can become stable)
            whole, requests = self.mempool.take(
                self.params.batches_per_block, MAX_BATCH_REQUESTS, skip
            )
        else:
            self.empty_beyond_watermark += 1
        if whole is not None:
            batch = whole
        elif requests:
            batch = make_batch(tuple(requests))
        else:
            batch = NULL_BATCH
        block = Block(self.view, height, self.id, parent_digest, self.high_qc, batch)
        digest = block_digest(block)
        self.proposed_view = self.view
        self.last_assigned = height
        self.tree.add(digest, block)
        self.proposals_made += 1
        out.append(Broadcast(Proposal(block)))
        self._vote(digest, block, out)

    # --- replicas ----------------------------------------------------------------------

    def _on_proposal(self, sender: int, m: Proposal, out: list[Action]) -> None:
        block = m.block
        if sender != block.proposer or sender == self.id or not self._well_formed(block):
            self._ignore("bad_proposal")
            return
        if block.view > self.view + MAX_VIEWS_AHEAD:
            self._ignore("too_far_ahead")
            return
        try:
            digest = block_digest(block)
        except (struct.error, OverflowError):
            self._ignore("bad_proposal")
            return
        if digest in self.tree or digest in self.tree.orphans:
            self._ignore("duplicate")
            return
        if block.height <= self.last_delivered:
            self._ignore("old_proposal")
            return
        if not _valid_batch(block):
            self._ignore("bad_batch_digest")
            return
        verify_request = self.verifier.verify_request
        for req in block.batch.requests:
            if not verify_request(req):
                self._ignore("bad_client_signature")
                return
        if not self._valid_qc(block.justify):
            self._ignore("bad_qc")
            return
        self._add_block(digest, block, sender, True, out)

    def _add_block(
        self, digest: bytes, block: Block, sender: int, direct: bool, out: list[Action]
    ) -> None:
        """A checked block (its QC verified): into the tree once its parent is there (else
        kept as an orphan and its parent fetched), then its QC processed and, for a
        leader's proposal, a vote considered; orphans waiting for it follow."""
        tree = self.tree
        if block.parent_digest not in tree:
            if not tree.add_orphan(digest, block, sender, direct):
                self._ignore("orphans_full")
                return
            if direct:  # its parent's proposal is likely a moment behind it: wait a little
                self._fetch_soon(block.parent_digest, sender, out)
            else:
                self._want(block.parent_digest, sender, out)
            return
        stack = [(digest, block, direct)]
        while stack:
            d, b, is_direct = stack.pop()
            parent = tree.get(b.parent_digest)
            assert parent is not None
            if b.height != parent.height + 1 or b.justify.view != parent.view:
                self._ignore("bad_height")
                continue
            if b.height <= self.last_delivered:
                self._ignore("stale_fork")  # below the commit point, off the committed chain
                continue
            if d in tree:
                continue
            if tree.full():
                self._ignore("tree_full")
                continue
            tree.add(d, b)
            self.wanted.pop(d, None)
            self._on_qc(b.justify, out)
            waiting = self.waiting_qcs.pop(d, None)
            if waiting is not None:
                self._on_qc(waiting, out)
            if is_direct:
                self._consider_vote(d, b, out)
            for cd, cb, _, cdirect in tree.children_waiting(d):
                stack.append((cd, cb, cdirect))

    def _consider_vote(self, digest: bytes, block: Block, out: list[Action]) -> None:
        if block.view > self.view:
            if len(self.held_proposals) < MAX_VIEWS_AHEAD:
                self.held_proposals[block.view] = (digest, block)
            return
        if block.view < self.view:
            self._ignore("late_proposal")
            return
        if not self._safe_to_vote(block):
            self._ignore("unsafe_proposal")
            return
        self._vote(digest, block, out)

    def _vote(self, digest: bytes, block: Block, out: list[Action]) -> None:
        assert block.view > self.voted_view, "one vote per view"
        sig = self.verifier.sign(vote_payload(block.view, self.id, digest))
        vote = Vote(block.view, digest, self.id, sig)
        self.voted_view = block.view
        self.last_vote = vote
        if block.view > self._tip_view:
            self._tip_view, self._tip = block.view, digest
        self.wakers.pop(block.proposer, None)  # its turn came
        nxt = self.leader_of(block.view + 1)
        if nxt == self.id:
            self._count_vote(vote, out)
        else:
            out.append(Send(nxt, vote))
        self._enter_view(block.view + 1, out, timed_out=False)

    def _on_vote(self, sender: int, v: Vote, out: list[Action]) -> None:
        if sender != v.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if self.leader_of(v.view + 1) != self.id:
            self._ignore("not_next_leader")
            return
        if v.view <= self.high_qc.view:
            self._ignore("old_vote")
            return
        if v.view > self.view + MAX_VIEWS_AHEAD:
            self._ignore("too_far_ahead")
            return
        if not self._valid_vote_signature(v.view, v.replica, v.block_digest, v.signature):
            self._ignore("bad_signature")
            return
        if v.block_digest not in self.tree:
            # a block we lack: usually its proposal is still on its way; if it is still
            # missing after FETCH_LATER_TICKS we fetch it from the voter (its leader may have
            # sent us another one), for the QC it carries (catch_up.py)
            self._fetch_soon(v.block_digest, sender, out)
        self._count_vote(v, out)

    def _count_vote(self, v: Vote, out: list[Action]) -> None:
        """A verified vote: n-f for one block of one view make a QC."""
        by_replica = self.votes.setdefault(v.view, {})
        if v.replica in by_replica:
            self._ignore("duplicate")
            return
        by_replica[v.replica] = v
        if v.view + 1 == self.view:
            self._check_ready()
        matching = sorted(
            (x for x in by_replica.values() if x.block_digest == v.block_digest),
            key=lambda x: x.replica,
        )
        if len(matching) < self.quorum:
            return
        assert len({x.replica for x in matching}) == len(matching), "distinct voters"
        qc = QC(v.view, v.block_digest, tuple(matching[: self.quorum]))
        self._remember_qc((qc.view, qc.block_digest))
        for w in [w for w in self.votes if w <= v.view]:
            del self.votes[w]
        self.qcs_formed += 1
        self._on_qc(qc, out)

    def _on_request(self, sender: int, req: Request, out: list[Action]) -> None:
        """A client request handed to the protocol directly (not through the batch stage)."""
        key = (req.client_id, req.timestamp)
        if key in self.delivered:
            self._ignore("request_already_delivered")
            return
        try:
            signed = self.verifier.verify_request(req)
        except (struct.error, OverflowError):
            signed = False
        if not signed:
            self._ignore("bad_client_signature")
            return
        if not self.mempool.add(make_batch((req,))):
            self._ignore("mempool_full")


__all__ = ["COMMIT_LAG", "HotStuffNormal"]
