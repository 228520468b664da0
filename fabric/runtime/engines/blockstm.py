"""The Block-STM engine: speculative parallel execution of one ordered block, committed in order
(Gelashvili et al., PPoPP'23, Algorithm 1: the executor loop).

Every worker (the execute thread and ``threads - 1`` helpers) loops: take a task from the
scheduler; an execution task runs the transaction against a ``SpeculativeView`` of the
multi-version memory (reads and writes discovered as it runs), and either records its
read set and writes or, on an ESTIMATE, suspends as a dependency; a validation task re-reads
the read set and, if a version changed, aborts the incarnation (its writes become ESTIMATEs)
and re-executes. When the scheduler says done, the block's output (per key, its highest
writer's value) is applied to the store in one step, with one undo entry per key, and each
request's digest is built from the last incarnation's results: exactly what serial
execution in block order produces.

Must not live here: the scheduler's rules, the memory's structure, what a transaction does.
"""

from __future__ import annotations

from typing import Any

from fabric.runtime.engines.captured import DependencyAbort, SpeculativeView
from fabric.runtime.engines.mvmemory import MVMemory, ReadSet
from fabric.runtime.engines.pool import WorkerPool
from fabric.runtime.engines.scheduler import EXECUTE, Scheduler, Task
from fabric.runtime.engines.serial import MISSING
from fabric.runtime.engines.txns import TxnEnv, request_digests, run_txn
from workloads.txn import Txn


def execute_incarnation(
    env: TxnEnv, txn: Txn, idx: int, mv: MVMemory, storage_get: Any
) -> tuple[int, ReadSet, dict[int, Any], bytes]:
    """Run one incarnation; (-1, reads, writes, result) or (blocking index, [], {}, b"")."""
    view = SpeculativeView(idx, mv, storage_get)
    try:
        out = run_txn(env, txn, view.read, view.write)
    except DependencyAbort as dep:
        return dep.blocking, [], {}, b""
    return -1, view.reads, view.writes, out


class BlockJob:
    """The state of one block under Block-STM: scheduler, memory, results per index."""

    def __init__(self, env: TxnEnv, txns: list[Txn], storage_get: Any) -> None:
        self.env = env
        self.txns = txns
        self.storage_get = storage_get
        n = len(txns)
        self.scheduler = Scheduler(n)
        self.mv = MVMemory(n)
        self.outputs: list[bytes] = [b""] * n

    def try_execute(self, idx: int, incarnation: int) -> Task | None:
        sched = self.scheduler
        while True:
            blocking, reads, writes, out = execute_incarnation(
                self.env, self.txns[idx], idx, self.mv, self.storage_get
            )
            if blocking < 0:
                break
            if sched.add_dependency(idx, blocking):
                return None
            # the blocking transaction finished meanwhile: run this incarnation again
        self.outputs[idx] = out
        wrote_new = self.mv.record(idx, incarnation, reads, writes)
        return sched.finish_execution(idx, incarnation, wrote_new)

    def needs_reexecution(self, idx: int, incarnation: int) -> Task | None:
        sched = self.scheduler
        valid = self.mv.validate_read_set(idx)
        aborted = not valid and sched.try_validation_abort(idx, incarnation)
        if aborted:
            self.mv.convert_writes_to_estimates(idx)
        return sched.finish_validation(idx, aborted)

    def work(self, clock: Any = None) -> None:
        sched = self.scheduler
        task: Task | None = None
        while True:
            if task is None:
                task = sched.next_task(True, clock)
                if task is None:
                    return
            kind, idx, inc = task
            if kind == EXECUTE:
                task = self.try_execute(idx, inc)
            else:
                task = self.needs_reexecution(idx, inc)


class BlockStmEngine:
    """Block-STM on ``threads`` workers (see the module comment)."""

    name = "block-stm"

    def __init__(self, env: TxnEnv, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.env = env
        self.threads = threads
        self.pool = WorkerPool(threads - 1, "stm")
        self.blocks = 0
        self.txns = 0
        self._counters: dict[str, int] = {}

    def run(
        self,
        txns: list[Txn],
        ends: list[int],
        store: dict[int, bytes],
        undo: list[tuple[int, Any]] | None,
    ) -> list[bytes]:
        """Execute ``txns`` speculatively, commit them in order; see SerialEngine.run."""
        self.blocks += 1
        if not txns:
            return request_digests([], ends)
        job = BlockJob(self.env, txns, store.get)
        pool = self.pool
        pool.run(lambda k: job.work(pool.clock(k)), job.scheduler.abort)
        assert job.scheduler.done()
        for key, value in job.mv.snapshot().items():
            if undo is not None:
                old = store.get(key)
                undo.append((key, MISSING if old is None else old))
            store[key] = value
        self.txns += len(txns)
        counters = self._counters
        for name, count in job.scheduler.counters().items():
            counters[name] = counters.get(name, 0) + count
        return request_digests(job.outputs, ends)

    def stats(self) -> dict[str, Any]:
        c = self._counters
        return {
            "engine": self.name,
            "threads": self.threads,
            "blocks": self.blocks,
            "txns": self.txns,
            "executions": c.get("executions", 0),
            "re_executions": c.get("re_executions", 0),
            "validations": c.get("validations", 0),
            "validation_failures": c.get("validation_failures", 0),
            "dependency_waits": c.get("dependency_waits", 0),
            "dag_width_max": 0,
            "dag_levels_max": 0,
        }

    def thread_clocks(self) -> list[Any]:
        return list(self.pool.clocks)

    def close(self) -> None:
        self.pool.close()
