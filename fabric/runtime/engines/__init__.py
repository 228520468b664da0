"""Execution engines: how the execute stage applies one committed block of transactions.

``make_engine(name, env, threads)`` builds one of ``ENGINES``:

    serial        in order on the execute thread (fabric.runtime.engines.serial): the specification
    block-stm     Block-STM, speculative with multi-version memory and validation
                  (fabric.runtime.engines.blockstm, .scheduler, .mvmemory, .captured)
    conflict-dag  declared key sets, conflicting transactions in order (fabric.runtime.engines.conflictdag)

Every engine has ``run(txns, ends, store, undo) -> [request digest]``, ``stats()``,
``thread_clocks()`` and ``close()``, and must leave exactly the store, results and (through
fabric.runtime.execute) ledger that serial execution leaves. fabric.runtime.engines.virtual replays a
block's schedule in virtual time to measure the parallelism an engine exposes; bounds are in
fabric.runtime.engines.limits, the cost knob in fabric.runtime.engines.cost.

Must not live here: the replay cache, the ledger, speculation bookkeeping (fabric.runtime.execute).
"""

from __future__ import annotations

from typing import Any

from fabric.runtime.engines.blockstm import BlockStmEngine
from fabric.runtime.engines.conflictdag import ConflictDagEngine
from fabric.runtime.engines.limits import MAX_THREADS
from fabric.runtime.engines.pool import ENGINE_THREAD_ROLE, EngineError
from fabric.runtime.engines.serial import SerialEngine
from fabric.runtime.engines.txns import TxnEnv

ENGINES: dict[str, type] = {
    "serial": SerialEngine,
    "block-stm": BlockStmEngine,
    "conflict-dag": ConflictDagEngine,
}

__all__ = ["ENGINES", "ENGINE_THREAD_ROLE", "EngineError", "TxnEnv", "make_engine"]


def make_engine(name: str, env: TxnEnv, threads: int = 1) -> Any:
    """An engine by name with ``threads`` workers (the execute thread counts as one)."""
    cls = ENGINES.get(name)
    if cls is None:
        raise ValueError(f"unknown execution engine {name!r}: {' | '.join(ENGINES)}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"execution threads {threads} not in 1..{MAX_THREADS}")
    return cls(env, threads)
