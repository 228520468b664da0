"""Client requests a HotStuff replica holds for the views it leads, and the requests the
chain delivered (so a leader does not propose them again).

With a leader per view every replica may propose, so every replica keeps the batches its
batch stage cut (its clients' requests, and every client's re-sends after a timeout) in a
bounded FIFO, ``Mempool``; the leader of a view takes up to ``batches_per_block`` of them
into its block, leaving out requests delivered already or pending in the branch it extends.
``Delivered`` remembers, per client, the last ``window`` delivered timestamps and a floor
below them (clients keep several requests in flight, so timestamps arrive out of order).

Must not live here: what a block is (messages.py), when to propose (pacemaker.py), IO.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from protocols.common import Batch, Request


class Delivered:
    """Delivered (client, timestamp) pairs, bounded per client."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._floor: dict[int, int] = {}
        self._recent: dict[int, set[int]] = {}
        self._order: dict[int, deque[int]] = {}

    def __contains__(self, key: tuple[int, int]) -> bool:
        client, ts = key
        recent = self._recent.get(client)
        return recent is not None and (ts <= self._floor[client] or ts in recent)

    def add(self, client: int, ts: int) -> None:
        recent = self._recent.get(client)
        if recent is None:
            recent = self._recent[client] = set()
            self._floor[client] = -1
            self._order[client] = deque()
        if ts <= self._floor[client] or ts in recent:
            return
        recent.add(ts)
        order = self._order[client]
        order.append(ts)
        if len(order) > self.window:
            oldest = order.popleft()
            recent.discard(oldest)
            if oldest > self._floor[client]:
                self._floor[client] = oldest


class Mempool:
    """Batches waiting for one of this replica's views, FIFO, at most ``max_batches``."""

    def __init__(self, max_batches: int) -> None:
        self.max_batches = max_batches
        self.batches: deque[Batch] = deque()

    def __len__(self) -> int:
        return len(self.batches)

    def room(self) -> int:
        return self.max_batches - len(self.batches)

    def add(self, batch: Batch) -> bool:
        if len(self.batches) >= self.max_batches:
            return False
        self.batches.append(batch)
        return True

    def take(
        self, max_batches: int, max_requests: int, skip: Callable[[tuple[int, int]], bool]
    ) -> tuple[Batch | None, list[Request]]:
        """Up to ``max_batches`` batches' requests, without those ``skip`` names or repeats
        (a batch left with nothing is dropped and does not count: after a timeout clients
        re-send to every replica, so mempools fill with requests committed meanwhile):
        (the first batch itself when nothing of it was left out and it is alone, else
        None; the kept requests)."""
        kept: list[Request] = []
        seen: set[tuple[int, int]] = set()
        whole: Batch | None = None
        taken = 0  # batches that gave at least one request (stale ones do not count)
        while self.batches and taken < max_batches:
            batch = self.batches[0]
            if kept and len(kept) + len(batch.requests) > max_requests:
                break
            self.batches.popleft()
            before = len(kept)
            for req in batch.requests:
                key = (req.client_id, req.timestamp)
                if key in seen or skip(key):
                    continue
                seen.add(key)
                kept.append(req)
            if len(kept) == before:
                continue  # all delivered or pending already (a client's re-send): dropped
            taken += 1
            whole = batch if taken == 1 and len(kept) == len(batch.requests) else None
        return whole, kept


__all__ = ["Delivered", "Mempool"]
