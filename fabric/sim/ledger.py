"""The simulator's execute stage of one replica: the runtime's ``Executor`` and ``ReplyCache``.

Execution is ``fabric.runtime.execute.Executor`` itself (store, per-request results, hash-chained
ledger, replay suppression, speculative undo), so a simulated ledger is a real ledger and
its heads are the ones a real replica would report; answers to re-sent requests come from
the runtime's ``fabric.runtime.stages.ReplyCache`` (cleared on rollback, as the runtime does).
What this module adds is only what the simulator's checkers read and the Executor does not
keep: per sequence number the batch digest, the view, whether it is still speculative, and
each request's (client, timestamp) and result. It turns the Executor's refusals (a gap, a
rollback of a final batch, a batch whose digest lies) into ``LedgerError`` with a kind.

Simulated requests carry real transactions (``sim_txns``): an RMW or an UPDATE on a handful
of shared keys, so results depend on the order of earlier writes, and the update-only
requests have the same result at any position (what the client's reply rule must cope with).

Must not live here: execution logic of its own (it is the Executor's), safety checks across
replicas (simulator.py), protocol logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabric.runtime.execute import GENESIS_HASH, ExecutionError, Executor
from fabric.runtime.stages import ReplyCache
from fabric.runtime.state_image import StateImage
from protocols.base import Deliver
from protocols.common import Reply, batch_is_valid
from workloads.txn import RMW, UPDATE, encode_txns

GENESIS = GENESIS_HASH
#: records of the simulated store: few, so requests of different clients conflict
SIM_RECORDS = 8
#: bytes per simulated value
SIM_VALUE_BYTES = 8
#: replies a simulated replica keeps for re-sent requests (the runtime's default is 8,192)
SIM_REPLY_CACHE = 1024


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
    results: tuple[bytes, ...]  # the Executor's result of each request, same order


def sim_txns(client: int, timestamp: int) -> bytes:
    """The transactions of a simulated request: odd timestamps RMW, even ones UPDATE a key."""
    key = (client * 31 + timestamp) % SIM_RECORDS
    op = RMW if timestamp % 2 else UPDATE
    value = (b"%d.%d" % (client, timestamp))[-SIM_VALUE_BYTES:].rjust(SIM_VALUE_BYTES, b"_")
    return encode_txns([(op, key, value)])


class SimExecution:
    """Executor, reply cache and checker bookkeeping of one simulated replica."""

    def __init__(self, replica: int, n: int | None = None) -> None:
        self.replica = replica
        self.n = n if n is not None else replica + 1  # requests from ids >= n get replies
        self.executor = Executor(SIM_RECORDS, SIM_VALUE_BYTES)
        self.genesis = self.executor.state_digest()  # the state digest before any batch
        self.replies = ReplyCache(SIM_REPLY_CACHE)
        # None below ``base_seq``: state installed from an image holds no entries there
        self.entries: list[Entry | None] = []
        self.base_seq = 0
        self.base_head = self.genesis
        self.rolled_back = 0

    @property
    def last_seq(self) -> int:
        return len(self.entries)

    @property
    def head(self) -> bytes:
        return self.executor.state_digest()

    def entry(self, seq: int) -> Entry | None:
        return self.entries[seq - 1] if 1 <= seq <= len(self.entries) else None

    def head_at(self, seq: int) -> bytes | None:
        """The state digest after ``seq`` (None where unknown: beyond the ledger, or below
        an installed image)."""
        if seq == self.base_seq:
            return self.base_head
        e = self.entry(seq)
        return e.head if e is not None else None

    def install(self, image: StateImage) -> bytes:
        """Install a state image (state transfer, or a restart's durable state): the runtime's
        ``Executor.install_image``; no entries at or below its seq. Returns its digest."""
        digest = self.executor.install_image(image)
        self.entries = [None] * image.seq
        self.base_seq = image.seq
        self.base_head = digest
        self.replies.clear()
        return digest

    def deliver(self, action: Deliver) -> tuple[Entry, list[Reply]]:
        """Apply ``action``; raise LedgerError on a gap, a repeat or a forged batch."""
        expected = self.last_seq + 1
        if action.seq != expected:
            kind = "gap" if action.seq > expected else "out_of_order"
            raise LedgerError(kind, f"Deliver seq {action.seq}, expected {expected}")
        batch = action.batch
        if not batch_is_valid(batch):
            raise LedgerError("invalid_batch", f"seq {action.seq}: digest does not match content")
        try:
            results = self.executor.apply(action.seq, batch, action.speculative, action.view)
        except ExecutionError as exc:
            raise LedgerError("execute", f"seq {action.seq}: {exc}") from exc
        me = self.replica
        replies = []
        for req, result in results:
            cid, ts = req.client_id, req.timestamp
            if cid >= self.n:
                reply = Reply(
                    action.view,
                    action.seq,
                    me,
                    cid,
                    ts,
                    result,
                    action.speculative,
                    action.history,
                    action.signature,
                )
                self.replies.put((cid, ts), reply)
                replies.append(reply)
        entry = Entry(
            seq=action.seq,
            view=action.view,
            digest=batch.digest,
            head=self.executor.state_digest(),
            speculative=action.speculative,
            requests=tuple((r.client_id, r.timestamp) for r, _ in results),
            results=tuple(result for _, result in results),
        )
        self.entries.append(entry)
        return entry, replies

    def commit_upto(self, seq: int) -> None:
        """A stable checkpoint at ``seq``: speculative batches up to it are final (runtime's
        checkpoint stage -> E_COMMIT -> ``Executor.commit_upto``)."""
        self.executor.commit_upto(seq)

    def rollback(self, to_seq: int) -> list[Entry]:
        """Remove entries above ``to_seq``; raise LedgerError if one of them is final."""
        if to_seq < 0:
            raise LedgerError("bad_rollback", f"Rollback to {to_seq}")
        try:
            self.executor.rollback(to_seq)
        except ExecutionError as exc:
            raise LedgerError("rollback_committed", f"Rollback to {to_seq}: {exc}") from exc
        removed = self.entries[to_seq:]
        del self.entries[to_seq:]
        if removed:
            self.replies.clear()  # speculative replies past the rollback are void
        self.rolled_back += len(removed)
        return removed

    def cached_reply(self, client: int, timestamp: int) -> Reply | None:
        reply: Reply | None = self.replies.get((client, timestamp))
        return reply
