"""PBFT normal-case operation (Castro & Liskov, OSDI'99 §4.2; TOCS'02 §4.3) on a fake link."""

from __future__ import annotations

import pytest

from protocols import registry
from protocols.base import Broadcast, Deliver, ProtocolConfig, Send, SetTimer
from protocols.common import make_batch
from protocols.pbft import Commit, Pbft, Prepare, PrePrepare
from tests.protocol.scenario import Cluster, FakeVerifier, signed_request


def test_registered_with_paper_quorums() -> None:
    """§4.1: n = 3f+1; clients wait for f+1 matching replies; the primary of v is v mod n."""
    cls = registry.get("pbft")
    assert cls is Pbft
    assert Pbft.reply_quorum(4, 1) == 2 and Pbft.reply_quorum(7, 2) == 3
    assert [Pbft.client_target(v, 9, 4, {}) for v in range(6)] == [0, 1, 2, 3, 0, 1]
    rep = Cluster(7).replicas[3]
    assert (rep.prepare_quorum, rep.commit_quorum) == (4, 5)
    assert (rep.checkpoint_quorum, rep.view_change_quorum, rep.join_quorum) == (5, 5, 3)


@pytest.mark.parametrize("n", [4, 7])
def test_normal_case_every_replica_delivers_same_batches_in_order(n: int) -> None:
    """Castro & Liskov §4.2 normal case: pre-prepare, prepare, commit, deliver in seq order."""
    c = Cluster(n)
    names = [f"b{i}" for i in range(1, 13)]
    for name in names:
        c.propose(0, c.batch(name))
    c.run()
    c.check_safety()
    for r in range(n):
        assert c.ledger(r) == list(enumerate(names, 1))
        assert all(d.view == 0 for d in c.delivered[r])
        st = c.replicas[r].status()
        assert st["last_delivered"] == 12 and st["view"] == 0 and not st["in_view_change"]


def test_several_sequence_numbers_in_flight_before_any_commit() -> None:
    """§4.2: the primary does not wait for seq s to commit before proposing s+1 (pipelining)."""
    c = Cluster(4)
    for i in range(1, 6):
        c.propose(0, c.batch(f"b{i}"))
    pre_prepares = [q[3] for q in c.queue if type(q[3]) is PrePrepare and q[2] == 1]
    assert [pp.seq for pp in pre_prepares] == [1, 2, 3, 4, 5]
    assert not any(c.delivered)
    c.run()
    assert c.ledger(2) == [(i, f"b{i}") for i in range(1, 6)]


def test_out_of_order_commits_still_deliver_in_order() -> None:
    """§4.2: a replica may commit seq 3 before seq 1; it still delivers 1, 2, 3 in order."""
    c = Cluster(4)
    c.hold_rules.append((None, None, "Commit"))
    for i in range(1, 4):
        c.propose(0, c.batch(f"b{i}"))
    c.run()
    assert not any(c.delivered)
    c.hold_rules.clear()
    c.release(reverse=True)  # commits for seq 3 now arrive before those for 1 and 2
    r1 = c.replicas[1]
    saw_early_commit = False
    while c.step():
        saw_early_commit |= 3 in r1.committed and r1.last_delivered == 0
    assert saw_early_commit, "seq 3 committed while seq 1 was still open"
    delivers = [ln for ln in c.trace if ln.startswith("r1 Deliver")]
    assert delivers == ["r1 Deliver s1 v0 b1", "r1 Deliver s2 v0 b2", "r1 Deliver s3 v0 b3"]
    for r in range(4):
        assert c.ledger(r) == [(1, "b1"), (2, "b2"), (3, "b3")]


def test_commit_needs_quorum_of_distinct_replicas_and_duplicates_are_ignored() -> None:
    """§4.2: committed-local needs 2f+1 commits from *distinct* replicas; a repeat counts once."""
    c = Cluster(4)
    b1 = c.batch("b1")
    c.hold_rules.append((None, None, "Commit"))
    c.propose(0, b1)
    c.run()
    commits = {(q[1], q[2]): q[3] for q in c.parked}
    c.parked.clear()
    r1 = c.replicas[1]
    # r1 holds its own commit; r2's commit delivered twice must not complete the quorum of 3
    c.deliver_to(1, 2, commits[(2, 1)])
    c.deliver_to(1, 2, commits[(2, 1)])
    assert not c.delivered[1]
    assert r1.status()["ignored"]["duplicate"] == 1
    c.deliver_to(1, 3, commits[(3, 1)])
    assert c.ledger(1) == [(1, "b1")]


def test_prepared_needs_prepares_from_backups_not_the_primary() -> None:
    """§4.2: the primary's pre-prepare stands for its vote; a PREPARE from the primary is ignored."""
    c = Cluster(4)
    b1 = c.batch("b1")
    pp = c.replicas[0].propose(b1)[0].msg
    r1 = c.replicas[1]
    out = r1.receive(0, pp)
    assert [type(a.msg) for a in out if isinstance(a, Broadcast)] == [Prepare]
    bogus = Prepare(0, 0, 1, b1.digest, 0)
    assert r1.receive(0, bogus) == []
    assert r1.status()["ignored"]["prepare_from_primary"] == 1


def test_messages_from_non_members_or_with_wrong_replica_field_are_ignored() -> None:
    """§4.2 / §3: the authenticated sender must be a member and match the message's replica."""
    c = Cluster(4)
    b1 = c.batch("b1")
    pp = c.replicas[0].propose(b1)[0].msg
    r1 = c.replicas[1]
    r1.receive(0, pp)
    spoof = Prepare(0, 0, 1, b1.digest, 3, b"")  # claims to be r3, sent by r2
    assert r1.receive(2, spoof) == []
    stranger = Prepare(0, 0, 1, b1.digest, 9, b"")
    assert r1.receive(9, stranger) == []
    assert r1.receive(7, Commit(0, 0, 1, b1.digest, 7)) == []
    ignored = r1.status()["ignored"]
    assert ignored["wrong_replica_field"] == 3
    # a pre-prepare from someone other than the primary of its view is ignored
    fake_pp = PrePrepare(0, 0, 2, c.batch("b2"))
    assert c.replicas[1].receive(2, fake_pp) == []
    assert r1.status()["ignored"]["pre_prepare_not_from_primary"] == 1


def test_messages_for_another_instance_are_ignored() -> None:
    """RCC runs m PBFT instances; an instance ignores the others' messages."""
    c = Cluster(4)
    pp = c.replicas[0].propose(c.batch("b1"))[0].msg
    other = PrePrepare(1, pp.view, pp.seq, pp.batch, pp.signature)
    assert c.replicas[1].receive(0, other) == []
    assert c.replicas[1].status()["ignored"]["wrong_instance"] == 1


def test_instance_shifts_the_primary() -> None:
    """RCC: instance i's primary of view v is (i + v) mod n."""
    c = Cluster(4, instance=2)
    assert [r.is_proposer() for r in c.replicas] == [False, False, True, False]
    c.propose(2, c.batch("b1"))
    c.run()
    assert all(c.ledger(r) == [(1, "b1")] for r in range(4))


def test_old_view_messages_ignored_and_future_view_messages_held() -> None:
    """§4.2: accept only messages of the current view; later views wait in a bounded buffer."""
    c = Cluster(4)
    b1 = c.batch("b1")
    r1 = c.replicas[1]
    future = Prepare(0, 3, 1, b1.digest, 2)
    assert r1.receive(2, future) == []
    assert r1.status()["buffered"] == 1
    # once r1 is in view 1 (set by hand here), view-0 traffic is stale
    pp = c.replicas[0].propose(b1)[0].msg
    r1.view = 1
    assert r1.receive(0, pp) == []
    assert r1.receive(3, Commit(0, 0, 1, b1.digest, 3)) == []
    assert r1.status()["ignored"]["old_view"] == 2


def test_conflicting_pre_prepare_is_ignored() -> None:
    """§4.2: a backup accepts one pre-prepare per (view, seq); a second, different one is a
    faulty primary's equivocation and is ignored."""
    c = Cluster(4)
    r0 = c.replicas[0]
    pp1 = r0.propose(c.batch("b1"))[0].msg
    # a second pre-prepare at the same (view, seq) signed by the primary, different batch
    b2 = c.batch("b2")
    pp2 = r0._make_pre_prepare(0, 1, b2)
    r1 = c.replicas[1]
    first = [a for a in r1.receive(0, pp1) if isinstance(a, Broadcast)]
    assert len(first) == 1 and first[0].msg.digest == pp1.digest
    assert r1.receive(0, pp2) == []
    assert r1.status()["ignored"]["conflicting_pre_prepare"] == 1
    assert r1.receive(0, pp1) == []
    assert r1.status()["ignored"]["duplicate"] == 1


def test_pre_prepare_with_bad_digest_or_client_signature_is_ignored() -> None:
    """§4.2: a backup re-checks the batch digest and the clients' signatures."""
    c = Cluster(4)
    good = c.batch("b1")
    forged_req = signed_request(99, 1, b"x")
    forged_req = type(forged_req)(99, 1, b"tampered", forged_req.signature)
    r0 = c.replicas[0]
    bad_sig_batch = make_batch((forged_req,))
    pp = r0._make_pre_prepare(0, 1, bad_sig_batch)
    r1 = c.replicas[1]
    assert r1.receive(0, pp) == []
    assert r1.status()["ignored"]["bad_client_signature"] == 1
    wrong_digest = type(good)(good.requests, b"\x00" * 32)
    assert r1.receive(0, r0._make_pre_prepare(0, 1, wrong_digest)) == []
    assert r1.status()["ignored"]["bad_batch_digest"] == 1
    unsigned = PrePrepare(0, 0, 1, good, b"forged")
    assert r1.receive(0, unsigned) == []
    assert r1.status()["ignored"]["bad_signature"] == 1


def test_window_full_proposals_queue_and_drain_when_watermarks_move() -> None:
    """§4.2/§4.3: the primary assigns seqs only in (h, H]; later batches wait in a bounded queue
    and go out when a stable checkpoint moves the window."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4)
    r0 = c.replicas[0]
    r0.max_queued = 3  # the bound (limits.QUEUED_BATCHES_PER_WINDOW windows), made small
    assert r0.proposal_room() == 4 + 3
    for i in range(1, 8):
        c.propose(0, c.batch(f"b{i}"))
    assert r0.status()["last_assigned"] == 4 and r0.status()["queued"] == 3
    assert r0.proposal_room() == 0
    c.propose(0, c.batch("b8"))  # no room at all: refused and counted
    assert r0.status()["proposals_dropped"] == 1
    c.run()
    for r in range(4):
        assert c.ledger(r) == [(i, f"b{i}") for i in range(1, 8)]
    assert r0.status()["queued"] == 0
    assert r0.proposal_room() == (r0.high - 7) + 3


def test_backups_refuse_to_propose() -> None:
    """§4.1: only the primary assigns sequence numbers."""
    c = Cluster(4)
    assert not c.replicas[1].is_proposer() and c.replicas[1].proposal_room() == 0
    assert c.replicas[1].propose(c.batch("b1")) == []
    assert c.replicas[1].status()["proposals_dropped"] == 1


def test_replayed_requests_are_not_proposed_again() -> None:
    """§4.1: the client's timestamp orders its requests; a delivered or in-flight one is
    never proposed twice (bounded memory: last delivered timestamp per client)."""
    c = Cluster(4)
    b1 = c.batch("b1")
    req = b1.requests[0]
    c.propose(0, b1)
    # in flight: the same request from the client again is not proposed
    r0 = c.replicas[0]
    assert r0.receive(req.client_id, req) == []
    assert r0.propose(make_batch((req,))) == []
    c.run()
    assert c.ledger(0) == [(1, "b1")]
    # delivered: not proposed again, not even inside a batch with a fresh request
    assert r0.receive(req.client_id, req) == []
    fresh = signed_request(req.client_id, req.timestamp + 1, b"fresh")
    out = r0.propose(make_batch((req, fresh)))
    pps = [a.msg for a in out if isinstance(a, Broadcast)]
    assert len(pps) == 1 and pps[0].batch.requests == (fresh,)
    c.apply(0, out)
    c.run()
    assert [d.batch.requests for d in c.delivered[2]][-1] == (fresh,)
    assert r0.status()["ignored"]["request_already_delivered"] == 1
    assert r0.status()["ignored"]["request_in_flight"] == 1
    # an older timestamp not delivered yet is fresh: a client keeps several requests in flight
    older = signed_request(req.client_id, 0, b"older")
    assert len(r0.receive(req.client_id, older)) == 1


def test_replay_memory_is_bounded_by_a_window_per_client() -> None:
    """Bounded replay memory: past ``replay_window`` (protocols.limits.REPLAY_WINDOW_PER_CLIENT)
    delivered timestamps of a client, the oldest fall below a floor that counts as delivered."""
    c = Cluster(4)
    for r in c.replicas:
        r.replay_window = 2  # the bound, made small to reach it with three requests
    reqs = [signed_request(4, ts, b"op%d" % ts) for ts in (5, 2, 7)]
    for req in reqs:
        c.propose(0, make_batch((req,)))
    c.run()
    r0 = c.replicas[0]
    assert r0.clients[4].recent == {2, 7} and r0.clients[4].floor == 5
    assert all(r0.was_delivered(4, ts) for ts in (1, 2, 3, 4, 5, 7))
    assert not r0.was_delivered(4, 6) and not r0.was_delivered(4, 8)
    assert r0.propose(make_batch((signed_request(4, 3, b"late"),))) == []


def test_primary_proposes_a_client_request_as_a_one_request_batch() -> None:
    """§4.1: the primary orders a request it receives from a client (or a backup)."""
    c = Cluster(4)
    req = signed_request(4, 1, b"op")
    c.client_request(0, req)
    c.run()
    for r in range(4):
        assert [d.batch.requests for d in c.delivered[r]] == [(req,)]


def test_backup_forwards_a_client_retransmission_and_starts_its_timer() -> None:
    """§4.4: a backup receiving a client request relays it to the primary and starts a timer;
    the timer stops when the request executes."""
    c = Cluster(4, view_change_ticks=7)
    req = signed_request(4, 1, b"op")
    r2 = c.replicas[2]
    out = r2.receive(4, req)
    assert Send(0, req) in out and SetTimer(("pbft", 0, "request"), 7) in out
    c.apply(2, out)
    c.run()  # the primary proposes it; it commits; r2's timer is cancelled
    assert ("pbft", 0, "request") not in c.timers[2]
    assert c.ledger(2) == [(1, c.bname(c.delivered[2][0].batch.digest))]
    # a forged request does not start anything
    bad = type(req)(4, 2, b"op2", b"bad")
    assert r2.receive(4, bad) == []


def test_deliver_actions_carry_seq_view_and_batch() -> None:
    c = Cluster(4)
    b1 = c.batch("b1")
    c.propose(0, b1)
    c.run()
    assert c.delivered[3] == [Deliver(1, 0, b1)]


def test_config_knobs_are_read() -> None:
    cfg = ProtocolConfig(
        replica_id=0,
        n=4,
        checkpoint_period=3,
        watermark_window=9,
        view_change_ticks=5,
        max_buffered=8,
        params={"pbft_signed_votes": False},
    )
    rep = Pbft(cfg, FakeVerifier(0))
    assert (rep.period, rep.window, rep.base_ticks, rep.sign_votes) == (3, 9, 5, False)
    assert rep.status()["high_watermark"] == 9


def test_a_prepare_after_the_slot_prepared_is_neither_verified_nor_kept() -> None:
    """§4.2: prepared = pre-prepare + 2f matching prepares; with signed votes, a prepare that
    arrives once the certificate is complete costs no signature check (the CPU ledger showed
    one Ed25519 verify per late prepare on the worker's critical path)."""
    c = Cluster(4, params={"pbft_signed_votes": True})
    c.hold_rules.append((3, 1, "Prepare"))  # replica 3's prepare reaches replica 1 last
    c.propose(0, c.batch("b1"))
    c.run()
    r1 = c.replicas[1]
    assert r1.slots[1].prepared
    verified = r1.verifier.verified
    c.hold_rules.clear()
    c.release()
    c.run()
    assert r1.verifier.verified == verified, "the late prepare was verified"
    assert 3 not in r1.slots[1].prepares
    assert c.ledger(1) == [(1, "b1")]
