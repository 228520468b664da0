"""The batch stage: verify client signatures (Ed25519 releases the GIL, so batch threads
run in parallel), cut proposal batches, hash each once (make_batch), hand them to the
worker that owns the protocol.

Must not live here: the routing of requests to this stage (input.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    PARK_S,
    W_BATCH,
    ReplicaShared,
    Stage,
)
from fabric.runtime.stages.input import VerifiedCache
from protocols.common import Batch, Request, make_batch


class BatchStage(Stage):
    """Verify client signatures, cut batches of ``requests_per_batch`` requests, hash once."""

    role = "batch"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        batch_ring: Ring,
        worker_ring: Ring,
        cache: VerifiedCache,
        requests_per_batch: int,
        batch_timeout_s: float,
        route: Callable[[Batch], Ring] | None = None,
    ) -> None:
        super().__init__(name, shared)
        self.batch_ring = batch_ring
        self.worker_ring = worker_ring
        self.route = route  # several workers (lanes): the ring of the worker owning a batch
        self.cache = cache
        self.requests_per_batch = max(1, requests_per_batch)
        self.batch_timeout_s = batch_timeout_s
        self.batches = 0
        self.requests = 0

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.batch_ring
        check = self.cache.check
        per_batch = self.requests_per_batch
        partial: list[Request] = []
        partial_since = 0.0
        while not stop.is_set():
            if partial:
                wait = max(0.0, partial_since + self.batch_timeout_s - time.monotonic())
                items = self.pop(ring, min(wait, PARK_S))
            else:
                items = self.pop(ring)
            ready: list[Any] = []
            for req in items:
                if not check(req):
                    self.drops["bad_signature"] += 1
                    continue
                if not partial:
                    partial_since = time.monotonic()
                partial.append(req)
                if len(partial) >= per_batch:
                    ready.append((W_BATCH, make_batch(tuple(partial))))
                    self.requests += len(partial)
                    partial = []
            if partial and time.monotonic() - partial_since >= self.batch_timeout_s:
                ready.append((W_BATCH, make_batch(tuple(partial))))
                self.requests += len(partial)
                partial = []
            if ready:
                self.batches += len(ready)
                if self.route is None:
                    self.push_all(self.worker_ring, ready)
                else:
                    for item in ready:
                        self.push_all(self.route(item[1]), [item])
