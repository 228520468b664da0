"""The replica's pipeline stages: one class per thread kind, joined by rings.

Each stage is started with the rings it reads and the rings it writes, so a
test can feed one ring and read the other (no sockets needed except for the
input and output stages, which take a Receiver/Sender-like object):

    InputStage     Receiver -> route: client Request at a proposer -> batch ring
                   (by client id, keeping each client's order); everything else
                   -> worker ring; requests inside a proposal are pre-verified here
                   (see VerifiedCache), cheapest checks first: the sender is the
                   proposal's proposer, the batch digest holds, the sender's
                   verification budget (a token bucket) has room; verification stops
                   at the first bad signature, and failures are remembered. Fetch
                   requests are rate-limited per sender (token bucket, counted).
    BatchStage     batch ring -> verify client signatures (Ed25519 releases the
                   GIL: batch threads run in parallel) -> cut batches, hash once
                   (make_batch) -> worker ring
    WorkerStage    worker ring -> the protocol (calls in, actions out); timers
                   from a local heap; -> output ring, execute ring, checkpoint ring
    ExecuteStage   execute ring -> Executor.apply in seq order -> one Reply per
                   request -> output ring; executed feedback -> checkpoint ring
    CheckpointStage  checkpoint ring -> executed feedback to the worker, stable
                   checkpoints to the executor (commit_upto: trims undo logs)
    OutputStage    output ring -> encode once, MAC per destination, send

Rings carry small tuples tagged by an int (see the W_/E_/C_ constants).

Deadlock freedom: the only cycle is worker -> execute -> checkpoint -> worker.
The checkpoint stage never blocks on a push (it keeps a bounded local backlog
and retries), so the execute stage always drains and the worker's blocking
pushes always complete. The input stage never blocks on a batch ring (a full
one drops the request, counted: the client re-sends), so protocol messages
keep flowing while proposals back up.

Idle accounting: a stage first tries a non-blocking pop; only when that finds
nothing does it park, and the parked time is its idle time (ThreadClock).

Must not live here: process wiring, signals, stats files (fabric.replica);
protocol logic (protocols/); the ring itself (fabric.ring).
"""

from __future__ import annotations

import cProfile
import hashlib
import heapq
import os
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric.metrics import PerSecond, ThreadClock
from fabric.ring import Ring, RingClosed
from protocols import limits
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    Rollback,
    Send,
    SetTimer,
    StableCheckpoint,
    ViewEntered,
)
from protocols.common import Batch, Reply, Request, batch_is_valid, make_batch
from transport import wire

# worker ring items
W_MSG = 0  # (W_MSG, sender, msg)
W_BATCH = 1  # (W_BATCH, batch)
W_EXECUTED = 2  # (W_EXECUTED, seq, state_digest)
W_FRONTIER = 3  # (W_FRONTIER, round, deciding instance): lanes protocols (fabric.lanes)
W_CHECKPOINT = 4  # (W_CHECKPOINT, round, state_digest): lanes protocols
# execute ring items
E_DELIVER = 0  # (E_DELIVER, seq, view, batch, speculative)
E_ROLLBACK = 1  # (E_ROLLBACK, to_seq)
E_COMMIT = 2  # (E_COMMIT, seq): a stable checkpoint; speculative state up to seq is final
# checkpoint ring items
C_EXECUTED = 0  # (C_EXECUTED, seq, state_digest)
C_STABLE = 1  # (C_STABLE, seq, digest)
C_LANE = 2  # (C_LANE, ...): a lane's decision for the lanes coordinator (fabric.lanes)

_sha256 = hashlib.sha256
#: items taken from a ring per pop
CHUNK = 128
#: the longest any stage parks before re-checking the stop flag, seconds
PARK_S = 0.1
#: bound on a checkpoint stage's local backlog (items waiting for room in a full ring)
MAX_BACKLOG = 65_536
#: environment variable: a directory to write one cProfile file per thread into
PROFILE_ENV = "FABRIC_PROFILE"
#: (message type, exception type) pairs logged with a traceback per worker (all are counted)
MAX_LOGGED_ERRORS = 5
#: bound on the worker's queue of ready batches waiting for proposal room
MAX_PENDING_BATCHES = 4096


@dataclass(frozen=True, slots=True)
class ToCoordinator:
    """A worker action that goes to the checkpoint ring as ``item`` (lanes protocols)."""

    item: tuple[Any, ...]


class ReplicaShared:
    """Flags every stage reads (plain attributes: a racy read only delays a decision)."""

    def __init__(self, replica_id: int, n: int, workers: int = 1) -> None:
        self.id = replica_id
        self.n = n
        self.stop = threading.Event()
        self.is_proposer = False  # any worker's protocol proposes (input routes requests by it)
        self.proposer_flags = [False] * workers
        self.silent = False  # an injected "silent" failure: receive nothing, send nothing
        self.fatal: list[str] = []  # what killed a stage (the process then stops, failed)
        self.replies = ReplyCache()  # written by the execute stage, read by input stages

    def fail(self, what: str) -> None:
        self.fatal.append(what)
        self.stop.set()


class ReplyCache:
    """The replies this replica sent lately, by (client, timestamp), bounded (FIFO eviction).

    A client that re-sends a request (its reply was lost, or it timed out) gets the
    cached reply again from the input stage, as Castro & Liskov 4.1 asks: the request
    is already executed, so the protocol would (rightly) not order it again, and
    without this the client could only give up. One writer (the execute stage);
    readers do plain dict lookups (atomic under the GIL). Rollback clears it.
    """

    def __init__(self, capacity: int = 8_192) -> None:
        self.capacity = capacity
        self._replies: dict[tuple[int, int], Any] = {}
        self._order: deque[tuple[int, int]] = deque()

    def put(self, key: tuple[int, int], reply: Any) -> None:
        replies = self._replies
        if key not in replies:
            self._order.append(key)
            if len(self._order) > self.capacity:
                replies.pop(self._order.popleft(), None)
        replies[key] = reply

    def get(self, key: tuple[int, int]) -> Any:
        return self._replies.get(key)

    def clear(self) -> None:
        self._replies.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._replies)


class VerifiedCache:
    """A bounded cache of client requests whose Ed25519 signature already verified, and a
    bounded one of those that failed.

    Key (client, timestamp, signature) -> sha256 of the txns, so a request altered
    after verification never hits, and an entry costs ~200 bytes, not the request
    (a cache holding the txns themselves would keep every recent 10 KB request
    alive). Failures are remembered under (client, timestamp, signature, txns digest)
    (``limits.MAX_FAILED_SIGNATURES``), so a replayed junk request costs a lookup, not a
    verification. Insertion-order eviction (FIFO) under a lock; lookups are plain dict
    reads (atomic under the GIL).
    """

    def __init__(
        self,
        inner: Any,
        capacity: int = 16_384,
        failed_capacity: int = limits.MAX_FAILED_SIGNATURES,
    ) -> None:
        self.inner = inner
        self.capacity = capacity
        self.failed_capacity = failed_capacity
        self._entries: dict[tuple[int, int, bytes], bytes] = {}
        self._failed: dict[tuple[int, int, bytes, bytes], None] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.failures = 0
        self.failures_remembered = 0  # misses answered by the failure cache (no verify)
        self.refused_by_budget = 0  # misses not verified: the caller's budget was spent
        self.verify_s = 0.0

    def known(self, req: Request) -> bool:
        digest = self._entries.get((req.client_id, req.timestamp, req.signature))
        return digest is not None and digest == _sha256(req.txns).digest()

    def check(self, req: Request, allow: Callable[[], bool] | None = None) -> bool:
        """True if ``req`` is validly signed, verifying (and caching) it on a miss. With
        ``allow``, a miss is verified only if ``allow()`` says so (a budget); else False
        (not remembered as a failure)."""
        key = (req.client_id, req.timestamp, req.signature)
        cached = self._entries.get(key)
        digest = _sha256(req.txns).digest()
        if cached == digest:
            self.hits += 1
            return True
        failed_key = (*key, digest)
        if failed_key in self._failed:
            self.failures_remembered += 1
            return False
        if allow is not None and not allow():
            self.refused_by_budget += 1
            return False
        self.misses += 1
        t0 = time.perf_counter()
        ok = self.inner.verify_request(req)
        self.verify_s += time.perf_counter() - t0
        with self._lock:
            if not ok:
                self.failures += 1
                failed = self._failed
                failed[failed_key] = None
                while len(failed) > self.failed_capacity:
                    del failed[next(iter(failed))]
                return False
            entries = self._entries
            entries[key] = digest
            while len(entries) > self.capacity:
                del entries[next(iter(entries))]
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "failures": self.failures,
            "failures_remembered": self.failures_remembered,
            "refused_by_budget": self.refused_by_budget,
            "verify_s": round(self.verify_s, 4),
            "size": len(self._entries),
        }


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take()`` spends one if there is one.
    The clock is injected (``now``) so tests need no sleeps."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class SenderBudgets:
    """One TokenBucket per sender (replica ids only: a bounded table)."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def take(self, sender: int) -> bool:
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = TokenBucket(self.rate, self.burst, self.clock)
        return bucket.take()


class CachedVerifier:
    """The Verifier handed to the protocol: verify_request consults the VerifiedCache first."""

    def __init__(self, inner: Any, cache: VerifiedCache) -> None:
        self.inner = inner
        self.cache = cache

    def sign(self, payload: bytes) -> bytes:
        return self.inner.sign(payload)

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        return self.inner.verify(signer, payload, signature)

    def verify_request(self, request: Request) -> bool:
        return self.cache.check(request)


def _profiler() -> cProfile.Profile | None:
    """A per-thread profiler when FABRIC_PROFILE names a directory (diagnostics only)."""
    return cProfile.Profile(time.thread_time) if os.environ.get(PROFILE_ENV) else None


def _dump_profile(profile: cProfile.Profile, name: str) -> None:
    folder = Path(os.environ[PROFILE_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    profile.dump_stats(str(folder / f"{name}.prof"))


class Stage(threading.Thread):
    """A pipeline thread: runs ``loop()`` with its clock; a crash stops the replica loudly."""

    role = "stage"

    def __init__(self, name: str, shared: ReplicaShared) -> None:
        super().__init__(name=name, daemon=True)
        self.shared = shared
        self.clock = ThreadClock(name, self.role)
        self.drops: Counter[str] = Counter()

    def run(self) -> None:
        self.clock.start()
        profile = _profiler()
        try:
            if profile is None:
                self.loop()
            else:
                profile.runcall(self.loop)
        except RingClosed:
            pass  # shutdown
        except Exception:
            if not self.shared.stop.is_set():
                text = traceback.format_exc()
                print(
                    f"replica {self.shared.id}: stage {self.name} failed:\n{text}", file=sys.stderr
                )
                self.shared.fail(f"{self.name}: {text.strip().splitlines()[-1]}")
        finally:
            try:
                self.cleanup()
            finally:
                self.clock.stop()
                if profile is not None:
                    _dump_profile(profile, f"replica-{self.shared.id}-{self.name}")

    def loop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Close what this thread owns (sockets); called on the thread itself."""

    def pop(self, ring: Ring, timeout: float = PARK_S, chunk: int = CHUNK) -> list[Any]:
        """Non-blocking pop first; park (counted idle) only when the ring is empty."""
        items = ring.pop_many(chunk, 0)
        if items:
            return items
        clock = self.clock
        clock.park()
        items = ring.pop_many(chunk, timeout)
        clock.unpark()
        return items

    def push_all(self, ring: Ring, items: list[Any]) -> None:
        """Blocking push of every item (parks on a full ring; gives up only at stop)."""
        done = ring.push_many(items, 0) if items else 0
        stop = self.shared.stop
        while done < len(items):
            if stop.is_set():
                return
            self.clock.park()
            done += ring.push_many(items[done:], PARK_S)
            self.clock.unpark()


# --- input --------------------------------------------------------------------------------


class InputStage(Stage):
    """Read frames (the Receiver checks MACs and decodes), route by kind."""

    role = "input"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        receiver: Any,
        worker_rings: Sequence[Ring],
        batch_rings: Sequence[Ring],
        cache: VerifiedCache | None,
        worker_of: Callable[[Any], int] | None = None,
        output_ring: Ring | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, shared)
        self.receiver = receiver
        self.worker_rings = list(worker_rings)
        self.batch_rings = list(batch_rings)
        self.cache = cache
        self.worker_of = worker_of
        self.output_ring = output_ring  # for replies re-sent from the reply cache
        self.routed = 0
        self.replies_resent = 0
        # pre-verification outcomes (the proposal still goes to the protocol, which decides)
        self.preverify: Counter[str] = Counter()
        self.verify_budgets = SenderBudgets(
            limits.PREVERIFY_PER_SENDER_S, limits.PREVERIFY_BURST, clock
        )
        self.fetch_budgets = SenderBudgets(limits.FETCH_PER_SENDER_S, limits.FETCH_BURST, clock)

    def pre_verify(self, sender: int, msg: Any, batch: Batch) -> None:
        """Verify the client signatures of a proposal off the worker, cheapest checks first:
        only a proposal from its proposer with a matching digest, within the sender's
        budget, stopping at the first bad signature (the protocol refuses the whole
        proposal on it, so the rest would be wasted work). Messages that carry a batch
        but are not proposals (fetch answers, view-change entries) are left to the protocol,
        which verifies only what it uses."""
        cache = self.cache
        if cache is None or not batch.requests:
            return
        proposer = getattr(msg, "proposer", None)
        counts = self.preverify
        if proposer is None:
            counts["not_a_proposal"] += 1
            return
        try:
            expected = proposer(self.shared.n)
        except Exception:  # absurd fields: the protocol refuses it
            counts["bad_fields"] += 1
            return
        if sender != expected:
            counts["not_from_proposer"] += 1
            return
        if not batch_is_valid(batch):
            counts["bad_digest"] += 1
            return
        budgets = self.verify_budgets

        def allow() -> bool:
            return budgets.take(sender)

        for req in batch.requests:
            if not cache.check(req, allow):
                counts["stopped_at_bad_or_over_budget"] += 1
                return
        counts["verified"] += 1

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        n = shared.n
        recv = self.receiver.recv_batch
        worker_rings = self.worker_rings
        batch_rings = self.batch_rings
        nbatch = len(batch_rings)
        single_worker = len(worker_rings) == 1 or self.worker_of is None
        cache = self.cache
        drops = self.drops
        clock = self.clock
        timeout_ms = int(PARK_S * 1000)
        output_ring = self.output_ring
        cached_reply = shared.replies.get
        pre_verify = self.pre_verify
        fetch_take = self.fetch_budgets.take
        while not stop.is_set():
            got = recv(CHUNK, 0)
            if not got:
                clock.park()
                got = recv(CHUNK, timeout_ms)
                clock.unpark()
                if not got:
                    continue
            if shared.silent:
                drops["silent"] += len(got)
                continue
            to_workers: list[list[Any]] = [[] for _ in worker_rings]
            proposer = shared.is_proposer
            for sender, msg in got:
                if sender >= n:  # a client
                    if type(msg) is not Request:
                        drops["client_sent_non_request"] += 1
                        continue
                    if output_ring is not None:
                        reply = cached_reply((msg.client_id, msg.timestamp))
                        if reply is not None:  # executed already: answer again, order nothing
                            if output_ring.push((msg.client_id, reply), 0):
                                self.replies_resent += 1
                            else:
                                drops["output_ring_full"] += 1
                            continue
                    if proposer and nbatch:
                        if not batch_rings[msg.client_id % nbatch].push(msg, 0):
                            drops["batch_ring_full"] += 1
                        continue
                else:
                    if getattr(msg, "IS_FETCH", False) and not fetch_take(sender):
                        drops["fetch_rate"] += 1  # catch-up requests: a bounded rate per peer
                        continue
                    if cache is not None:
                        batch = getattr(msg, "batch", None)
                        if type(batch) is Batch:
                            pre_verify(sender, msg, batch)
                if single_worker:
                    to_workers[0].append((W_MSG, sender, msg))
                    continue
                w = self.worker_of(msg)  # type: ignore[misc]
                if 0 <= w < len(to_workers):
                    to_workers[w].append((W_MSG, sender, msg))
                else:
                    drops["no_instance"] += 1
            for ring, items in zip(worker_rings, to_workers, strict=True):
                if items:
                    self.routed += len(items)
                    self.push_all(ring, items)

    def cleanup(self) -> None:
        self.receiver.close()


# --- batching ----------------------------------------------------------------------------


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


# --- the worker: owns the protocol -------------------------------------------------------


class Timers:
    """The worker's timers: a heap of deadlines; re-arming restarts, cancel forgets.

    Stale heap entries (re-armed or cancelled timers) are skipped when they
    surface and the heap is rebuilt when they outnumber live timers.
    """

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._live: dict[Hashable, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self.fired = 0

    def set(self, timer: Hashable, ticks: int, now: float) -> None:
        self._seq += 1
        deadline = now + ticks * self.tick_s
        self._live[timer] = (deadline, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, timer))
        if len(self._heap) > 4 * len(self._live) + 1024:
            self._heap = [(d, s, t) for t, (d, s) in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, timer: Hashable) -> None:
        self._live.pop(timer, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        live = self._live
        while heap:
            deadline, seq, timer = heap[0]
            cur = live.get(timer)
            if cur is not None and cur[1] == seq:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[Hashable]:
        out: list[Hashable] = []
        heap = self._heap
        live = self._live
        while heap and heap[0][0] <= now:
            _, seq, timer = heapq.heappop(heap)
            cur = live.get(timer)
            if cur is not None and cur[1] == seq:
                del live[timer]
                out.append(timer)
        self.fired += len(out)
        return out

    def __len__(self) -> int:
        return len(self._live)


class WorkerStage(Stage):
    """Own one protocol instance: feed it messages, batches, feedback and timer expiries."""

    role = "worker"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        protocol: Any,
        worker_ring: Ring,
        output_ring: Ring,
        execute_ring: Ring,
        checkpoint_ring: Ring,
        tick_s: float,
        max_pending: int = MAX_PENDING_BATCHES,
        index: int = 0,
    ) -> None:
        super().__init__(name, shared)
        self.index = index  # this worker's slot in shared.proposer_flags
        self.protocol = protocol
        self.worker_ring = worker_ring
        self.output_ring = output_ring
        self.execute_ring = execute_ring
        self.checkpoint_ring = checkpoint_ring
        self.timers = Timers(tick_s)
        self.max_pending = max_pending
        self.pending: deque[Batch] = deque()
        self.peers = tuple(i for i in range(shared.n) if i != shared.id)
        self.view = 0
        self.primary = 0
        self.view_changes: list[tuple[float, int, int]] = []  # (epoch, view, primary), bounded
        self.proposed = 0
        self.delivered = 0
        self.messages = 0
        self.forwarded = 0  # requests of ready batches handed to receive() (not the proposer)
        self.errors = 0
        self.errors_logged: set[tuple[str, str]] = set()  # (message type, exception type)
        # fetch answers are shed (counted) once the output ring holds this many items, so
        # catch-up traffic never makes protocol messages wait behind it
        self.shed_catch_up_at = max(1, int(output_ring.capacity * limits.FETCH_ANSWER_RING_SHARE))
        self._publish_proposer()

    def _publish_proposer(self) -> None:
        shared = self.shared
        shared.proposer_flags[self.index] = bool(self.protocol.is_proposer())
        shared.is_proposer = any(shared.proposer_flags)

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        protocol = self.protocol
        receive = protocol.receive
        ring = self.worker_ring
        timers = self.timers
        pending = self.pending
        out: list[Any] = []
        exe: list[Any] = []
        chk: list[Any] = []
        handle = self._handle
        while not stop.is_set():
            deadline = timers.next_deadline()
            if deadline is None:
                wait = PARK_S
            else:
                wait = min(PARK_S, max(0.0, deadline - time.monotonic()))
            items = self.pop(ring, wait)
            for item in items:
                tag = item[0]
                if tag == W_MSG:
                    self.messages += 1
                    try:
                        actions = receive(item[1], item[2])
                    except AssertionError:
                        raise  # a protocol invariant broke: stop the replica loudly
                    except Exception as exc:  # input the protocol could not handle: count it
                        self._protocol_error(item[1], item[2], exc)
                        continue
                elif tag == W_BATCH:
                    if len(pending) >= self.max_pending:
                        self.drops["proposal_overflow"] += 1
                    else:
                        pending.append(item[1])
                    continue
                elif tag == W_EXECUTED:
                    actions = protocol.executed(item[1], item[2])
                elif tag == W_FRONTIER:
                    actions = protocol.observe_frontier(item[1], item[2])
                else:
                    actions = protocol.checkpoint(item[1], item[2])
                if actions:
                    handle(actions, out, exe, chk)
            if timers._heap:
                now = time.monotonic()
                for timer in timers.due(now):
                    actions = protocol.timeout(timer)
                    if actions:
                        handle(actions, out, exe, chk)
            if pending:
                if protocol.is_proposer():
                    room = protocol.proposal_room()
                    while pending and room > 0:
                        self.proposed += 1
                        actions = protocol.propose(pending.popleft())
                        if actions:
                            handle(actions, out, exe, chk)
                        room -= 1
                        if room == 0:
                            room = protocol.proposal_room()
                else:
                    # not the proposer (any more): hand the requests to the protocol as a
                    # backup would get them (PBFT forwards them to the primary)
                    while pending:
                        for req in pending.popleft().requests:
                            self.forwarded += 1
                            try:
                                actions = receive(req.client_id, req)
                            except AssertionError:
                                raise
                            except Exception as exc:
                                self._protocol_error(req.client_id, req, exc)
                                continue
                            if actions:
                                handle(actions, out, exe, chk)
            self._publish_proposer()
            if exe:
                self.push_all(self.execute_ring, exe)
                exe = []
            if chk:
                self.push_all(self.checkpoint_ring, chk)
                chk = []
            if out:
                self.push_all(self.output_ring, out)
                out = []

    def _protocol_error(self, sender: int, msg: Any, exc: Exception) -> None:
        """A message made the protocol raise: count it by exception type and drop it; the
        traceback is logged once per (message type, exception type), at most
        MAX_LOGGED_ERRORS kinds, so a flood of one hostile message costs one log entry.

        The decision (issue 19): ``receive`` of one message raising is that message's
        failure, not the replica's (the protocol checked nothing it had not got yet); the
        replica goes on and the count shows in the run's drops. An AssertionError (a
        protocol invariant broke), or any exception from ``timeout``/``executed``/
        ``propose`` (the replica's own state, not a peer's input), stops the replica loudly
        instead (Stage.run: shared.fail), and the runner reports it failed."""
        self.drops[f"protocol_error:{type(exc).__name__}"] += 1
        self.errors += 1
        key = (type(msg).__name__, type(exc).__name__)
        if key not in self.errors_logged and len(self.errors_logged) < MAX_LOGGED_ERRORS:
            self.errors_logged.add(key)
            text = "".join(traceback.format_exception(exc)).rstrip()
            print(
                f"replica {self.shared.id}: {type(msg).__name__} from {sender} raised "
                f"in the protocol (counted, dropped):\n{text}",
                file=sys.stderr,
                flush=True,
            )

    def _handle(self, actions: list[Any], out: list[Any], exe: list[Any], chk: list[Any]) -> None:
        for a in actions:
            tp = type(a)
            if tp is Send:
                if a.to == self.shared.id:
                    self.drops["send_to_self"] += 1
                elif (
                    getattr(a.msg, "CATCH_UP", False)
                    and len(out) + len(self.output_ring) >= self.shed_catch_up_at
                ):
                    self.drops["fetch_answer_shed"] += 1
                else:
                    out.append((a.to, a.msg))
            elif tp is Broadcast:
                out.append((self.peers, a.msg))
            elif tp is Deliver:
                self.delivered += 1
                exe.append((E_DELIVER, a.seq, a.view, a.batch, a.speculative))
            elif tp is SetTimer:
                self.timers.set(a.timer, a.ticks, time.monotonic())
            elif tp is CancelTimer:
                self.timers.cancel(a.timer)
            elif tp is StableCheckpoint:
                chk.append((C_STABLE, a.seq, a.digest))
            elif tp is Rollback:
                exe.append((E_ROLLBACK, a.to_seq))
            elif tp is ViewEntered:
                self.view = a.view
                self.primary = a.primary
                if len(self.view_changes) < 1000:
                    self.view_changes.append((time.time(), a.view, a.primary))
            elif tp is ToCoordinator:
                chk.append(a.item)
            else:
                self.drops[f"unknown_action:{tp.__name__}"] += 1


# --- execute ------------------------------------------------------------------------------


class ExecuteStage(Stage):
    """Apply delivered batches in order; one Reply per request; executed feedback."""

    role = "execute"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        executor: Any,
        execute_ring: Ring,
        output_ring: Ring,
        checkpoint_ring: Ring,
        n: int,
    ) -> None:
        super().__init__(name, shared)
        self.executor = executor
        self.execute_ring = execute_ring
        self.output_ring = output_ring
        self.checkpoint_ring = checkpoint_ring
        self.n = n
        self.executed_per_s = PerSecond()
        self.txns_total = 0
        self.batches = 0
        self.last_seq = 0
        self.rollbacks = 0

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.execute_ring
        executor = self.executor
        apply = executor.apply
        remember = self.shared.replies.put
        me = self.shared.id
        n = self.n
        per_s = self.executed_per_s
        while not stop.is_set():
            items = self.pop(ring)
            if not items:
                continue
            replies: list[Any] = []
            feedback: list[Any] = []
            for item in items:
                tag = item[0]
                if tag == E_DELIVER:
                    _, seq, view, batch, speculative = item
                    results = apply(seq, batch, speculative, view)
                    total = executor.txns_executed
                    txns = total - self.txns_total
                    self.txns_total = total
                    for req, result in results:
                        cid = req.client_id
                        if cid >= n:
                            ts = req.timestamp
                            reply = Reply(view, seq, me, cid, ts, result, speculative)
                            remember((cid, ts), reply)
                            replies.append((cid, reply))
                    self.batches += 1
                    self.last_seq = seq
                    per_s.add(time.time(), txns)
                    feedback.append((C_EXECUTED, seq, executor.state_digest()))
                elif tag == E_ROLLBACK:
                    executor.rollback(item[1])
                    self.shared.replies.clear()  # speculative replies past the rollback are void
                    self.rollbacks += 1
                    self.last_seq = executor.last_seq
                else:
                    executor.commit_upto(item[1])
            if replies:
                self.push_all(self.output_ring, replies)
            if feedback:
                self.push_all(self.checkpoint_ring, feedback)


# --- checkpoint ---------------------------------------------------------------------------


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
                else:
                    if item[1] > self.stable_seq:
                        self.stable_seq = item[1]
                        self.stable_count += 1
                        self._queue(to_execute, (E_COMMIT, item[1]))
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


# --- output -------------------------------------------------------------------------------


class OutputStage(Stage):
    """Encode each message once, seal per destination (MAC), send without blocking."""

    role = "output"

    def __init__(self, name: str, shared: ReplicaShared, sender: Any, output_ring: Ring) -> None:
        super().__init__(name, shared)
        self.sender = sender
        self.output_ring = output_ring

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        ring = self.output_ring
        me = shared.id
        encode = wire.encode
        send_frame = self.sender.send_frame
        drops = self.drops
        while not stop.is_set():
            items = self.pop(ring)
            if not items:
                continue
            if shared.silent:
                drops["silent_send"] += len(items)
                continue
            for dest, msg in items:
                frame = encode(msg, me)
                if type(dest) is int:
                    send_frame(dest, frame)
                else:
                    for to in dest:
                        send_frame(to, frame)

    def cleanup(self) -> None:
        self.sender.close()
