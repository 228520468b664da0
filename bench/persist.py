"""``python -m bench persist``: the persist stage's cost per block for each backend x sync policy
(issue 12 item 7).

The blocks are real: YCSB workload A, batches of 100 transactions over 100,000 records of 100
bytes, executed by ``fabric.runtime.execute.Executor`` with ``record_changes`` (the execute
stage's own code), so each block carries its real writes and replay-cache entries. Each cell
writes the same blocks through ``PersistStage.persist`` (the stage's own code, without its
thread) in pops of ``ledger.max_blocks_per_txn`` (64) items, into a fresh file under the
results folder (the disk a run uses; not tmpfs), and reports per block: wall time (includes
fsync waits), CPU time of the writing thread, bytes written; and the blocks/s one persist
thread sustains, i.e. the ceiling on a replica's throughput in blocks/s under that policy
(x100 for txn/s at batch 100); and the cost per block of recovering the file (reopen, check
every block, redo it into a fresh executor: what a restarted replica pays at start). Median
of 3 passes; every pass runs every cell once, so the
load of a shared machine falls on all alike. memory is the in-process MemoryStore (encoding
and checks, no disk): a real replica with ``ledger.storage: memory`` runs no persist stage.

Environment: BENCH_PERSIST_BLOCKS (default 256), BENCH_PERSIST_PASSES (default 3).

Must not live here: storage code; anything a unit test asserts.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fabric.runtime.execute import Executor
from fabric.runtime.stages.base import P_BLOCK, ReplicaShared
from fabric.runtime.stages.persist import PersistStage
from fabric.runtime.storage import BACKENDS, SYNC_POLICIES, ledger_file, open_store
from fabric.runtime.storage.recovery import recover_into

BATCH = 100
RECORDS = 100_000
VALUE_SIZE = 100
MAX_BLOCKS_PER_TXN = 64


def make_items(count: int) -> list[Any]:
    from protocols.common import Request, make_batch
    from workloads.txn import encode_txns
    from workloads.ycsb import YcsbGenerator

    gen = YcsbGenerator(seed=1, record_count=RECORDS, value_size=VALUE_SIZE, mix="a")
    ex = Executor(RECORDS, VALUE_SIZE, record_changes=True)
    for seq in range(1, count + 1):
        ex.apply(seq, make_batch((Request(100, seq, encode_txns(gen.next_txns(BATCH)), b""),)))
    return [(P_BLOCK, *entry) for entry in ex.take_final()]


def one_cell(kind: str, sync: str, items: list[Any], root: Path) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"persist-{kind}-{sync}-", dir=root))
    try:
        path = ledger_file(folder, kind) if kind != "memory" else None
        store = open_store(kind, path, sync, MAX_BLOCKS_PER_TXN, 4096)
        stage = PersistStage("persist", ReplicaShared(0, 4), store, None)  # type: ignore[arg-type]
        pop = store.max_blocks_per_txn
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        for i in range(0, len(items), pop):
            stage.persist(items[i : i + pop])
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        written = store.bytes_written
        if kind != "memory":
            store.close()
            store = open_store(kind, path, sync, MAX_BLOCKS_PER_TXN, 4096)
        # recovery: check and redo every block into a fresh executor (a restart's start-up)
        fresh = Executor(RECORDS, VALUE_SIZE)
        rec0 = time.perf_counter()
        recover_into(fresh, store)
        recover = time.perf_counter() - rec0
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = len(items)
    return {
        "wall_us": wall / n * 1e6,
        "cpu_us": cpu / n * 1e6,
        "bytes": written / n,
        "recover_us": recover / n * 1e6,
    }


def main() -> None:
    count = int(os.environ.get("BENCH_PERSIST_BLOCKS", "256"))
    passes = int(os.environ.get("BENCH_PERSIST_PASSES", "3"))
    root = Path("results")
    root.mkdir(exist_ok=True)
    items = make_items(count)
    cells = [(kind, sync) for kind in BACKENDS for sync in SYNC_POLICIES if kind != "memory"]
    cells.insert(0, ("memory", "none"))
    runs: dict[tuple[str, str], list[dict[str, float]]] = {cell: [] for cell in cells}
    for _ in range(passes):
        for kind, sync in cells:
            runs[(kind, sync)].append(one_cell(kind, sync, items, root))
    print(
        f"persist stage, {count} blocks of {BATCH} YCSB-A txns, pops of {MAX_BLOCKS_PER_TXN}, "
        f"median of {passes} passes, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  {'backend':<8} {'sync':<12} {'wall us/block':>14} {'cpu us/block':>13} "
        f"{'bytes/block':>12} {'blocks/s':>10} {'recover us/block':>17}"
    )
    for kind, sync in cells:
        wall = statistics.median(r["wall_us"] for r in runs[(kind, sync)])
        cpu = statistics.median(r["cpu_us"] for r in runs[(kind, sync)])
        size = statistics.median(r["bytes"] for r in runs[(kind, sync)])
        recover = statistics.median(r["recover_us"] for r in runs[(kind, sync)])
        print(
            f"  {kind:<8} {sync:<12} {wall:>14.1f} {cpu:>13.1f} {size:>12.0f} "
            f"{1e6 / wall:>10,.0f} {recover:>17.1f}"
        )


if __name__ == "__main__":
    main()
