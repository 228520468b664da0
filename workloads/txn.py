"""Transaction encoding: the bytes inside ``protocols.common.Request.txns``.

A transaction is a tuple ``(op, key, arg)``:

    READ   (0, key, None)
    UPDATE (1, key, value: bytes)
    INSERT (2, key, value: bytes)
    SCAN   (3, key, length: int)      reads keys [key, key + length)
    RMW    (4, key, value: bytes)     read the record, then write ``value``

SmallBank (workloads.smallbank; ``key`` is the account, amounts are integers):

    BALANCE           (5, account, None)            checking + savings
    DEPOSIT_CHECKING  (6, account, amount >= 0)
    TRANSACT_SAVINGS  (7, account, amount)          may be negative; fails below zero
    AMALGAMATE        (8, account, dest account)    moves all of account into dest's checking
    WRITE_CHECK       (9, account, amount >= 0)     overdraft costs a penalty of 1
    SEND_PAYMENT      (10, account, (dest, amount)) fails on insufficient checking

``declared_keys`` names the store keys a transaction may read and write (the conflict-DAG
engine schedules on them; Block-STM discovers its sets and never calls it).

A request's transactions are one msgpack array of 3-element arrays (bin type for
values), packed once by the client and signed once per batch. ``decode_txns``
runs at every replica on bytes a Byzantine client may have chosen, so it checks
every bound (number of transactions, value size, scan length, key range) and
raises ``TxnDecodeError`` on anything malformed; no other exception escapes it.
Nothing is ever unpickled.

Must not live here: workload generation (workloads.ycsb, workloads.smallbank) or execution
(fabric.runtime.execute, fabric.runtime.engines).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

READ = 0
UPDATE = 1
INSERT = 2
SCAN = 3
RMW = 4
BALANCE = 5
DEPOSIT_CHECKING = 6
TRANSACT_SAVINGS = 7
AMALGAMATE = 8
WRITE_CHECK = 9
SEND_PAYMENT = 10
YCSB_OPS = (READ, UPDATE, INSERT, SCAN, RMW)
SMALLBANK_OPS = (BALANCE, DEPOSIT_CHECKING, TRANSACT_SAVINGS, AMALGAMATE, WRITE_CHECK, SEND_PAYMENT)

OP_NAMES: dict[int, str] = {
    READ: "read",
    UPDATE: "update",
    INSERT: "insert",
    SCAN: "scan",
    RMW: "rmw",
    BALANCE: "balance",
    DEPOSIT_CHECKING: "deposit_checking",
    TRANSACT_SAVINGS: "transact_savings",
    AMALGAMATE: "amalgamate",
    WRITE_CHECK: "write_check",
    SEND_PAYMENT: "send_payment",
}

MAX_KEY = (1 << 63) - 1  # keys are non-negative signed 64-bit integers
DEFAULT_MAX_TXNS = 100_000  # transactions per request
DEFAULT_MAX_VALUE_BYTES = 1 << 16  # bytes per value
DEFAULT_MAX_SCAN_LENGTH = 10_000  # records per scan (bounds the work one txn can ask for)
MAX_AMOUNT = 1 << 40  # largest |amount| of one SmallBank transaction (balances: 16 bytes)

# SmallBank balances live in the same store as YCSB records, far above any YCSB key a config
# allows (record_count <= 1e9 plus inserts): account a's checking is SMALLBANK_BASE + 2a, its
# savings SMALLBANK_BASE + 2a + 1.
SMALLBANK_BASE = 1 << 62
MAX_ACCOUNT = (1 << 61) - 1

Txn = tuple[int, int, Any]

# What the third field must be, per op (exact type: bool is not an int here).
_ARG_TYPE: dict[int, type] = {
    READ: type(None),
    UPDATE: bytes,
    INSERT: bytes,
    SCAN: int,
    RMW: bytes,
    BALANCE: type(None),
    DEPOSIT_CHECKING: int,
    TRANSACT_SAVINGS: int,
    AMALGAMATE: int,
    WRITE_CHECK: int,
    SEND_PAYMENT: tuple,
}


class TxnDecodeError(ValueError):
    """An encoded transaction list is malformed (not msgpack, wrong shape, type or bound)."""


def encode_txns(txns: Sequence[Txn]) -> bytes:
    """Pack transactions as a msgpack array of ``[op, key, arg]`` arrays (values as bin).

    The encoder trusts its caller (the local workload generator); replicas must
    use ``decode_txns``, which checks everything.
    """
    return msgpack.packb(txns, use_bin_type=True)


def decode_txns(
    blob: bytes,
    max_txns: int = DEFAULT_MAX_TXNS,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_scan_length: int = DEFAULT_MAX_SCAN_LENGTH,
) -> list[Txn]:
    """Decode and validate ``blob``; raise ``TxnDecodeError`` if anything is off.

    Returns a list of ``(op, key, arg)`` tuples. Bounds: at most ``max_txns``
    transactions, values of at most ``max_value_bytes``, scan lengths in
    ``1..max_scan_length``, keys in ``0..MAX_KEY``.
    """
    if type(blob) is not bytes:
        raise TxnDecodeError(f"expected bytes, got {type(blob).__name__}")
    try:
        obj = msgpack.unpackb(
            blob,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_value_bytes,
            max_str_len=max_value_bytes,
            max_array_len=max_txns,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types; all mean "malformed"
        raise TxnDecodeError(f"not a msgpack value: {type(exc).__name__}: {exc}") from None
    if type(obj) is not tuple:
        raise TxnDecodeError(f"expected an array of transactions, got {type(obj).__name__}")
    if len(obj) > max_txns:
        raise TxnDecodeError(f"{len(obj)} transactions > max {max_txns}")
    # The common case in one tight pass: each check of ``_check_all`` on what every accepted
    # transaction must satisfy (a 3-element array; op: an int naming an op; key: an int in
    # 0..MAX_KEY; arg of the op's exact type; a scan's length, SmallBank's bounds). The first
    # transaction it does not accept sends the whole list to ``_check_all``, which raises
    # what it always raised, naming the transaction; the tests run both on hostile lists.
    arg_type = _ARG_TYPE.get
    try:
        for txn in obj:
            if type(txn) is not tuple:
                break
            op, key, arg = txn  # ValueError unless 3 elements
            if (
                type(op) is not int  # first: a bool or float equal to an op, or an
                # unhashable value (an empty map) that the lookup below would raise on
                or type(arg) is not arg_type(op)  # also an unknown op: no type is None
                or type(key) is not int
                or not 0 <= key <= MAX_KEY
            ):
                break
            if op == SCAN:
                if not 1 <= arg <= max_scan_length:
                    break
            elif op >= BALANCE:
                _check_smallbank(0, op, key, arg)  # TxnDecodeError is a ValueError
        else:
            return list(obj)
    except ValueError:
        pass
    return _check_all(obj, max_scan_length)


def _check_all(obj: tuple[Any, ...], max_scan_length: int) -> list[Txn]:
    """Every check on every transaction of a decoded array, in order; the first that fails
    raises ``TxnDecodeError`` naming the transaction and what is wrong. The reference the
    fast pass of ``decode_txns`` must agree with."""
    arg_type = _ARG_TYPE
    for i, txn in enumerate(obj):
        if type(txn) is not tuple or len(txn) != 3:
            raise TxnDecodeError(f"txn {i}: expected a 3-element array")
        op, key, arg = txn
        if type(op) is not int or op not in arg_type:
            raise TxnDecodeError(f"txn {i}: unknown op {op!r}")
        if type(key) is not int or key < 0 or key > MAX_KEY:
            raise TxnDecodeError(f"txn {i}: key must be an int in 0..{MAX_KEY}")
        if type(arg) is not arg_type[op]:
            raise TxnDecodeError(
                f"txn {i}: {OP_NAMES[op]} takes {arg_type[op].__name__}, got {type(arg).__name__}"
            )
        if op == SCAN and not 1 <= arg <= max_scan_length:
            raise TxnDecodeError(f"txn {i}: scan length {arg} not in 1..{max_scan_length}")
        if op >= BALANCE:
            _check_smallbank(i, op, key, arg)
    return list(obj)


def _check_smallbank(i: int, op: int, account: int, arg: Any) -> None:
    if account > MAX_ACCOUNT:
        raise TxnDecodeError(f"txn {i}: account must be in 0..{MAX_ACCOUNT}")
    if op == DEPOSIT_CHECKING or op == WRITE_CHECK:
        if not 0 <= arg <= MAX_AMOUNT:
            raise TxnDecodeError(f"txn {i}: amount {arg} not in 0..{MAX_AMOUNT}")
    elif op == TRANSACT_SAVINGS:
        if not -MAX_AMOUNT <= arg <= MAX_AMOUNT:
            raise TxnDecodeError(f"txn {i}: amount {arg} not in -{MAX_AMOUNT}..{MAX_AMOUNT}")
    elif op == AMALGAMATE:
        if not 0 <= arg <= MAX_ACCOUNT:
            raise TxnDecodeError(f"txn {i}: destination account not in 0..{MAX_ACCOUNT}")
    elif op == SEND_PAYMENT:
        if len(arg) != 2 or any(type(x) is not int for x in arg):
            raise TxnDecodeError(f"txn {i}: send_payment takes [dest, amount]")
        dest, amount = arg
        if not 0 <= dest <= MAX_ACCOUNT or not 0 <= amount <= MAX_AMOUNT:
            raise TxnDecodeError(
                f"txn {i}: send_payment dest in 0..{MAX_ACCOUNT}, amount in 0..{MAX_AMOUNT}"
            )


def checking_key(account: int) -> int:
    """The store key of ``account``'s checking balance."""
    return SMALLBANK_BASE + 2 * account


def savings_key(account: int) -> int:
    """The store key of ``account``'s savings balance."""
    return SMALLBANK_BASE + 2 * account + 1


def declared_keys(txn: Txn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(keys read, keys written) that ``txn`` may touch: a superset of what it does.

    A write counts as a read too where the transaction reads the old value first; for
    conflicts only the union matters beside which side writes.
    """
    op, key, arg = txn
    if op == READ:
        return (key,), ()
    if op == SCAN:
        return tuple(range(key, key + arg)), ()
    if op <= RMW:  # UPDATE, INSERT, RMW: read the old record, write the new one
        return (), (key,)
    c, s = SMALLBANK_BASE + 2 * key, SMALLBANK_BASE + 2 * key + 1
    if op == BALANCE:
        return (c, s), ()
    if op == DEPOSIT_CHECKING:
        return (), (c,)
    if op == TRANSACT_SAVINGS:
        return (), (s,)
    if op == AMALGAMATE:
        return (), (c, s, SMALLBANK_BASE + 2 * arg)
    if op == WRITE_CHECK:
        return (s,), (c,)
    return (), (c, SMALLBANK_BASE + 2 * arg[0])  # SEND_PAYMENT
