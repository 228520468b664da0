"""The runtime's Byzantine output (fabric/runtime/byzantine.py) and the output stage that
sends through it: what each kind does to a message per destination, that a liar's
rewritten proposals and votes carry its own valid signature, that corrupted MACs fail the
receiver's check, and that held-back frames leave in order once due (a fake clock)."""

from __future__ import annotations

from collections import Counter

import pytest

from fabric.runtime import byzantine
from fabric.runtime.byzantine import ByzantineOutput, CorruptMacs, equivocation_halves
from fabric.runtime.ring import Ring
from fabric.runtime.stages import OutputStage, ReplicaShared
from protocols.common import Reply, Request, make_batch
from protocols.pbft import Pbft
from protocols.pbft.messages import (
    Checkpoint,
    Commit,
    Prepare,
    PrePrepare,
    pre_prepare_payload,
    prepare_payload,
)
from protocols.poe import Poe
from protocols.poe.messages import Propose, Support, support_payload
from transport import auth, wire
from workloads.txn import READ, encode_txns

N = 4
KEYS = auth.derive_keys("byz-test", N + 1)


def _req(ts: int, client: int = N) -> Request:
    return Request(client, ts, encode_txns([(READ, ts, None)]), b"sig%d" % ts)


def _signer(node: int) -> auth.Ed25519Verifier:
    return auth.Ed25519Verifier(node, KEYS)


def _output(kind: str, cls: type = Pbft, delay_ms: float = 0.0, me: int = 0) -> ByzantineOutput:
    return ByzantineOutput(
        kind,
        me,
        N,
        proposal_messages=cls.proposal_messages,
        vote_messages=cls.vote_messages,
        delay_ms=delay_ms,
        sign=_signer(me).sign,
    )


def test_halves_split_the_other_replicas():
    assert equivocation_halves(0, 4) == ((1, 2), (3,))
    assert equivocation_halves(2, 7) == ((0, 1, 3), (4, 5, 6))


def test_equivocating_pbft_primary_sends_batch_b_signed_by_itself_to_the_second_half():
    out = _output("equivocate")
    batch = make_batch((_req(1), _req(2)))
    verifier = _signer(0)
    pp = PrePrepare(0, 0, 1, batch, verifier.sign(pre_prepare_payload(0, 0, 1, batch.digest)))
    counts: Counter[str] = Counter()
    routed = dict(out.outgoing((1, 2, 3), pp, counts))
    assert routed[(1, 2)] is pp  # the first half hears the honest proposal
    lie = routed[(3,)]
    assert (lie.view, lie.seq) == (pp.view, pp.seq) and lie.batch.digest != batch.digest
    assert sorted(lie.batch.requests, key=lambda r: r.timestamp) == list(batch.requests)
    payload = pre_prepare_payload(0, lie.view, lie.seq, lie.batch.digest)
    assert _signer(3).verify(0, payload, lie.signature), "a liar signs B validly as itself"
    assert counts["proposals_equivocated"] == 1
    # its later votes follow the split: the second half hears B's digest, the first A's
    commit = Commit(0, 0, 1, batch.digest, 0)
    assert out.outgoing(3, commit, counts) == [(3, Commit(0, 0, 1, lie.batch.digest, 0))]
    assert out.outgoing(1, commit, counts) == [(1, commit)]
    assert counts["messages_swapped"] == 1
    # the same A always maps to the same B (a stable split)
    assert dict(out.outgoing((3,), pp, counts))[(3,)] == lie


def test_equivocating_poe_primary_re_signs_its_own_support_share():
    out = _output("equivocate", Poe)
    batch = make_batch((_req(1), _req(2), _req(3)))
    share = _signer(0).sign(support_payload(0, 5, batch.digest))
    lie = dict(out.outgoing((1, 2, 3), Propose(0, 5, batch, share), Counter()))[(3,)]
    assert lie.batch.digest != batch.digest
    assert _signer(2).verify(0, support_payload(0, 5, lie.batch.digest), lie.share)


def test_a_single_request_batch_gets_an_alternative_from_what_the_liar_saw():
    out = _output("equivocate")
    first, second = make_batch((_req(1),)), make_batch((_req(2),))
    out.outgoing((1, 2, 3), PrePrepare(0, 0, 1, first), Counter())
    lie = dict(out.outgoing((1, 2, 3), PrePrepare(0, 0, 2, second), Counter()))[(3,)]
    assert lie.batch.requests == (_req(2), _req(1))


def test_wrong_digest_rewrites_votes_only_and_re_signs_them():
    out = _output("wrong_digest", me=1)
    batch = make_batch((_req(1), _req(2)))
    sig = _signer(1).sign(prepare_payload(0, 0, 1, 1, batch.digest))
    counts: Counter[str] = Counter()
    [(dest, lie)] = out.outgoing((0, 2, 3), Prepare(0, 0, 1, batch.digest, 1, sig), counts)
    assert dest == (0, 2, 3) and lie.digest == byzantine.wrong_digest(batch.digest) != batch.digest
    assert _signer(0).verify(1, prepare_payload(0, 0, 1, 1, lie.digest), lie.signature)
    [(_, commit)] = out.outgoing((0, 2, 3), Commit(0, 0, 1, batch.digest, 1), counts)
    assert commit.digest != batch.digest
    assert counts["votes_rewritten"] == 2
    # not a vote: a proposal, a checkpoint, a request, a reply go out as they are
    pp = PrePrepare(0, 1, 2, batch)
    assert out.outgoing(2, pp, counts) == [(2, pp)]
    chk = Checkpoint(0, 10, b"d" * 32, 1)
    assert out.outgoing(2, chk, counts) == [(2, chk)]
    reply = Reply(0, 3, 0, N, 9, b"r", False)
    assert out.outgoing(N, reply, counts) == [(N, reply)]


def test_poe_support_for_a_wrong_digest_carries_a_valid_share():
    out = _output("wrong_digest", Poe, me=2)
    digest = make_batch((_req(1),)).digest
    share = _signer(2).sign(support_payload(0, 1, digest))
    [(_, lie)] = out.outgoing(0, Support(0, 1, digest, 2, share), Counter())
    assert lie.digest != digest
    assert _signer(0).verify(2, support_payload(0, 1, lie.digest), lie.share)


def test_throttle_holds_proposals_only_slow_holds_everything():
    throttle = _output("throttle", delay_ms=300)
    slow = _output("slow", delay_ms=40)
    pp = PrePrepare(0, 0, 1, make_batch((_req(1),)))
    commit = Commit(0, 0, 1, pp.batch.digest, 0)
    reply = Reply(0, 3, 0, N, 9, b"r", False)
    assert throttle.delay_s(pp) == pytest.approx(0.3)
    assert throttle.delay_s(commit) == 0 and throttle.delay_s(reply) == 0
    assert slow.delay_s(pp) == slow.delay_s(commit) == slow.delay_s(reply) == pytest.approx(0.04)
    for kind in ("throttle", "slow", "bad_mac"):  # these never change a message
        assert _output(kind, delay_ms=1).outgoing((1, 2), pp, Counter()) == [((1, 2), pp)]


def test_bad_mac_tags_fail_the_receivers_check():
    link = auth.LinkAuth("cmac-aes", 0, KEYS)
    counts: Counter[str] = Counter()
    bad = _output("bad_mac").wrap_auth(link, counts)
    assert isinstance(bad, CorruptMacs) and bad.tag_size == link.tag_size
    assert _output("slow", delay_ms=1).wrap_auth(link, counts) is link
    frame = wire.encode(Commit(0, 0, 1, b"d" * 32, 0), 0)
    receiver = auth.LinkAuth("cmac-aes", 1, KEYS)
    assert receiver.open(link.seal(1, frame)) == frame
    with pytest.raises(wire.DecodeError) as err:
        receiver.open(bad.seal(1, frame))
    assert err.value.reason == "mac"
    assert counts["macs_corrupted"] == 1


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="equivocate"):
        ByzantineOutput("lie", 0, N)


class _Sender:
    def __init__(self) -> None:
        self.auth = auth.LinkAuth("none", 0, None)
        self.frames: list[tuple[int, bytes]] = []

    def send_frame(self, to: int, frame: bytes) -> bool:
        self.frames.append((to, self.auth.seal(to, frame)))
        return True

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        for frame in frames:
            self.send_frame(to, frame)
        return len(frames)

    def close(self) -> None:
        pass


def _kinds(frames: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    return [(to, type(wire.decode(f)[1]).__name__) for to, f in frames]


def test_output_stage_holds_throttled_proposals_until_due_in_order(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("fabric.runtime.stages.output.time.monotonic", lambda: clock[0])
    shared = ReplicaShared(0, N)
    sender = _Sender()
    stage = OutputStage("output-0", shared, sender, Ring(64, "o"))
    shared.byzantine = _output("throttle", delay_ms=500)
    first = PrePrepare(0, 0, 1, make_batch((_req(1),)))
    second = PrePrepare(0, 0, 2, make_batch((_req(2),)))
    commit = Commit(0, 0, 1, first.batch.digest, 0)
    per_dest: dict[int, list[bytes]] = {}
    stage._byzantine_chunk(shared.byzantine, [((1, 2), first), (1, commit)], per_dest)
    assert {to: len(f) for to, f in per_dest.items()} == {1: 1}  # the vote left at once
    clock[0] += 0.25
    per_dest = {}
    stage._byzantine_chunk(shared.byzantine, [((1, 2), second)], per_dest)
    assert per_dest == {} and stage.byzantine["frames_delayed"] == 4
    clock[0] += 0.26  # the first proposal is due, the second not yet
    per_dest = {}
    stage._byzantine_chunk(shared.byzantine, [], per_dest)
    stage._send(per_dest)
    assert _kinds(sender.frames) == [(1, "PrePrepare"), (2, "PrePrepare")]
    assert {wire.decode(f)[1].seq for _, f in sender.frames} == {1}
    clock[0] += 0.25
    per_dest = {}
    stage._byzantine_chunk(shared.byzantine, [], per_dest)
    assert {wire.decode(f[0])[1].seq for f in per_dest.values()} == {2}


def test_output_stage_seals_with_the_corrupting_authenticator_once_active():
    shared = ReplicaShared(0, N)
    sender = _Sender()
    sender.auth = auth.LinkAuth("hmac-sha256", 0, KEYS)
    stage = OutputStage("output-0", shared, sender, Ring(64, "o"))
    shared.byzantine = _output("bad_mac")
    per_dest: dict[int, list[bytes]] = {}
    stage._byzantine_chunk(shared.byzantine, [((1, 2), Commit(0, 0, 1, b"d" * 32, 0))], per_dest)
    stage._send(per_dest)
    receiver = auth.LinkAuth("hmac-sha256", 1, KEYS)
    with pytest.raises(wire.DecodeError):
        receiver.open(sender.frames[0][1])
    assert stage.byzantine["macs_corrupted"] == 2


def test_the_byzantine_experiment_plays_every_kind_against_pbft_poe_and_rcc():
    from pathlib import Path

    from fabric.harness import sweep
    from fabric.harness.config import BYZANTINE_KINDS

    path = Path(__file__).resolve().parents[2] / "config" / "experiments" / "byzantine.yaml"
    assert path.read_text().startswith("#"), "an experiment opens with its question"
    spec = sweep.load_spec(path)
    for quick in (False, True):
        plan = sweep.plan_sweep(spec, quick=quick)
        played = {
            (r.point.config.protocol.name, f.kind)
            for r in plan.runs
            for f in r.point.config.failures
        }
        assert played == {(p, k) for p in ("pbft", "poe", "rcc") for k in BYZANTINE_KINDS}
        baselines = {r.point.config.protocol.name for r in plan.runs if not r.point.config.failures}
        assert baselines == {"pbft", "poe", "rcc"}


def test_the_analysis_names_the_same_byzantine_kinds_as_the_config():
    """fabric/analysis holds its own copy (it reads folders, not configs): the copies agree."""
    from fabric.analysis import report, summary
    from fabric.harness.config import BYZANTINE_KINDS

    assert summary.BYZANTINE_KINDS == tuple(BYZANTINE_KINDS) == report.BYZANTINE_STATES
    assert set(summary.FAULTY_KINDS) == {"crash", "silent", *BYZANTINE_KINDS} - {"slow"}
