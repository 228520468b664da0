"""The conflict-DAG engine: declared key sets, conflicting transactions in block order, the rest
concurrently (after Xline CURP's conflict-checked channel).

Every transaction declares the keys it may read and write (``workloads.txn.declared_keys``).
Building the DAG walks the block once: transaction i depends on the last earlier writer of
every key it reads or writes, and on every reader since that writer of each key it writes
(read-read never conflicts). A transaction is released to a worker only when all its
dependencies have finished; released ones are handed out lowest index first (FIFO in block
order). Workers run each transaction directly on the store: no two conflicting ones ever run
at once, so each sees exactly the state serial execution would give it, and its undo entries
land in conflict order (a reversed undo log still restores the state before the block).

Counters: the DAG's levels (longest dependency chain) and width (most transactions on one
level), and how often a worker parked with nothing released (dependency waits).

Must not live here: what a transaction does (fabric.runtime.engines.txns), its key sets (workloads.txn).
"""

from __future__ import annotations

import heapq
import threading
from typing import Any

from fabric.runtime.engines.limits import PARK_S
from fabric.runtime.engines.pool import WorkerPool
from fabric.runtime.engines.serial import MISSING
from fabric.runtime.engines.txns import TxnEnv, request_digests, run_txn
from workloads.txn import Txn, declared_keys


class Dag:
    """Dependencies of one block: ``indegree[i]``, ``successors[i]``, ``level[i]`` (1-based)."""

    __slots__ = ("indegree", "successors", "level", "edges")

    def __init__(self, txns: list[Txn]) -> None:
        n = len(txns)
        self.indegree = [0] * n
        self.successors: list[list[int]] = [[] for _ in range(n)]
        self.level = [1] * n
        self.edges = 0
        last_writer: dict[int, int] = {}
        readers: dict[int, list[int]] = {}  # readers of a key since its last writer
        for i, txn in enumerate(txns):
            reads, writes = declared_keys(txn)
            deps: set[int] = set()
            for key in reads:
                w = last_writer.get(key)
                if w is not None:
                    deps.add(w)
            for key in writes:
                w = last_writer.get(key)
                if w is not None:
                    deps.add(w)
                deps.update(readers.get(key, ()))
            deps.discard(i)
            for key in reads:
                readers.setdefault(key, []).append(i)
            for key in writes:
                last_writer[key] = i
                readers[key] = []
            self.indegree[i] = len(deps)
            self.edges += len(deps)
            lvl = 1
            for d in deps:
                self.successors[d].append(i)
                if self.level[d] >= lvl:
                    lvl = self.level[d] + 1
            self.level[i] = lvl

    def levels(self) -> int:
        return max(self.level, default=0)

    def width(self) -> int:
        counts: dict[int, int] = {}
        for lvl in self.level:
            counts[lvl] = counts.get(lvl, 0) + 1
        return max(counts.values(), default=0)


class _DagJob:
    def __init__(self, env: TxnEnv, txns: list[Txn], dag: Dag, store: dict, undo: Any) -> None:
        self.env = env
        self.txns = txns
        self.n = len(txns)
        self.indegree = list(dag.indegree)
        self.successors = dag.successors
        self.ready = [i for i, d in enumerate(self.indegree) if d == 0]  # ascending: a heap
        self.outputs: list[bytes] = [b""] * self.n
        self.finished = 0
        self.aborted = False
        self.sleepers = 0
        self.waits = 0
        self.cond = threading.Condition(threading.Lock())
        get = store.get

        def write(key: int, value: bytes) -> None:
            if undo is not None:
                old = get(key)
                undo.append((key, MISSING if old is None else old))
            store[key] = value

        self.read = get
        self.write = write

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()

    def work(self, clock: Any = None) -> None:
        cond = self.cond
        ready = self.ready
        txns, env, read, write = self.txns, self.env, self.read, self.write
        outputs, successors, indegree = self.outputs, self.successors, self.indegree
        n = self.n
        while True:
            with cond:
                while not ready:
                    if self.finished >= n or self.aborted:
                        return
                    self.waits += 1
                    self.sleepers += 1
                    if clock is not None:
                        clock.park()
                    cond.wait(PARK_S)
                    if clock is not None:
                        clock.unpark()
                    self.sleepers -= 1
                if self.aborted:
                    return
                i = heapq.heappop(ready)
            out = run_txn(env, txns[i], read, write)
            with cond:
                outputs[i] = out
                self.finished += 1
                released = 0
                for s in successors[i]:
                    indegree[s] -= 1
                    if indegree[s] == 0:
                        heapq.heappush(ready, s)
                        released += 1
                if self.sleepers and (released or self.finished >= n):
                    cond.notify_all()


class ConflictDagEngine:
    """Conflict-DAG scheduling on ``threads`` workers (see the module comment)."""

    name = "conflict-dag"

    def __init__(self, env: TxnEnv, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.env = env
        self.threads = threads
        self.pool = WorkerPool(threads - 1, "dag")
        self.blocks = 0
        self.txns = 0
        self.edges = 0
        self.dependency_waits = 0
        self.width_max = 0
        self.levels_max = 0

    def run(
        self,
        txns: list[Txn],
        ends: list[int],
        store: dict[int, bytes],
        undo: list[tuple[int, Any]] | None,
    ) -> list[bytes]:
        """Execute ``txns`` along their conflict DAG; see SerialEngine.run."""
        self.blocks += 1
        if not txns:
            return request_digests([], ends)
        dag = Dag(txns)
        job = _DagJob(self.env, txns, dag, store, undo)
        pool = self.pool
        pool.run(lambda k: job.work(pool.clock(k)), job.abort)
        assert job.finished == len(txns)
        self.txns += len(txns)
        self.edges += dag.edges
        self.dependency_waits += job.waits
        self.width_max = max(self.width_max, dag.width())
        self.levels_max = max(self.levels_max, dag.levels())
        return request_digests(job.outputs, ends)

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "threads": self.threads,
            "blocks": self.blocks,
            "txns": self.txns,
            "executions": self.txns,
            "re_executions": 0,
            "validations": 0,
            "validation_failures": 0,
            "dependency_waits": self.dependency_waits,
            "dependency_edges": self.edges,
            "dag_width_max": self.width_max,
            "dag_levels_max": self.levels_max,
        }

    def thread_clocks(self) -> list[Any]:
        return list(self.pool.clocks)

    def close(self) -> None:
        self.pool.close()
