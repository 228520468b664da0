"""What one transaction does, given a way to read and write the store: the one definition
every engine runs (serial's inlined YCSB loop is checked against it by the differential tests).

``run_txn(env, txn, read, write) -> bytes`` executes ``(op, key, arg)`` (workloads.txn)
and returns its result bytes; a request's result digest is the sha256 of its transactions'
result bytes joined. ``read(key)`` returns the stored bytes or None (never written);
``write(key, value)`` stores bytes. Nothing else is touched, so an engine decides where reads
come from (the store, a multi-version memory) and where writes go (the store, a buffer).

- YCSB: a loaded record (key < record_count) never written holds ``initial_value(key)``
  and results name it by its key; see fabric.runtime.execute for the tags.
- SmallBank: balances are 16-byte signed big-endian integers at
  ``workloads.txn.checking_key/savings_key``; one never written holds
  ``workloads.smallbank.initial_balance``. An account >= ``env.accounts`` gets
  ``T_BAD_ACCOUNT`` and changes nothing; insufficient funds (and a transfer to oneself) get
  ``T_FAIL`` and change nothing: both are deterministic results like any other.
- The cost knob (``env.burn``) runs once per execution, before the transaction's reads.

Every branch is total over any stored bytes (a Byzantine client may have written anything
with YCSB ops): no exception leaves ``run_txn`` except what ``read`` itself raises (Block-STM's
dependency abort).

Must not live here: scheduling, threads, the store itself.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workloads.smallbank import initial_balance
from workloads.txn import (
    AMALGAMATE,
    BALANCE,
    DEPOSIT_CHECKING,
    INSERT,
    READ,
    RMW,
    SCAN,
    SEND_PAYMENT,
    SMALLBANK_BASE,
    TRANSACT_SAVINGS,
    UPDATE,
    WRITE_CHECK,
    Txn,
)

_sha256 = hashlib.sha256
_KEY = struct.Struct("!Q")
_LEN = struct.Struct("!I")

# per-transaction result tags (one byte each, so results of different shapes never collide)
T_VALUE = b"V"  # followed by a 4-byte length and the value
T_LOADED = b"L"  # followed by the 8-byte key
T_MISS = b"-"  # no such record (nothing read, nothing written)
T_UPDATED = b"U"
T_RMW = b"M"  # followed by the old value as T_VALUE or T_LOADED
T_NEW = b"I"  # INSERT of a new key
T_OVERWRITE = b"O"  # INSERT of an existing key
T_SCAN = b"S"  # followed by the scan's 32-byte digest
T_BALANCE = b"B"  # followed by the 16-byte total
T_OK = b"K"  # a SmallBank update done (Amalgamate: followed by the 16-byte amount moved)
T_PENALTY = b"P"  # WriteCheck overdrawn: the check and a penalty of 1 were taken
T_FAIL = b"F"  # insufficient funds (or a transfer to oneself): nothing changed
T_BAD_ACCOUNT = b"X"  # an account outside 0..accounts-1: nothing changed

BALANCE_BYTES = 16

Read = Callable[[int], Any]
Write = Callable[[int, bytes], None]


@dataclass(frozen=True, slots=True)
class TxnEnv:
    """What every replica agrees on about the store: loaded records, accounts; and the cost knob."""

    record_count: int
    accounts: int
    burn: Callable[[], None] | None = None


def encode_balance(value: int) -> bytes:
    return value.to_bytes(BALANCE_BYTES, "big", signed=True)


def _balance(read: Read, key: int) -> int:
    raw = read(key)
    if raw is None:
        off = key - SMALLBANK_BASE
        return initial_balance(off >> 1, bool(off & 1))
    return int.from_bytes(raw, "big", signed=True)


def scan_digest(read: Read, start: int, length: int) -> bytes:
    """Digest of the records among keys [start, start + length): the range and the written
    records in it (key, length, value); untouched ones are a function of their key."""
    keys = range(start, start + length)
    values = [read(k) for k in keys]
    written = [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]
    m = len(written)
    head = struct.pack(
        f"!QI{m}Q{m}I", start, length, *(k for k, _ in written), *(len(v) for _, v in written)
    )
    return _sha256(head + b"".join(v for _, v in written)).digest()


def run_txn(env: TxnEnv, txn: Txn, read: Read, write: Write) -> bytes:
    """Execute one transaction through ``read``/``write``; return its result bytes."""
    if env.burn is not None:
        env.burn()
    op, key, arg = txn
    if op == READ:
        value = read(key)
        if value is not None:
            return T_VALUE + _LEN.pack(len(value)) + value
        return T_LOADED + _KEY.pack(key) if key < env.record_count else T_MISS
    if op == UPDATE or op == RMW:
        old = read(key)
        if old is None and key >= env.record_count:
            return T_MISS
        write(key, arg)
        if op == UPDATE:
            return T_UPDATED
        if old is not None:
            return T_RMW + T_VALUE + _LEN.pack(len(old)) + old
        return T_RMW + T_LOADED + _KEY.pack(key)
    if op == INSERT:
        old = read(key)
        write(key, arg)
        return T_OVERWRITE if old is not None or key < env.record_count else T_NEW
    if op == SCAN:
        return T_SCAN + scan_digest(read, key, arg)
    return _smallbank(env.accounts, op, key, arg, read, write)


def _smallbank(accounts: int, op: int, a: int, arg: Any, read: Read, write: Write) -> bytes:
    if a >= accounts:
        return T_BAD_ACCOUNT
    chk, sav = SMALLBANK_BASE + 2 * a, SMALLBANK_BASE + 2 * a + 1
    if op == BALANCE:
        return T_BALANCE + encode_balance(_balance(read, chk) + _balance(read, sav))
    if op == DEPOSIT_CHECKING:
        write(chk, encode_balance(_balance(read, chk) + arg))
        return T_OK
    if op == TRANSACT_SAVINGS:
        s = _balance(read, sav) + arg
        if s < 0:
            return T_FAIL
        write(sav, encode_balance(s))
        return T_OK
    if op == WRITE_CHECK:
        c = _balance(read, chk)
        if c + _balance(read, sav) < arg:
            write(chk, encode_balance(c - arg - 1))
            return T_PENALTY
        write(chk, encode_balance(c - arg))
        return T_OK
    if op == AMALGAMATE:
        b = arg
        if b >= accounts:
            return T_BAD_ACCOUNT
        if b == a:
            return T_FAIL
        total = _balance(read, chk) + _balance(read, sav)
        dest = SMALLBANK_BASE + 2 * b
        write(chk, encode_balance(0))
        write(sav, encode_balance(0))
        write(dest, encode_balance(_balance(read, dest) + total))
        return T_OK + encode_balance(total)
    if op == SEND_PAYMENT:
        b, amount = arg
        if b >= accounts:
            return T_BAD_ACCOUNT
        if b == a:
            return T_FAIL
        c = _balance(read, chk)
        if c < amount:
            return T_FAIL
        dest = SMALLBANK_BASE + 2 * b
        write(chk, encode_balance(c - amount))
        write(dest, encode_balance(_balance(read, dest) + amount))
        return T_OK
    raise AssertionError(f"op {op}: decode_txns admits no such op")


def request_digests(outputs: list[bytes], ends: list[int]) -> list[bytes]:
    """Per request, sha256 of its transactions' result bytes (``ends[i]``: end of request i)."""
    out = []
    start = 0
    for end in ends:
        out.append(_sha256(b"".join(outputs[start:end])).digest())
        start = end
    return out
