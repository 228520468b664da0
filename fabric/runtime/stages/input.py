"""The input stage: frames in, routed by kind; pre-verification of the client signatures
inside a proposal (VerifiedCache, CachedVerifier), cheapest checks first and within a
per-sender budget (TokenBucket, SenderBudgets); Fetch requests rate-limited per sender.

Must not live here: socket handling (transport.zmq_io), protocol logic (protocols/).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    CHUNK,
    E_STATE_MSG,
    PARK_S,
    W_MSG,
    ReplicaShared,
    Stage,
)
from protocols import limits
from protocols.common import Batch, Request, batch_is_valid, txns_digest
from protocols.state_transfer import StateRequest

#: one token per VerifiedCache: what a Request's ``_verified_by`` memo slot holds
_CACHE_TOKENS = itertools.count(1)


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

    Once per replica: a Request object this cache verified (or found) carries the cache's
    token in its ``_verified_by`` memo slot (protocols.common), so the next stage that asks
    about the same object (the input stage pre-verified a proposal, the protocol's
    CachedVerifier asks again; the batch stage verified, the primary's protocol asks
    again) gets its answer without a hash or a lookup; the txns digest is itself
    memoised on the object (``txns_digest``), so a request is hashed once.
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
        self.token = next(_CACHE_TOKENS)

    def known(self, req: Request) -> bool:
        if getattr(req, "_verified_by", None) == self.token:
            return True
        digest = self._entries.get((req.client_id, req.timestamp, req.signature))
        return digest is not None and digest == txns_digest(req)

    def _mark(self, req: Request) -> None:
        try:
            object.__setattr__(req, "_verified_by", self.token)
        except (AttributeError, TypeError):  # not a protocols.common.Request: no memo slot
            pass

    def check(self, req: Request, allow: Callable[[], bool] | None = None) -> bool:
        """True if ``req`` is validly signed, verifying (and caching) it on a miss. With
        ``allow``, a miss is verified only if ``allow()`` says so (a budget); else False
        (not remembered as a failure)."""
        if getattr(req, "_verified_by", None) == self.token:
            self.hits += 1
            return True
        key = (req.client_id, req.timestamp, req.signature)
        cached = self._entries.get(key)
        digest = txns_digest(req)
        if cached == digest:
            self.hits += 1
            self._mark(req)
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
        self._mark(req)
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
        client_messages: tuple[type, ...] = (),
        state_ring: Ring | None = None,
    ) -> None:
        super().__init__(name, shared)
        # state-transfer messages (IS_STATE) go to the execute stage, which serves and
        # installs images (fabric.runtime.state_transfer); None: they are dropped, counted
        self.state_ring = state_ring
        # what a client may send besides a Request (the protocol's ``client_messages``:
        # Zyzzyva's commit certificate), handed to the protocol as is
        self.client_messages = frozenset(client_messages)
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
        self.state_budgets = SenderBudgets(
            limits.STATE_REQUESTS_PER_SENDER_S, limits.STATE_REQUEST_BURST, clock
        )

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
        client_messages = self.client_messages
        cached_reply = shared.replies.get
        pre_verify = self.pre_verify
        fetch_take = self.fetch_budgets.take
        state_take = self.state_budgets.take
        state_ring = self.state_ring
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
                        if type(msg) not in client_messages:
                            drops["client_sent_non_request"] += 1
                            continue
                    else:
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
                    if getattr(msg, "IS_STATE", False):
                        if state_ring is None:
                            drops["state_transfer_off"] += 1
                        elif type(msg) is StateRequest and not state_take(sender):
                            drops["state_rate"] += 1  # state requests: a bounded rate per peer
                        elif not state_ring.push((E_STATE_MSG, sender, msg), 0):
                            drops["state_ring_full"] += 1
                        continue
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
