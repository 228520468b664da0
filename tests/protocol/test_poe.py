"""PoE (Gupta, Hellings, Rahnama, Sadoghi, "Proof-of-Execution", EDBT'21) unit tests.

Each test names the part of the paper it checks. Replicas are joined by the shared
in-memory fake link (tests/protocol/scenario.py through poe_cluster.PoeCluster): no
sockets, no sleeps; timers fire only when a test says so.

Must not live here: simulator runs (test_poe_sim.py), scripted scenarios
(test_poe_scenarios.py).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import codec, registry
from protocols.base import ProtocolConfig, StableCheckpoint
from protocols.checkpoints import Checkpoint
from protocols.common import NULL_DIGEST, make_batch
from protocols.poe import (
    Certificate,
    Certify,
    Committed,
    Fetch,
    FetchReply,
    NvCertify,
    NvCommit,
    NvPropose,
    NvSupport,
    Poe,
    Propose,
    StableProof,
    Support,
    Supported,
    VcRequest,
    combine,
    support_payload,
)
from tests.protocol.poe_cluster import ledger, sent, small_cluster, suspect_primary
from tests.protocol.scenario import FakeVerifier
from transport import wire

# --- interface and configuration ------------------------------------------------------------


def test_registered_and_client_rules() -> None:
    """§3: clients accept n−f identical speculative INFORMs, sent to the primary v mod n."""
    assert registry.get("poe") is Poe
    assert Poe.speculative_replies is True
    assert Poe.reply_quorum(4, 1) == 3
    assert Poe.reply_quorum(7, 2) == 5
    assert Poe.client_target(5, 9, 4, {}) == 1


def test_unknown_certificate_mode_is_refused() -> None:
    cfg = ProtocolConfig(replica_id=0, n=4, params={"poe_certificate": "threshold"})
    with pytest.raises(ValueError, match="poe_certificate"):
        Poe(cfg, FakeVerifier(0))


def test_every_message_crosses_the_wire_in_the_poe_kind_range() -> None:
    """Kinds 48..79 are PoE's (transport/wire.py); every message survives encode/decode."""
    b = make_batch(())
    cert = Certificate((0, 1, 2), (b"a", b"b", b"c"))
    cp = Checkpoint(0, 4, b"d" * 32, 1, b"s")
    entry = Committed(0, 1, b, cert)
    vc = VcRequest(1, 2, 4, (cp,), (entry,), (), b"sig")
    claim = Committed(0, 5, b, None)
    mac_vc = VcRequest(1, 2, 4, (cp,), (claim,), (Supported(5, 0, b.digest),), b"sig")
    msgs = [
        Propose(0, 1, b, b"share"),
        Support(0, 1, b.digest, 1, b"share"),
        cert,
        Certify(0, 1, b.digest, cert),
        entry,
        vc,
        NvPropose(1, (vc,)),
        mac_vc,
        Supported(5, 0, b.digest),
        StableProof(4, (cp,)),
        NvSupport(1, 2, b"p" * 32, (b"x", b"y"), False),
        NvSupport(1, 2, b"p" * 32, (), True),
        NvCertify(1, 4, (b.digest,), (cert,)),
        NvCommit(1, 3, b"p" * 32, True),
        Fetch(1, 5, 3, 0),
        FetchReply(1, 0, b, 2, False, cert, 1),
        FetchReply(1, 0, b, 2, True, None, 1),
    ]
    for msg in msgs:
        kind = codec.kind_of(msg)
        if type(msg) is not Checkpoint:
            assert 48 <= kind <= 79, type(msg).__name__
        assert wire.decode(wire.encode(msg, 3)) == (3, msg)


# --- normal case (§3) -------------------------------------------------------------------------


def test_normal_case_linear_support_certify_and_speculative_execution() -> None:
    """§3: PROPOSE to all, SUPPORT to the primary, CERTIFY from it, view-commit, execute."""
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    assert sent(c, "r0 Broadcast Propose") == ["r0 Broadcast Propose v0 s1 b1"]
    for r in (1, 2, 3):
        assert sent(c, f"r{r} Send") == [f"r{r} Send r0 Support v0 s1 b1 from r{r}"]
    assert sent(c, "r0 Broadcast Certify") == ["r0 Broadcast Certify v0 s1 b1 by [r0,r1,r2]"]
    for r in range(4):
        (d,) = c.delivered[r]
        assert (d.seq, d.view, d.batch, d.speculative) == (1, 0, c.batch("b1"), True)
    assert not sent(c, "r1 Broadcast") and not sent(c, "r2 Broadcast")


def test_certificate_formation_and_verification() -> None:
    """§3: a certificate is n−f distinct replicas' shares over (view, seq, digest)."""
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    ev = c.poe[3].evidence[1]
    payload = support_payload(0, 1, c.batch("b1").digest)
    verifier = FakeVerifier(3)
    assert len(ev.cert.signers) == 3 == len(set(ev.cert.signers))
    assert ev.cert.verify(verifier, payload, 3, 4)
    assert not ev.cert.verify(verifier, support_payload(0, 2, c.batch("b1").digest), 3, 4)
    assert not ev.cert.verify(verifier, payload, 4, 4)  # needs more signers than it has
    s0, s1, s2 = ev.cert.shares
    dup = Certificate((0, 0, 1), (s0, s0, s1))
    assert not dup.verify(verifier, payload, 3, 4)
    forged = Certificate((0, 1, 3), (s0, s1, s2))  # r2's share claimed as r3's
    assert not forged.verify(verifier, payload, 3, 4)
    assert not Certificate((0, 1, 9), (s0, s1, s2)).verify(verifier, payload, 3, 4)
    assert not Certificate((0, 1), (s0,)).verify(verifier, payload, 1, 4)  # ragged
    assert combine({2: s2, 0: s0, 1: s1}, 3) == ev.cert
    with pytest.raises(ValueError):
        combine({0: s0}, 3)


def test_backup_ignores_a_certificate_with_too_few_shares() -> None:
    """§3: view-commit needs a valid certificate; f+1 shares are not one."""
    c = small_cluster()
    c.drop_rules.append((0, 3, "Certify"))
    c.propose(0, c.batch("b1"))
    c.run()
    assert c.delivered[3] == []
    ev = c.poe[0].evidence[1]
    weak = Certificate(ev.cert.signers[:2], ev.cert.shares[:2])
    c.deliver_to(3, 0, Certify(0, 1, c.batch("b1").digest, weak))
    assert c.delivered[3] == []
    assert c.poe[3].ignored["bad_certificate"] == 1
    c.deliver_to(3, 0, Certify(0, 1, c.batch("b1").digest, ev.cert))
    c.run()
    assert ledger(c, 3) == ["1:b1"]


def test_primary_ignores_forged_and_misattributed_supports() -> None:
    c = small_cluster()
    c.drop_rules.append((None, 0, "Support"))
    c.propose(0, c.batch("b1"))
    c.run()
    d = c.batch("b1").digest
    c.deliver_to(0, 1, Support(0, 1, d, 1, b"forged"))
    c.deliver_to(0, 1, Support(0, 1, d, 2, FakeVerifier(2).sign(support_payload(0, 1, d))))
    assert c.poe[0].ignored["bad_share"] == 1
    assert c.poe[0].ignored["wrong_replica_field"] == 1
    assert c.delivered[0] == []


def test_mac_variant_all_to_all_supports_and_local_view_commit() -> None:
    """§3 (MACs): SUPPORT to everyone, each replica view-commits on n−f, no CERTIFY, and
    nothing is signed in the normal case (the links' MACs authenticate every SUPPORT)."""
    c = small_cluster(params={"poe_certificate": "macs"})
    c.propose(0, c.batch("b1"))
    c.run()
    assert not any("Certify" in ln for ln in c.trace)
    for r in (1, 2, 3):
        assert sent(c, f"r{r} Broadcast Support") == [f"r{r} Broadcast Support v0 s1 b1 from r{r}"]
    assert all(ledger(c, r) == ["1:b1"] for r in range(4))
    assert [c.poe[r].verifier.signed for r in range(4)] == [0, 0, 0, 0]
    assert c.poe[2].evidence[1].cert is None  # a claim for the view change, not a proof
    d = c.batch("b1").digest
    assert c.poe[2].supported == {1: {d: 0}}  # its Q-set: what it supported, last in view 0


def test_mac_variant_needs_n_minus_f_supports() -> None:
    c = small_cluster(params={"poe_certificate": "macs"})
    c.drop_rules += [(1, 3, "Support"), (2, 3, "Support")]  # r3 sees r0's share and its own
    c.propose(0, c.batch("b1"))
    c.run()
    assert c.delivered[3] == []
    assert all(ledger(c, r) == ["1:b1"] for r in (0, 1, 2))


def test_out_of_order_processing_and_in_order_execution() -> None:
    """§3 (out-of-order): several seqs in flight; execution strictly in seq order."""
    c = small_cluster()
    c.hold_rules.append((0, None, "Certify"))
    for name in ("b1", "b2", "b3"):
        c.propose(0, c.batch(name))
    c.run()
    assert [d.seq for d in c.delivered[0]] == [1, 2, 3]  # the primary holds all certificates
    assert all(c.delivered[r] == [] for r in (1, 2, 3))
    c.release(reverse=True)  # certificates arrive for seq 3, then 2, then 1
    c.run()
    for r in range(4):
        assert ledger(c, r) == ["1:b1", "2:b2", "3:b3"]


def test_primary_window_queue_and_watermark_hold() -> None:
    """The primary proposes within (low, high]; more batches wait in a bounded queue."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    p = c.poe[0]
    assert p.proposal_room() == 4 + p.max_queued
    for i in range(6):
        c.propose(0, c.batch(f"b{i + 1}"))
    assert p.last_assigned == 4 and len(p.queue) == 2
    assert p.proposal_room() == p.max_queued - 2
    c.run()  # seqs 1..4 commit, checkpoint 2 becomes stable, the queue drains into 5, 6
    for r in range(4):
        assert ledger(c, r) == [f"{i}:b{i}" for i in range(1, 7)]
    assert (p.low, p.high, p.last_assigned, len(p.queue)) == (6, 10, 6, 0)


def test_replayed_requests_are_not_proposed_twice() -> None:
    c = small_cluster()
    b1 = c.batch("b1")
    c.propose(0, b1)
    c.run()
    c.propose(0, b1)  # the client re-sent: already executed
    c.run()
    assert ledger(c, 1) == ["1:b1"]
    assert c.poe[0].ignored["replayed_request"] == 1


# --- checkpoints (PBFT §4.3 reused) -----------------------------------------------------------


def test_checkpoint_makes_batches_final_and_collects_garbage() -> None:
    """A stable checkpoint (2f+1 signed, matching) makes the batches below it final."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    for name in ("b1", "b2", "b3"):
        c.propose(0, c.batch(name))
    c.run()
    for r in range(4):
        assert c.stable[r] == [2]
        p = c.poe[r]
        assert (p.low, p.high, p.final_mark) == (2, 6, 2)
        assert all(s > 2 for s in p.evidence) and all(s > 2 for s in p.slots)
    assert sum(ln.endswith("Broadcast Checkpoint s2 " + ln.split()[-1]) for ln in c.trace) == 4


def test_stable_checkpoint_waits_for_own_matching_state() -> None:
    """A replica behind the stable checkpoint fetches final batches before it is final."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    c.drop_rules += [(0, 3, "Propose"), (0, 3, "Certify")]
    c.propose(0, c.batch("b1"))
    c.propose(0, c.batch("b2"))
    c.run()
    assert ledger(c, 3) == ["1:b1", "2:b2"]  # caught up by FETCH (f+1 matching final replies)
    assert c.stable[3] == [2]
    assert any(ln.startswith("r3 Broadcast Fetch") for ln in c.trace)
    assert all(ln.endswith("final") for ln in c.trace if "Send r3 FetchReply" in ln)


# --- view change (§4) -------------------------------------------------------------------------


def test_view_change_after_primary_crash_keeps_certified_batches() -> None:
    """§4: VC-REQUESTs carry certificates; the new view's plan keeps every certified batch."""
    c = small_cluster()
    c.drop_rules.append((0, 3, "Certify"))
    c.propose(0, c.batch("b1"))
    c.run()
    assert ledger(c, 1) == ["1:b1"] and c.delivered[3] == []
    # r0, r1, r2 executed b1 and INFORMed its client: n−f matching replies, accepted.
    c.crash(0)
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    suspect_primary(c, [1, 2, 3])
    assert sent(c, "r1 Broadcast NvPropose") == ["r1 Broadcast NvPropose v1 from=[r1,r2,r3]"]
    plan = [ln for ln in c.trace if ln.startswith("r1 Broadcast NvCertify")]
    assert plan == [
        "r1 Broadcast NvCertify v1 plan=[1:b1,2:null,3:null,4:null,5:null,6:null,7:null,8:null]"
    ]
    for r in (1, 2, 3):
        assert c.poe[r].view == 1 and c.poe[r].mode == "active"
        assert c.views[r] == [(1, 1)]
    assert ledger(c, 3)[0] == "1:b1"  # r3 executes the accepted batch at the same seq
    # the new primary orders b2 above the plan once the checkpoints moved the window
    for r in (1, 2, 3):
        assert ledger(c, r) == ["1:b1"] + [f"{s}:null" for s in range(2, 9)] + ["9:b2"]
    # nothing executed was dropped: r1 and r2 re-execute b1 in view 1 (so their INFORMs
    # match r3's view, seq and result), nobody loses it
    rollbacks = [ln for ln in c.trace if "Rollback" in ln]
    assert sorted(rollbacks) == [f"r{r} Rollback to s0" for r in (1, 2, 3)], rollbacks
    for r in (1, 2, 3):
        assert f"r{r} Deliver s1 v1 b1" in c.trace
    c.check_safety()


def test_plan_executes_only_after_n_minus_f_nv_commits() -> None:
    """The plan is locked (n−f NV-COMMIT) before anyone executes it (this implementation's
    safety rule against clients combining replies from different views)."""
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    c.crash(0)
    c.drop_rules += [(1, 3, "NvCommit"), (2, 3, "NvCommit")]
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    suspect_primary(c, [1, 2, 3])
    p3 = c.poe[3]
    assert p3.mode == "nv_pending" and p3.nv_certify is not None
    assert ledger(c, 3) == ["1:b1"]  # holds the certified plan, executes none of it
    assert ledger(c, 1)[:2] == ["1:b1", "2:null"]
    c.drop_rules.clear()
    assert c.fire(3, "view_change")  # retransmits its NV-COMMIT; the others answer
    c.run()
    assert p3.mode == "active" and ledger(c, 3)[:2] == ["1:b1", "2:null"]


def test_view_change_rolls_back_a_speculative_batch_that_did_not_survive() -> None:
    """§4: a batch executed speculatively but absent from the new view is rolled back."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    c.propose(0, c.batch("b1"))
    c.run()
    c.drop_rules.append((0, None, "Certify"))
    c.propose(0, c.batch("b2"))
    c.run()
    assert ledger(c, 0) == ["1:b1", "2:b2"] and ledger(c, 1) == ["1:b1"]
    c.drop_rules += [(0, None, None), (None, 0, None)]
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    suspect_primary(c, [1, 2, 3])
    c.drop_rules.clear()
    c.propose(1, c.batch("b3"))
    c.run()
    # r0 drops b2 at s2; every replica re-executes b1 at s1 in view 1 (PoE's INFORMs of one
    # request must agree on the view) rather than keep its view-0 execution
    rollbacks = [ln for ln in c.trace if "Rollback" in ln]
    assert sorted(rollbacks) == [f"r{r} Rollback to s0" for r in range(4)], rollbacks
    assert c.poe[0].rolled_back == 2 and c.poe[0].reexecuted == 2
    want = ["1:b1", "2:null", "3:null", "4:null", "5:b2", "6:b3"]
    assert all(ledger(c, r) == want for r in range(4))
    c.check_safety()


def test_make_plan_highest_view_certificate_per_seq_else_null() -> None:
    """§4: for each seq above the highest stable checkpoint, the highest-view certificate."""
    p = Poe(ProtocolConfig(replica_id=0, n=4, checkpoint_period=2, watermark_window=4), None)  # type: ignore[arg-type]
    a, b = make_batch(()), dataclasses.replace(make_batch(()), digest=b"B" * 32)
    cert = Certificate((), ())
    e1 = Committed(0, 1, a, cert)
    e1_later = Committed(2, 1, b, cert)
    e3 = Committed(1, 3, a, cert)
    vcs = (
        VcRequest(3, 1, 0, (), (e1, e3), (), b""),
        VcRequest(3, 2, 0, (), (e1_later,), (), b""),
        VcRequest(3, 3, 0, (), (), (), b""),
    )
    plan = p.make_plan(3, vcs)
    assert plan.base == 0 and plan.end == 4
    assert [bt.digest for bt in plan.batches] == [b"B" * 32, NULL_DIGEST, a.digest, NULL_DIGEST]
    assert p.make_plan(3, tuple(reversed(vcs))).digest == plan.digest  # order-independent


def test_new_view_with_too_few_or_invalid_vc_requests_is_ignored() -> None:
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    c.crash(0)
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    suspect_primary(c, [1, 2, 3])
    nv = c.poe[1].nv  # the real NV-PROPOSE of view 1
    assert nv is not None
    fresh = small_cluster()
    p = fresh.poe[2]
    fresh.deliver_to(2, 1, NvPropose(1, nv.requests[:2]))  # n−f−1 VC-REQUESTs
    assert p.ignored["invalid_nv_propose"] == 1 and p.view == 0
    vc = nv.requests[1]
    forged = dataclasses.replace(vc, stable_seq=0, entries=(), signature=vc.signature)
    fresh.deliver_to(2, 1, NvPropose(1, (nv.requests[0], forged, nv.requests[2])))
    assert p.ignored["invalid_nv_propose"] == 2 and p.view == 0
    fresh.deliver_to(2, 1, nv)  # the real one moves it into view 1's plan
    assert p.view == 1 and p.mode == "nv_pending"


def test_replicas_join_a_view_that_f_plus_1_others_are_in() -> None:
    """§4 (as PBFT §4.5.2): f+1 replicas speaking from view w make a replica join w."""
    c = small_cluster()
    p = c.poe[3]
    for r in (1, 2):
        vc = VcRequest(2, r, 0, (), (), (), b"")
        vc = dataclasses.replace(vc, signature=FakeVerifier(r).sign(_vc_payload(vc)))
        c.deliver_to(3, r, vc)
    assert p.view == 2 and p.mode == "view_change"
    assert sent(c, "r3 Broadcast VcRequest") == ["r3 Broadcast VcRequest v2 stable=0 entries=[]"]


def _vc_payload(vc: VcRequest) -> bytes:
    from protocols.poe import vc_request_payload

    return vc_request_payload(vc)


def test_starved_replica_catches_up_before_suspecting_the_primary() -> None:
    """n−f INFORMs need every honest replica: a replica the primary starves of CERTIFY first
    fetches certified entries from the others (no view change when that works)."""
    c = small_cluster()
    c.drop_rules.append((0, 3, "Certify"))
    c.propose(0, c.batch("b1"))
    c.run()
    c.client_request(3, c.batch("b1").requests[0])  # its client re-sends to all
    c.run()
    assert c.fire(3, "request")
    c.run()
    assert ledger(c, 3) == ["1:b1"]
    assert any("Send r3 FetchReply s1 b1 certified" in ln for ln in c.trace)
    assert c.poe[3].view == 0 and not sent(c, "r3 Broadcast VcRequest")


def test_client_resending_an_executed_request_makes_replicas_suspect_the_primary() -> None:
    """A client that keeps re-sending a request the replica executed lacks n−f matching
    INFORMs; if the entry does not become final, the replica suspects the primary."""
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    req = c.batch("b1").requests[0]
    p = c.poe[2]
    c.client_request(2, req)
    c.run()
    assert "request" not in [t[-1] for t in c.timers[2]]  # once: maybe a lost reply
    c.client_request(2, req)
    c.run()
    assert ("poe", "request") in c.timers[2]  # again: out of step somewhere
    c.client_request(2, req)
    c.run()
    assert c.fire(2, "request")  # probe first
    c.client_request(2, req)
    c.run()
    assert c.fire(2, "request")
    assert p.mode == "view_change" and p.view == 1


def test_stable_checkpoint_action_carries_the_agreed_digest() -> None:
    """StableCheckpoint(seq, digest) is emitted once, with the state digest all agreed on."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    for name in ("b1", "b2"):
        c.propose(0, c.batch(name))
    actions = []
    for r in range(4):
        p = c.poe[r]
        c.run()
        assert p.stable_digest == p.own_digest[2] == c.heads[r][1]
        actions.append(StableCheckpoint(2, p.stable_digest))
    assert len(set(actions)) == 1
    assert all(c.stable[r] == [2] for r in range(4))


# --- robustness -------------------------------------------------------------------------------

_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.integers(-3, 12)
_blobs = st.binary(max_size=40)
_batches = st.builds(lambda: make_batch(())) | st.builds(
    lambda d: dataclasses.replace(make_batch(()), digest=d), _blobs
)
_certs = st.builds(
    Certificate,
    st.lists(st.integers(-1, 5), max_size=4).map(tuple),
    st.lists(_blobs, max_size=4).map(tuple),
)
_checkpoints = st.builds(Checkpoint, st.integers(0, 1), _ints, _blobs, st.integers(-1, 5), _blobs)
_entries = st.builds(Committed, _ints, _ints, _batches, _certs)
_vcs = st.builds(
    VcRequest,
    _ints,
    st.integers(-1, 5),
    _ints,
    st.lists(_checkpoints, max_size=3).map(tuple),
    st.lists(_entries, max_size=3).map(tuple),
    _blobs,
)
_messages = st.one_of(
    st.builds(Propose, _ints, _ints, _batches, _blobs),
    st.builds(Support, _ints, _ints, _blobs, st.integers(-1, 5), _blobs),
    st.builds(Certify, _ints, _ints, _blobs, _certs),
    _checkpoints,
    _vcs,
    st.builds(NvPropose, _ints, st.lists(_vcs, max_size=3).map(tuple)),
    st.builds(
        NvSupport, _ints, st.integers(-1, 5), _blobs, st.lists(_blobs, max_size=9).map(tuple)
    ),
    st.builds(
        NvCertify,
        _ints,
        _ints,
        st.lists(_blobs, max_size=9).map(tuple),
        st.lists(_certs, max_size=9).map(tuple),
    ),
    st.builds(NvCommit, _ints, st.integers(-1, 5), _blobs, st.booleans()),
    st.builds(Fetch, _ints, _ints, st.integers(-1, 5)),
    st.builds(
        FetchReply,
        _ints,
        _ints,
        _batches,
        st.integers(-1, 5),
        st.booleans(),
        st.none() | _certs,
        _ints,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 6), _messages), min_size=1, max_size=8))
def test_hostile_messages_never_raise(inbox: list[tuple[int, object]]) -> None:
    """Whatever well-formed but hostile messages arrive, a replica counts and ignores them
    (it never raises) and keeps working afterwards."""
    c = small_cluster(checkpoint_period=2, watermark_window=4)
    c.propose(0, c.batch("b1"))
    c.run()
    for sender, msg in inbox:
        c.poe[1].receive(sender, msg)  # actions are dropped: only the replica's state counts
    c.propose(0, c.batch("b2"))
    c.run()
    assert ledger(c, 2) == ["1:b1", "2:b2"]
