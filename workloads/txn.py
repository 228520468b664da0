"""Transaction encoding: the bytes inside ``protocols.common.Request.txns``.

A transaction is a tuple ``(op, key, arg)``:

    READ   (0, key, None)
    UPDATE (1, key, value: bytes)
    INSERT (2, key, value: bytes)
    SCAN   (3, key, length: int)      reads keys [key, key + length)
    RMW    (4, key, value: bytes)     read the record, then write ``value``

A request's transactions are one msgpack array of 3-element arrays (bin type for
values), packed once by the client and signed once per batch. ``decode_txns``
runs at every replica on bytes a Byzantine client may have chosen, so it checks
every bound (number of transactions, value size, scan length, key range) and
raises ``TxnDecodeError`` on anything malformed; no other exception escapes it.
Nothing is ever unpickled.

Must not live here: workload generation (workloads.ycsb) or execution (fabric.execute).
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

OP_NAMES: dict[int, str] = {
    READ: "read",
    UPDATE: "update",
    INSERT: "insert",
    SCAN: "scan",
    RMW: "rmw",
}

MAX_KEY = (1 << 63) - 1  # keys are non-negative signed 64-bit integers
DEFAULT_MAX_TXNS = 100_000  # transactions per request
DEFAULT_MAX_VALUE_BYTES = 1 << 16  # bytes per value
DEFAULT_MAX_SCAN_LENGTH = 10_000  # records per scan (bounds the work one txn can ask for)

Txn = tuple[int, int, Any]

# What the third field must be, per op (exact type: bool is not an int here).
_ARG_TYPE: dict[int, type] = {
    READ: type(None),
    UPDATE: bytes,
    INSERT: bytes,
    SCAN: int,
    RMW: bytes,
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
    return list(obj)
