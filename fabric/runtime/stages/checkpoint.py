"""The checkpoint stage: executed feedback to the worker, stable checkpoints to the
executor (commit_upto trims undo logs); it never blocks on a push (bounded backlogs), which
is what keeps the worker -> execute -> checkpoint -> worker cycle deadlock-free.

Must not live here: checkpoint rules (protocols/checkpoints and the protocols).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    C_EXECUTED,
    C_STATE_INSTALLED,
    CHUNK,
    E_COMMIT,
    MAX_BACKLOG,
    PARK_S,
    W_EXECUTED,
    W_STATE_INSTALLED,
    ReplicaShared,
    Stage,
)


class CheckpointStage(Stage):
    """Forward executed feedback to the worker and stable checkpoints to the executor.

    Never blocks on a push (it is the link that closes the worker -> execute ->
    checkpoint -> worker cycle): a full target ring leaves items in a bounded
    local backlog that is retried every pass.
    """

    role = "checkpoint"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        checkpoint_ring: Ring,
        worker_ring: Ring,
        execute_ring: Ring,
    ) -> None:
        super().__init__(name, shared)
        self.checkpoint_ring = checkpoint_ring
        self.worker_ring = worker_ring
        self.execute_ring = execute_ring
        self.to_worker: deque[Any] = deque()
        self.to_execute: deque[Any] = deque()
        self.stable_seq = 0
        self.stable_count = 0
        self.executed_seq = 0

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.checkpoint_ring
        to_worker = self.to_worker
        to_execute = self.to_execute
        while not stop.is_set():
            backlog = bool(to_worker or to_execute)
            items = self.pop(ring, 0.002 if backlog else PARK_S)
            for item in items:
                if item[0] == C_EXECUTED:
                    self.executed_seq = item[1]
                    self._queue(to_worker, (W_EXECUTED, item[1], item[2]))
                elif item[0] == C_STATE_INSTALLED:  # the execute stage installed a state image
                    self.executed_seq = item[1]
                    self._queue(to_worker, (W_STATE_INSTALLED, *item[1:]))
                else:
                    if item[1] > self.stable_seq:
                        self.stable_seq = item[1]
                        self.stable_count += 1
                        proof = item[3] if len(item) > 3 else ()
                        self._queue(to_execute, (E_COMMIT, item[1], item[2], proof))
            if to_worker:
                self._flush(self.worker_ring, to_worker)
            if to_execute:
                self._flush(self.execute_ring, to_execute)

    def _queue(self, backlog: deque[Any], item: Any) -> None:
        if len(backlog) >= MAX_BACKLOG:
            self.drops["checkpoint_backlog_full"] += 1
            return
        backlog.append(item)

    @staticmethod
    def _flush(ring: Ring, backlog: deque[Any]) -> None:
        items = [backlog[i] for i in range(min(len(backlog), CHUNK))]
        done = ring.push_many(items, 0)
        for _ in range(done):
            backlog.popleft()
