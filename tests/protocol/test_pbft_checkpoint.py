"""PBFT checkpoints, garbage collection and watermarks (Castro & Liskov, OSDI'99 §4.3),
bounded buffers, and catch-up of a lagging replica (TOCS'02 §5.3, reduced to replaying
delivered batches that f+1 replicas vouch for)."""

from __future__ import annotations

from protocols.base import StableCheckpoint
from protocols.pbft import Checkpoint, Prepare
from protocols.pbft.messages import checkpoint_payload
from tests.protocol.scenario import Cluster


def _run_batches(c: Cluster, count: int, start: int = 1) -> None:
    """Propose b<start>..: as fast as the primary has room (as the runtime does), then settle."""
    for i in range(start, start + count):
        primary = c.replicas[c.replicas[0].primary]
        if primary.proposal_room() == 0:
            c.run()
        assert primary.proposal_room() > 0
        c.propose(primary.id, c.batch(f"b{i}"))
    c.run()


def test_checkpoint_becomes_stable_with_2f_plus_1_matching_and_log_is_collected() -> None:
    """§4.3: 2f+1 matching CHECKPOINT messages make it stable; the log below it is discarded
    and the watermarks advance to (stable, stable + window]."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    _run_batches(c, 3)
    for r in range(4):
        rep = c.replicas[r]
        assert c.stable[r] == [2]
        st = rep.status()
        assert (st["stable_seq"], st["low_watermark"], st["high_watermark"]) == (2, 2, 6)
        assert min(rep.slots) == 3 and all(s > 2 for s in rep.certs)
        assert all(s > 2 for s in rep.ckpt_votes)
    # each replica broadcast exactly one checkpoint for seq 2, with the same digest
    cps = [ln for ln in c.trace if "Broadcast Checkpoint s2" in ln]
    assert len(cps) == 4 and len({ln.split()[-1] for ln in cps}) == 1


def test_checkpoint_is_not_stable_with_only_2f_matching() -> None:
    """§4.3: a checkpoint proof needs 2f+1 *matching* messages; a different digest does not count."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    c.drop_rules.append((3, None, "Checkpoint"))  # r3's checkpoint never arrives
    _run_batches(c, 2)
    # r0..r2 agree with each other: 3 = 2f+1 -> stable everywhere
    assert all(c.stable[r] == [2] for r in range(4))

    c2 = Cluster(4, checkpoint_period=2, watermark_window=4)
    c2.drop_rules.append((2, None, "Checkpoint"))
    c2.drop_rules.append((3, None, "Checkpoint"))
    _run_batches(c2, 2)
    r0 = c2.replicas[0]
    assert c2.stable[0] == [] and r0.status()["stable_seq"] == 0  # only r0, r1: 2 < 3
    # a Byzantine r3 now sends a checkpoint with a different digest: still not stable
    sig = c2.replicas[3].verifier.sign
    bad = Checkpoint(0, 2, b"\x01" * 32, 3, sig(checkpoint_payload(0, 2, 3, b"\x01" * 32)))
    assert r0.receive(3, bad) == []
    assert r0.status()["stable_seq"] == 0
    # r2's real checkpoint (which the network lost) completes the quorum
    d2 = c2.state[2]
    real = Checkpoint(0, 2, d2, 2, c2.replicas[2].verifier.sign(checkpoint_payload(0, 2, 2, d2)))
    out = r0.receive(2, real)
    (stable,) = [a for a in out if type(a) is StableCheckpoint]
    assert (stable.seq, stable.digest) == (2, d2)
    assert {cp.replica for cp in stable.proof} >= {2} and len(stable.proof) == 3  # 2f+1 votes
    assert r0.status()["stable_seq"] == 2


def test_forged_checkpoint_signature_is_ignored() -> None:
    """Checkpoint messages go into transferable proofs, so their signatures are checked."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    forged = Checkpoint(0, 2, b"\x02" * 32, 1, b"not-a-signature")
    assert c.replicas[0].receive(1, forged) == []
    assert c.replicas[0].status()["ignored"]["bad_signature"] == 1


def test_watermarks_advance_across_many_checkpoints() -> None:
    """§4.3: the window slides: 30 batches through a window of 4 (period 2)."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    _run_batches(c, 30)
    for r in range(4):
        assert [s for s, _ in c.ledger(r)] == list(range(1, 31))
        assert c.stable[r] == list(range(2, 31, 2))
        assert c.replicas[r].status()["high_watermark"] == 34
        assert len(c.replicas[r].history) <= c.replicas[r].history_len


def test_messages_beyond_the_high_watermark_wait_and_are_processed_after_the_advance() -> None:
    """§4.3: a message with seq > H is not accepted now; it is held (bounded) and handled once
    the stable checkpoint moves the window."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    r3 = c.replicas[3]
    # r3 misses every checkpoint message for now, so its window stays (0, 4]
    c.hold_rules.append((None, 3, "Checkpoint"))
    _run_batches(c, 6)
    assert r3.status()["high_watermark"] == 4 and r3.last_delivered == 4
    assert r3.status()["buffered"] > 0  # pre-prepares/prepares/commits for seq 5, 6
    c.hold_rules.clear()
    c.release()
    c.run()
    assert r3.status()["buffered"] == 0 and r3.status()["stable_seq"] >= 4
    assert c.ledger(3) == [(i, f"b{i}") for i in range(1, 7)]


def test_buffer_is_bounded_and_drops_are_counted() -> None:
    """Bounded buffers (TigerBeetle style): past max_buffered, messages are dropped and counted;
    one sender cannot take more than its share."""
    c = Cluster(4, max_buffered=8)
    r1 = c.replicas[1]
    b = c.batch("b1")
    for seq in range(100, 119):  # far beyond the high watermark
        r1.receive(2, Prepare(0, 0, seq, b.digest, 2))
    st = r1.status()
    assert st["buffered"] == 8 // 4 and st["dropped"] == 19 - 2
    r1.receive(3, Prepare(0, 0, 100, b.digest, 3))
    assert r1.status()["buffered"] == 3  # r3 still has its own share


def test_lagging_replica_catches_up_by_fetching_batches() -> None:
    """A replica cut off while the others move past a stable checkpoint fetches the batches it
    missed (f+1 matching replies make one trusted) and then follows the normal case again."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    c.drop_rules.append((None, 3, None))  # r3 hears nothing
    _run_batches(c, 9)
    assert c.delivered[3] == [] and c.ledger(0)[-1] == (9, "b9")
    c.drop_rules.clear()
    _run_batches(c, 2, start=10)  # r3 hears the checkpoint at 10 and catches up
    for r in range(4):
        assert c.ledger(r) == [(i, f"b{i}") for i in range(1, 12)]
    assert any("r3 Broadcast Fetch" in ln for ln in c.trace)
    assert c.stable[3][-1] == 10
    # 10 behind with peers keeping 16 batches: it also asked for the state at 10 (state
    # transfer, the runtime's; this cluster has none and the batches suffice)
    assert c.state_fetches[3] == [10]
    c.check_safety()


def test_fetch_reply_needs_f_plus_1_matching_replies() -> None:
    """One (possibly faulty) replica's word is not enough to deliver a fetched batch."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    c.drop_rules.append((None, 3, None))
    _run_batches(c, 2)
    from protocols.pbft import FetchReply

    r3 = c.replicas[3]
    fake = c.batch("evil")
    r3.low = 2  # pretend r3 saw the stable checkpoint at 2
    assert r3.receive(1, FetchReply(0, 1, 0, fake, 1)) == []
    assert r3.last_delivered == 0
    real = c.batches["b1"]
    assert r3.receive(0, FetchReply(0, 1, 0, real, 0)) == []
    out = r3.receive(2, FetchReply(0, 1, 0, real, 2))
    assert [a.seq for a in out if type(a).__name__ == "Deliver"] == [1]


def test_executed_only_checkpoints_at_period_boundaries() -> None:
    c = Cluster(4, checkpoint_period=5, watermark_window=10)
    _run_batches(c, 4)
    assert not any("Checkpoint" in ln for ln in c.trace)
    _run_batches(c, 1, start=5)
    out = [ln for ln in c.trace if "Broadcast Checkpoint s5" in ln]
    assert len(out) == 4
    assert c.replicas[0].executed(10, b"x") == []  # not delivered yet: nothing to vouch for
    assert c.replicas[0].executed(3, b"x") == []  # not a checkpoint seq


def test_own_checkpoint_that_disagrees_with_the_stable_one_is_counted() -> None:
    """§4.3: the stable digest is the one 2f+1 replicas agree on; a replica whose own digest
    differs (its execution diverged) counts it for the operator."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    c.hold_rules.append((None, None, "Checkpoint"))
    _run_batches(c, 2)
    r3 = c.replicas[3]
    r3.ckpt_of[3][2] = b"\x07" * 32  # as if r3 had computed another state
    c.hold_rules.clear()
    c.release()
    c.run()
    assert r3.status()["stable_seq"] == 2
    assert r3.status()["checkpoint_mismatches"] == 1
    assert c.replicas[1].status()["checkpoint_mismatches"] == 0
