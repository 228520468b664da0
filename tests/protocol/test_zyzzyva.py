"""Zyzzyva (Kotla et al., SOSP'07) in the simulator and its parts alone; each test names the
section it checks. The known unsafety is tests/protocol/test_zyzzyva_unsafe.py's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fabric.harness.config import ConfigError, load_config
from fabric.runtime.client import ClientCore
from fabric.sim.simulator import run_seed
from protocols import registry
from protocols.common import Reply, make_batch
from protocols.zyzzyva import Commit, Zyzzyva, new_view_history
from protocols.zyzzyva.messages import GENESIS_HISTORY, extend_history


def test_registered_and_marked_unsafe() -> None:
    cls = registry.get("zyzzyva")
    assert cls is Zyzzyva and "Abraham" in cls.unsafe
    assert "zyzzyva (KNOWN UNSAFE" in registry.describe()
    assert registry.get("pbft").unsafe == ""


def test_3_2_fast_path_3f_plus_1_matching_speculative_replies() -> None:
    """§3.2 case 1: with every replica up, each request completes on 3f+1 matching
    SPEC-RESPONSEs (view, seq, result, history digest); no commit certificate is sent."""
    for seed in range(3):
        r = run_seed("zyzzyva", 4, seed, "none")
        assert r.ok, r.report()
        assert r.counters["client_fast_path_accepted"] == r.requests_total
        assert r.counters["client_slow_path_accepted"] == 0


def test_3_2_slow_path_commit_certificate_with_a_crashed_backup() -> None:
    """§3.2 case 2: a backup crashed: 2f+1 matching replies form a commit certificate, the
    client sends COMMIT and completes on 2f+1 LOCAL-COMMITs."""
    r = run_seed("zyzzyva", 4, 0, "crash")  # crash(r2@232)
    assert r.ok, r.report()
    assert r.counters["client_slow_path_accepted"] > 0
    assert r.counters["client_commits"] > 0


def test_3_5_view_change_after_the_primary_crashes() -> None:
    """§3.5: the primary crashes; I-HATE-THE-PRIMARY, VIEW-CHANGE, NEW-VIEW; every request
    completes in the later view."""
    r = run_seed("zyzzyva", 4, 6, "crash")  # crash(r0@0)
    assert r.ok, r.report()
    assert r.counters["max_view"] >= 1 and r.requests_accepted == r.requests_total


def test_3_2_client_core_slow_path() -> None:
    """§3.2 case 2 in the runtime's ClientCore: 2f+1 matching speculative replies, after
    the commit wait, give one COMMIT of their signatures; 2f+1 LOCAL-COMMITs accept."""
    n, f = 4, 1
    rule = Zyzzyva.reply_rule(n, f)
    core = ClientCore(
        n + 1,
        n,
        f,
        rule,
        10,
        5.0,
        3,
        commit_wait_s=1.0,
        make_commit=lambda c, t, reps: Zyzzyva.commit_message(c, t, reps, {}),
    )
    ts = core.next_timestamp()
    core.record_sent(ts, "req", 1, 0.0)
    h = extend_history(GENESIS_HISTORY, b"d" * 32)

    def spec(r: int) -> Reply:
        return Reply(0, 1, r, n + 1, ts, b"x" * 32, True, h, bytes([r]) * 64)

    for r in range(3):
        assert core.on_reply(r, spec(r), 0.1) is None
    assert core.due_commits(0.5) == []  # before the commit wait
    (commit,) = core.due_commits(1.5)
    assert isinstance(commit, Commit) and commit.cert.signers == (0, 1, 2)
    assert commit.cert.signatures == (b"\0" * 64, b"\1" * 64, b"\2" * 64)
    assert core.due_commits(2.0) == []  # once per send
    for r in range(2):
        ack = Reply(0, 1, r, n + 1, ts, b"x" * 32, False, h)
        assert core.on_reply(r, ack, 2.1) is None
    acc = core.on_reply(2, Reply(0, 1, 2, n + 1, ts, b"x" * 32, False, h), 2.2)
    assert acc is not None and acc.seq == 1
    assert core.counters["slow_path_accepted"] == 1


def _vc(replica: int, held: list[tuple[int, int, bytes]], cc: tuple[int, int, bytes] | None):
    """A VIEW-CHANGE's fields the history rule reads: (seq, view, batch tag) entries."""
    orders = [
        SimpleNamespace(seq=s, view=v, batch=make_batch(()) if not t else _batch(t), history=b"")
        for s, v, t in held
    ]
    if cc is None:
        return SimpleNamespace(
            replica=replica, stable_seq=0, history=orders, cc=None, cc_order=None
        )
    seq, view, tag = cc
    cert = SimpleNamespace(seq=seq, view=view, history=b"h-cc")
    return SimpleNamespace(
        replica=replica,
        stable_seq=0,
        history=orders,
        cc=cert,
        cc_order=SimpleNamespace(batch=_batch(tag)),
    )


def _batch(tag: bytes):
    from protocols.common import Request

    return make_batch((Request(9, tag[0], tag, b""),))


def test_3_5_history_rule_f_plus_1_after_the_highest_certificate() -> None:
    """§3.5 NEW-VIEW: the history follows the highest-seq commit certificate, then each seq
    the batch f+1 VIEW-CHANGEs hold, up to the first seq none does; the certificate wins
    whatever view the others' batches come from (the rule Abraham et al. break)."""
    a, b, c = b"a", b"b", b"c"
    vcs = (
        _vc(0, [(1, 1, b), (2, 1, c)], (1, 0, a)),  # a CC of view 0 for a at seq 1
        _vc(2, [(1, 1, b), (2, 1, c)], None),
        _vc(3, [(1, 1, b)], None),
    )
    start, batches = new_view_history(vcs, 1)
    assert start == 0
    assert batches[0].digest == _batch(a).digest  # the view-0 certificate beats view 1's b
    assert batches[1].digest == _batch(c).digest and len(batches) == 2
    no_cc = (vcs[1], vcs[2], _vc(1, [], None))
    assert [x.digest for x in new_view_history(no_cc, 1)[1]] == [_batch(b).digest]


def test_a_real_run_refuses_zyzzyva_unless_allow_unsafe() -> None:
    """Known unsafe: the config names protocol.allow_unsafe and what it allows."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["protocol.name=zyzzyva"])
    assert err.value.key == "protocol.allow_unsafe" and "allowed: true" in str(err.value)
    cfg = load_config(None, ["protocol.name=zyzzyva", "protocol.allow_unsafe=true"])
    assert cfg.protocol_config(0).params["zyzzyva_commit_wait_ticks"] == 20  # 200 ms / 10 ms


class _CountingVerifier:
    """Counts signature checks (every one fails: nothing here should get that far)."""

    def __init__(self) -> None:
        self.checks = 0

    def sign(self, payload: bytes) -> bytes:
        return b"s" * 64

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        self.checks += 1
        return False

    def verify_request(self, request: object) -> bool:
        return True


def _replica() -> tuple[Zyzzyva, _CountingVerifier]:
    from protocols.base import ProtocolConfig

    v = _CountingVerifier()
    cfg = ProtocolConfig(replica_id=1, n=4, checkpoint_period=5, watermark_window=10)
    return Zyzzyva(cfg, v), v


def test_hostile_bounds_refuse_before_any_signature_check() -> None:
    """protocols.limits: a COMMIT with more than 2f+1 signers, a VIEW-CHANGE with more than
    a window of ORDER-REQs, cost no signature check."""
    from protocols.zyzzyva import CommitCert, OrderReq, ViewChange

    z, v = _replica()
    cert = CommitCert(0, 1, b"h" * 32, (0, 1, 2, 3), (b"s" * 64,) * 4)
    assert z.receive(5, Commit(5, 1, b"r" * 32, cert)) == []
    assert z.ignored == {"commit_bad_cert": 1} and v.checks == 0
    order = OrderReq(0, 1, b"h" * 32, make_batch(()), b"s" * 64)
    vc = ViewChange(1, 2, 0, (), None, None, (order,) * 11, b"s" * 64)
    assert not z._valid_view_change(vc) and v.checks == 0


def test_3_4_a_replica_that_re_executed_votes_its_new_checkpoint() -> None:
    """§3.4 with §3.5: a new view rolls back and re-executes; the replica's checkpoint vote
    for that seq follows its new state (else 2f+1 matching votes might never form)."""
    z, _ = _replica()
    z.executed(5, b"A" * 32)
    z.executed(5, b"B" * 32)
    assert z.ckpt_of[z.id][5] == b"B" * 32


def test_3_4_a_stable_checkpoint_carries_its_2f_plus_1_signed_votes() -> None:
    """§3.4: the StableCheckpoint action holds the 2f+1 matching signed votes (the
    transferable proof the runtime persists with the state)."""
    from fabric.sim.simulator import Simulator

    proofs: list[tuple] = []

    class Recording(Simulator):
        def _stable_checkpoint(self, r, a):  # type: ignore[no-untyped-def]
            proofs.append(a.proof)
            super()._stable_checkpoint(r, a)

    assert Recording("zyzzyva", 4, 0, "none").run().ok
    assert proofs and all(len({cp.replica for cp in p}) == 3 for p in proofs)
