"""The serial engine: the block's transactions one after another, in order, on the store.

This is the specification every other engine is tested against. YCSB ops run in an inlined
loop (the execute stage's hot path: about a microsecond per op saved against a call per op);
SmallBank ops go through ``fabric.runtime.engines.txns.run_txn``. The differential tests check the
inlined loop against ``run_txn`` too, so the two cannot drift apart.

Must not live here: threads, the replay cache, the ledger (fabric.runtime.execute).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from fabric.runtime.engines.txns import (
    T_LOADED,
    T_MISS,
    T_NEW,
    T_OVERWRITE,
    T_RMW,
    T_SCAN,
    T_UPDATED,
    T_VALUE,
    TxnEnv,
    run_txn,
    scan_digest,
)
from workloads.txn import INSERT, READ, RMW, SCAN, UPDATE, Txn

_sha256 = hashlib.sha256
_KEY = struct.Struct("!Q")
_LEN = struct.Struct("!I")
MISSING: Any = object()  # undo-log marker: the key was absent before the write


class SerialEngine:
    """Executes a block in order on the calling thread (see the module comment)."""

    name = "serial"

    def __init__(self, env: TxnEnv, threads: int = 1) -> None:
        self.env = env
        self.threads = 1  # serial uses the execute thread only, whatever was asked
        self.blocks = 0
        self.executions = 0

    def run(
        self,
        txns: list[Txn],
        ends: list[int],
        store: dict[int, bytes],
        undo: list[tuple[int, Any]] | None,
    ) -> list[bytes]:
        """Apply ``txns`` to ``store`` (undo entries appended if ``undo`` is a list); return
        one result digest per request (request i holds txns [ends[i-1], ends[i]))."""
        env = self.env
        get = store.get
        rc = env.record_count
        burn = env.burn
        pack_len = _LEN.pack
        pack_key = _KEY.pack

        def write(key: int, value: bytes) -> None:
            if undo is not None:
                old = get(key)
                undo.append((key, MISSING if old is None else old))
            store[key] = value

        digests: list[bytes] = []
        start = 0
        for end in ends:
            parts: list[bytes] = []
            add = parts.append
            for op, key, arg in txns[start:end]:
                if op > RMW:  # SmallBank (run_txn burns for itself)
                    add(run_txn(env, (op, key, arg), get, write))
                    continue
                if burn is not None:
                    burn()
                if op == READ:
                    value = get(key)
                    if value is not None:
                        parts += (T_VALUE, pack_len(len(value)), value)
                    elif key < rc:
                        add(T_LOADED)
                        add(pack_key(key))
                    else:
                        add(T_MISS)
                elif op == UPDATE:
                    old = get(key)
                    if old is None and key >= rc:
                        add(T_MISS)  # no such record: nothing written
                        continue
                    if undo is not None:
                        undo.append((key, MISSING if old is None else old))
                    store[key] = arg
                    add(T_UPDATED)
                elif op == RMW:
                    old = get(key)
                    if old is None and key >= rc:
                        add(T_MISS)
                        continue
                    if undo is not None:
                        undo.append((key, MISSING if old is None else old))
                    store[key] = arg
                    if old is not None:
                        parts += (T_RMW + T_VALUE, pack_len(len(old)), old)
                    else:
                        add(T_RMW + T_LOADED)
                        add(pack_key(key))
                elif op == INSERT:
                    old = get(key)
                    if undo is not None:
                        undo.append((key, MISSING if old is None else old))
                    store[key] = arg
                    add(T_OVERWRITE if old is not None or key < rc else T_NEW)
                else:  # SCAN
                    assert op == SCAN
                    add(T_SCAN)
                    add(scan_digest(get, key, arg))
            digests.append(_sha256(b"".join(parts)).digest())
            start = end
        self.blocks += 1
        self.executions += len(txns)
        return digests

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "threads": 1,
            "blocks": self.blocks,
            "txns": self.executions,
            "executions": self.executions,
            "re_executions": 0,
            "validations": 0,
            "validation_failures": 0,
            "dependency_waits": 0,
            "dag_width_max": 0,
            "dag_levels_max": 0,
        }

    def thread_clocks(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass
