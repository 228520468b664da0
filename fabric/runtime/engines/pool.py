"""The worker threads of a parallel engine: ``threads - 1`` helpers beside the execute thread.

``WorkerPool.run(work, abort)`` runs ``work(0)`` on the calling (execute) thread and
``work(k)`` on helper k = 1..helpers at once, and returns when every one of them returned.
Helpers park on a condition between blocks (counted idle in their ThreadClock, never a
spin). If any worker raises, ``abort()`` is called so the others leave their loops, and
``run`` raises ``EngineError`` carrying the worker's traceback: the execute stage then fails
the run loudly with the replica's log. A block that does not finish within
``BLOCK_TIMEOUT_S`` raises too: an engine never hangs the execute stage silently.

Must not live here: what a worker does (the engines), anything about transactions.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

from fabric.analysis.metrics import ThreadClock
from fabric.runtime.engines.limits import BLOCK_TIMEOUT_S, JOIN_TIMEOUT_S, MAX_THREADS, PARK_S

ENGINE_THREAD_ROLE = "execute-engine"


class EngineError(RuntimeError):
    """An execution engine failed (a worker raised, or a block got stuck)."""


class WorkerPool:
    """``helpers`` parked threads that join the calling thread on each block."""

    def __init__(self, helpers: int, name: str, block_timeout_s: float = BLOCK_TIMEOUT_S) -> None:
        if not 0 <= helpers < MAX_THREADS:
            raise ValueError(f"helpers {helpers} not in 0..{MAX_THREADS - 1}")
        self.helpers = helpers
        self.block_timeout_s = block_timeout_s
        self._cond = threading.Condition()
        self._generation = 0
        self._running = 0
        self._closed = False
        self._work: Callable[[int], None] | None = None
        self._abort: Callable[[], None] | None = None
        self._errors: list[str] = []
        self.clocks = [
            ThreadClock(f"{name}-{k}", ENGINE_THREAD_ROLE) for k in range(1, helpers + 1)
        ]
        self._threads = [
            threading.Thread(target=self._loop, args=(k,), name=f"{name}-{k}", daemon=True)
            for k in range(1, helpers + 1)
        ]
        for t in self._threads:
            t.start()

    def clock(self, k: int) -> ThreadClock | None:
        """Worker k's clock (None for worker 0: the execute thread keeps its own)."""
        return self.clocks[k - 1] if k > 0 else None

    def run(self, work: Callable[[int], None], abort: Callable[[], None]) -> None:
        """Run ``work`` on every worker (see the module comment); raise EngineError on failure."""
        if self._closed:
            raise EngineError("engine closed")
        cond = self._cond
        with cond:
            self._work, self._abort = work, abort
            self._errors = []
            self._running = self.helpers
            self._generation += 1
            cond.notify_all()
        try:
            work(0)
        except Exception:
            abort()
            with cond:
                self._errors.append(f"worker 0:\n{traceback.format_exc()}")
        deadline = time.monotonic() + self.block_timeout_s
        with cond:
            while self._running > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    abort()
                    raise EngineError(
                        f"engine stuck: {self._running} worker(s) still busy after "
                        f"{self.block_timeout_s:g} s on one block"
                    )
                cond.wait(min(left, PARK_S * 20))
            errors = self._errors
            self._work = self._abort = None
        if errors:
            raise EngineError("engine worker failed:\n" + "\n".join(errors))

    def _loop(self, k: int) -> None:
        clock = self.clocks[k - 1]
        clock.start()
        cond = self._cond
        seen = 0
        try:
            while True:
                with cond:
                    clock.park()
                    while self._generation == seen and not self._closed:
                        cond.wait()
                    clock.unpark()
                    if self._closed:
                        return
                    seen = self._generation
                    work, abort = self._work, self._abort
                try:
                    assert work is not None and abort is not None
                    work(k)
                except Exception:
                    if abort is not None:
                        abort()
                    with cond:
                        self._errors.append(f"worker {k}:\n{traceback.format_exc()}")
                finally:
                    with cond:
                        self._running -= 1
                        if self._running == 0:
                            cond.notify_all()
        finally:
            clock.stop()

    def close(self) -> None:
        """Stop the helpers (they finish no block after this) and wait for them briefly."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(JOIN_TIMEOUT_S)
