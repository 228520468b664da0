"""RCC's cross-instance bookkeeping: rounds -> global sequence numbers, and stable checkpoints.

How it works (Gupta, Hellings, Sadoghi, ICDE 2021, §III "concurrent consensus"):
- Each of the m instances decides one batch per *round*; round r of instance i is the
  inner PBFT's sequence number r (rounds start at 1). ``RoundAssembler.add`` takes the
  instances' decisions (each instance's in round order, as PBFT delivers them) and, once
  every instance has decided round r, releases the round as m global ``Deliver``s with
  global seqs ``(r-1)*m + 1 .. r*m`` (``global_seq``), positions in a deterministic order
  over the instances. With ``permute`` the order of round r is a permutation seeded by a
  hash over the batch digests of round r-1 *and* of round r: no primary knows it when it
  picks its batch (it would need every other instance's round-r batch first), and it
  costs m hashes per round. Without ``permute`` the order is 0..m-1. The chain restarts at
  every checkpoint round (``chain_period``): the round after checkpoint round r is seeded by
  its own digests alone, so a replica that installed the state after round r (state
  transfer, never having seen round r's batches) orders round r+1 as everyone else does.
- ``install(r)``: the state after round r (a checkpoint round) was installed: rounds up to r
  are done, any an instance still reports is dropped (counted), round r+1 is next.
- Clients are assigned to instances (client_id % m). A batch decided in instance i is
  delivered without the requests of clients assigned elsewhere (a Byzantine primary that
  copies another instance's request cannot get it executed twice); a batch left empty is
  delivered as the null batch. Every honest replica filters identically.
- ``StableMerger`` turns the instances' stable checkpoints (inner seq = round) into the
  global one: round r is globally stable once every instance is stable at >= r, and it is
  announced as ``StableCheckpoint(r*m, digest)`` (the digest is the state after round r).

Bounds: the assembler holds at most ``max_pending_rounds`` undelivered rounds. Network
behaviour cannot reach it: the lanes' far-round gate (protocols/rcc/lane.py) keeps every
instance's decisions within ``released + max_ahead_rounds + window`` rounds, and ``Rcc``
sizes the bound above that. Exceeding it is therefore a broken invariant of this code and
raises ``RoundOverflow``, an AssertionError (the runtime stops the replica loudly).

Threading: neither class is thread-safe; their one owner is the ``RoundCoordinator``
(protocols/rcc/coordinator.py).

Must not live here: PBFT, timers, IO, randomness (the permutation is a pure hash).
"""

from __future__ import annotations

import hashlib
import struct

from protocols.base import Deliver, StableCheckpoint
from protocols.common import NULL_BATCH, Batch, make_batch

_ROUND = struct.Struct("!Q")
_INDEX = struct.Struct("!I")
_ORDER_TAG = b"rcc-order"


class RoundOverflow(AssertionError):
    """More undelivered rounds than the bound: the far-round gate failed (a bug)."""


class RoundOrderError(AssertionError):
    """An instance delivered a round out of order (PBFT delivers in order: a bug)."""


def global_seq(round_: int, position: int, m: int) -> int:
    """The global sequence number of the batch at ``position`` (0..m-1) of round ``round_``."""
    assert round_ >= 1 and 0 <= position < m
    return (round_ - 1) * m + position + 1


def round_of(seq: int, m: int) -> tuple[int, int]:
    """(round, position) of global sequence number ``seq`` (the inverse of global_seq)."""
    assert seq >= 1
    return (seq - 1) // m + 1, (seq - 1) % m


def round_order(round_: int, previous: bytes, current: bytes, m: int) -> list[int]:
    """The instances of round ``round_`` in execution order, from the digests of the previous
    round (``previous``, b"" for round 1) and of this round (``current``), both concatenated
    in instance order. Deterministic; every honest replica computes the same list."""
    seed = hashlib.sha256(_ORDER_TAG + _ROUND.pack(round_) + previous + current).digest()
    keys = [hashlib.sha256(seed + _INDEX.pack(i)).digest() for i in range(m)]
    return sorted(range(m), key=keys.__getitem__)


class RoundAssembler:
    """Collect per-instance decisions; emit complete rounds as global Delivers, in order."""

    def __init__(
        self,
        m: int,
        *,
        permute: bool = True,
        max_pending_rounds: int = 4096,
        chain_period: int = 0,
    ) -> None:
        if m < 1:
            raise ValueError(f"m={m}: RCC needs at least one instance")
        if max_pending_rounds < 1:
            raise ValueError("max_pending_rounds must be >= 1")
        self.m = m
        self.permute = permute
        self.max_pending_rounds = max_pending_rounds
        self.chain_period = chain_period  # the order chain restarts after these rounds (0: never)
        self.next_round = 1  # lowest round not yet delivered
        self.last_round = [0] * m  # per instance: highest round it decided
        self._pending: dict[int, list[tuple[int, Batch] | None]] = {}  # round -> per instance
        self._filled: dict[int, int] = {}  # round -> instances decided
        self._previous = b""  # digests of round next_round-1, instance order
        # counters
        self.rounds_delivered = 0
        self.null_batches = 0  # delivered null batches (no-ops and emptied batches)
        self.foreign_requests = 0  # requests dropped: their client belongs to another instance
        self.pending_max_seen = 0  # most rounds waiting at once
        self.installed_round = 0  # the state after this round was installed (not assembled)
        self.stale_rounds = 0  # decisions at or below installed_round, dropped

    @property
    def frontier(self) -> int:
        """The highest round any instance decided."""
        return max(self.last_round)

    @property
    def pending_rounds(self) -> int:
        return len(self._pending)

    def add(self, instance: int, round_: int, view: int, batch: Batch) -> list[Deliver]:
        """Instance ``instance`` decided ``batch`` for ``round_`` in ``view``; the Delivers of
        every round this completes (global seqs in order, no gaps)."""
        m = self.m
        if not 0 <= instance < m:
            raise RoundOrderError(f"instance {instance} not in 0..{m - 1}")
        if round_ <= self.installed_round:  # an instance that had not installed it yet
            self.stale_rounds += 1
            return []
        if round_ != self.last_round[instance] + 1:
            raise RoundOrderError(
                f"instance {instance} decided round {round_} after {self.last_round[instance]}"
            )
        self.last_round[instance] = round_
        slots = self._pending.get(round_)
        if slots is None:
            if len(self._pending) >= self.max_pending_rounds:
                raise RoundOverflow(
                    f"{len(self._pending)} rounds waiting (next {self.next_round}, "
                    f"decided {self.last_round})"
                )
            slots = self._pending[round_] = [None] * m
            self._filled[round_] = 0
            if len(self._pending) > self.pending_max_seen:
                self.pending_max_seen = len(self._pending)
        slots[instance] = (view, batch)
        self._filled[round_] += 1
        if round_ != self.next_round or self._filled[round_] < m:
            return []
        out: list[Deliver] = []
        while self._filled.get(self.next_round, 0) == m:
            self._release(self.next_round, out)
        return out

    def _release(self, round_: int, out: list[Deliver]) -> None:
        m = self.m
        slots = self._pending.pop(round_)
        del self._filled[round_]
        decided: list[tuple[int, Batch]] = [s for s in slots if s is not None]
        assert len(decided) == m, "a released round has every instance's batch"
        current = b"".join(batch.digest for _, batch in decided)
        if self.permute and m > 1:
            order = round_order(round_, self._previous, current, m)
        else:
            order = list(range(m))
        first = (round_ - 1) * m + 1
        for position, i in enumerate(order):
            view, batch = decided[i]
            batch = self._owned(i, batch)
            if not batch.requests:
                self.null_batches += 1
            out.append(Deliver(first + position, view, batch))
        chain = self.chain_period
        self._previous = b"" if chain and not round_ % chain else current
        self.next_round = round_ + 1
        self.rounds_delivered += 1

    def install(self, round_: int) -> list[Deliver]:
        """The state after checkpoint round ``round_`` was installed: skip to round_ + 1; the
        Delivers of later rounds already complete (none if ``round_`` is not ahead)."""
        if round_ < self.next_round:
            return []
        if self.chain_period and round_ % self.chain_period:
            raise RoundOrderError(f"install at round {round_}: not a checkpoint round")
        self.installed_round = round_
        for r in [r for r in self._pending if r <= round_]:
            del self._pending[r]
            del self._filled[r]
        self.last_round = [max(last, round_) for last in self.last_round]
        self.next_round = round_ + 1
        self._previous = b""
        out: list[Deliver] = []
        while self._filled.get(self.next_round, 0) == self.m:
            self._release(self.next_round, out)
        return out

    def _owned(self, instance: int, batch: Batch) -> Batch:
        """``batch`` without requests of clients assigned to another instance."""
        m = self.m
        if m == 1:
            return batch
        for req in batch.requests:
            if req.client_id % m != instance:
                break
        else:
            return batch
        kept = tuple(r for r in batch.requests if r.client_id % m == instance)
        self.foreign_requests += len(batch.requests) - len(kept)
        return make_batch(kept) if kept else NULL_BATCH


class StableMerger:
    """Per-instance stable checkpoints (in rounds) -> the global stable checkpoint."""

    def __init__(self, m: int, *, max_digests: int = 4096) -> None:
        if m < 1:
            raise ValueError(f"m={m}: RCC needs at least one instance")
        self.m = m
        self.max_digests = max(1, max_digests)
        self.stable = [0] * m  # per instance: highest stable round
        self.announced = 0  # highest round announced globally
        self._digests: dict[int, bytes] = {}  # round (> announced) -> state digest
        self.digest_mismatches = 0  # two instances certified different states at one round

    def add(self, instance: int, round_: int, digest: bytes) -> StableCheckpoint | None:
        """Instance ``instance`` is stable at ``round_``; the global checkpoint it completes."""
        if not 0 <= instance < self.m or round_ <= self.stable[instance]:
            return None
        self.stable[instance] = round_
        if round_ > self.announced:
            known = self._digests.get(round_)
            if known is None:
                if len(self._digests) >= self.max_digests:
                    self._digests.pop(min(self._digests))
                self._digests[round_] = digest
            elif known != digest:
                self.digest_mismatches += 1
        low = min(self.stable)
        if low <= self.announced:
            return None
        digest_at = self._digests.get(low)
        self.announced = low
        for r in [r for r in self._digests if r <= low]:
            del self._digests[r]
        if digest_at is None:  # evicted by the bound: skip this announcement
            return None
        return StableCheckpoint(low * self.m, digest_at)


__all__ = [
    "RoundAssembler",
    "RoundOrderError",
    "RoundOverflow",
    "StableMerger",
    "global_seq",
    "round_of",
    "round_order",
]
