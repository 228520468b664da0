"""Execution engines against serial execution, the specification (issue 11, item 7).

Hypothesis draws sequences of batches (YCSB mixes with inserts and scans, SmallBank with hot
accounts, heavy contention on a handful of keys, one key only, empty blocks, replays within a
batch) and speculative apply / commit / rollback steps; every engine at 1, 2 and 8 threads
must end with serial's store, per-request results and ledger head. Block-STM's schedule is
also replayed in virtual time with 1, 2 and 8 workers (deterministic interleavings that real
threads hit only by chance), and a planted bug (validation skipped) must make the same
comparison fail. Bad input and a failing worker are covered at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.runtime.engines import ENGINES, EngineError, TxnEnv, make_engine
from fabric.runtime.engines import blockstm as blockstm_module
from fabric.runtime.engines import conflictdag as dag_module
from fabric.runtime.engines.mvmemory import MVMemory
from fabric.runtime.engines.pool import WorkerPool
from fabric.runtime.engines.serial import SerialEngine
from fabric.runtime.engines.txns import T_BAD_ACCOUNT, T_FAIL, request_digests, run_txn
from fabric.runtime.engines.virtual import block_stm_virtual, dag_virtual
from fabric.runtime.execute import INVALID_RESULT, Executor
from protocols.common import Batch, Request, make_batch
from workloads.smallbank import SmallbankGenerator
from workloads.txn import (
    AMALGAMATE,
    BALANCE,
    DEPOSIT_CHECKING,
    INSERT,
    READ,
    RMW,
    SCAN,
    SEND_PAYMENT,
    TRANSACT_SAVINGS,
    UPDATE,
    WRITE_CHECK,
    encode_txns,
)
from workloads.ycsb import YcsbGenerator

RC, VS, ACCOUNTS = 8, 4, 6  # loaded records (keys 8.. are inserts), value size, accounts
PARALLEL = [name for name in ENGINES if name != "serial"]
THREADS = (1, 2, 8)

# --- strategies ----------------------------------------------------------------------------

values = st.binary(min_size=1, max_size=6)
ycsb_keys = st.integers(0, RC + 4)  # some beyond the loaded records: misses and inserts
accounts = st.integers(0, ACCOUNTS + 1)  # some unknown: deterministic invalid results
ycsb_txn = st.one_of(
    st.tuples(st.just(READ), ycsb_keys, st.none()),
    st.tuples(st.sampled_from([UPDATE, INSERT, RMW]), ycsb_keys, values),
    st.tuples(st.just(SCAN), ycsb_keys, st.integers(1, 5)),
)
amount = st.integers(0, 60_000)  # above the initial balances too: failures happen
smallbank_txn = st.one_of(
    st.tuples(st.just(BALANCE), accounts, st.none()),
    st.tuples(st.sampled_from([DEPOSIT_CHECKING, WRITE_CHECK]), accounts, amount),
    st.tuples(st.just(TRANSACT_SAVINGS), accounts, st.integers(-60_000, 60_000)),
    st.tuples(st.just(AMALGAMATE), accounts, accounts),
    st.tuples(st.just(SEND_PAYMENT), accounts, st.tuples(accounts, amount)),
)
one_key_txn = st.one_of(
    st.tuples(st.just(READ), st.just(0), st.none()),
    st.tuples(st.sampled_from([UPDATE, RMW, INSERT]), st.just(0), values),
    st.tuples(st.just(SCAN), st.just(0), st.integers(1, 2)),
)
txn_kinds = st.sampled_from(
    [ycsb_txn, smallbank_txn, st.one_of(ycsb_txn, smallbank_txn), one_key_txn]
)


@st.composite
def histories(draw: Any) -> list[tuple[Any, ...]]:
    """Steps: ("apply", [requests], speculative) / ("commit",) / ("rollback", back)."""
    kind = draw(txn_kinds)
    steps: list[tuple[Any, ...]] = []
    ts = 0
    for _ in range(draw(st.integers(1, 4))):
        reqs = []
        for _ in range(draw(st.integers(0, 3))):  # 0: an empty block
            ts += 1
            client = draw(st.sampled_from([10, 11]))
            stamp = draw(st.sampled_from([ts, ts, ts, max(1, ts - 1)]))  # sometimes a replay
            txns = draw(st.lists(kind, max_size=14))
            reqs.append((client, stamp, txns))
        steps.append(("apply", reqs, draw(st.booleans())))
        if draw(st.integers(0, 4)) == 0:
            steps.append(("commit",))
        if draw(st.integers(0, 4)) == 0:
            steps.append(("rollback", draw(st.integers(1, 2))))
    return steps


def make_batches(reqs: list[tuple[int, int, list]]) -> Batch:
    return make_batch(tuple(Request(c, t, encode_txns(txns), b"") for c, t, txns in reqs))


def replay(ex: Executor, steps: list[tuple[Any, ...]]) -> list[Any]:
    """Run the steps; what they observably produced (results, heads, rollbacks)."""
    seen: list[Any] = []
    for step in steps:
        if step[0] == "apply":
            _, reqs, speculative = step
            seq = ex.last_seq + 1
            out = ex.apply(seq, make_batches(reqs), speculative)
            seen.append([r for _, r in out])
        elif step[0] == "commit":
            ex.commit_upto(ex.last_seq)
        else:
            to = max(0, ex.last_seq - step[1])
            if ex.speculative_batches() >= ex.last_seq - to and to >= ex._final_seq:
                seen.append(("rollback", ex.rollback(to)))
        seen.append(ex.state_digest())
    return seen


def observe(ex: Executor) -> tuple[Any, ...]:
    clients = {cid: (dict(s.results), s.floor) for cid, s in ex._clients.items()}
    return dict(ex._store), clients, ex.ledger.chain(), ex.last_seq


def executor(engine: str = "serial", threads: int = 1, cost: float = 0.0) -> Executor:
    return Executor(
        RC,
        VS,
        engine=engine,
        threads=threads,
        txn_cost_us=cost,
        smallbank_accounts=ACCOUNTS,
        replay_window=3,
    )


def check_against_serial(engine: str, threads: int, steps: list, cost: float = 0.0) -> None:
    reference = executor()
    expected = replay(reference, steps), observe(reference)
    ex = executor(engine, threads, cost)
    try:
        got = replay(ex, steps), observe(ex)
    finally:
        ex.close()
    assert got == expected, f"{engine} with {threads} threads differs from serial"


# --- every engine = serial -------------------------------------------------------------------

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("engine", PARALLEL)
@pytest.mark.parametrize("threads", THREADS)
@SETTINGS
@given(steps=histories())
def test_engine_equals_serial(engine: str, threads: int, steps: list) -> None:
    check_against_serial(engine, threads, steps)


@pytest.mark.parametrize("engine", PARALLEL)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=histories())
def test_engine_equals_serial_with_gil_released_work(engine: str, steps: list) -> None:
    # the cost knob releases the GIL mid-transaction: real threads really interleave
    check_against_serial(engine, 2, steps, cost=20.0)


def generated_block(kind: str, contention: float, n: int = 200, seed: int = 3) -> list:
    if kind == "ycsb":
        gen = YcsbGenerator(seed, 50, VS, key_chooser="zipfian", zipf_theta=contention, mix="f")
    else:
        gen = SmallbankGenerator(seed, ACCOUNTS, 2, hotspot=contention)
    return gen.next_txns(n)


def serial_outcome(txns: list) -> tuple[list[bytes], dict[int, bytes]]:
    store: dict[int, bytes] = {}
    env = TxnEnv(50, ACCOUNTS)
    outputs = [run_txn(env, t, store.get, store.__setitem__) for t in txns]
    return outputs, store


@pytest.mark.parametrize("kind", ["ycsb", "smallbank"])
@pytest.mark.parametrize("threads", [*THREADS, 32])
def test_block_stm_in_virtual_time_equals_serial(kind: str, threads: int) -> None:
    for contention in (0.5, 0.99):
        txns = generated_block(kind, contention)
        outputs, store = serial_outcome(txns)
        run = block_stm_virtual(TxnEnv(50, ACCOUNTS), txns, {}.get, threads)
        assert run.outputs == outputs and run.writes == store
        assert 1.0 <= run.parallelism <= threads + 1e-9 or threads == 1
        if threads >= 8:
            assert run.counters["re_executions"] + run.counters["dependency_waits"] > 0


def test_serial_inlined_loop_equals_run_txn() -> None:
    txns = generated_block("ycsb", 0.9) + YcsbGenerator(5, 50, VS, mix="e").next_txns(50)
    ends = [len(txns) // 3, len(txns)]
    store: dict[int, bytes] = {}
    digests = SerialEngine(TxnEnv(50, ACCOUNTS)).run(txns, ends, store, [])
    outputs, expected_store = serial_outcome(txns)
    assert digests == request_digests(outputs, ends) and store == expected_store


def test_re_executions_rise_with_contention() -> None:
    """The paper's shape: more conflicts, more incarnations (8 virtual workers)."""
    counts = []
    for theta in (0.01, 0.9, 0.99):
        txns = generated_block("ycsb", theta, n=300)
        run = block_stm_virtual(TxnEnv(50, ACCOUNTS), txns, {}.get, 8)
        counts.append(run.counters["re_executions"] + run.counters["dependency_waits"])
    assert counts[0] < counts[-1], counts


def test_dag_exposes_parallelism_only_without_conflicts() -> None:
    free = [(UPDATE, k, b"v") for k in range(40)]
    chain = [(RMW, 0, b"v")] * 40
    assert dag_virtual(free, 4).parallelism == pytest.approx(4.0)
    assert dag_virtual(chain, 4).parallelism == pytest.approx(1.0)
    assert dag_virtual(chain, 4).counters["dag_levels_max"] == 40


# --- a planted bug is caught ------------------------------------------------------------------


def test_skipping_validation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    txns = generated_block("ycsb", 0.99)
    outputs, store = serial_outcome(txns)
    monkeypatch.setattr(MVMemory, "validate_read_set", lambda self, idx: True)  # the bug
    run = block_stm_virtual(TxnEnv(50, ACCOUNTS), txns, {}.get, 8)
    assert (run.outputs, run.writes) != (outputs, store)


def test_skipping_estimates_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    txns = generated_block("smallbank", 0.9)
    outputs, store = serial_outcome(txns)
    monkeypatch.setattr(MVMemory, "validate_read_set", lambda self, idx: True)
    monkeypatch.setattr(MVMemory, "convert_writes_to_estimates", lambda self, idx: None)
    run = block_stm_virtual(TxnEnv(50, ACCOUNTS), txns, {}.get, 8)
    assert (run.outputs, run.writes) != (outputs, store)


# --- bad input, failing and idle workers ------------------------------------------------------


@pytest.mark.parametrize("engine", list(ENGINES))
def test_bad_input_gets_the_same_invalid_result_everywhere(engine: str) -> None:
    ex = executor(engine, 2)
    try:
        out = ex.apply(
            1,
            make_batch(
                (
                    Request(10, 1, b"\xc1not msgpack", b""),
                    Request(10, 2, encode_txns([(BALANCE, ACCOUNTS + 5, None)]), b""),
                    Request(10, 3, encode_txns([(SEND_PAYMENT, 1, (1, 5))]), b""),
                )
            ),
        )
        assert out[0][1] == INVALID_RESULT
        assert out[1][1] == request_digests([T_BAD_ACCOUNT], [1])[0]
        assert out[2][1] == request_digests([T_FAIL], [1])[0]
        assert ex._store == {}
    finally:
        ex.close()


@pytest.mark.parametrize("engine", PARALLEL)
def test_a_worker_that_raises_fails_loudly(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = blockstm_module if engine == "block-stm" else dag_module
    real = module.run_txn

    helper_ran = threading.Event()

    def broken(env: Any, txn: Any, read: Any, write: Any) -> bytes:
        if threading.current_thread() is not threading.main_thread():
            helper_ran.set()
            raise ZeroDivisionError("planted")  # in a helper thread
        helper_ran.wait(5)  # the execute thread waits until a helper has taken a transaction
        return real(env, txn, read, write)

    monkeypatch.setattr(module, "run_txn", broken)
    eng = make_engine(engine, TxnEnv(RC, ACCOUNTS), 2)
    txns = [(UPDATE, k, b"v") for k in range(60)]
    try:
        with pytest.raises(EngineError, match="ZeroDivisionError"):
            eng.run(txns, [len(txns)], {}, None)
    finally:
        eng.close()


def test_a_stuck_block_raises_instead_of_hanging() -> None:
    pool = WorkerPool(1, "t", block_timeout_s=0.2)
    release = threading.Event()
    try:
        with pytest.raises(EngineError, match="stuck"):
            pool.run(lambda k: release.wait(5) if k == 1 else None, release.set)
    finally:
        release.set()
        pool.close()


@pytest.mark.parametrize("engine", PARALLEL)
def test_idle_engine_threads_park(engine: str) -> None:
    eng = make_engine(engine, TxnEnv(RC, ACCOUNTS), 3)
    eng.run([(UPDATE, k, b"v") for k in range(50)], [50], {}, None)
    time.sleep(0.3)
    eng.close()
    for clock in eng.thread_clocks():
        snap = clock.snapshot()
        assert snap["idle_s"] >= 0.25 and snap["cpu_s"] < 0.1, snap  # parked, not spinning
