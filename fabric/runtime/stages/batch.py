"""The batch stage: verify client signatures (Ed25519 releases the GIL, so batch threads
run in parallel), cut proposal batches of client requests, hash each once (make_batch),
hand them to the worker that owns the protocol.

Lives here: ``BatchCutter``, the clock-free cutting rule (a proposal holds whole client
requests, at most ``batching.batch_size`` transactions, at most
``protocols.limits.MAX_BATCH_REQUESTS`` requests and at most ``max_bytes`` of request
bytes; a partial batch is cut ``batching.batch_timeout_ms`` after its first request
arrived), unit-tested with injected times; and ``BatchStage``, the thread around it. With
a ``group_of`` (RCC's instance of a client), requests of different groups never share a
batch, so a batch routes to the one worker owning its instance. Per-client order holds:
the input stage sends all of a client's requests to one batch thread, a client is in one
group, and a cut never reorders a group's requests.

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
from protocols import limits
from protocols.common import Batch, Request, make_batch

#: bytes a request adds on the wire besides its txns (ids, timestamp, 64-byte signature,
#: field headers), rounded up: what ``max_bytes`` budgets per request
REQUEST_OVERHEAD_BYTES = 128
#: bytes of a proposal frame that are not its batch's requests (the proposal message's
#: other fields, the frame header and MAC), kept free under transport.max_frame_bytes
PROPOSAL_HEADROOM_BYTES = 64 * 1024


def txn_count(txns: bytes) -> int:
    """Transactions in an encoded request body (workloads.txn: a msgpack array), read from
    the array header only; a body that does not open with one counts as 1 (the executor
    rejects it later, the batch only needs a size)."""
    if not txns:
        return 1
    head = txns[0]
    if 0x90 <= head <= 0x9F:
        return max(1, head - 0x90)
    if head == 0xDC and len(txns) >= 3:
        return max(1, int.from_bytes(txns[1:3], "big"))
    if head == 0xDD and len(txns) >= 5:
        return max(1, int.from_bytes(txns[1:5], "big"))
    return 1


def request_bytes(req: Request) -> int:
    """A request's budgeted size inside a batch (its txns plus REQUEST_OVERHEAD_BYTES)."""
    return len(req.txns) + REQUEST_OVERHEAD_BYTES


def max_batch_bytes(max_frame_bytes: int) -> int:
    """The request bytes one proposal may hold so its frame stays under
    ``max_frame_bytes`` (at least half the frame when the frame bound is small)."""
    return max(max_frame_bytes - PROPOSAL_HEADROOM_BYTES, max_frame_bytes // 2)


class _Partial:
    __slots__ = ("requests", "txns", "nbytes", "since")

    def __init__(self, since: float) -> None:
        self.requests: list[Request] = []
        self.txns = 0
        self.nbytes = 0
        self.since = since


class BatchCutter:
    """Cut batches of whole requests: up to ``txns_per_batch`` transactions,
    ``max_requests`` requests and ``max_bytes`` request bytes each; a partial batch is
    due ``timeout_s`` after its first request. A request alone larger than a bound makes a
    batch of its own. Clock-free: the caller passes ``now``."""

    def __init__(
        self,
        txns_per_batch: int,
        timeout_s: float,
        max_requests: int = limits.MAX_BATCH_REQUESTS,
        max_bytes: int = limits.MAX_TXNS_BYTES,
        group_of: Callable[[Request], int] | None = None,
    ) -> None:
        if txns_per_batch < 1 or max_requests < 1 or max_bytes < 1 or timeout_s < 0:
            raise ValueError(
                f"bad batch bounds: txns {txns_per_batch}, requests {max_requests}, "
                f"bytes {max_bytes}, timeout {timeout_s}"
            )
        self.txns_per_batch = txns_per_batch
        self.timeout_s = timeout_s
        self.max_requests = min(max_requests, limits.MAX_BATCH_REQUESTS)
        self.max_bytes = max_bytes
        self.group_of = group_of
        self._partials: dict[int, _Partial] = {}  # group -> its open batch (insertion = age)

    def add(self, req: Request, now: float) -> list[tuple[int, tuple[Request, ...]]]:
        """Add one verified request; return the (group, requests) batches it completes."""
        group = self.group_of(req) if self.group_of is not None else 0
        n, size = txn_count(req.txns), request_bytes(req)
        out: list[tuple[int, tuple[Request, ...]]] = []
        part = self._partials.get(group)
        if part is not None and (
            part.txns + n > self.txns_per_batch or part.nbytes + size > self.max_bytes
        ):
            out.append((group, tuple(part.requests)))  # it would overflow: cut what is there
            del self._partials[group]
            part = None
        if part is None:
            part = self._partials[group] = _Partial(now)
        part.requests.append(req)
        part.txns += n
        part.nbytes += size
        if (
            part.txns >= self.txns_per_batch
            or len(part.requests) >= self.max_requests
            or part.nbytes >= self.max_bytes
        ):
            out.append((group, tuple(part.requests)))
            del self._partials[group]
        return out

    def due(self, now: float) -> list[tuple[int, tuple[Request, ...]]]:
        """The partial batches whose timeout has passed at ``now``, oldest first."""
        out = []
        for group, part in list(self._partials.items()):
            if now - part.since >= self.timeout_s:
                out.append((group, tuple(part.requests)))
                del self._partials[group]
        return out

    def next_deadline(self) -> float | None:
        """When the oldest partial batch is due, or None when none is open."""
        if not self._partials:
            return None
        return min(p.since for p in self._partials.values()) + self.timeout_s

    def pending_requests(self) -> int:
        return sum(len(p.requests) for p in self._partials.values())


class BatchStage(Stage):
    """Verify client signatures, cut batches (``BatchCutter``), hash each once, push each
    to the worker ring (or, with ``route``, to the ring of the worker owning its group)."""

    role = "batch"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        batch_ring: Ring,
        worker_ring: Ring,
        cache: VerifiedCache,
        txns_per_batch: int,
        batch_timeout_s: float,
        route: Callable[[Batch], Ring] | None = None,
        group_of: Callable[[Request], int] | None = None,
        max_requests: int = limits.MAX_BATCH_REQUESTS,
        max_bytes: int = limits.MAX_TXNS_BYTES,
    ) -> None:
        super().__init__(name, shared)
        self.batch_ring = batch_ring
        self.worker_ring = worker_ring
        self.route = route  # several workers (lanes): the ring of the worker owning a batch
        self.cache = cache
        self.cutter = BatchCutter(
            txns_per_batch, batch_timeout_s, max_requests, max_bytes, group_of
        )
        self.batches = 0
        self.requests = 0
        self.txns = 0
        self.timeout_cuts = 0  # batches cut by the timeout (partial)

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.batch_ring
        check = self.cache.check
        cutter = self.cutter
        monotonic = time.monotonic
        while not stop.is_set():
            deadline = cutter.next_deadline()
            if deadline is None:
                items = self.pop(ring)
            else:
                items = self.pop(ring, min(max(0.0, deadline - monotonic()), PARK_S))
            cut: list[tuple[int, tuple[Request, ...]]] = []
            now = monotonic()
            for req in items:
                if not check(req):
                    self.drops["bad_signature"] += 1
                    continue
                cut += cutter.add(req, now)
            timed_out = cutter.due(monotonic())
            self.timeout_cuts += len(timed_out)
            cut += timed_out
            if cut:
                self._hand_over(cut)

    def _hand_over(self, cut: list[tuple[int, tuple[Request, ...]]]) -> None:
        ready: list[Any] = []
        for _group, requests in cut:
            ready.append((W_BATCH, make_batch(requests)))
            self.requests += len(requests)
            self.txns += sum(txn_count(r.txns) for r in requests)
        self.batches += len(ready)
        if self.route is None:
            self.push_all(self.worker_ring, ready)
        else:
            for item in ready:
                self.push_all(self.route(item[1]), [item])

    def stats(self) -> dict[str, int]:
        """Counts for the replica's stats JSON."""
        return {
            "batches": self.batches,
            "requests": self.requests,
            "txns": self.txns,
            "timeout_cuts": self.timeout_cuts,
        }
