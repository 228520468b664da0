"""Bounded, preallocated ring queue that joins the replica's pipeline stages.

Lives here: ``Ring`` (FIFO, ``capacity`` slots allocated once, capacity a power
of two), its two exceptions, and its cheap counters. Must not live here: thread
busy/idle accounting (the runtime's), metrics tables, sockets, anything that
grows without bound.

Forms
    * single producer, single consumer (default): the fast path takes no lock.
    * ``multi_producer=True``: producers serialise on a push lock (the lock-free
      push fast path is off: ``_fast_limit`` is 0); the consumer side stays
      lock-free.
    * ``multi_consumer=True``: consumers serialise on a pop lock; the producer
      side stays lock-free. Both flags may be set.
    Hand items over in chunks (``push_many``/``pop_many``): a Python-level
    ``push`` + ``pop`` per item costs about 3x a ``SimpleQueue`` put + get, while
    in chunks of 64 the ring moves items faster than ``SimpleQueue`` does one by
    one (``python -m bench ring``).

Memory-ordering argument (CPython with the GIL; NOT valid on a free-threaded
build, where every form would need locks)
    Two monotonically increasing integers index the slots: ``_tail`` (next slot
    to fill) is written only by the producer side, ``_head`` (next slot to
    empty) only by the consumer side ("one owner each"; in the multi forms the
    owner is whoever holds that side's lock). A bytecode runs atomically with
    respect to other Python threads, and every GIL hand-off is a mutex
    release/acquire, so Python-level stores become visible to other threads in
    program order (sequential consistency at bytecode granularity). Hence:

    * producer: write the slot(s), THEN publish ``_tail = tail + k`` (a single
      attribute store). A consumer that reads the new ``_tail`` therefore sees
      the slot contents.
    * consumer: read the slot(s), reset them to ``None``, THEN publish
      ``_head = head + k``. A producer that reads the new ``_head`` therefore
      never overwrites a slot that is still being read, and the consumer never
      clears a slot the producer has already refilled.
    * each side reads the other's index once per call; a stale read only makes
      the ring look fuller (to the producer) or emptier (to the consumer) than
      it is, which is safe: the caller retries or parks.

Parking (no spinning) and the lost wake-up race
    Each side has a binary semaphore (a plain lock: held = no token, released =
    one token) and a ``parked`` flag. An empty-ring consumer does:
    ``_c_parked = True``; re-check ``_tail``; only if still empty, block on the
    semaphore. A producer does: publish ``_tail``; THEN read ``_c_parked``, and
    if set, clear it and release the semaphore. This is Dekker's pattern: the
    two sides each store then load, so under sequential consistency at least
    one sees the other's store -- either the consumer sees the new item and
    does not wait, or the producer sees the flag and posts a token. A flag is
    only ever cleared by a waker together with a release (or by the parked side
    itself after it woke), so a waiting side always has a token coming. A token
    posted too late stays in the semaphore and causes at most one spurious
    wake-up, after which the waiter re-checks and parks again; releasing an
    already released semaphore is harmless (``RuntimeError`` swallowed). The
    full-ring producer parks symmetrically on ``_p_wake``. A producer only pays
    for a wake-up when the consumer is actually parked, and vice versa.
    In the multi forms the side-lock holder is the only member of its side that
    parks on the semaphore; the others wait (parked in C, with their timeout)
    on the side lock itself, so ``close()`` wakes them in a chain. When a
    caller's timeout runs out while a peer holds the lock, it gives up only if
    that peer is parked (the ring really is full/empty); a peer that is merely
    moving items is waited for, in short parked waits bounded to ~1 s, so
    ``timeout=0`` does not report a ring full (empty) just because a peer was
    pushing (popping) at that instant.

Close
    ``close()`` sets ``closed`` and releases both semaphores; every waiter
    re-checks ``closed``. Pushes after close raise ``RingClosed``; consumers
    drain what is left, then get ``[]`` (``pop`` raises ``RingEmpty``). An item
    pushed by a producer racing with ``close()`` may be left undelivered: close
    is for shutdown.

Counters (hot path cost: none or one compare)
    ``pushes``/``pops`` are the indices themselves; ``max_depth`` is one compare
    per push call; ``full_waits`` (push calls that found the ring full),
    ``idle_s`` (seconds a consumer spent parked on the empty ring) and
    ``full_wait_s`` (seconds a producer spent parked on the full ring) and
    ``consumer_parks`` (times a consumer blocked on the empty ring: each is a wake-up,
    a thread hand-off that costs far more than the items it moves) are only
    touched on the slow path. In the multi-consumer form ``idle_s`` counts the
    seconds the ring had a consumer parked on it (the pop-lock holder), not the
    sum over consumer threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from time import monotonic, perf_counter
from typing import Any

MAX_CAPACITY = 1 << 24  # slots; a bigger ring is a configuration error
_TIMEOUT_MAX = threading.TIMEOUT_MAX
# Multi forms, timeout over: a side lock held by a peer that is not parked is retried
# this many times, each a short blocking wait (parked in C, not a spin).
_SIDE_RETRIES = 2000
_SIDE_WAIT_S = 0.0005


class RingClosed(Exception):
    """A push on a closed ring. ``pushed``: items of this call already in the ring."""

    def __init__(self, name: str = "", pushed: int = 0) -> None:
        super().__init__(f"ring {name!r} is closed ({pushed} item(s) of this call were pushed)")
        self.name = name
        self.pushed = pushed


class RingEmpty(Exception):
    """``pop`` found no item before its timeout, or the ring is closed and drained."""


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    return monotonic() + timeout


def _post(semaphore: Any) -> None:
    """Release a binary semaphore; a token already pending is enough."""
    try:
        semaphore.release()
    except RuntimeError:
        pass


class Ring:
    """Bounded FIFO of ``capacity`` preallocated slots; see the module comment."""

    __slots__ = (
        "name",
        "_buf",
        "_cap",
        "_mask",
        "_head",
        "_tail",
        "_closed",
        "_c_parked",
        "_p_parked",
        "_c_wake",
        "_p_wake",
        "_push_lock",
        "_pop_lock",
        "_max_depth",
        "_full_waits",
        "_idle_s",
        "_full_wait_s",
        "_parks",
        "_fast_limit",
    )

    def __init__(
        self,
        capacity: int,
        name: str = "",
        multi_producer: bool = False,
        multi_consumer: bool = False,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 1 or capacity > MAX_CAPACITY or capacity & (capacity - 1):
            raise ValueError(
                f"capacity must be a power of two in 1..{MAX_CAPACITY}, not {capacity}"
            )
        self.name = name
        self._buf: list[Any] = [None] * capacity
        self._cap = capacity
        self._mask = capacity - 1
        self._head = 0  # next slot to empty; written by the consumer side only
        self._tail = 0  # next slot to fill; written by the producer side only
        self._closed = False
        self._c_parked = False  # a consumer is (about to be) blocked on _c_wake
        self._p_parked = False  # a producer is (about to be) blocked on _p_wake
        self._c_wake = threading.Lock()
        self._c_wake.acquire()  # held = no token pending
        self._p_wake = threading.Lock()
        self._p_wake.acquire()
        self._push_lock = threading.Lock() if multi_producer else None
        self._pop_lock = threading.Lock() if multi_consumer else None
        # Depth the lock-free push fast path may fill: the capacity for an open ring
        # with one producer; 0 (always the slow path) when multi-producer or closed.
        self._fast_limit = 0 if multi_producer else capacity
        self._max_depth = 0
        self._full_waits = 0
        self._idle_s = 0.0
        self._full_wait_s = 0.0
        self._parks = 0

    # ----------------------------------------------------------------- producer side

    def push(self, item: Any, timeout: float | None = None) -> bool:
        """Append ``item``. Full ring: wait up to ``timeout`` (None: forever, 0: not
        at all) and return False if still full. Raises ``RingClosed`` once closed."""
        tail = self._tail
        depth = tail - self._head + 1
        if depth <= self._fast_limit:
            self._buf[tail & self._mask] = item
            self._tail = tail + 1  # publish after the slot write
            if depth > self._max_depth:
                self._max_depth = depth
            if self._c_parked:
                self._wake_consumer()
            return True
        if self._push_lock is None:
            return self._push_wait(item, _deadline(timeout))
        deadline = _deadline(timeout)
        lock = self._push_lock
        if not self._acquire_side(lock, deadline, producer=True):
            if self._closed:
                raise RingClosed(self.name)
            self._full_waits += 1  # the lock holder is parked: the ring is full
            return False
        try:
            return self._push_wait(item, deadline)
        finally:
            lock.release()

    def push_many(self, items: Sequence[Any], timeout: float | None = None) -> int:
        """Append ``items`` in order; return how many were pushed (fewer than
        ``len(items)`` only if the ring stayed full until ``timeout``). Raises
        ``RingClosed`` (with ``pushed``) if the ring is or becomes closed first."""
        if not isinstance(items, list | tuple):
            items = list(items)
        n = len(items)
        tail = self._tail
        if 0 < n <= self._fast_limit - (tail - self._head):
            self._put(tail, items, 0, n)
            return n
        if self._push_lock is None:
            return self._push_many_wait(items, _deadline(timeout))
        deadline = _deadline(timeout)
        lock = self._push_lock
        if not self._acquire_side(lock, deadline, producer=True):
            if self._closed:
                raise RingClosed(self.name)
            self._full_waits += 1  # the lock holder is parked: the ring is full
            return 0
        try:
            return self._push_many_wait(items, deadline)
        finally:
            lock.release()

    def _put(self, tail: int, items: list[Any] | tuple[Any, ...], start: int, k: int) -> None:
        """Copy ``items[start:start+k]`` into the free slots at ``tail`` and publish them."""
        buf = self._buf
        cap = self._cap
        first = tail & self._mask
        end = first + k
        whole = start == 0 and k == len(items)
        if end <= cap:
            buf[first:end] = items if whole else items[start : start + k]
        else:
            split = cap - first
            buf[first:] = items[start : start + split]
            buf[: end - cap] = items[start + split : start + k]
        self._tail = tail + k  # publish after the slot writes
        depth = tail + k - self._head
        if depth > self._max_depth:
            self._max_depth = depth
        if self._c_parked:
            self._wake_consumer()

    def _push_wait(self, item: Any, deadline: float | None) -> bool:
        counted = False
        while True:
            if self._closed:
                raise RingClosed(self.name)
            tail = self._tail
            depth = tail - self._head + 1
            if depth <= self._cap:
                self._buf[tail & self._mask] = item
                self._tail = tail + 1
                if depth > self._max_depth:
                    self._max_depth = depth
                if self._c_parked:
                    self._wake_consumer()
                return True
            if not counted:
                self._full_waits += 1
                counted = True
            if deadline is not None and monotonic() >= deadline:
                return False
            self._park_producer(tail, deadline)

    def _push_many_wait(self, items: list[Any] | tuple[Any, ...], deadline: float | None) -> int:
        n = len(items)
        pushed = 0
        counted = False
        while True:
            if self._closed:
                raise RingClosed(self.name, pushed)
            tail = self._tail
            free = self._cap - (tail - self._head)
            if free and pushed < n:
                k = min(free, n - pushed)
                self._put(tail, items, pushed, k)
                pushed += k
                tail += k
            if pushed == n:
                return n
            if not counted:
                self._full_waits += 1
                counted = True
            if deadline is not None and monotonic() >= deadline:
                return pushed
            self._park_producer(tail, deadline)

    def _park_producer(self, tail: int, deadline: float | None) -> None:
        """Block until the ring may have room, is closed, or ``deadline`` passes.
        May return spuriously; the caller re-checks."""
        if deadline is None:
            wait = -1.0
        else:
            wait = min(deadline - monotonic(), _TIMEOUT_MAX)
            if wait <= 0:
                return
        self._p_parked = True
        if tail - self._head < self._cap or self._closed:  # re-check after the flag
            self._p_parked = False
            return
        started = perf_counter()
        self._p_wake.acquire(True, wait)
        self._p_parked = False
        self._full_wait_s += perf_counter() - started

    def _wake_consumer(self) -> None:
        self._c_parked = False
        _post(self._c_wake)

    # ----------------------------------------------------------------- consumer side

    def pop_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Take up to ``max_items`` items, in order. Empty ring: park until a push,
        ``close()`` or ``timeout`` (None: forever, 0: not at all); return ``[]`` on
        timeout or when closed and drained."""
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items}")
        if self._pop_lock is None:
            head = self._head
            n = self._tail - head
            if n:
                return self._take(head, n if n < max_items else max_items)
            if timeout == 0:
                return []
            return self._pop_wait(max_items, _deadline(timeout))
        deadline = _deadline(timeout)
        lock = self._pop_lock
        if not self._acquire_side(lock, deadline, producer=False):
            return []
        try:
            return self._pop_wait(max_items, deadline)
        finally:
            lock.release()

    def pop(self, timeout: float | None = None) -> Any:
        """Take one item; raise ``RingEmpty`` on timeout or when closed and drained."""
        if self._pop_lock is None:
            head = self._head
            if self._tail != head:
                buf = self._buf
                slot = head & self._mask
                item = buf[slot]
                buf[slot] = None  # drop the reference before publishing the slot
                self._head = head + 1
                if self._p_parked:
                    self._wake_producer()
                return item
        items = self.pop_many(1, timeout)
        if items:
            return items[0]
        raise RingEmpty(self.name)

    def _take(self, head: int, n: int) -> list[Any]:
        """Remove the ``n`` items at ``head`` (all published) and publish the slots."""
        buf = self._buf
        first = head & self._mask
        end = first + n
        if end <= self._cap:
            items = buf[first:end]
            buf[first:end] = [None] * n
        else:
            wrap = end - self._cap
            items = buf[first:] + buf[:wrap]
            buf[first:] = [None] * (self._cap - first)
            buf[:wrap] = [None] * wrap
        self._head = head + n  # publish after the slots are cleared
        if self._p_parked:
            self._wake_producer()
        return items

    def _pop_wait(self, max_items: int, deadline: float | None) -> list[Any]:
        while True:
            head = self._head
            n = self._tail - head
            if n:
                return self._take(head, n if n < max_items else max_items)
            if self._closed:
                return []
            if deadline is not None and monotonic() >= deadline:
                return []
            self._park_consumer(head, deadline)

    def _park_consumer(self, head: int, deadline: float | None) -> None:
        """Block until the ring may be non-empty, is closed, or ``deadline`` passes.
        May return spuriously; the caller re-checks."""
        if deadline is None:
            wait = -1.0
        else:
            wait = min(deadline - monotonic(), _TIMEOUT_MAX)
            if wait <= 0:
                return
        self._c_parked = True
        if self._tail != head or self._closed:  # re-check after the flag
            self._c_parked = False
            return
        self._parks += 1
        started = perf_counter()
        self._c_wake.acquire(True, wait)
        self._c_parked = False
        self._idle_s += perf_counter() - started

    def _wake_producer(self) -> None:
        self._p_parked = False
        _post(self._p_wake)

    # ----------------------------------------------------------------- either side

    def _acquire_side(self, lock: Any, deadline: float | None, producer: bool) -> bool:
        """Take a multi form's side lock. Its holder may be parked on a full (empty)
        ring: then wait only until ``deadline``. Past the deadline, a holder that is
        not parked is only busy moving items, so keep waiting for it (bounded)."""
        if deadline is None:
            return bool(lock.acquire())
        wait = deadline - monotonic()
        if wait > 0 and lock.acquire(True, min(wait, _TIMEOUT_MAX)):
            return True
        for _ in range(_SIDE_RETRIES):
            if lock.acquire(False):
                return True
            if self._closed or (self._p_parked if producer else self._c_parked):
                return False
            if lock.acquire(True, _SIDE_WAIT_S):
                return True
        return False

    def close(self) -> None:
        """Refuse further pushes and wake every parked producer and consumer."""
        self._fast_limit = 0  # first: once ``closed`` reads True, no fast-path push
        self._closed = True
        _post(self._c_wake)
        _post(self._p_wake)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def capacity(self) -> int:
        return self._cap

    def __len__(self) -> int:
        head = self._head  # head first: never negative; a racing push is clamped
        depth = self._tail - head
        return depth if depth < self._cap else self._cap

    @property
    def pushes(self) -> int:
        return self._tail

    @property
    def pops(self) -> int:
        return self._head

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def full_waits(self) -> int:
        return self._full_waits

    @property
    def idle_s(self) -> float:
        return self._idle_s

    @property
    def full_wait_s(self) -> float:
        return self._full_wait_s

    @property
    def consumer_parks(self) -> int:
        return self._parks

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (safe to call from any thread while running)."""
        pops = self._head
        pushes = self._tail
        return {
            "name": self.name,
            "capacity": self._cap,
            "depth": min(pushes - pops, self._cap),
            "pushes": pushes,
            "pops": pops,
            "max_depth": self._max_depth,
            "full_waits": self._full_waits,
            "full_wait_s": self._full_wait_s,
            "idle_s": self._idle_s,
            "consumer_parks": self._parks,
            "closed": self._closed,
        }

    def __repr__(self) -> str:
        return f"Ring({self.name!r}, {len(self)}/{self._cap}{', closed' if self._closed else ''})"
