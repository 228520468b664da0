"""Block-STM's collaborative scheduler (Gelashvili et al., PPoPP'23, Algorithms 4 and 5).

Two indices hand out tasks to whichever worker asks: ``execution_idx`` (the next
transaction to execute) and ``validation_idx`` (the next to validate); a worker takes a
validation task when validation lags execution, else an execution task. Per transaction:
an incarnation number and a status (READY_TO_EXECUTE -> EXECUTING -> EXECUTED, and
ABORTING when a validation fails or the incarnation met an ESTIMATE). An incarnation that
read an ESTIMATE of transaction j is suspended as a dependency of j and resumed (as the
next incarnation) when j finishes executing. A failed validation aborts the incarnation,
lowers ``validation_idx`` so every later transaction is validated again, and re-executes.
The block is done when both indices passed the end and no task is active.

The paper's atomics and per-transaction locks are one condition lock here (CPython runs one
thread at a time; every operation below is short). Workers with nothing to do park on the
condition (``next_task(wait=True)``), woken when an index goes down or the block is done;
``next_task(wait=False)`` returns None instead (the virtual-time driver uses it).

Must not live here: memory (fabric.runtime.engines.mvmemory), running transactions, threads.
"""

from __future__ import annotations

import threading
from typing import Any

from fabric.runtime.engines.limits import PARK_S

READY_TO_EXECUTE, EXECUTING, EXECUTED, ABORTING = range(4)
EXECUTE, VALIDATE = 0, 1
Task = tuple[int, int, int]  # (EXECUTE or VALIDATE, transaction index, incarnation)


class Scheduler:
    """The task handout of one block of ``n`` transactions (see the module comment)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._cond = threading.Condition(threading.Lock())
        self.execution_idx = 0
        self.validation_idx = 0
        self.num_active_tasks = 0
        self._done = n == 0
        self._sleepers = 0
        self.incarnation = [0] * n
        self.status = [READY_TO_EXECUTE] * n
        self.dependencies: list[list[int]] = [[] for _ in range(n)]
        # counters
        self.executions = 0
        self.re_executions = 0
        self.validations = 0
        self.validation_failures = 0
        self.dependency_waits = 0
        self.parks = 0

    def done(self) -> bool:
        return self._done

    def abort(self) -> None:
        """Stop handing out tasks (a worker failed): every waiting worker returns."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    # --- internal, lock held ---------------------------------------------------------
    def _wake(self) -> None:
        if self._sleepers:
            self._cond.notify_all()

    def _decrease_execution_idx(self, target: int) -> None:
        if target < self.execution_idx:
            self.execution_idx = target
            self._wake()

    def _decrease_validation_idx(self, target: int) -> None:
        if target < self.validation_idx:
            self.validation_idx = target
            self._wake()

    def _check_done(self) -> None:
        n = self.n
        if self.execution_idx >= n and self.validation_idx >= n and self.num_active_tasks == 0:
            self._done = True
            self._cond.notify_all()

    def _try_incarnate(self, idx: int) -> Task | None:
        """Claim ``idx`` for execution if it is ready (the caller owns the active count)."""
        if idx < self.n and self.status[idx] == READY_TO_EXECUTE:
            self.status[idx] = EXECUTING
            inc = self.incarnation[idx]
            self.executions += 1
            if inc:
                self.re_executions += 1
            return EXECUTE, idx, inc
        return None

    def _set_ready(self, idx: int) -> None:
        self.incarnation[idx] += 1
        self.status[idx] = READY_TO_EXECUTE

    def _next_version_to_execute(self) -> Task | None:
        if self.execution_idx >= self.n:
            self._check_done()
            return None
        self.num_active_tasks += 1
        idx = self.execution_idx
        self.execution_idx = idx + 1
        task = self._try_incarnate(idx)
        if task is None:
            self.num_active_tasks -= 1
        return task

    def _next_version_to_validate(self) -> Task | None:
        if self.validation_idx >= self.n:
            self._check_done()
            return None
        self.num_active_tasks += 1
        idx = self.validation_idx
        self.validation_idx = idx + 1
        if self.status[idx] == EXECUTED:
            self.validations += 1
            return VALIDATE, idx, self.incarnation[idx]
        self.num_active_tasks -= 1
        return None

    # --- the interface ---------------------------------------------------------------
    def next_task(self, wait: bool = True, clock: Any = None) -> Task | None:
        """The next task; None when the block is done (or, with ``wait=False``, when no task
        can be handed out now). ``clock`` (a ThreadClock) counts parked time as idle."""
        cond = self._cond
        n = self.n
        with cond:
            while not self._done:
                if self.validation_idx < self.execution_idx:
                    task = self._next_version_to_validate()
                else:
                    task = self._next_version_to_execute()
                if task is not None:
                    return task
                if self._done:
                    break
                if self.execution_idx >= n and self.validation_idx >= n:
                    if not wait:
                        return None
                    self.parks += 1
                    self._sleepers += 1
                    if clock is not None:
                        clock.park()
                    cond.wait(PARK_S)
                    if clock is not None:
                        clock.unpark()
                    self._sleepers -= 1
            return None

    def add_dependency(self, idx: int, blocking: int) -> bool:
        """Suspend ``idx`` until ``blocking`` finishes executing; False if it already has
        (then the caller re-executes at once)."""
        with self._cond:
            if self.status[blocking] == EXECUTED:
                return False
            self.status[idx] = ABORTING
            self.dependencies[blocking].append(idx)
            self.num_active_tasks -= 1
            self.dependency_waits += 1
            return True

    def finish_execution(self, idx: int, incarnation: int, wrote_new_location: bool) -> Task | None:
        """``idx`` executed: resume its dependents; maybe hand back its own validation task."""
        with self._cond:
            self.status[idx] = EXECUTED
            deps = self.dependencies[idx]
            if deps:
                self.dependencies[idx] = []
                for j in deps:
                    self._set_ready(j)
                self._decrease_execution_idx(min(deps))
            if self.validation_idx > idx:
                if wrote_new_location:
                    self._decrease_validation_idx(idx)
                else:
                    self.validations += 1
                    return VALIDATE, idx, incarnation
            self.num_active_tasks -= 1
            return None

    def try_validation_abort(self, idx: int, incarnation: int) -> bool:
        """Abort incarnation ``incarnation`` of ``idx`` after a failed validation, if it is
        still the executed one (only the first failing validation aborts it)."""
        with self._cond:
            if self.status[idx] == EXECUTED and self.incarnation[idx] == incarnation:
                self.status[idx] = ABORTING
                self.validation_failures += 1
                return True
            return False

    def finish_validation(self, idx: int, aborted: bool) -> Task | None:
        """A validation ended; an aborted ``idx`` is re-executed at once when execution has
        already passed it (else the execution index will reach it)."""
        with self._cond:
            if aborted:
                self._set_ready(idx)
                self._decrease_validation_idx(idx + 1)
                if self.execution_idx > idx:
                    task = self._try_incarnate(idx)
                    if task is not None:
                        return task  # the active task carries on as this execution
            self.num_active_tasks -= 1
            return None

    def counters(self) -> dict[str, int]:
        return {
            "executions": self.executions,
            "re_executions": self.re_executions,
            "validations": self.validations,
            "validation_failures": self.validation_failures,
            "dependency_waits": self.dependency_waits,
            "parks": self.parks,
        }
