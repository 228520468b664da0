"""PoE's all-to-all MAC variant (``poe_certificate: macs``): no signature in the normal case.

The paper (Gupta et al., EDBT'21, §3) offers MACs for when signatures cost too much:
SUPPORT goes to every replica and each view-commits on n−f of them. MACs are not
transferable, so the view change cannot rank certificates; it weighs *claims* instead,
by the rule Castro & Liskov give for PBFT with MACs (TOCS'02 §4.5, prepared ↔
view-committed, pre-prepared ↔ supported). These tests pin that rule on hand-built
VC-REQUESTs, run the whole variant through a view change on the fake link, and check the
catch-up paths it needs (f+1 matching view-commit claims; relayed stable checkpoint
proofs). The simulator runs it under every fault mix, with Byzantine replicas that sign
lying VC-REQUESTs (test_poe_sim.py).

Must not live here: the signature variant (test_poe.py), simulator sweeps.
"""

from __future__ import annotations

import dataclasses

from protocols.base import ProtocolConfig
from protocols.common import NULL_DIGEST, Batch, make_batch
from protocols.poe import (
    Certificate,
    Committed,
    Fetch,
    Poe,
    Supported,
    VcRequest,
    vc_request_payload,
)
from tests.protocol.poe_cluster import PoeCluster, ledger, sent, small_cluster, suspect_primary
from tests.protocol.scenario import FakeVerifier

MACS = {"poe_certificate": "macs"}


def cluster(n: int = 4, **kwargs: object) -> PoeCluster:
    kwargs.setdefault("params", MACS)
    return small_cluster(n, **kwargs)


# --- the decision rule, on hand-built VC-REQUESTs (n=4, f=1: n−f=3, f+1=2) ---------------------


def _poe(window: int = 2) -> Poe:
    cfg = ProtocolConfig(
        replica_id=0, n=4, checkpoint_period=1, watermark_window=window, params=MACS
    )
    return Poe(cfg, FakeVerifier(0))


A = make_batch(())
B = dataclasses.replace(make_batch(()), digest=b"B" * 32)  # the liar's batch (digest only)
C = dataclasses.replace(make_batch(()), digest=b"C" * 32)


def _vc(
    replica: int, claims: dict[int, tuple[int, Batch]], supports: dict[int, tuple]
) -> VcRequest:
    """A VC-REQUEST for view 6 claiming view-commits {seq: (view, batch)} and supports
    {seq: ((view, batch), ...)} (nobody checks claims against anything: that is the point)."""
    entries = tuple(Committed(v, s, b, None) for s, (v, b) in sorted(claims.items()))
    supported = tuple(
        Supported(s, v, b.digest) for s, pairs in sorted(supports.items()) for v, b in pairs
    )
    return VcRequest(6, replica, 0, (), entries, supported, b"")


def _digests(p: Poe, vcs: tuple[VcRequest, ...]) -> list[bytes] | None:
    plan = p.make_plan(6, vcs)
    return None if plan is None else [b.digest for b in plan.batches]


def test_an_accepted_batch_beats_a_byzantine_claim_from_a_later_view() -> None:
    """Clients accepted A at seq 1 (view-committed in view 0 by r1, r2 and Byzantine r0).
    r0 now claims it view-committed B in view 5 and supported it there. A claim needs f+1
    support claims in its view or later (A2): only the liar makes one, so B is never chosen.
    A has A1 (n−f requests claim nothing newer or conflicting) only once r3's arrives."""
    p = _poe()
    liar = _vc(0, {1: (5, B)}, {1: ((5, B),)})
    r1 = _vc(1, {1: (0, A)}, {1: ((0, A),)})
    r2 = _vc(2, {1: (0, A)}, {1: ((0, A),)})
    r3 = _vc(3, {}, {})
    assert _digests(p, (liar, r1, r3)) is None  # undecided: B lacks A2, A lacks A1
    assert _digests(p, (liar, r1, r2, r3)) == [A.digest, NULL_DIGEST]
    assert _digests(p, (r1, r2, r3)) == [A.digest, NULL_DIGEST]


def test_a_later_view_claim_backed_by_an_honest_support_is_chosen() -> None:
    """If an honest replica supported C in view 4 (a primary proposed it there, so nothing
    older was accepted at that seq), the highest claim C wins over the older A."""
    p = _poe()
    r0 = _vc(0, {1: (4, C)}, {1: ((4, C),)})
    r1 = _vc(1, {1: (0, A)}, {1: ((0, A), (4, C))})
    r2 = _vc(2, {}, {})
    assert _digests(p, (r0, r1, r2)) == [C.digest, NULL_DIGEST]


def test_null_needs_n_minus_f_requests_without_a_claim() -> None:
    p = _poe()
    r0 = _vc(0, {2: (1, A)}, {})  # a claim without A2: neither chosen nor ruled out
    empty = [_vc(r, {}, {}) for r in (1, 2, 3)]
    assert _digests(p, (r0, empty[0], empty[1])) is None
    assert _digests(p, (r0, *empty)) == [NULL_DIGEST, NULL_DIGEST]


def test_equal_views_with_different_batches_cannot_both_win() -> None:
    """Two claims in one view (an equivocating primary, a lying replica): A1 for either one
    counts the other against it, so only the one with n−f non-conflicting requests wins."""
    p = _poe()
    liar = _vc(0, {1: (2, B)}, {1: ((2, B),)})
    r1 = _vc(1, {1: (2, A)}, {1: ((2, A),)})
    r2 = _vc(2, {1: (2, A)}, {1: ((2, A),)})
    r3 = _vc(3, {}, {1: ((2, B),)})  # honest r3 supported B in view 2 (it saw B proposed)
    assert _digests(p, (liar, r1, r2)) is None  # A: 2 of 3 agree; B: only the liar
    assert _digests(p, (liar, r1, r2, r3)) == [A.digest, NULL_DIGEST]


def test_claims_with_certificates_or_too_many_supports_are_invalid() -> None:
    p = _poe(window=4)
    sign = FakeVerifier(1).sign

    def signed(vc: VcRequest) -> VcRequest:
        vc = dataclasses.replace(vc, new_view=1, replica=1)
        return dataclasses.replace(vc, signature=sign(vc_request_payload(vc)))

    good = signed(_vc(1, {1: (0, A)}, {1: ((0, A),)}))
    assert p._valid_vc_request(good)
    with_cert = dataclasses.replace(good.entries[0], cert=Certificate((), ()))
    assert not p._valid_vc_request(signed(dataclasses.replace(good, entries=(with_cert,))))
    many = tuple(Supported(1, 0, bytes([i]) * 32) for i in range(5))  # > 4 per seq
    assert not p._valid_vc_request(signed(dataclasses.replace(good, supported=many)))
    future = (Supported(1, 1, A.digest),)  # a support claimed in the new view itself
    assert not p._valid_vc_request(signed(dataclasses.replace(good, supported=future)))


# --- the variant end to end on the fake link --------------------------------------------------


def test_view_change_with_macs_keeps_the_accepted_batch() -> None:
    """§3/§4 with MACs: r0, r1, r2 view-commit b1 (its client accepts: n−f INFORMs); r3
    misses the supports. The primary crashes; the VC-REQUESTs carry claims, not
    certificates, and the new view still keeps b1. No CERTIFY, no NV-CERTIFY, no shares."""
    c = cluster()
    c.drop_rules += [(1, 3, "Support"), (2, 3, "Support")]
    c.propose(0, c.batch("b1"))
    c.run()
    assert ledger(c, 1) == ["1:b1"] and c.delivered[3] == []
    c.crash(0)
    c.drop_rules.clear()
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    suspect_primary(c, [1, 2, 3])
    vcs = sent(c, "r1 Broadcast VcRequest")
    assert vcs == ["r1 Broadcast VcRequest v1 stable=0 entries=[1:v0:b1] supported=[1:v0:b1]"]
    assert sent(c, "r1 Broadcast NvPropose") == ["r1 Broadcast NvPropose v1 from=[r1,r2,r3]"]
    for r in (1, 2, 3):
        assert sent(c, f"r{r} Broadcast NvSupport") == [
            f"r{r} Broadcast NvSupport v1 from r{r} waiting"
        ]
        assert c.poe[r].view == 1 and c.poe[r].mode == "active"
    assert not any("Certify" in ln for ln in c.trace)
    for r in (1, 2, 3):
        assert ledger(c, r)[:2] == ["1:b1", "2:null"]
        assert ledger(c, r)[-1] == "9:b2"
    c.check_safety()
    # The only signatures: checkpoints and VC-REQUESTs (none per batch in the normal case).
    assert c.poe[3].verifier.signed == sum(
        1 for ln in sent(c, "r3 Broadcast") if "Checkpoint" in ln or "VcRequest" in ln
    )


def test_f_plus_1_view_commit_claims_let_a_replica_catch_up() -> None:
    """r3 misses the supports of b1 (no n−f of its own). Its request timer probes with
    FETCH; f+1 replicas claim they view-committed b1 in this view, so one honest replica
    holds n−f supports for it: r3 view-commits and executes b1 without a view change."""
    c = cluster()
    c.drop_rules += [(1, 3, "Support"), (2, 3, "Support")]
    c.propose(0, c.batch("b1"))
    c.run()
    assert c.delivered[3] == []
    c.drop_rules.clear()
    c.client_request(3, c.batch("b1").requests[0])
    c.run()
    assert c.fire(3, "request")
    c.run()
    assert ledger(c, 3) == ["1:b1"]
    assert any(ln.endswith("b1 claimed") for ln in sent(c, "r1 Send r3 FetchReply"))
    assert c.poe[3].view == 0 and not sent(c, "r3 Broadcast VcRequest")


def test_one_view_commit_claim_is_not_enough() -> None:
    c = cluster()
    c.drop_rules += [(1, 3, "Support"), (2, 3, "Support"), (2, 3, "FetchReply")]
    c.drop_rules += [(0, 3, "FetchReply")]
    c.propose(0, c.batch("b1"))
    c.run()
    c.client_request(3, c.batch("b1").requests[0])
    c.run()
    assert c.fire(3, "request")
    c.run()
    assert c.delivered[3] == []  # only r1's claim reached it


def test_a_stable_checkpoint_proof_is_relayed_to_a_replica_that_missed_the_votes() -> None:
    """Checkpoint votes are sent once. A replica that lost them learns of the stable
    checkpoint from any replica's FETCH answer (2f+1 signed votes: transferable)."""
    c = cluster(checkpoint_period=2, watermark_window=4)
    c.drop_rules.append((None, 3, "Checkpoint"))
    for name in ("b1", "b2"):
        c.propose(0, c.batch(name))
    c.run()
    assert ledger(c, 3) == ["1:b1", "2:b2"] and c.poe[3].low == 0
    assert c.poe[0].low == 2
    c.drop_rules.clear()
    c.deliver_to(1, 3, Fetch(3, 6, 3, c.poe[3].low))  # any FETCH of r3's
    c.run()
    assert sent(c, "r1 Send r3 StableProof") == ["r1 Send r3 StableProof s2 (3 checkpoints)"]
    assert c.poe[3].low == 2 and c.poe[3].final_mark == 2
    assert c.stable[3] == [2]
