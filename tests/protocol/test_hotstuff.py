"""Chained HotStuff (protocols/hotstuff) on the in-memory fake link, test by test against
the paper: Yin, Malkhi, Reiter, Gueta, Abraham, "HotStuff: BFT Consensus with Linearity and
Responsiveness", PODC 2019 (§4.2 QCs and safeNode, §5 chained HotStuff and the three-chain,
§6 the pacemaker). The seeded fault runs are in test_hotstuff_sim.py.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from protocols.base import Broadcast, Deliver, ProtocolConfig, Send
from protocols.common import NULL_BATCH, make_batch
from protocols.hotstuff import HotStuff, Proposal
from protocols.hotstuff.messages import (
    GENESIS_DIGEST,
    GENESIS_QC,
    QC,
    Block,
    NewView,
    Vote,
    block_digest,
    vote_payload,
)
from tests.protocol.scenario import Cluster, FakeVerifier, signed_request


class HotStuffCluster(Cluster):
    """n HotStuff replicas on the shared fake link."""

    def __init__(self, n: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("protocol_cls", HotStuff)
        super().__init__(n, **kwargs)

    @property
    def hs(self) -> list[HotStuff]:
        return self.replicas  # type: ignore[return-value]

    def timer_key(self, name: str) -> Hashable:
        return ("hotstuff", name)

    def fmt(self, msg: Any) -> str:
        if type(msg) is Proposal:
            b = msg.block
            return f"Proposal v{b.view} h{b.height} qc{b.justify.view} {self.bname(b.batch.digest)}"
        if type(msg) is Vote:
            return f"Vote v{msg.view} from r{msg.replica}"
        return super().fmt(msg)


def replica(r: int = 0, n: int = 4, **kwargs: Any) -> HotStuff:
    return HotStuff(ProtocolConfig(replica_id=r, n=n, **kwargs), FakeVerifier(r))


def signed_vote(view: int, digest: bytes, r: int) -> Vote:
    return Vote(view, digest, r, FakeVerifier(r).sign(vote_payload(view, r, digest)))


def qc_of(view: int, digest: bytes, voters: tuple[int, ...] = (0, 1, 2)) -> QC:
    return QC(view, digest, tuple(signed_vote(view, digest, r) for r in voters))


def block(view: int, parent: Block | None, parent_digest: bytes, n: int = 4) -> Block:
    height = 1 if parent is None else parent.height + 1
    justify = GENESIS_QC if parent is None else qc_of(parent.view, parent_digest)
    return Block(view, height, view % n, parent_digest, justify, NULL_BATCH)


# --- §5: the normal case -------------------------------------------------------------------


def test_three_chain_commits_the_batch_then_the_idle_chain_stops() -> None:
    """§5: the leader of view 1 proposes; three blocks in consecutive views, each carrying
    the previous one's QC, commit the first; with nothing left to commit leaders stop
    proposing (the fake link drains: run() would fail if it did not)."""
    c = HotStuffCluster()
    a = c.batch("A")
    c.propose(1, a)  # replica 1 leads view 1
    c.run()
    c.check_safety()
    for r in range(4):
        assert c.ledger(r)[0] == (1, "A"), c.ledger(r)
        assert all(name == "null" for _, name in c.ledger(r)[1:])
    views = [d.view for d in c.delivered[1]]
    assert views == list(range(1, len(views) + 1))  # one block per view, no gaps


def test_requests_at_a_replica_that_does_not_lead_wake_the_chain() -> None:
    """Every replica may lead (is_proposer): a batch cut at replica 3 while the chain idles
    is announced with WAKE, the views go round to replica 3, and it proposes its batch."""
    c = HotStuffCluster()
    c.propose(3, c.batch("B"))
    c.run()
    c.check_safety()
    for r in range(4):
        assert "B" in {name for _, name in c.ledger(r)}, c.ledger(r)
    [b_entry] = [d for d in c.delivered[0] if d.batch.digest == c.batch("B").digest]
    assert b_entry.view % 4 == 3  # proposed in one of replica 3's views


def test_the_chain_is_sequential_one_proposal_per_view() -> None:
    """§5: a leader proposes once per view and only on the QC of the view before (no
    pipelining of instances as in PBFT): several batches at one leader go into one block
    (hotstuff_batches_per_block) or wait for its next view."""
    c = HotStuffCluster(params={"hotstuff_batches_per_block": 2})
    for name in ("C1", "C2", "C3"):
        c.propose(2, c.batch(name))  # replica 2 leads views 2, 6, 10, ...
    c.run()
    c.check_safety()
    full = [d for d in c.delivered[0] if d.batch.requests]
    assert [len(d.batch.requests) for d in full] == [2, 1]  # C1+C2 merged, then C3
    assert [d.view for d in full] == [2, 6]  # replica 2's next view after view 2


# --- §4.2: quorum certificates and the vote rule ----------------------------------------------


def test_a_qc_needs_n_minus_f_distinct_valid_signatures() -> None:
    """§4.2: a QC is n-f votes of distinct replicas for one (view, block) (here n-f Ed25519
    signatures through the Verifier: no threshold scheme)."""
    r = replica(3)
    d = b"\x01" * 32
    assert r._valid_qc(qc_of(1, d, (0, 1, 2)))
    assert not replica(3)._valid_qc(qc_of(1, d, (0, 1)))  # f+1 < n-f
    dup = qc_of(1, d, (0, 1))
    assert not replica(3)._valid_qc(QC(1, d, dup.votes + (dup.votes[0],)))  # repeated voter
    forged = QC(1, d, qc_of(1, d, (0, 1)).votes + (Vote(1, d, 2, b"x" * 16),))
    assert not replica(3)._valid_qc(forged)
    other = QC(1, d, qc_of(1, d, (0, 1)).votes + (signed_vote(1, b"\x02" * 32, 2),))
    assert not replica(3)._valid_qc(other)  # a vote for another block
    assert replica(3)._valid_qc(GENESIS_QC)
    assert not replica(3)._valid_qc(QC(0, d, ()))


def test_safe_node_one_vote_per_view_and_never_below_the_lock() -> None:
    """§4.2 safeNode: a replica votes for a block of its view only once, and only if the
    block's QC is at least as recent as its lock."""
    r = replica(0)
    b1 = block(1, None, GENESIS_DIGEST)
    out = r.receive(1, Proposal(b1))
    votes = [a.msg for a in out if type(a) is Send and type(a.msg) is Vote]
    assert len(votes) == 1 and votes[0].view == 1 and r.voted_view == 1
    assert r.receive(1, Proposal(b1)) == []  # the same block again: a duplicate
    # a conflicting block for view 1 (another payload): no second vote
    alt = Block(1, 1, 1, GENESIS_DIGEST, GENESIS_QC, make_batch((signed_request(9, 1, b"x"),)))
    out = r.receive(1, Proposal(alt))
    assert not [a for a in out if type(a) is Send and type(a.msg) is Vote]
    # locked at view 3: a proposal justified by an older QC gets no vote
    s = replica(2)
    s.lock_view = 3
    out = s.receive(1, Proposal(b1))
    assert not [a for a in out if type(a) is Send and type(a.msg) is Vote]
    assert s.ignored.get("unsafe_proposal") == 1


def test_no_commit_across_a_view_gap_commit_on_consecutive_views() -> None:
    """§5 (dummy nodes): b <- b' <- b'' commits b only if each is the direct parent of the
    next in the previous view; after a failed view the gap breaks the three-chain."""
    g = GENESIS_DIGEST
    b1 = block(1, None, g)
    d1 = block_digest(b1)
    b2 = block(2, b1, d1)
    d2 = block_digest(b2)
    # consecutive: b3 in view 3, its QC arrives in the next block (view 5, after a timeout)
    r = replica(0)
    b3 = block(3, b2, d2)
    d3 = block_digest(b3)
    for blk in (b1, b2, b3):
        r.receive(blk.proposer, Proposal(blk))
    b5 = Block(5, 4, 1, d3, qc_of(3, d3), NULL_BATCH)
    out = r.receive(1, Proposal(b5))
    assert [a.seq for a in out if type(a) is Deliver] == [1] and r.last_delivered == 1
    # a gap: b3' in view 5 on QC(b2), then its QC: views 2 and 5 are not consecutive
    s = replica(0)
    b3g = Block(5, 3, 1, d2, qc_of(2, d2), NULL_BATCH)
    d3g = block_digest(b3g)
    for blk in (b1, b2, b3g):
        s.receive(blk.proposer, Proposal(blk))
    b6 = Block(6, 4, 2, d3g, qc_of(5, d3g), NULL_BATCH)
    out = s.receive(2, Proposal(b6))
    assert not [a for a in out if type(a) is Deliver] and s.last_delivered == 0
    assert s.lock_view == 2  # locked on b2, the head of the two-chain b2 <- b3'


# --- §6: the pacemaker ----------------------------------------------------------------------


def test_a_crashed_collector_s_qc_is_recovered_from_new_view_last_votes() -> None:
    """§6: replica 0 leads view 4 and crashed, so the QC of view 3 (votes sent to it) is
    lost; the view timers fire, NEW-VIEWs carry each replica's last vote, and the leader of
    view 5 makes the QC of view 3 from them: views 1, 2, 3 are a three-chain, the batch of
    view 1 commits."""
    c = HotStuffCluster()
    c.crash(0)
    c.propose(1, c.batch("A"))
    c.run()
    assert all(not c.delivered[r] for r in (1, 2, 3))  # view 4's leader is down
    for r in (1, 2, 3):
        assert c.fire(r, "view")
    c.run()
    c.check_safety()
    for r in (1, 2, 3):
        assert c.ledger(r)[0] == (1, "A")
        assert c.views[r] and c.views[r][0] == (5, 1)  # ViewEntered(5, leader 1)
    [b5] = [b for b in c.hs[2].tree.blocks.values() if b.view == 5]
    assert b5.proposer == 1 and b5.justify.view == 3  # the recovered QC of view 3


def test_f_plus_one_new_views_pull_a_slow_replica_into_the_view() -> None:
    """§6 (as PBFT's view change, §4.5.2): f+1 NEW-VIEWs for a later view make a replica
    leave its view even before its own timer fires."""
    r = replica(3)
    r.mempool.add(NULL_BATCH)  # work pending: the timer matters
    nv = [NewView(2, GENESIS_QC, None, s) for s in (1, 2)]
    r.receive(1, nv[0])
    assert r.view == 1
    out = r.receive(2, nv[1])
    assert r.view == 2
    assert [a.msg for a in out if type(a) is Broadcast and type(a.msg) is NewView]


# --- catch-up, checkpoints, bounds ------------------------------------------------------------


def test_a_replica_that_missed_proposals_fetches_the_ancestors() -> None:
    """A replica that missed every proposal of a batch's views asks for the missing parent
    of the first proposal it gets (FETCH-BLOCKS), walks back and commits the same chain."""
    c = HotStuffCluster()
    c.drop_rules.append((None, 3, "Proposal"))
    c.propose(1, c.batch("A"))
    c.run()
    assert not c.delivered[3]
    c.drop_rules.clear()
    c.propose(2, c.batch("B"))
    c.run()
    c.check_safety()
    assert c.ledger(3) == c.ledger(1)
    assert c.hs[3].fetches_sent >= 1


def test_checkpoints_move_the_watermarks_and_the_tree_forgets_old_blocks() -> None:
    """Checkpoints (shared with PBFT and PoE, Castro & Liskov §4.3): 2f+1 signed CHECKPOINTs
    at a period's height make it stable and move the watermarks; committed blocks older
    than the kept history and abandoned forks leave the tree."""
    c = HotStuffCluster(checkpoint_period=2, watermark_window=4)
    for i in range(12):
        c.propose(i % 4, c.batch(f"b{i}"))
        c.run()
    c.check_safety()
    for r in range(4):
        h = c.hs[r]
        assert h.low >= 8 and c.stable[r], (h.low, c.stable[r])
        assert h.high == h.low + 4
        assert len(h.tree.blocks) <= h.tree.history_len + h.tree.max_uncommitted + 1
        assert min(b.height for b in h.tree.blocks.values() if b.height) > 1  # old ones gone


def test_prune_below_lock_drops_forks_that_can_no_longer_commit() -> None:
    """A block of a view below the lock that is not the locked block's ancestor can never
    commit (a committed block is an ancestor of every later certified block): dropped with
    its descendants; the lock's chain and the high QC's stay."""
    r = replica(0)
    g = GENESIS_DIGEST
    b1 = block(1, None, g)
    d1 = block_digest(b1)
    fork = Block(2, 2, 2, d1, qc_of(1, d1), NULL_BATCH)  # view 2, abandoned
    b3 = Block(3, 2, 3, d1, qc_of(1, d1), NULL_BATCH)
    d3 = block_digest(b3)
    r.tree.add(d1, b1)
    r.tree.add(block_digest(fork), fork)
    r.tree.add(d3, b3)
    assert r.tree.prune_below_lock(d3, 3, d3) == 1
    assert block_digest(fork) not in r.tree and d3 in r.tree and d1 in r.tree


def test_a_leader_skips_stale_batches_without_spending_its_block_on_them() -> None:
    """After a timeout clients re-send to every replica, so a mempool fills with requests
    committed meanwhile: a batch left with nothing fresh is dropped and does not count
    towards ``hotstuff_batches_per_block`` (else blocks shrink to nothing after a crash)."""
    from protocols.hotstuff.mempool import Mempool

    pool = Mempool(10)
    stale = [make_batch((signed_request(9, t, b"s"),)) for t in range(1, 4)]
    fresh = [make_batch((signed_request(8, t, b"f"),)) for t in range(1, 3)]
    for b in (*stale, *fresh):
        pool.add(b)
    whole, kept = pool.take(2, 100, lambda key: key[0] == 9)
    assert [r.client_id for r in kept] == [8, 8] and whole is None and len(pool) == 0
    pool.add(fresh[0])
    whole, kept = pool.take(2, 100, lambda key: False)
    assert whole is fresh[0] and kept == list(fresh[0].requests)


def test_a_block_nobody_has_is_asked_for_a_bounded_number_of_times() -> None:
    """The wanted set is bounded; a digest whose block is gone everywhere (a dropped fork,
    history older than the peers keep) is given up after MAX_ASKS asks, so it cannot fill
    the set and stop every later fetch."""
    from protocols.hotstuff.catch_up import MAX_ASKS

    r = replica(0)
    out: list = []
    r._want(b"\x07" * 32, None, out)
    assert b"\x07" * 32 in r.wanted and r.t_fetch in r.armed
    fetches = 0
    for _ in range(MAX_ASKS + 2):
        if r.t_fetch not in r.armed:
            break
        fetches += sum(1 for a in r.timeout(r.t_fetch) if type(a) is Broadcast)
    assert not r.wanted and r.t_fetch not in r.armed
    assert fetches == MAX_ASKS - 1 and r.ignored["fetch_given_up"] == 1


class GapCommitHotStuff(HotStuff):
    """Commits on direct parents across failed views (no consecutive-view check): unsafe."""

    def _three_chain(self, b1: Block, b2: Block, b3: Block) -> bool:
        return True


def _fork_schedule() -> tuple[list[Block], list[Block]]:
    """Two branches from genesis that honest voters may both certify (views 1-10, no leader
    is replica 0): b (v1) <- b' (v3) <- b'' (v5) and b* (v6) carrying QC(b''); c (v2, QC of
    genesis: no one is locked yet) <- c' (v7, QC(c): its view 2 is above the lock on b,
    view 1, that b'' gave) <- c'' (v9) <- c''' (v10) carrying QC(c''). What replica X and
    replica Y (two honest replicas) receive."""
    g = GENESIS_DIGEST
    b = block(1, None, g)
    c = Block(2, 1, 2, g, GENESIS_QC, make_batch((signed_request(9, 1, b"c"),)))
    b1 = block(3, b, block_digest(b))
    b2 = block(5, b1, block_digest(b1))
    b_star = block(6, b2, block_digest(b2))
    c1 = block(7, c, block_digest(c))
    c2 = block(9, c1, block_digest(c1))
    c3 = block(10, c2, block_digest(c2))
    return [b, b1, b2, b_star], [b, c, b1, b2, c1, c2, c3]


def test_the_consecutive_view_rule_is_what_keeps_two_forks_from_both_committing() -> None:
    """§5 (dummy nodes): with the three-chain over direct parents *across view gaps*, one
    honest replica commits b and another c at height 1 (the lock on b does not stop c's
    branch, whose QC is newer than the lock); with consecutive views neither commits."""
    x_blocks, y_blocks = _fork_schedule()
    ledgers = []
    for cls in (GapCommitHotStuff, HotStuff):
        seen = []
        for blocks in (x_blocks, y_blocks):
            r = cls(ProtocolConfig(replica_id=0, n=4), FakeVerifier(0))
            delivered = []
            for blk in blocks:
                delivered += [
                    a for a in r.receive(blk.proposer, Proposal(blk)) if type(a) is Deliver
                ]
            seen.append([(d.seq, d.batch.digest, d.view) for d in delivered])
        ledgers.append(seen)
    (gap_x, gap_y), (real_x, real_y) = ledgers
    assert gap_x[0][0] == gap_y[0][0] == 1 and gap_x[0][2] == 1 and gap_y[0][2] == 2
    assert gap_x[0][1] != gap_y[0][1]  # two honest replicas, two batches at seq 1
    assert real_x == [] and real_y == []  # safe: neither fork commits
