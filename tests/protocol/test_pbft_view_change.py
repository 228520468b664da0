"""PBFT view changes (Castro & Liskov, OSDI'99 §4.4 and §4.5.2; TOCS'02 §4.5) on a fake link."""

from __future__ import annotations

import dataclasses

import pytest

from protocols import base
from protocols.common import NULL_BATCH
from protocols.pbft import Commit, NewView, Pbft, Prepare, PreparedCert, PrePrepare, ViewChange
from protocols.pbft.states import START_VIEW_CHANGE
from tests.protocol.scenario import Cluster

REQUEST = "request"
VIEW_CHANGE = "view_change"


def _retransmit(c: Cluster, name: str) -> None:
    """The client of batch ``name`` re-sends its request to every replica (§4.1)."""
    req = c.batch(name).requests[0]
    for r in range(c.n):
        c.client_request(r, req)
    c.run()


def _time_out(c: Cluster, replicas: list[int], timer: str = REQUEST) -> None:
    for r in replicas:
        c.fire(r, timer)
    c.run()


def _ticks(c: Cluster, r: int, timer: str) -> list[int]:
    return [int(ln.split()[-1]) for ln in c.trace if ln.startswith(f"r{r} SetTimer {timer} ")]


def test_silent_primary_is_replaced() -> None:
    """§4.4: backups whose request timers expire move to view v+1; its primary takes over."""
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    _retransmit(c, "b1")
    assert all(("pbft", 0, REQUEST) in c.timers[r] for r in (1, 2, 3))
    _time_out(c, [1, 2, 3])
    for r in (1, 2, 3):
        st = c.replicas[r].status()
        assert st["view"] == 1 and not st["in_view_change"] and st["primary"] == 1
        assert c.views[r] == [(1, 1)]
        assert c.ledger(r) == [(1, "b1")]
    assert c.replicas[1].is_proposer() and not c.replicas[2].is_proposer()
    c.propose(1, c.batch("b2"))
    c.run()
    assert all(c.ledger(r) == [(1, "b1"), (2, "b2")] for r in (1, 2, 3))


def test_view_change_waits_for_2f_plus_1() -> None:
    """§4.4: the new primary needs 2f+1 view-changes (its own included) before NEW-VIEW; f of
    them neither start a view nor pull anybody along (§4.5.2 needs f+1)."""
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    _retransmit(c, "b1")
    _time_out(c, [2])
    assert c.replicas[2].in_view_change
    assert not c.replicas[1].in_view_change and not c.replicas[3].in_view_change
    assert not any(c.views)
    _time_out(c, [3])  # now f+1 = 2 ask: r1 joins, has 2f+1, sends NEW-VIEW
    assert all(c.views[r] == [(1, 1)] for r in (1, 2, 3))
    assert all(c.ledger(r) == [(1, "b1")] for r in (1, 2, 3))


def test_prepared_but_not_committed_batches_survive_at_the_same_seq() -> None:
    """§4.4: a batch prepared in view v is re-proposed at the same seq in v+1 (from the highest
    view certificate), so whatever may have committed anywhere is kept."""
    c = Cluster(4, view_change_ticks=10)
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b1"))
    c.propose(0, c.batch("b2"))
    c.run()
    assert not any(c.delivered)
    assert all(set(c.replicas[r].certs) == {1, 2} for r in range(4))
    c.drop_rules.clear()
    c.crash(0)
    _retransmit(c, "b3")
    _time_out(c, [1, 2, 3])
    nv_lines = [ln for ln in c.trace if "Broadcast NewView" in ln]
    assert nv_lines == ["r1 Broadcast NewView v1 from=[r1,r2,r3] pre_prepares=[1:b1,2:b2]"]
    for r in (1, 2, 3):
        assert c.ledger(r) == [(1, "b1"), (2, "b2"), (3, "b3")]
        assert [d.view for d in c.delivered[r]] == [1, 1, 1]


def test_committed_at_one_replica_is_never_changed_by_a_view_change() -> None:
    """§4.4 safety: a batch committed (and delivered) at one replica only is re-proposed at the
    same seq; the others deliver the same batch there."""
    c = Cluster(4, view_change_ticks=10)
    c.drop_rules += [(None, 2, "Commit"), (None, 3, "Commit"), (None, 0, "Commit")]
    c.propose(0, c.batch("b1"))
    c.run()
    assert c.ledger(1) == [(1, "b1")] and not c.delivered[2] and not c.delivered[3]
    c.drop_rules.clear()
    c.crash(0)
    _retransmit(c, "b2")
    _time_out(c, [1, 2, 3])
    c.check_safety()
    for r in (1, 2, 3):
        assert c.ledger(r) == [(1, "b1"), (2, "b2")]


def test_null_batches_fill_gaps_between_prepared_seqs() -> None:
    """§4.4: seqs between min-s and max-s with no prepared certificate get the null batch."""
    c = Cluster(4, view_change_ticks=10)
    c.hold_rules.append((0, None, "PrePrepare"))
    c.propose(0, c.batch("b1"))
    c.propose(0, c.batch("b2"))
    c.hold_rules.clear()
    c.drop_rules.append((None, None, "Commit"))
    c.parked = [e for e in c.parked if e[3].seq == 2]  # the pre-prepare of seq 1 is lost
    c.release()
    c.run()
    assert all(set(c.replicas[r].certs) == {2} for r in (1, 2, 3))
    c.drop_rules.clear()
    c.crash(0)
    _retransmit(c, "b3")
    _time_out(c, [1, 2, 3])
    assert "r1 Broadcast NewView v1 from=[r1,r2,r3] pre_prepares=[1:null,2:b2]" in c.trace
    for r in (1, 2, 3):
        assert c.ledger(r) == [(1, "null"), (2, "b2"), (3, "b3")]
        assert c.delivered[r][0].batch == NULL_BATCH


def _held_new_view(c: Cluster) -> tuple[NewView, Pbft]:
    """Run a view change to view 1 (primary r1) but keep its NEW-VIEW from r2."""
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b1"))
    c.run()
    c.drop_rules.clear()
    c.crash(0)
    c.hold_rules.append((1, 2, "NewView"))
    c.hold_rules.append((1, 2, "PrePrepare"))
    c.hold_rules.append((None, 2, "Prepare"))
    c.hold_rules.append((None, 2, "Commit"))
    _retransmit(c, "b2")
    _time_out(c, [1, 2, 3])
    (nv,) = [e[3] for e in c.parked if isinstance(e[3], NewView)]
    c.parked.clear()
    c.hold_rules.clear()
    r2 = c.replicas[2]
    assert r2.status()["in_view_change"] and r2.view == 1
    return nv, r2


def test_new_view_is_accepted_only_when_it_recomputes() -> None:
    """§4.4: a backup recomputes the NEW-VIEW's pre-prepares from its view-changes; a forged or
    inconsistent NEW-VIEW is rejected, the genuine one accepted."""
    c = Cluster(4, view_change_ticks=10)
    nv, r2 = _held_new_view(c)
    r1 = c.replicas[1]
    b_evil = c.batch("evil")
    resigned = r1._make_pre_prepare(1, 1, b_evil)  # validly signed by the new primary...
    forged = [
        dataclasses.replace(nv, pre_prepares=(resigned,)),  # ...but not what the VCs imply
        dataclasses.replace(nv, pre_prepares=(r1._make_pre_prepare(1, 1, NULL_BATCH),)),
        dataclasses.replace(nv, pre_prepares=()),  # drops the prepared seq
        dataclasses.replace(nv, view_changes=nv.view_changes[:2]),  # only 2f view-changes
        dataclasses.replace(nv, view_changes=(nv.view_changes[0],) * 3),  # one replica thrice
        dataclasses.replace(
            nv, pre_prepares=(dataclasses.replace(nv.pre_prepares[0], signature=b"x"),)
        ),
    ]
    # a view-change whose prepared certificate was tampered with (forged prepares)
    vc = nv.view_changes[1]
    cert = vc.prepared[0]
    bad_cert = PreparedCert(
        cert.pre_prepare, tuple(dataclasses.replace(p, signature=b"") for p in cert.prepares)
    )
    forged.append(
        dataclasses.replace(
            nv,
            view_changes=(
                nv.view_changes[0],
                dataclasses.replace(vc, prepared=(bad_cert,)),
                nv.view_changes[2],
            ),
        )
    )
    for bad in forged:
        assert r2.receive(1, bad) == []
        assert r2.status()["in_view_change"]
    assert r2.status()["ignored"]["invalid_new_view"] == len(forged)
    out = r2.receive(1, nv)
    assert base.ViewEntered(1, 1) in out and not r2.status()["in_view_change"]


def test_unsigned_new_view_must_come_from_the_new_primary() -> None:
    """With signatures off a NEW-VIEW is not self-proving: only the primary of that view counts."""
    c = Cluster(4, view_change_ticks=10, params={"pbft_signed_votes": False})
    nv, r2 = _held_new_view(c)
    assert r2.receive(3, nv) == []
    assert r2.status()["ignored"]["new_view_not_from_primary"] == 1
    assert base.ViewEntered(1, 1) in r2.receive(1, nv)


def test_view_change_with_forged_certificate_or_checkpoint_proof_is_rejected() -> None:
    """§4.4: view-change messages are checked: certificates need 2f valid prepares from distinct
    backups matching a pre-prepare signed by that view's primary; checkpoint proofs 2f+1."""
    c = Cluster(4, view_change_ticks=10)
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b1"))
    c.run()
    r3 = c.replicas[3]
    good = r3._make_view_change(1)
    r1 = c.replicas[1]
    cert = good.prepared[0]
    fakes = [
        dataclasses.replace(good, signature=b"nope"),
        dataclasses.replace(good, prepared=(PreparedCert(cert.pre_prepare, cert.prepares[:1]),)),
        dataclasses.replace(
            good, prepared=(PreparedCert(cert.pre_prepare, (cert.prepares[0],) * 2),)
        ),
        dataclasses.replace(good, stable_seq=10),  # claims a stable checkpoint without proof
    ]
    resign = r3.verifier.sign
    from protocols.pbft.messages import view_change_payload

    for fake in fakes:
        signed = (
            fake
            if fake.signature == b"nope"
            else dataclasses.replace(fake, signature=resign(view_change_payload(fake)))
        )
        assert r1.receive(3, signed) == []
    assert r1.status()["ignored"]["invalid_view_change"] == len(fakes)
    assert r1.receive(3, good) == [] and r1.vc_latest[3] == good  # valid: stored


def _view_change_ticks(c: Cluster, r: int) -> dict[int, int]:
    """{view: ticks of the view-change timer armed when ``r`` asked for that view}."""
    out: dict[int, int] = {}
    asked = None
    for ln in c.trace:
        if ln.startswith(f"r{r} Broadcast ViewChange v"):
            asked = int(ln.split()[3][1:])
        elif asked is not None and ln.startswith(f"r{r} SetTimer view_change "):
            out.setdefault(asked, int(ln.split()[-1]))
            asked = None
    return out


def test_timeouts_double_on_consecutive_failed_view_changes_and_reset_after_success() -> None:
    """§4.5.2: if a view change does not complete in T, move to the next view and wait 2T, then
    4T, ...; after a view change succeeds (something new executes) the timeout is T again."""
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    c.drop_rules.append((None, None, "NewView"))  # no replica but the new primary gets in
    _retransmit(c, "b1")
    _time_out(c, [1, 2, 3])
    for _ in range(12):  # fire every armed view-change timer until r3 asked for view 3
        if _view_change_ticks(c, 3).get(3):
            break
        _time_out(c, [r for r in (1, 2, 3) if ("pbft", 0, VIEW_CHANGE) in c.timers[r]], VIEW_CHANGE)
    assert _view_change_ticks(c, 3) == {1: 10, 2: 20, 3: 40}
    assert not any(c.delivered)
    c.drop_rules.clear()
    for _ in range(12):  # now let the view changes finish
        armed = [r for r in (1, 2, 3) if ("pbft", 0, VIEW_CHANGE) in c.timers[r]]
        if not armed:
            break
        _time_out(c, armed, VIEW_CHANGE)
    views = {c.replicas[r].view for r in (1, 2, 3)}
    assert len(views) == 1 and not any(c.replicas[r].in_view_change for r in (1, 2, 3))
    for r in (1, 2, 3):
        assert c.ledger(r) == [(1, "b1")]
        assert c.replicas[r].status()["backoff_exp"] == 0  # reset: the view change succeeded
    _retransmit(c, "b2")  # next timer is T again
    assert _ticks(c, 2, REQUEST)[-1] == 10


def test_f_plus_1_view_changes_for_higher_views_make_a_replica_join() -> None:
    """§4.5.2: a replica that sees f+1 valid view-changes for views above its own sends a
    view-change for the smallest of them, even though its own timer has not expired."""
    c = Cluster(4, view_change_ticks=10)
    b1 = c.batch("b1")
    c.propose(0, b1)
    c.run()
    r1 = c.replicas[1]
    vc2 = c.replicas[2]._make_view_change(2)
    vc3 = c.replicas[3]._make_view_change(1)
    assert r1.receive(2, vc2) == []  # f = 1 replica wants a new view: not enough
    assert not r1.in_view_change and r1.view == 0
    out = r1.receive(3, vc3)  # f+1: join the smallest, view 1
    sent = [a.msg for a in out if isinstance(a, base.Broadcast)]
    assert len(sent) == 1 and isinstance(sent[0], ViewChange) and sent[0].new_view == 1
    assert r1.in_view_change and r1.view == 1


def test_replica_that_missed_the_new_view_gets_it_from_a_peer() -> None:
    """Liveness under message loss: a replica still waiting for NEW-VIEW while its peers already
    work in that view asks them; a peer answers with its (self-proving) NEW-VIEW."""
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    c.drop_rules.append((1, 3, "NewView"))
    _retransmit(c, "b1")
    _time_out(c, [1, 2, 3])
    c.drop_rules.clear()
    c.run()
    r3 = c.replicas[3]
    assert r3.view == 1 and not r3.in_view_change
    assert c.ledger(3) == [(1, "b1")]
    assert any(ln.startswith("r3 Send") and "ViewChange v1" in ln for ln in c.trace)


def test_normal_case_messages_of_the_old_view_are_ignored_after_a_view_change() -> None:
    """§4.4: once a replica sends a view-change it stops accepting the old view's messages."""
    c = Cluster(4, view_change_ticks=10)
    b1 = c.batch("b1")
    c.crash(0)
    _retransmit(c, "b1")
    c.fire(2, REQUEST)
    r2 = c.replicas[2]
    assert r2.in_view_change and r2.view == 1
    pp = c.replicas[0]._make_pre_prepare(0, 1, b1)
    assert r2.receive(0, pp) == []
    assert r2.receive(3, Prepare(0, 0, 1, b1.digest, 3)) == []
    assert r2.receive(3, Commit(0, 0, 1, b1.digest, 3)) == []
    assert r2.status()["ignored"]["old_view"] == 3


@pytest.mark.parametrize("n", [4, 7])
def test_view_change_with_f_crashed_replicas(n: int) -> None:
    """§4.4 with n = 3f+1: the primary and f-1 more replicas crash; the rest carry on."""
    c = Cluster(n, view_change_ticks=10)
    f = (n - 1) // 3
    for i in range(1, 4):
        c.propose(0, c.batch(f"b{i}"))
    c.run()
    crashed = [0] + list(range(n - f + 1, n))
    for r in crashed:
        c.crash(r)
    live = [r for r in range(n) if r not in crashed]
    _retransmit(c, "b4")
    _time_out(c, live)
    for r in live:
        assert c.ledger(r) == [(i, f"b{i}") for i in range(1, 5)]
        assert c.replicas[r].view == 1


def test_pre_prepare_in_new_view_from_non_primary_is_ignored() -> None:
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    _retransmit(c, "b1")
    _time_out(c, [1, 2, 3])
    r2 = c.replicas[2]
    pp = c.replicas[3]._make_pre_prepare(1, 5, c.batch("x"))
    assert r2.receive(3, pp) == []
    assert r2.status()["ignored"]["pre_prepare_not_from_primary"] == 1
    # and a PrePrepare naming another view's primary is equally ignored
    assert r2.receive(3, PrePrepare(0, 3, 5, c.batch("x"))) == []


def test_accepted_pre_prepares_that_stop_committing_make_replicas_suspect_the_primary() -> None:
    """§4.4: a replica waiting for a request to execute suspects the primary; the requests in an
    accepted pre-prepare count (one progress timer per replica, checked when it fires). Even the
    primary itself, stuck with uncommitted proposals, asks for a new view."""
    c = Cluster(4, view_change_ticks=10)
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b1"))
    c.run()
    assert all(("pbft", 0, "progress") in c.timers[r] for r in range(4))
    c.drop_rules.clear()
    _time_out(c, [0, 1, 2, 3], "progress")
    for r in range(4):
        assert c.replicas[r].view == 1 and not c.replicas[r].in_view_change
        assert c.ledger(r) == [(1, "b1")]


def test_progress_timer_does_not_fire_a_view_change_when_idle_or_moving() -> None:
    """Only a lack of progress counts: an idle replica, or one that delivered something since
    the timer was armed, stays in its view (and re-arms while work is pending)."""
    c = Cluster(4, view_change_ticks=10)
    c.propose(0, c.batch("b1"))
    c.run()
    _time_out(c, [1], "progress")  # idle: everything accepted was delivered
    assert c.replicas[1].view == 0 and ("pbft", 0, "progress") not in c.timers[1]
    c.hold_rules.append((None, 1, "Commit"))
    c.propose(0, c.batch("b2"))
    c.run()
    c.propose(0, c.batch("b3"))
    c.run()
    assert ("pbft", 0, "progress") in c.timers[1]
    c.hold_rules.clear()
    parked, c.parked = c.parked, [e for e in c.parked if e[3].seq == 3]
    c.queue.extend(e for e in parked if e[3].seq == 2)
    c.run()
    assert c.ledger(1)[-1] == (2, "b2")  # progress since the timer was armed...
    _time_out(c, [1], "progress")
    assert c.replicas[1].view == 0 and ("pbft", 0, "progress") in c.timers[1]  # ...re-armed
    _time_out(c, [1], "progress")  # no progress for a whole period now: suspect
    assert c.replicas[1].in_view_change


def _signed_cert(c: Cluster, view: int, seq: int, batch_name: str) -> PreparedCert:
    """A genuine prepared certificate for ``batch_name`` at (view, seq), signed by the replicas."""
    from protocols.pbft.messages import prepare_payload

    batch = c.batch(batch_name)
    primary = view % c.n
    pp = c.replicas[primary]._make_pre_prepare(view, seq, batch)
    backups = [r for r in range(c.n) if r != primary][:2]
    prepares = tuple(
        Prepare(
            0,
            view,
            seq,
            batch.digest,
            r,
            c.replicas[r].verifier.sign(prepare_payload(0, view, seq, r, batch.digest)),
        )
        for r in backups
    )
    return PreparedCert(pp, prepares)


def _signed_view_change(c: Cluster, r: int, new_view: int, certs: tuple) -> ViewChange:
    from protocols.pbft.messages import view_change_payload

    vc = ViewChange(0, new_view, r, 0, (), certs)
    return dataclasses.replace(vc, signature=c.replicas[r].verifier.sign(view_change_payload(vc)))


def test_new_view_takes_the_certificate_with_the_highest_view() -> None:
    """§4.4: when view-changes carry certificates of different views for one seq, NEW-VIEW
    re-proposes the batch of the highest view (a lower one may have been superseded), even
    when the new primary's own view-change holds the older one."""
    c = Cluster(4, view_change_ticks=10)
    old = _signed_cert(c, 0, 1, "old")  # prepared in view 0
    new = _signed_cert(c, 1, 1, "new")  # re-decided and prepared in view 1
    r2 = c.replicas[2]  # primary of view 2
    r2.vc_latest[2] = _signed_view_change(c, 2, 2, (old,))
    r2.view = 2
    r2._move(START_VIEW_CHANGE)  # waiting for view 2's NEW-VIEW, as if it sent its own
    out = r2.receive(0, _signed_view_change(c, 0, 2, (new,)))
    out += r2.receive(3, _signed_view_change(c, 3, 2, ()))
    (nv,) = [a.msg for a in out if isinstance(a, base.Broadcast) and isinstance(a.msg, NewView)]
    assert [(pp.seq, c.bname(pp.digest)) for pp in nv.pre_prepares] == [(1, "new")]
    # a backup rejects a NEW-VIEW that picked the older certificate, even when correctly signed
    r1 = c.replicas[1]
    r1.view = 2
    r1._move(START_VIEW_CHANGE)  # waiting for view 2's NEW-VIEW, as if it sent its own
    r1.vc_latest[1] = _signed_view_change(c, 1, 2, ())
    wrong = dataclasses.replace(nv, pre_prepares=(r2._make_pre_prepare(2, 1, c.batch("old")),))
    assert r1.receive(2, wrong) == []
    assert r1.status()["ignored"]["invalid_new_view"] == 1
    assert base.ViewEntered(2, 2) in r1.receive(2, nv)


def test_unsigned_new_view_is_checked_by_recomputation_alone() -> None:
    """With signatures off, recomputing the pre-prepares is what stops a primary from
    re-proposing something else (or dropping the prepared seq)."""
    c = Cluster(4, view_change_ticks=10, params={"pbft_signed_votes": False})
    nv, r2 = _held_new_view(c)
    evil = c.batch("evil")
    for bad in (
        dataclasses.replace(nv, pre_prepares=(PrePrepare(0, 1, 1, evil),)),
        dataclasses.replace(nv, pre_prepares=(PrePrepare(0, 1, 1, NULL_BATCH),)),
        dataclasses.replace(nv, pre_prepares=(PrePrepare(0, 1, 2, nv.pre_prepares[0].batch),)),
    ):
        assert r2.receive(1, bad) == []
    assert r2.status()["ignored"]["invalid_new_view"] == 3
    assert base.ViewEntered(1, 1) in r2.receive(1, nv)


def test_unsigned_votes_view_change_carries_signed_claims() -> None:
    """With MAC-only votes a certificate proves nothing, so a view-change claims: what the
    replica prepared (no prepares attached) and what it pre-prepared (the Q-set), signed.
    protocols/claims.py decides the new view from such claims by counting."""
    from protocols.pbft.messages import PrePrepared, view_change_payload

    c = Cluster(4, view_change_ticks=10, params={"pbft_signed_votes": False})
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b1"))
    c.run()
    r3, r1 = c.replicas[3], c.replicas[1]
    vc = r3._make_view_change(1)
    d = c.batch("b1").digest
    assert [(p.pre_prepare.seq, p.prepares) for p in vc.prepared] == [(1, ())]
    assert vc.pre_prepared == (PrePrepared(1, 0, d),)
    assert r3.verifier.verify(3, view_change_payload(vc), vc.signature)
    assert r1._valid_view_change(vc)
    cert = r3.certs[1]
    too_many = tuple(PrePrepared(1, 0, bytes([i]) * 32) for i in range(5))
    for bad in (
        dataclasses.replace(vc, signature=b"nope"),
        dataclasses.replace(vc, prepared=(cert,)),  # prepares attached: not a claim
        dataclasses.replace(vc, pre_prepared=too_many),
        dataclasses.replace(vc, pre_prepared=(PrePrepared(1, 1, d),)),  # in the new view
    ):
        resigned = dataclasses.replace(bad, signature=b"")
        resigned = dataclasses.replace(
            resigned, signature=r3.verifier.sign(view_change_payload(resigned))
        )
        assert not r1._valid_view_change(bad)
        if bad.signature != b"nope":
            assert not r1._valid_view_change(resigned)


def test_unsigned_votes_new_view_waits_for_a_decidable_set() -> None:
    """r1 (primary of view 1) holds its own and r2's view-change, both claiming nothing, and
    a liar's claim that b1 prepared in view 0: with three messages the seq is undecided (no
    n−f without a claim, no f+1 pre-prepare claims for b1), so no NEW-VIEW yet; r3's honest
    empty view-change decides it: null."""
    from protocols.pbft.messages import view_change_payload

    c = Cluster(4, view_change_ticks=10, params={"pbft_signed_votes": False})
    r1 = c.replicas[1]
    pp = PrePrepare(0, 0, 1, c.batch("b1"))

    def signed(r: int, certs: tuple) -> ViewChange:
        vc = ViewChange(0, 1, r, 0, (), certs)
        return dataclasses.replace(
            vc, signature=c.replicas[r].verifier.sign(view_change_payload(vc))
        )

    out = r1.suspect_primary()
    assert not any(type(getattr(a, "msg", None)) is NewView for a in out)
    r1.receive(0, signed(0, (PreparedCert(pp, ()),)))  # the liar (old primary)
    out = r1.receive(2, signed(2, ()))
    assert not any(type(getattr(a, "msg", None)) is NewView for a in out)
    out = r1.receive(3, signed(3, ()))
    nvs = [a.msg for a in out if type(getattr(a, "msg", None)) is NewView]
    assert len(nvs) == 1 and [p.batch for p in nvs[0].pre_prepares] == [NULL_BATCH]
    assert len(nvs[0].view_changes) == 4  # every view-change the decision used
