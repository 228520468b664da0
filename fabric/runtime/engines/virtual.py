"""The parallelism an engine's schedule exposes, in virtual time with T threads.

The wall-clock speedup on this 2-core machine says little about 8 or 32 cores. So the
benchmark also replays each block's schedule with T virtual workers and fixed task costs
(``VIRTUAL_TXN_US`` + txn_cost_us per execution, ``VIRTUAL_VALIDATE_US`` per validation, in
fabric.runtime.engines.limits): exposed parallelism = serial work (one execution per transaction) /
the virtual makespan. It is at most T, and it counts every re-execution and validation the
schedule needed.

- ``block_stm_virtual``: Block-STM's own scheduler and multi-version memory driven by a
  discrete-event loop: an execution reads at its start and records at its end, a validation
  checks at its end. It really executes the block (results and the final writes come back),
  so the differential tests also check it against serial: deterministic interleavings that
  real threads only hit by chance (a planted bug such as skipped validation shows here).
- ``dag_virtual``: list scheduling of the conflict DAG with T workers, lowest index first.

Must not live here: threads, wall-clock timing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from fabric.runtime.engines.blockstm import BlockJob, execute_incarnation
from fabric.runtime.engines.conflictdag import Dag
from fabric.runtime.engines.limits import VIRTUAL_TXN_US, VIRTUAL_VALIDATE_US
from fabric.runtime.engines.scheduler import EXECUTE
from fabric.runtime.engines.txns import TxnEnv
from workloads.txn import Txn


@dataclass
class VirtualRun:
    makespan_us: float
    work_us: float  # serial execution of the block in the same virtual costs
    outputs: list[bytes]
    writes: dict[int, Any]
    counters: dict[str, int]

    @property
    def parallelism(self) -> float:
        return self.work_us / self.makespan_us if self.makespan_us > 0 else 1.0


def block_stm_virtual(
    env: TxnEnv, txns: list[Txn], storage_get: Any, threads: int, txn_cost_us: float = 0.0
) -> VirtualRun:
    """Block-STM on ``threads`` virtual workers (see the module comment); ``env.burn`` should be
    None (virtual costs stand in for it)."""
    exec_us = VIRTUAL_TXN_US + txn_cost_us
    n = len(txns)
    job = BlockJob(env, txns, storage_get)
    sched, mv = job.scheduler, job.mv
    events: list[tuple[float, int, int, Any]] = []  # (time, order, worker, completion)
    order = 0
    now = 0.0
    free = list(range(threads))

    def start(worker: int, task: Any) -> None:
        nonlocal order
        kind, idx, inc = task
        if kind == EXECUTE:
            blocking, reads, writes, out = execute_incarnation(env, txns[idx], idx, mv, storage_get)
            done = ("exec", idx, inc, blocking, reads, writes, out)
            cost = exec_us
        else:
            done = ("validate", idx, inc)
            cost = VIRTUAL_VALIDATE_US
        order += 1
        heapq.heappush(events, (now + cost, order, worker, done))

    def complete(done: Any) -> Any:
        if done[0] == "exec":
            _, idx, inc, blocking, reads, writes, out = done
            if blocking >= 0:
                if sched.add_dependency(idx, blocking):
                    return None
                return (EXECUTE, idx, inc)  # the blocking one finished: run again
            job.outputs[idx] = out
            return sched.finish_execution(idx, inc, mv.record(idx, inc, reads, writes))
        return job.needs_reexecution(done[1], done[2])

    while not sched.done():
        while free:
            task = sched.next_task(wait=False)
            if task is None:
                break
            start(free.pop(), task)
        if not events:
            if sched.done():
                break
            raise RuntimeError("virtual Block-STM stalled: no task and no event (scheduler bug)")
        now, _, worker, done = heapq.heappop(events)
        follow = complete(done)
        if follow is not None:
            start(worker, follow)
        else:
            free.append(worker)
    return VirtualRun(now, n * exec_us, job.outputs, mv.snapshot(), sched.counters())


def dag_virtual(txns: list[Txn], threads: int, txn_cost_us: float = 0.0) -> VirtualRun:
    """List scheduling of the block's conflict DAG on ``threads`` virtual workers."""
    exec_us = VIRTUAL_TXN_US + txn_cost_us
    n = len(txns)
    dag = Dag(txns)
    indegree = list(dag.indegree)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    running: list[tuple[float, int]] = []
    now = 0.0
    finished = 0
    while finished < n:
        while ready and len(running) < threads:
            heapq.heappush(running, (now + exec_us, heapq.heappop(ready)))
        now, i = heapq.heappop(running)
        finished += 1
        for s in dag.successors[i]:
            indegree[s] -= 1
            if indegree[s] == 0:
                heapq.heappush(ready, s)
    counters = {"dag_width_max": dag.width(), "dag_levels_max": dag.levels(), "edges": dag.edges}
    return VirtualRun(now, n * exec_us, [], {}, counters)
