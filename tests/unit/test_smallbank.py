"""SmallBank: the generator (mix, hotspot, seeds), the six transactions' effects, decoding, config."""

from __future__ import annotations

from collections import Counter

import pytest

from fabric.harness.config import ConfigError, load_config
from fabric.runtime.engines.txns import (
    T_BAD_ACCOUNT,
    T_BALANCE,
    T_FAIL,
    T_OK,
    T_PENALTY,
    TxnEnv,
    encode_balance,
    run_txn,
)
from fabric.runtime.execute import Executor
from protocols.common import Request, make_batch
from workloads.factory import make_generator
from workloads.smallbank import (
    MAX_INITIAL_BALANCE,
    MIN_INITIAL_BALANCE,
    STANDARD_MIX,
    SmallbankGenerator,
    initial_balance,
)
from workloads.txn import (
    AMALGAMATE,
    BALANCE,
    DEPOSIT_CHECKING,
    SEND_PAYMENT,
    SMALLBANK_OPS,
    TRANSACT_SAVINGS,
    WRITE_CHECK,
    TxnDecodeError,
    checking_key,
    decode_txns,
    encode_txns,
    savings_key,
)
from workloads.ycsb import YcsbGenerator

ACCOUNTS = 10


class Bank:
    """run_txn over a plain dict, with balances read back as ints."""

    def __init__(self) -> None:
        self.store: dict[int, bytes] = {}
        self.env = TxnEnv(0, ACCOUNTS)

    def do(self, op: int, account: int, arg: object = None) -> bytes:
        return run_txn(self.env, (op, account, arg), self.store.get, self.store.__setitem__)

    def checking(self, a: int) -> int:
        raw = self.store.get(checking_key(a))
        return initial_balance(a, False) if raw is None else int.from_bytes(raw, "big", signed=True)

    def savings(self, a: int) -> int:
        raw = self.store.get(savings_key(a))
        return initial_balance(a, True) if raw is None else int.from_bytes(raw, "big", signed=True)


# --- the transactions ------------------------------------------------------------------------


def test_balance_is_checking_plus_savings() -> None:
    bank = Bank()
    total = initial_balance(3, False) + initial_balance(3, True)
    assert bank.do(BALANCE, 3) == T_BALANCE + encode_balance(total)
    assert bank.store == {}  # a read changes nothing


def test_deposit_and_transact_savings() -> None:
    bank = Bank()
    c0, s0 = bank.checking(1), bank.savings(1)
    assert bank.do(DEPOSIT_CHECKING, 1, 50) == T_OK and bank.checking(1) == c0 + 50
    assert bank.do(TRANSACT_SAVINGS, 1, -10) == T_OK and bank.savings(1) == s0 - 10
    before = dict(bank.store)
    assert bank.do(TRANSACT_SAVINGS, 1, -(s0 - 10) - 1) == T_FAIL  # would go below zero
    assert bank.store == before


def test_amalgamate_moves_everything_into_dest_checking() -> None:
    bank = Bank()
    total = bank.checking(2) + bank.savings(2)
    dest = bank.checking(5)
    assert bank.do(AMALGAMATE, 2, 5) == T_OK + encode_balance(total)
    assert (bank.checking(2), bank.savings(2), bank.checking(5)) == (0, 0, dest + total)
    assert bank.do(AMALGAMATE, 2, 2) == T_FAIL  # to oneself: a deterministic failure


def test_write_check_overdraft_takes_a_penalty() -> None:
    bank = Bank()
    total = bank.checking(4) + bank.savings(4)
    c = bank.checking(4)
    assert bank.do(WRITE_CHECK, 4, 10) == T_OK and bank.checking(4) == c - 10
    assert bank.do(WRITE_CHECK, 4, total) == T_PENALTY  # total - 10 < total
    assert bank.checking(4) == c - 10 - total - 1


def test_send_payment_fails_on_insufficient_funds() -> None:
    bank = Bank()
    c1, c2 = bank.checking(1), bank.checking(2)
    assert bank.do(SEND_PAYMENT, 1, (2, 100)) == T_OK
    assert (bank.checking(1), bank.checking(2)) == (c1 - 100, c2 + 100)
    before = dict(bank.store)
    assert bank.do(SEND_PAYMENT, 1, (2, c1)) == T_FAIL  # only c1 - 100 left
    assert bank.store == before


@pytest.mark.parametrize(
    "txn",
    [
        (BALANCE, ACCOUNTS, None),
        (DEPOSIT_CHECKING, ACCOUNTS + 3, 5),
        (AMALGAMATE, 1, ACCOUNTS),
        (SEND_PAYMENT, 1, (ACCOUNTS, 5)),
    ],
)
def test_an_unknown_account_changes_nothing(txn: tuple) -> None:
    bank = Bank()
    assert bank.do(*txn) == T_BAD_ACCOUNT and bank.store == {}


def test_dependent_transfers_see_each_other() -> None:
    """Libra's question: A pays 0x34, then 0x34 spends it; B must see A's write."""
    ex = Executor(0, 1, engine="block-stm", threads=2, smallbank_accounts=ACCOUNTS)
    try:
        drain = initial_balance(3, False)
        txns = [
            (SEND_PAYMENT, 3, (4, drain)),  # 3 is now empty
            (SEND_PAYMENT, 5, (3, 7)),  # 3 receives 7
            (SEND_PAYMENT, 3, (6, 7)),  # works only if it saw the 7
            (SEND_PAYMENT, 3, (6, 1)),  # fails: nothing left
        ]
        serial = Executor(0, 1, smallbank_accounts=ACCOUNTS)
        req = Request(10, 1, encode_txns(txns), b"")
        assert ex.apply(1, make_batch((req,))) == serial.apply(1, make_batch((req,)))
        assert ex.read(checking_key(3)) == encode_balance(0)
        assert ex.state_digest() == serial.state_digest()
    finally:
        ex.close()


# --- decoding ------------------------------------------------------------------------------


def test_smallbank_txns_round_trip() -> None:
    txns = SmallbankGenerator(1, 100, 5, 0.5).next_txns(200)
    assert decode_txns(encode_txns(txns)) == txns


@pytest.mark.parametrize(
    "txn",
    [
        (BALANCE, 1, 5),
        (DEPOSIT_CHECKING, 1, -5),
        (DEPOSIT_CHECKING, 1, 1 << 50),
        (WRITE_CHECK, 1, None),
        (TRANSACT_SAVINGS, 1, b"x"),
        (AMALGAMATE, 1, -1),
        (SEND_PAYMENT, 1, 5),
        (SEND_PAYMENT, 1, (2,)),
        (SEND_PAYMENT, 1, (2, -1)),
        (SEND_PAYMENT, 1, (2, "x")),
        (BALANCE, 1 << 62, None),
    ],
)
def test_malformed_smallbank_txns_are_refused(txn: tuple) -> None:
    with pytest.raises(TxnDecodeError):
        decode_txns(encode_txns([txn]))


# --- the generator ---------------------------------------------------------------------------


def test_generator_is_seeded_and_follows_the_mix() -> None:
    a = SmallbankGenerator(7, 1000, 10, 0.0).next_txns(20_000)
    assert a == SmallbankGenerator(7, 1000, 10, 0.0).next_txns(20_000)
    assert a != SmallbankGenerator(8, 1000, 10, 0.0).next_txns(20_000)
    ops = Counter(op for op, _, _ in a)
    assert set(ops) == set(SMALLBANK_OPS)
    names = dict(zip(SMALLBANK_OPS, STANDARD_MIX.values(), strict=True))
    for op, share in names.items():
        assert abs(ops[op] / len(a) - share) < 0.02
    for op, account, arg in a:
        assert 0 <= account < 1000
        if op in (AMALGAMATE, SEND_PAYMENT):
            dest = arg if op == AMALGAMATE else arg[0]
            assert dest != account and 0 <= dest < 1000


@pytest.mark.parametrize("hotspot", [0.0, 0.5, 0.9])
def test_hotspot_share(hotspot: float) -> None:
    txns = SmallbankGenerator(1, 100_000, 10, hotspot).next_txns(20_000)
    hot = sum(1 for _, account, _ in txns if account < 10) / len(txns)
    assert abs(hot - hotspot) < 0.02 + 10 / 100_000


def test_generator_refuses_bad_knobs() -> None:
    with pytest.raises(ValueError):
        SmallbankGenerator(1, 10, 11)
    with pytest.raises(ValueError):
        SmallbankGenerator(1, 10, 5, hotspot=1.5)
    with pytest.raises(ValueError):
        SmallbankGenerator(1, 10, 5, mix={"lottery": 1.0})


def test_initial_balances_are_a_function_of_the_account() -> None:
    values = {initial_balance(a, s) for a in range(200) for s in (False, True)}
    assert len(values) > 100
    assert all(MIN_INITIAL_BALANCE <= v <= MAX_INITIAL_BALANCE for v in values)


def test_factory_follows_workload_kind() -> None:
    cfg = load_config(None, ["workload.kind=smallbank", "workload.smallbank_hotspot=0.5"])
    gen = make_generator(cfg.workload, 1)
    assert isinstance(gen, SmallbankGenerator) and gen.hotspot == 0.5
    assert gen.accounts == cfg.workload.smallbank_accounts
    assert isinstance(make_generator(load_config(None).workload, 1), YcsbGenerator)


def test_config_checks_smallbank_knobs() -> None:
    with pytest.raises(ConfigError, match="workload.smallbank_hot_accounts"):
        load_config(None, ["workload.smallbank_accounts=10", "workload.smallbank_hot_accounts=20"])
    with pytest.raises(ConfigError, match="sum"):
        load_config(None, ["workload.kind=smallbank", "workload.smallbank_send_payment=0.5"])
    with pytest.raises(ConfigError, match="ycsb \\| smallbank"):
        load_config(None, ["workload.kind=tpcc"])


def test_config_checks_execution_knobs() -> None:
    cfg = load_config(None, ["execution.engine=[serial,block-stm,conflict-dag,block-stm]"])
    assert [cfg.execution.engine_for(i) for i in range(4)] == [
        "serial",
        "block-stm",
        "conflict-dag",
        "block-stm",
    ]
    assert load_config(None, ["execution.engine=conflict-dag"]).execution.engine_for(3) == (
        "conflict-dag"
    )
    with pytest.raises(ConfigError, match="serial \\| block-stm \\| conflict-dag"):
        load_config(None, ["execution.engine=turbo"])
    with pytest.raises(ConfigError, match="cluster.replicas"):
        load_config(None, ["execution.engine=[serial,block-stm]"])
    with pytest.raises(ConfigError, match="execution.threads"):
        load_config(None, ["execution.threads=65"])
    with pytest.raises(ConfigError, match="execution.txn_cost_us"):
        load_config(None, ["execution.txn_cost_us=-1"])
