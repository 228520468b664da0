"""The simulator's execute stage of one replica: a hash-chained ledger and a reply cache.

``deliver`` appends a batch at the next sequence number only (in order, no gaps), chaining
``head = sha256(prev_head + seq + batch.digest)``, and answers every request in the batch
with a ``Reply`` whose result is ``sha256(request_digest + head)`` (so replies match only
between replicas whose ledgers agree up to that point). ``rollback`` removes speculative
entries only. Executed requests keep their reply in a bounded cache so a client's
re-sent request is answered again (Castro & Liskov 4.1: "re-send the reply").

Must not live here: safety checks across replicas (simulator.py), protocol logic.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass

from protocols.base import Deliver
from protocols.common import Reply, batch_is_valid, request_digest

GENESIS = hashlib.sha256(b"bft-sim-genesis").digest()
_SEQ = struct.Struct("!Q")


class LedgerError(Exception):
    """The protocol asked the execute stage for something impossible. ``kind`` names it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class Entry:
    seq: int
    view: int
    digest: bytes
    head: bytes
    speculative: bool
    requests: tuple[tuple[int, int], ...]  # (client_id, timestamp) of each request
    results: tuple[bytes, ...]  # reply result of each request, same order


def chain(prev_head: bytes, seq: int, digest: bytes) -> bytes:
    return hashlib.sha256(prev_head + _SEQ.pack(seq) + digest).digest()


def reply_result(request_digest_: bytes, head: bytes) -> bytes:
    return hashlib.sha256(request_digest_ + head).digest()


class ExecuteStage:
    """Ledger and reply cache of one simulated replica."""

    def __init__(self, replica: int, max_cached_per_client: int = 16) -> None:
        self.replica = replica
        self.entries: list[Entry] = []
        self.max_cached_per_client = max_cached_per_client
        self._replies: dict[int, OrderedDict[int, Reply]] = {}
        self.rolled_back = 0

    @property
    def last_seq(self) -> int:
        return len(self.entries)

    @property
    def head(self) -> bytes:
        return self.entries[-1].head if self.entries else GENESIS

    def entry(self, seq: int) -> Entry | None:
        return self.entries[seq - 1] if 1 <= seq <= len(self.entries) else None

    def head_at(self, seq: int) -> bytes | None:
        if seq == 0:
            return GENESIS
        e = self.entry(seq)
        return e.head if e is not None else None

    def deliver(self, action: Deliver) -> tuple[Entry, list[Reply]]:
        """Apply ``action``; raise LedgerError on a gap, a repeat or a forged batch."""
        expected = self.last_seq + 1
        if action.seq != expected:
            kind = "gap" if action.seq > expected else "out_of_order"
            raise LedgerError(kind, f"Deliver seq {action.seq}, expected {expected}")
        batch = action.batch
        if not batch_is_valid(batch):
            raise LedgerError("invalid_batch", f"seq {action.seq}: digest does not match content")
        head = chain(self.head, action.seq, batch.digest)
        replies = []
        results = []
        for req in batch.requests:
            result = reply_result(request_digest(req), head)
            results.append(result)
            reply = Reply(
                view=action.view,
                seq=action.seq,
                replica=self.replica,
                client_id=req.client_id,
                timestamp=req.timestamp,
                result=result,
                speculative=action.speculative,
            )
            replies.append(reply)
            cache = self._replies.setdefault(req.client_id, OrderedDict())
            cache[req.timestamp] = reply
            while len(cache) > self.max_cached_per_client:
                cache.popitem(last=False)
        entry = Entry(
            seq=action.seq,
            view=action.view,
            digest=batch.digest,
            head=head,
            speculative=action.speculative,
            requests=tuple((r.client_id, r.timestamp) for r in batch.requests),
            results=tuple(results),
        )
        self.entries.append(entry)
        return entry, replies

    def rollback(self, to_seq: int) -> list[Entry]:
        """Remove entries above ``to_seq``; raise LedgerError if one of them is not speculative."""
        if to_seq < 0:
            raise LedgerError("bad_rollback", f"Rollback to {to_seq}")
        removed = self.entries[to_seq:]
        for e in removed:
            if not e.speculative:
                raise LedgerError(
                    "rollback_committed", f"Rollback to {to_seq} removes committed seq {e.seq}"
                )
        del self.entries[to_seq:]
        self.rolled_back += len(removed)
        for e in removed:
            for client, ts in e.requests:
                cache = self._replies.get(client)
                if cache is not None and ts in cache and cache[ts].seq == e.seq:
                    del cache[ts]
        return removed

    def cached_reply(self, client: int, timestamp: int) -> Reply | None:
        cache = self._replies.get(client)
        return cache.get(timestamp) if cache is not None else None
