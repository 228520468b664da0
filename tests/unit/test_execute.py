"""fabric.runtime.execute: in-order execution, YCSB op effects, replay suppression, ledger, speculation."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.runtime.execute import (
    GENESIS_HASH,
    INVALID_RESULT,
    STALE_RESULT,
    ExecutionOrderError,
    Executor,
    Ledger,
    RollbackError,
    UndoLogFullError,
    block_hash,
    verify_blocks,
)
from protocols.common import Batch, Request, make_batch
from workloads.txn import INSERT, OP_NAMES, READ, RMW, SCAN, UPDATE, encode_txns
from workloads.ycsb import YcsbGenerator, initial_value

RC, VS = 100, 16  # records, value size


def req(client: int, ts: int, *txns: tuple) -> Request:
    return Request(client_id=client, timestamp=ts, txns=encode_txns(list(txns)), signature=b"")


def batch(*reqs: Request) -> Batch:
    return make_batch(tuple(reqs))


def executor(**kw) -> Executor:  # type: ignore[no-untyped-def]
    return Executor(RC, VS, **kw)


def result_of(ex: Executor, seq: int, *txns: tuple, client: int = 9) -> bytes:
    """Apply one single-request batch at ``seq`` and return that request's result digest."""
    ((_, result),) = ex.apply(seq, batch(req(client, seq, *txns)))
    return result


# --- order -------------------------------------------------------------------------------


def test_strict_sequence_order() -> None:
    ex = executor()
    b = batch(req(9, 1, (UPDATE, 1, b"x")))
    with pytest.raises(ExecutionOrderError):
        ex.apply(2, b)  # a gap
    with pytest.raises(ExecutionOrderError):
        ex.apply(0, b)
    assert ex.last_seq == 0 and ex.read(1) == initial_value(1, VS) and ex.ledger.last_seq == 0
    ex.apply(1, b)
    with pytest.raises(ExecutionOrderError):
        ex.apply(1, b)  # twice
    ex.apply(2, batch())
    assert ex.last_seq == 2 == ex.ledger.last_seq


def test_results_one_per_request_in_order() -> None:
    ex = executor()
    reqs = [req(10 + i, 1, (READ, i, None)) for i in range(5)]
    out = ex.apply(1, batch(*reqs))
    assert [r for r, _ in out] == reqs
    assert all(len(d) == 32 for _, d in out)
    assert len({d for _, d in out}) == 5  # different records read, different results


# --- each YCSB operation -------------------------------------------------------------------


def test_read_returns_the_loaded_value_and_changes_nothing() -> None:
    a, b = executor(), executor()
    assert result_of(a, 1, (READ, 5, None)) == result_of(b, 1, (READ, 5, None))
    assert result_of(a, 2, (READ, 5, None)) != result_of(a, 3, (READ, 6, None))
    assert a.read(5) == initial_value(5, VS) and a.stats()["store_keys_written"] == 0


def test_read_result_depends_on_the_value() -> None:
    a, b = executor(), executor()
    result_of(a, 1, (UPDATE, 5, b"new"))
    result_of(b, 1, (UPDATE, 6, b"new"))
    assert result_of(a, 2, (READ, 5, None)) != result_of(b, 2, (READ, 5, None))


def test_read_missing_record() -> None:
    ex = executor()
    assert ex.read(RC) is None
    assert result_of(ex, 1, (READ, RC, None)) != result_of(ex, 2, (READ, 0, None))
    assert ex.read(RC) is None


def test_update_overwrites_existing_record() -> None:
    ex = executor()
    result_of(ex, 1, (UPDATE, 3, b"v1"))
    assert ex.read(3) == b"v1"
    result_of(ex, 2, (UPDATE, 3, b"v2"))
    assert ex.read(3) == b"v2"


def test_update_of_missing_record_writes_nothing() -> None:
    ex = executor()
    miss = result_of(ex, 1, (UPDATE, RC + 5, b"v"))
    assert ex.read(RC + 5) is None
    assert miss != result_of(ex, 2, (UPDATE, 0, b"v"))


def test_insert_creates_record_and_flags_new_vs_existing() -> None:
    ex = executor()
    new = result_of(ex, 1, (INSERT, RC + 1, b"ins"))
    assert ex.read(RC + 1) == b"ins"
    again = result_of(ex, 2, (INSERT, RC + 1, b"ins2"))
    assert ex.read(RC + 1) == b"ins2"
    assert new != again
    assert result_of(ex, 3, (INSERT, 7, b"loaded")) == again  # loaded record: an overwrite
    assert ex.read(7) == b"loaded"


def test_rmw_returns_old_value_and_writes_new() -> None:
    a, b = executor(), executor()
    r1 = result_of(a, 1, (RMW, 4, b"first"))
    assert a.read(4) == b"first"
    r2 = result_of(a, 2, (RMW, 4, b"second"))
    assert a.read(4) == b"second"
    assert r1 != r2  # the old value read differs
    result_of(b, 1, (UPDATE, 4, b"other"))
    assert result_of(b, 2, (RMW, 4, b"second")) != r2


def test_scan_reads_the_range_only() -> None:
    base = executor()
    scan = result_of(base, 1, (SCAN, 10, 5))
    inside, outside = executor(), executor()
    result_of(inside, 1, (UPDATE, 14, b"changed"))
    result_of(outside, 1, (UPDATE, 15, b"changed"))
    assert result_of(inside, 2, (SCAN, 10, 5)) != scan
    assert result_of(outside, 2, (SCAN, 10, 5)) == scan
    assert result_of(base, 2, (SCAN, 10, 4)) != scan


def test_scan_past_record_count_sees_inserts_only() -> None:
    a, b = executor(), executor()
    first = result_of(a, 1, (SCAN, RC - 2, 10))
    result_of(b, 1, (INSERT, RC + 8, b"just past the range"))
    assert result_of(b, 2, (SCAN, RC - 2, 10)) == first
    assert result_of(a, 2, (SCAN, RC - 2, 10)) == first  # nothing changed
    result_of(a, 3, (INSERT, RC + 3, b"i"))
    assert result_of(a, 4, (SCAN, RC - 2, 10)) != first
    assert result_of(a, 5, (SCAN, RC - 2, 5)) == result_of(b, 3, (SCAN, RC - 2, 5))


def test_scan_digest_covers_written_records() -> None:
    """The digest covers the written records: even a write of the loaded value shows.

    (Every replica writes the same keys, so this stays deterministic.)
    """
    a = executor()
    first = result_of(a, 1, (SCAN, 10, 5))
    result_of(a, 2, (UPDATE, 12, b"changed"))
    assert result_of(a, 3, (SCAN, 10, 5)) != first
    result_of(a, 4, (UPDATE, 12, initial_value(12, VS)))
    assert result_of(a, 5, (SCAN, 10, 5)) != first  # the store now holds key 12 explicitly


def test_stats_count_txns_by_op() -> None:
    ex = executor()
    txns = [(READ, 1, None), (READ, 2, None), (UPDATE, 1, b"u"), (INSERT, RC, b"i")]
    txns += [(SCAN, 0, 3), (RMW, 2, b"r")]
    ex.apply(1, batch(req(9, 1, *txns)))
    s = ex.stats()
    ycsb = {"read": 2, "update": 1, "insert": 1, "scan": 1, "rmw": 1}
    assert s["txns"] == {**{name: 0 for name in OP_NAMES.values()}, **ycsb}
    assert s["txns_total"] == 6 and s["requests"] == 1 and s["batches"] == 1


def test_replicas_agree_on_a_ycsb_run() -> None:
    """Two executors fed the same batches end with the same results and state digest."""
    g = YcsbGenerator(seed=3, record_count=RC, value_size=VS, mix="custom", max_scan_length=10,
                      proportions={"read": 0.3, "update": 0.2, "insert": 0.1, "scan": 0.2, "rmw": 0.2})  # fmt: skip
    batches = [
        batch(req(9, s, *g.next_txns(20)), req(10, s, *g.next_txns(20))) for s in range(1, 30)
    ]
    a, b = executor(), executor()
    for s, bt in enumerate(batches, 1):
        assert a.apply(s, bt) == b.apply(s, bt)
    assert a.state_digest() == b.state_digest() != GENESIS_HASH
    c = executor()
    for s, bt in enumerate(batches[:-1], 1):
        c.apply(s, bt)
    c.apply(len(batches), batches[0])  # a different last batch
    assert c.state_digest() != a.state_digest()


# --- invalid requests and replays ------------------------------------------------------------


def test_invalid_blob_gets_fixed_result_and_changes_nothing() -> None:
    ex = executor()
    bad = Request(client_id=9, timestamp=1, txns=b"\xc1garbage", signature=b"")
    good = req(10, 1, (UPDATE, 2, b"ok"))
    out = ex.apply(1, batch(bad, good))
    assert out[0] == (bad, INVALID_RESULT)
    assert out[1][1] != INVALID_RESULT and ex.read(2) == b"ok"
    assert ex.stats()["invalid_requests"] == 1
    half_bad = req(11, 1, (UPDATE, 3, b"x"), (UPDATE, 4, None))  # second txn malformed
    ((_, result),) = ex.apply(2, batch(half_bad))
    assert result == INVALID_RESULT and ex.read(3) == initial_value(3, VS)


def test_replayed_request_not_applied_again_same_result() -> None:
    ex = executor()
    first = req(9, 1, (RMW, 1, b"from-9"))
    (_, r1), = ex.apply(1, batch(first))  # fmt: skip
    ex.apply(2, batch(req(10, 1, (UPDATE, 1, b"from-10"))))
    ((_, r2),) = ex.apply(3, batch(first))  # the same (client, timestamp) again
    assert r2 == r1
    assert ex.read(1) == b"from-10"  # the replay did not write
    assert ex.stats()["replayed_requests"] == 1
    assert ex.stats()["txns"]["rmw"] == 1


def test_replay_within_one_batch() -> None:
    ex = executor()
    r = req(9, 1, (INSERT, RC + 1, b"a"))
    out = ex.apply(1, batch(r, r))
    assert out[0][1] == out[1][1]
    assert ex.stats()["txns"]["insert"] == 1


def test_same_timestamp_other_client_is_not_a_replay() -> None:
    ex = executor()
    ex.apply(1, batch(req(9, 1, (UPDATE, 1, b"a")), req(10, 1, (UPDATE, 1, b"b"))))
    assert ex.read(1) == b"b" and ex.stats()["replayed_requests"] == 0


def test_replay_window_bounded_and_old_timestamps_stale() -> None:
    ex = executor(replay_window=2)
    for ts in (1, 2, 3):
        ex.apply(ts, batch(req(9, ts, (UPDATE, ts, b"v"))))
    ((_, r),) = ex.apply(4, batch(req(9, 1, (UPDATE, 50, b"replayed"))))
    assert r == STALE_RESULT and ex.read(50) == initial_value(50, VS)
    ((_, r3),) = ex.apply(5, batch(req(9, 3, (UPDATE, 3, b"v"))))
    assert r3 != STALE_RESULT  # still in the window: the cached result
    assert ex.stats()["stale_requests"] == 1 and ex.stats()["replayed_requests"] == 1


def test_out_of_order_timestamps_within_window_execute() -> None:
    ex = executor()
    ex.apply(1, batch(req(9, 5, (UPDATE, 1, b"five"))))
    ex.apply(2, batch(req(9, 3, (UPDATE, 2, b"three"))))  # older but never executed
    assert ex.read(2) == b"three"


def test_client_count_bounded() -> None:
    ex = executor(max_clients=2)
    out = ex.apply(1, batch(*(req(c, 1, (UPDATE, c, b"x")) for c in (20, 21, 22))))
    assert out[2][1] == INVALID_RESULT and ex.read(22) == initial_value(22, VS)
    assert ex.stats()["refused_clients"] == 1


# --- ledger ------------------------------------------------------------------------------


def _run(ex: Executor, n: int, speculative: bool = False, start: int = 1) -> None:
    for s in range(start, start + n):
        ex.apply(s, batch(req(9, s, (UPDATE, s % RC, b"v%d" % s))), speculative=speculative)


def test_ledger_blocks_chain() -> None:
    ex = executor()
    _run(ex, 6)
    blocks = ex.ledger.recent_blocks()
    assert [b.seq for b in blocks] == list(range(1, 7))
    assert blocks[0].prev_hash == GENESIS_HASH
    for prev, cur in zip(blocks, blocks[1:], strict=False):
        assert cur.prev_hash == prev.hash
        assert cur.hash == block_hash(prev.hash, cur.seq, cur.batch_digest, cur.results_digest)
    assert verify_blocks(blocks) is None
    assert ex.ledger.chain() == [(b.seq, b.hash) for b in blocks]
    assert ex.ledger.head == blocks[-1].hash == ex.ledger.hash_at(6)
    assert ex.state_digest() == ex.export_image().digest()  # commits to head, store, replays
    assert ex.ledger.hash_at(0) == GENESIS_HASH


@pytest.mark.parametrize("field", ["seq", "batch_digest", "results_digest", "prev_hash", "hash"])
@pytest.mark.parametrize("at", [0, 2, 5])
def test_changing_any_block_breaks_the_chain(field: str, at: int) -> None:
    ex = executor()
    _run(ex, 6)
    blocks = ex.ledger.recent_blocks()
    old = getattr(blocks[at], field)
    new = old + 100 if field == "seq" else bytes([old[0] ^ 1]) + old[1:]
    blocks[at] = dataclasses.replace(blocks[at], **{field: new})
    assert verify_blocks(blocks) == blocks[at].seq


def test_block_hash_covers_batch_and_results() -> None:
    ex = executor()
    b = batch(req(9, 1, (UPDATE, 1, b"x")))
    ex.apply(1, b)
    block = ex.ledger.recent_blocks()[0]
    assert block.batch_digest == b.digest
    assert block.hash != block_hash(GENESIS_HASH, 1, b.digest, bytes(32))


def test_view_is_recorded_not_hashed() -> None:
    a, b = executor(), executor()
    bt = batch(req(9, 1, (UPDATE, 1, b"x")))
    a.apply(1, bt, view=0)
    b.apply(1, bt, view=3)
    assert a.state_digest() == b.state_digest()
    assert b.ledger.recent_blocks()[0].view == 3


def test_ledger_append_truncate_bounds() -> None:
    led = Ledger(max_recent_blocks=3)
    for s in range(1, 6):
        led.append(s, 0, bytes([s]) * 32, bytes(32))
    with pytest.raises(ExecutionOrderError):
        led.append(7, 0, bytes(32), bytes(32))
    assert [b.seq for b in led.recent_blocks()] == [3, 4, 5]  # bodies beyond the window dropped
    assert len(led.chain()) == 5  # every (seq, hash) kept
    h2 = led.hash_at(2)
    assert led.truncate(2) == 3
    assert led.last_seq == 2 and led.head == h2 and [b.seq for b in led.recent_blocks()] == []
    assert led.truncate(4) == 0
    with pytest.raises(IndexError):
        led.hash_at(3)
    led.append(3, 0, bytes(32), bytes(32))
    assert led.chain()[:2] == [(1, led.hash_at(1)), (2, h2)]


# --- speculation: rollback and commit --------------------------------------------------------


def test_rollback_undoes_writes_inserts_and_ledger() -> None:
    ex = executor()
    _run(ex, 2)  # final
    head2 = ex.state_digest()
    ex.apply(3, batch(req(11, 3, (UPDATE, 1, b"spec"), (INSERT, RC + 1, b"new"))), speculative=True)
    ex.apply(4, batch(req(11, 4, (UPDATE, 1, b"spec2"), (RMW, 2, b"rmw"))), speculative=True)
    assert ex.read(1) == b"spec2" and ex.read(RC + 1) == b"new"
    assert ex.rollback(2) == 2
    assert ex.read(1) == b"v1" and ex.read(2) == b"v2" and ex.read(RC + 1) is None
    assert ex.last_seq == 2 == ex.ledger.last_seq and ex.state_digest() == head2
    assert ex.stats()["rollbacks"] == 1 and ex.stats()["rolled_back_batches"] == 2
    assert ex.stats()["clients_tracked"] == 1  # client 11 came only in rolled-back batches


def test_rollback_then_reexecution_matches_a_replica_that_never_speculated() -> None:
    bts = [
        batch(req(9, s, (RMW, 1, b"%d" % s)), req(10, s, (INSERT, RC + s, b"i"))) for s in (1, 2, 3)
    ]
    ex, ref = executor(), executor()
    ref_out = [ref.apply(s, b) for s, b in enumerate(bts, 1)]
    for s, b in enumerate(bts, 1):
        ex.apply(s, b, speculative=True)
    ex.rollback(0)
    out = [ex.apply(s, b, speculative=True) for s, b in enumerate(bts, 1)]
    assert out == ref_out  # no request is taken as a replay after the rollback
    assert ex.state_digest() == ref.state_digest()


def test_rollback_refuses_final_batches_and_changes_nothing() -> None:
    ex = executor()
    _run(ex, 1)  # seq 1 is final
    _run(ex, 1, speculative=True, start=2)
    head = ex.state_digest()
    with pytest.raises(RollbackError):
        ex.rollback(0)
    assert ex.last_seq == 2 and ex.state_digest() == head and ex.read(2) == b"v2"
    assert ex.rollback(1) == 1 and ex.read(2) == initial_value(2, VS)
    assert ex.rollback(5) == 0  # nothing after seq 5


def test_final_batch_finalises_earlier_speculative_ones() -> None:
    ex = executor()
    _run(ex, 2, speculative=True)
    _run(ex, 1, start=3)
    assert ex.speculative_batches() == 0
    with pytest.raises(RollbackError):
        ex.rollback(2)


def test_commit_upto_trims_undo_log() -> None:
    ex = executor()
    _run(ex, 5, speculative=True)
    assert ex.speculative_batches() == 5
    assert ex.commit_upto(3) == 3
    assert ex.speculative_batches() == 2
    with pytest.raises(RollbackError):
        ex.rollback(2)
    assert ex.rollback(3) == 2 and ex.last_seq == 3 and ex.read(3) == b"v3"


def test_commit_ahead_of_execution_makes_later_batches_final() -> None:
    ex = executor()
    ex.commit_upto(4)
    _run(ex, 5, speculative=True)
    assert ex.speculative_batches() == 1  # only seq 5 is above the commit mark
    with pytest.raises(RollbackError):
        ex.rollback(3)
    assert ex.rollback(4) == 1


def test_undo_log_bounded() -> None:
    ex = executor(max_undo_batches=2)
    _run(ex, 2, speculative=True)
    with pytest.raises(UndoLogFullError):
        _run(ex, 1, speculative=True, start=3)
    assert ex.last_seq == 2 and ex.read(3) == initial_value(3, VS)
    ex.commit_upto(1)
    _run(ex, 1, speculative=True, start=3)
    assert ex.last_seq == 3


# The strongest check of the undo log: any interleaving of speculative runs, commits and
# rollbacks ends in exactly the state of a replica that applied only the surviving batches.
# A small replay window makes evictions (and their undo) happen often.

_step = st.one_of(
    st.tuples(st.just("apply"), st.integers(1, 4)),
    st.tuples(st.just("rollback"), st.integers(0, 4)),
    st.tuples(st.just("commit"), st.integers(0, 3)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_step, max_size=25), st.integers(0, 2**16))
def test_speculation_equivalent_to_final_history(steps: list[tuple[str, int]], seed: int) -> None:
    g = YcsbGenerator(seed=seed, record_count=20, value_size=4, mix="custom", max_scan_length=5,
                      proportions={"read": 0.2, "update": 0.3, "insert": 0.2, "scan": 0.1, "rmw": 0.2})  # fmt: skip
    pool = []
    for i in range(40):  # clients 9 and 10 with out-of-order, repeated timestamps
        client = 9 + i % 2
        pool.append(req(client, (i * 7) % 13, *g.next_txns(3)))

    def batch_for(n: int) -> Batch:
        return batch(pool[n % 40], pool[(3 * n + 1) % 40])

    ex = executor(replay_window=3)
    history: list[Batch] = []  # what survives at each seq
    for kind, k in steps:
        if kind == "apply":
            for _ in range(k):
                b = batch_for(len(history) + 7 * ex.stats()["rollbacks"])
                ex.apply(ex.last_seq + 1, b, speculative=True)
                history.append(b)
        elif kind == "rollback":
            to = max(ex.last_seq - k, 0)
            if to < ex.last_seq - ex.speculative_batches():
                with pytest.raises(RollbackError):
                    ex.rollback(to)
            else:
                ex.rollback(to)
                del history[to:]
        else:
            ex.commit_upto(max(ex.last_seq - k, 0))
    ref = executor(replay_window=3)
    for s, b in enumerate(history, 1):
        ref.apply(s, b)
    assert ex.last_seq == ref.last_seq == len(history)
    assert ex.ledger.chain() == ref.ledger.chain()
    assert ex._store == ref._store
    assert ex.stats()["clients_tracked"] == ref.stats()["clients_tracked"]
    # and the two continue identically (replay caches and eviction order agree)
    for s in range(len(history) + 1, len(history) + 6):
        assert ex.apply(s, batch_for(s)) == ref.apply(s, batch_for(s))
    assert ex.state_digest() == ref.state_digest()
