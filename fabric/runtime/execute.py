"""The execute stage's logic: apply ordered batches to the store, chain them into the ledger.

Deterministic: the runtime's execute thread owns one ``Executor`` and calls
``apply(seq, batch)`` strictly in sequence order (1, 2, ...). Every replica that applies
the same batches in the same order ends with the same store, the same per-request results
and the same ledger head (``state_digest``), whatever its engine.

- Engines (fabric.runtime.engines): ``apply`` first runs the replay cache over the batch's
  requests in order (below), then hands every admitted request's transactions to the
  engine as one block (serial, block-stm or conflict-dag, with ``threads`` workers and
  ``txn_cost_us`` of GIL-releasing work per transaction), then patches the results in.
  Every engine must give exactly serial's store, results and so ledger.

- Store: ``dict`` key -> value, loaded lazily: a loaded record (key < record_count)
  never written reads ``workloads.ycsb.initial_value(key)``; inserted keys exist
  once written. Ops: READ returns the value; UPDATE/RMW overwrite an existing
  record (RMW returns the old value); INSERT writes (flag: the key was new); SCAN
  reads the existing records among keys [k, k+len) (its digest covers the records
  written in the range; untouched ones are a function of their key).
- Results: per request a sha256 over its op results (length-prefixed values, flags,
  each scan's digest; a loaded record never written is named by its key, since its
  value is a function of the key). A request whose txns blob does not decode gets
  ``INVALID_RESULT`` and changes nothing.
- Replay suppression: per client, the results of its last ``replay_window``
  executed timestamps are kept; a repeated (client_id, timestamp) is not applied
  again and gets the same result digest. A timestamp older than everything the
  window still holds gets ``STALE_RESULT`` and is not applied. At most
  ``max_clients`` client ids are tracked; requests from further ids are refused
  (``INVALID_RESULT``, counted).
- Ledger: one hash-chained block per batch,
  hash = sha256(prev_hash || seq (8 bytes) || batch digest || results digest).
  The view is recorded but not hashed: replicas may commit the same batch at the
  same seq in different views. Only (seq, hash) is kept for every block (32 bytes
  each, for the audit); full block records for the last ``max_recent_blocks``.
- State digest (``state_digest``, what checkpoints sign): commits to the ledger head, the
  store and the replay state through two order-independent accumulators
  (fabric.runtime.state_image): the store's is folded lazily from the keys written since
  the last digest (O(writes), not O(store); one hash per key: a loaded record's element at
  the last fold is kept, ``MAX_ELEMENT_MEMO_KEYS``), the clients' per admitted request. The execute
  stage asks for it at checkpoint seqs only (``is_checkpoint``).
- Images: ``export_image()`` is the whole state as a ``StateImage``; with
  ``checkpoint_period`` set the Executor keeps the images of its last ``max_images``
  checkpoints as copy-on-write layers (the first write of a key, or the first change of a
  client, after a checkpoint saves the old value), so a state-transfer server can answer
  with the image at a stable checkpoint while execution runs on. ``install_image`` replaces
  the state by one (the ledger then starts at the image's seq, ``Ledger.base_seq``).
- Speculation (PoE): a batch applied with ``speculative=True`` keeps an undo log
  (store writes and replay-cache changes) until ``commit_upto`` covers it;
  ``rollback(to_seq)`` undoes such batches. A non-speculative batch, or one at or
  below the commit mark, is final and so is everything before it.
- Changes for the persist stage (``record_changes=True``): every applied block also yields
  ``(block, writes, clients)``: the (key, value after the block) it wrote, first-write order,
  and the (client, timestamp, result) entries it added to the replay cache. Only final blocks
  are handed out (``take_final``): a speculative one waits until ``commit_upto`` covers it
  and is dropped by ``rollback``, so storage never holds a block that can be undone (the
  wait is bounded by ``max_undo_batches``). ``redo`` applies such a record back (recovery).

Must not live here: threads (the engines own theirs), rings, clocks, sockets, replies to
clients (the runtime).

Why ``Executor`` is one class of about 630 lines: the store, the replay cache, the undo log,
the state digest's accumulators (and their element memo) and the image layers change together
on every apply, rollback, redo and install, and each of those paths must move all five in one
step; split by concern, every part would need the others' private state.
``main()`` (``python -m fabric.runtime.execute``) prints the cost per transaction; it is a
benchmark, imported by nothing on the hot path.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fabric.runtime.engines import TxnEnv, make_engine
from fabric.runtime.engines.cost import make_burn
from fabric.runtime.engines.serial import MISSING
from fabric.runtime.state_image import (
    ACC_MOD,
    ELEMENT_BYTES,
    ClientImage,
    StateImage,
    client_element,
    result_element,
    state_digest,
    store_element,
    store_element_bytes,
)
from protocols.common import Batch, Request
from workloads.txn import (
    DEFAULT_MAX_SCAN_LENGTH,
    DEFAULT_MAX_TXNS,
    DEFAULT_MAX_VALUE_BYTES,
    OP_NAMES,
    Txn,
    TxnDecodeError,
    decode_txns,
)
from workloads.ycsb import initial_value_fn

DEFAULT_SMALLBANK_ACCOUNTS = 10_000  # accounts an Executor knows when nobody says (tests, sim)
#: checkpoint images an Executor keeps (copy-on-write layers): the stable one and those
#: executed since, which a watermark window bounds (window / period + 2 with the defaults)
DEFAULT_MAX_IMAGES = 8
#: loaded records (keys below record_count and below this) whose accumulator element at the
#: last fold is kept (``ELEMENT_BYTES`` each, in an anonymous mmap: only pages holding a
#: written key are resident, 6.4 MB for 100,000 records all written, 64 MiB at most), so a
#: fold hashes a written key's new value only, not its old one too
MAX_ELEMENT_MEMO_KEYS = 1 << 20

_sha256 = hashlib.sha256
_from = int.from_bytes
_SEQ = struct.Struct("!Q")

GENESIS_HASH = _sha256(b"bft-fabric/ledger/genesis").digest()
INVALID_RESULT = _sha256(b"bft-fabric/result/invalid-request").digest()
STALE_RESULT = _sha256(b"bft-fabric/result/stale-timestamp").digest()
HASH_BYTES = 32

# Per-op result tags live in fabric.runtime.engines.txns (T_*): one byte each, so results of
# different shapes never collide; a loaded record never written is named by its key.
_MISSING: Any = MISSING  # undo-log marker: the key was absent before the write


class ExecutionError(Exception):
    """Base of the execute stage's errors."""


class ExecutionOrderError(ExecutionError):
    """A batch arrived out of sequence order (seq != last_seq + 1)."""


class RollbackError(ExecutionError):
    """A rollback asked to undo a batch that is final (non-speculative or committed)."""


class UndoLogFullError(ExecutionError):
    """More than ``max_undo_batches`` speculative batches are waiting for commit."""


# --- the ledger ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    seq: int
    view: int
    batch_digest: bytes
    results_digest: bytes
    prev_hash: bytes
    hash: bytes


def block_hash(prev_hash: bytes, seq: int, batch_digest: bytes, results_digest: bytes) -> bytes:
    """sha256(prev_hash || seq as 8 bytes big-endian || batch digest || results digest)."""
    return _sha256(prev_hash + _SEQ.pack(seq) + batch_digest + results_digest).digest()


def verify_blocks(blocks: Sequence[Block], prev_hash: bytes = GENESIS_HASH) -> int | None:
    """The seq of the first block that breaks the chain (bad hash, link or seq), or None if sound.

    ``blocks`` must be consecutive; ``prev_hash`` is the hash before the first one.
    """
    expected_seq = blocks[0].seq if blocks else 0
    for block in blocks:
        if block.seq != expected_seq or block.prev_hash != prev_hash:
            return block.seq
        if block.hash != block_hash(prev_hash, block.seq, block.batch_digest, block.results_digest):
            return block.seq
        prev_hash = block.hash
        expected_seq += 1
    return None


class Ledger:
    """The hash chain of executed batches: every (seq, hash) kept, full blocks for a recent window.

    Sequence numbers start at 1 and have no gaps; seq 0 is the genesis hash. A ledger
    installed from a state image (``reset``) starts at that image's seq: it holds no
    blocks at or below ``base_seq``, only the head hash there.
    """

    def __init__(self, max_recent_blocks: int = 1024) -> None:
        if max_recent_blocks < 0:
            raise ValueError("max_recent_blocks must be >= 0")
        self._hashes = bytearray()  # hash of seq base+s at [(s-1)*32, s*32)
        self._recent: deque[Block] = deque(maxlen=max_recent_blocks)
        self._head = GENESIS_HASH
        self._base_seq = 0
        self._base_hash = GENESIS_HASH

    @property
    def base_seq(self) -> int:
        """The seq the chain starts after (0, or the seq of an installed state image)."""
        return self._base_seq

    @property
    def last_seq(self) -> int:
        return self._base_seq + len(self._hashes) // HASH_BYTES

    def reset(self, seq: int, head: bytes) -> None:
        """Forget every block: the chain continues after ``seq`` whose hash is ``head``."""
        if seq < 0 or len(head) != HASH_BYTES:
            raise ValueError(f"ledger reset to seq {seq} with a {len(head)}-byte head")
        self._hashes = bytearray()
        self._recent.clear()
        self._head = head
        self._base_seq = seq
        self._base_hash = head

    @property
    def head(self) -> bytes:
        """The hash of the last block (``GENESIS_HASH`` when empty)."""
        return self._head

    def append(self, seq: int, view: int, batch_digest: bytes, results_digest: bytes) -> Block:
        """Chain a block for ``seq`` (must be last_seq + 1) and return it."""
        if seq != self.last_seq + 1:
            raise ExecutionOrderError(f"ledger: block {seq} after {self.last_seq}")
        prev = self._head
        h = _sha256(prev + _SEQ.pack(seq) + batch_digest + results_digest).digest()
        block = Block(seq, view, batch_digest, results_digest, prev, h)
        self._hashes += h
        self._recent.append(block)
        self._head = h
        return block

    def truncate(self, to_seq: int) -> int:
        """Drop every block after ``to_seq``; return how many were dropped."""
        if to_seq < self._base_seq:
            raise ValueError(f"cannot truncate to seq {to_seq} (chain starts at {self._base_seq})")
        last = self.last_seq
        if to_seq >= last:
            return 0
        del self._hashes[(to_seq - self._base_seq) * HASH_BYTES :]
        recent = self._recent
        while recent and recent[-1].seq > to_seq:
            recent.pop()
        self._head = self.hash_at(to_seq)
        return last - to_seq

    def hash_at(self, seq: int) -> bytes:
        """The hash of block ``seq`` (``GENESIS_HASH`` for 0, the installed head for
        ``base_seq``); IndexError outside base_seq..last_seq."""
        base = self._base_seq
        if seq == base:
            return self._base_hash
        if not base < seq <= self.last_seq:
            raise IndexError(f"no block {seq} (ledger holds {base + 1}..{self.last_seq})")
        i = seq - base
        return bytes(self._hashes[(i - 1) * HASH_BYTES : i * HASH_BYTES])

    def chain(self) -> list[tuple[int, bytes]]:
        """Every block's (seq, hash), in order (what the audit compares across replicas);
        after an installed image it starts at ``base_seq + 1``."""
        hs = bytes(self._hashes)
        first = self._base_seq + 1
        return [
            (i // HASH_BYTES + first, hs[i : i + HASH_BYTES]) for i in range(0, len(hs), HASH_BYTES)
        ]

    def recent_blocks(self) -> list[Block]:
        """The full records of the most recent blocks (at most ``max_recent_blocks``)."""
        return list(self._recent)


# --- the executor --------------------------------------------------------------------


class _ClientState:
    """Replay cache of one client: timestamp -> result (insertion order), the eviction floor,
    and how many results were ever inserted (``results`` holds positions
    [inserted - len(results), inserted): FIFO eviction keeps them contiguous)."""

    __slots__ = ("results", "floor", "inserted")

    def __init__(self) -> None:
        self.results: dict[int, bytes] = {}
        self.floor = -1  # highest timestamp evicted from ``results``
        self.inserted = 0

    def element_sum(self, cid: int) -> int:
        """This client's contribution to the clients accumulator (not reduced)."""
        first = self.inserted - len(self.results)
        acc = client_element(cid, self.floor, self.inserted)
        for i, (ts, result) in enumerate(self.results.items()):
            acc += result_element(cid, first + i, ts, result)
        return acc

    def copy(self) -> _ClientState:
        c = _ClientState()
        c.results = dict(self.results)
        c.floor = self.floor
        c.inserted = self.inserted
        return c


class _Layer:
    """Copy-on-write record of checkpoint ``seq``: the value at ``seq`` of every store key
    and the client state at ``seq`` of every client changed since (first change only),
    so the image at ``seq`` is the current state overridden by this and every newer layer."""

    __slots__ = ("seq", "head", "digest", "store", "clients")

    def __init__(self, seq: int, head: bytes, digest: bytes) -> None:
        self.seq = seq
        self.head = head
        self.digest = digest
        self.store: dict[int, Any] = {}  # key -> value at seq, or _MISSING
        self.clients: dict[int, _ClientState | None] = {}  # cid -> state at seq (None: absent)


class _Pending:
    """A request admitted to this block: its transactions; ``result`` once the engine ran."""

    __slots__ = ("txns", "state", "ts", "result")

    def __init__(self, txns: list[Txn], state: _ClientState, ts: int) -> None:
        self.txns = txns
        self.state = state
        self.ts = ts
        self.result = b""


@dataclass(slots=True)
class _Undo:
    """What one speculative batch changed, to undo it in reverse order."""

    seq: int
    store: list[tuple[int, Any]]  # (key, previous value or _MISSING)
    clients: list[tuple[int, int, tuple[int, bytes] | None, int, bool]]
    # (client_id, timestamp, evicted (ts, result) or None, previous floor, client was new)


#: what the persist stage gets per final block: (block, writes, client entries)
FinalBlock = tuple[Block, tuple[tuple[int, Any], ...], tuple[tuple[int, int, bytes], ...]]


class Executor:
    """Applies ordered batches to the in-memory store and the ledger (see the module comment)."""

    def __init__(
        self,
        record_count: int,
        value_size: int,
        max_undo_batches: int = 10_000,
        *,
        replay_window: int = 256,
        max_clients: int = 1 << 16,
        max_txns_per_request: int = DEFAULT_MAX_TXNS,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        max_scan_length: int = DEFAULT_MAX_SCAN_LENGTH,
        max_recent_blocks: int = 1024,
        engine: str = "serial",
        threads: int = 1,
        txn_cost_us: float = 0.0,
        smallbank_accounts: int = DEFAULT_SMALLBANK_ACCOUNTS,
        record_changes: bool = False,
        checkpoint_period: int = 0,
        max_images: int = DEFAULT_MAX_IMAGES,
    ) -> None:
        if record_count < 0 or value_size < 0:
            raise ValueError("record_count and value_size must be >= 0")
        if max_undo_batches < 0 or replay_window < 1 or max_clients < 1:
            raise ValueError("max_undo_batches >= 0, replay_window >= 1, max_clients >= 1")
        if checkpoint_period < 0 or max_images < 1:
            raise ValueError("checkpoint_period >= 0 and max_images >= 1")
        self.record_count = record_count
        self.value_size = value_size
        self.max_undo_batches = max_undo_batches
        self.replay_window = replay_window
        self.max_clients = max_clients
        self.max_txns_per_request = max_txns_per_request
        self.max_value_bytes = max_value_bytes
        self.max_scan_length = max_scan_length
        self._initial = initial_value_fn(value_size)
        self.env = TxnEnv(record_count, smallbank_accounts, make_burn(txn_cost_us))
        self.engine = make_engine(engine, self.env, threads)
        self.txn_cost_us = txn_cost_us
        self.ledger = Ledger(max_recent_blocks)
        self._store: dict[int, bytes] = {}
        self._clients: dict[int, _ClientState] = {}
        self._undo: deque[_Undo] = deque()
        self._final_seq = 0  # batches <= this can never be rolled back
        self._commit_mark = 0  # highest seq commit_upto was told about (may exceed last_seq)
        self._last_seq = 0
        self.record_changes = record_changes
        self._unfinal: deque[FinalBlock] = deque()  # speculative changes waiting for commit
        self._final_out: list[FinalBlock] = []  # final changes not yet taken (take_final)
        # the state digest's accumulators (fabric.runtime.state_image): the store's is folded
        # lazily from ``_dirty`` (key -> value at the last fold), the clients' per request
        self._dirty: dict[int, Any] = {}
        self._store_acc = 0
        # the element of every folded loaded record's value at the last fold (at
        # key * ELEMENT_BYTES; read only for a key the store held then, so stale bytes of
        # a key absent since are never read): see MAX_ELEMENT_MEMO_KEYS
        self._memo_keys = min(record_count, MAX_ELEMENT_MEMO_KEYS)
        self._memo = mmap.mmap(-1, self._memo_keys * ELEMENT_BYTES) if self._memo_keys else None
        self._clients_acc = 0
        # images kept at checkpoints (copy-on-write layers, oldest first, at most max_images)
        self.checkpoint_period = checkpoint_period
        self.max_images = max_images
        self._layers: deque[_Layer] = deque()
        # this batch's result elements, folded once the engine filled its results:
        # (sign, client, position, timestamp, result or _Pending)
        self._result_events: list[tuple[int, int, int, int, Any]] = []
        # counters (cheap; read by stats())
        self._op_counts = [0] * len(OP_NAMES)
        self._batches = 0
        self._requests = 0
        self._invalid = 0
        self._replayed = 0
        self._stale = 0
        self._refused_clients = 0
        self._rollbacks = 0
        self._rolled_back_batches = 0
        self._images_exported = 0
        self._images_installed = 0

    # --- reading ---------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The last applied sequence number (0 before the first batch)."""
        return self._last_seq

    @property
    def txns_executed(self) -> int:
        """Transactions executed so far (cheap: for per-batch rate counters)."""
        return sum(self._op_counts)

    def read(self, key: int) -> bytes | None:
        """The current value of ``key`` (None if the record does not exist)."""
        value = self._store.get(key)
        if value is None and 0 <= key < self.record_count:
            return self._initial(key)
        return value

    def state_digest(self) -> bytes:
        """The state digest after ``last_seq``: commits to the ledger head, the store and the
        replay state (fabric.runtime.state_image.state_digest). Equal to
        ``export_image().digest()``; costs O(keys written since it was last asked for)."""
        if self._dirty:
            self._fold_dirty()
        return state_digest(self._last_seq, self.ledger.head, self._store_acc, self._clients_acc)

    def is_checkpoint(self, seq: int) -> bool:
        """True if ``seq`` is a checkpoint seq (every seq when no period is set): where the
        execute stage asks for the state digest."""
        period = self.checkpoint_period
        return not period or seq % period == 0

    def speculative_batches(self) -> int:
        """Speculative batches still waiting for commit (each holds an undo log)."""
        return len(self._undo)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (txns executed by op, invalid requests, rollbacks, ...)."""
        return {
            "last_seq": self._last_seq,
            "batches": self._batches,
            "requests": self._requests,
            "txns": {OP_NAMES[op]: n for op, n in enumerate(self._op_counts)},
            "txns_total": sum(self._op_counts),
            "invalid_requests": self._invalid,
            "replayed_requests": self._replayed,
            "stale_requests": self._stale,
            "refused_clients": self._refused_clients,
            "rollbacks": self._rollbacks,
            "rolled_back_batches": self._rolled_back_batches,
            "speculative_batches": len(self._undo),
            "store_keys_written": len(self._store),
            "clients_tracked": len(self._clients),
            "images_kept": len(self._layers),
            "images_exported": self._images_exported,
            "images_installed": self._images_installed,
            "engine": {**self.engine.stats(), "txn_cost_us": self.txn_cost_us},
        }

    def thread_clocks(self) -> list[Any]:
        """The engine's own worker threads' clocks (none for serial), for the idleness report."""
        return self.engine.thread_clocks()

    def close(self) -> None:
        """Stop the engine's worker threads (an Executor is unusable afterwards)."""
        self.engine.close()

    # --- applying --------------------------------------------------------------------
    def apply(
        self, seq: int, batch: Batch, speculative: bool = False, view: int = 0
    ) -> list[tuple[Request, bytes]]:
        """Execute ``batch`` at ``seq`` (must be last_seq + 1); return (request, result digest) each.

        ``speculative`` batches keep an undo log until ``commit_upto`` covers them.
        """
        if seq != self._last_seq + 1:
            raise ExecutionOrderError(f"batch {seq} after {self._last_seq}: execution is in order")
        final = not speculative or seq <= self._commit_mark
        undo: _Undo | None = None
        if not final:
            if len(self._undo) >= self.max_undo_batches:
                raise UndoLogFullError(
                    f"{len(self._undo)} speculative batches uncommitted (max {self.max_undo_batches})"
                )
            undo = _Undo(seq, [], [])
        admitted: list[tuple[Request, bytes | _Pending]] = []
        pending: list[_Pending] = []
        record = self.record_changes
        # every write is logged (the state digest's accumulator needs them)
        written: list[tuple[int, Any]] = undo.store if undo is not None else []
        remembered: list[tuple[int, int, Any]] | None = [] if record else None
        for req in batch.requests:
            admitted.append((req, self._admit(req, undo, pending, remembered)))
        if pending:
            self._execute_pending(pending, undo, written)
        if written:
            self._note_writes(written)
        if self._result_events:
            self._fold_results()
        out: list[tuple[Request, bytes]] = [
            (req, r.result if type(r) is _Pending else r)  # type: ignore[misc]
            for req, r in admitted
        ]
        results_digest = _sha256(b"".join(r for _, r in out)).digest()
        block = self.ledger.append(seq, view, batch.digest, results_digest)
        self._last_seq = seq
        self._batches += 1
        if undo is None:
            self._undo.clear()  # a final batch makes everything before it final too
            self._final_seq = seq
        else:
            self._undo.append(undo)
        if record:
            self._record(block, written, remembered, undo is None)  # type: ignore[arg-type]
        period = self.checkpoint_period
        if period and seq % period == 0:
            self._open_layer(seq)
        return out

    def _record(
        self,
        block: Block,
        written: list[tuple[int, Any]],
        remembered: list[tuple[int, int, Any]],
        final: bool,
    ) -> None:
        store = self._store
        writes = tuple({key: store[key] for key, _ in written}.items())
        clients = tuple(
            (cid, ts, r.result if type(r) is _Pending else r) for cid, ts, r in remembered
        )
        entry = (block, writes, clients)
        if final:
            if self._unfinal:
                self._final_out.extend(self._unfinal)
                self._unfinal.clear()
            self._final_out.append(entry)
        else:
            self._unfinal.append(entry)

    # --- the state digest's accumulators ----------------------------------------------
    def _note_writes(self, writes: list[tuple[int, Any]]) -> None:
        """Remember the value before this batch of every key it wrote (first write wins), for
        the store accumulator (``_dirty``, folded when a digest is asked for) and the newest
        image layer: two dict checks per write, no hashing."""
        dirty = self._dirty
        if self._layers:
            saved = self._layers[-1].store
            for key, old in writes:
                if key not in dirty:
                    dirty[key] = old
                if key not in saved:
                    saved[key] = old
        else:
            for key, old in writes:
                if key not in dirty:
                    dirty[key] = old

    def _fold_dirty(self) -> None:
        """Bring the store accumulator up to date: one element out (the value at the last
        fold) and one in (the value now) per key written since, however often it was. A
        loaded record's old element is the memo's (the new one computed at the last fold),
        so it costs one hash, not two."""
        acc = self._store_acc
        store = self._store
        memo = self._memo
        memo_keys = self._memo_keys
        size = ELEMENT_BYTES
        for key, old in self._dirty.items():
            if 0 <= key < memo_keys:
                at = key * size
                if old is not _MISSING:
                    acc -= _from(memo[at : at + size], "big")  # type: ignore[index]
                new = store.get(key)
                if new is not None:
                    element = store_element_bytes(key, new)
                    memo[at : at + size] = element  # type: ignore[index]
                    acc += _from(element, "big")
                continue
            if old is not _MISSING:
                acc -= store_element(key, old)
            new = store.get(key)
            if new is not None:
                acc += store_element(key, new)
        self._store_acc = acc % ACC_MOD
        self._dirty.clear()

    def _install_elements(self, records: Sequence[tuple[int, bytes]]) -> int:
        """The store accumulator of ``records`` (an installed image's), the memo filled."""
        acc = 0
        memo = self._memo
        memo_keys = self._memo_keys
        size = ELEMENT_BYTES
        for key, value in records:
            element = store_element_bytes(key, value)
            if 0 <= key < memo_keys:
                at = key * size
                memo[at : at + size] = element  # type: ignore[index]
            acc += _from(element, "big")
        return acc % ACC_MOD

    def _fold_results(self) -> None:
        """Add (and subtract, for evictions) this batch's result elements to the clients
        accumulator, now that every pending result is known: O(requests)."""
        acc = self._clients_acc
        for sign, cid, pos, ts, result in self._result_events:
            if type(result) is _Pending:
                result = result.result
            if sign > 0:
                acc += result_element(cid, pos, ts, result)
            else:
                acc -= result_element(cid, pos, ts, result)
        self._clients_acc = acc % ACC_MOD
        self._result_events.clear()

    # --- state images -----------------------------------------------------------------
    def _open_layer(self, seq: int) -> None:
        layers = self._layers
        layers.append(_Layer(seq, self.ledger.head, self.state_digest()))
        while len(layers) > self.max_images:
            layers.popleft()

    def image_seqs(self) -> list[int]:
        """The checkpoint seqs whose image ``export_image`` can still build (oldest first)."""
        return [layer.seq for layer in self._layers]

    def image_digest(self, seq: int) -> bytes | None:
        """The state digest at kept checkpoint ``seq`` (None if no image is kept there)."""
        for layer in self._layers:
            if layer.seq == seq:
                return layer.digest
        return None

    def release_images_below(self, seq: int) -> int:
        """Forget the images of checkpoints before ``seq`` (a newer one is stable); return how
        many were dropped. Newer layers still hold what the kept images need."""
        dropped = 0
        layers = self._layers
        while layers and layers[0].seq < seq:
            layers.popleft()
            dropped += 1
        return dropped

    def export_image(self, seq: int | None = None) -> StateImage:
        """The state after ``seq`` (default ``last_seq``) as a ``StateImage``; ``seq`` must be
        ``last_seq`` or a kept checkpoint (``image_seqs``), else KeyError. O(store)."""
        store: dict[int, Any] = self._store
        clients: dict[int, Any] = self._clients
        head = self.ledger.head
        at = self._last_seq
        if seq is not None and seq != self._last_seq:
            index = next((i for i, la in enumerate(self._layers) if la.seq == seq), None)
            if index is None:
                raise KeyError(f"no image kept at seq {seq} (kept: {self.image_seqs()})")
            store = dict(store)
            clients = dict(clients)
            for layer in reversed(list(self._layers)[index:]):  # newest first: oldest wins
                for key, old in layer.store.items():
                    if old is _MISSING:
                        store.pop(key, None)
                    else:
                        store[key] = old
                for cid, state in layer.clients.items():
                    if state is None:
                        clients.pop(cid, None)
                    else:
                        clients[cid] = state
            head = self._layers[index].head
            at = seq
        self._images_exported += 1
        return StateImage(
            at,
            head,
            tuple(sorted(store.items())),
            tuple(
                ClientImage(cid, c.floor, c.inserted, tuple(c.results.items()))
                for cid, c in sorted(clients.items())
            ),
        )

    def install_image(self, image: StateImage) -> bytes:
        """Replace the whole state by ``image`` (a snapshot verified by the caller, or durable
        state reloaded at start); return the state digest after it. Everything installed is
        final; the ledger holds no blocks at or below ``image.seq``."""
        if self._undo:
            self._undo.clear()
        self._store.clear()
        self._store.update(image.store)
        self._store_acc = self._install_elements(image.store)
        self._clients = {}
        for c in image.clients:
            state = _ClientState()
            state.floor = c.floor
            state.inserted = c.inserted
            state.results = dict(c.results)
            self._clients[c.client] = state
        self._clients_acc = sum(c.elements() for c in image.clients) % ACC_MOD
        self._dirty.clear()
        self.ledger.reset(image.seq, image.ledger_head)
        self._last_seq = image.seq
        self._final_seq = image.seq
        self._commit_mark = max(self._commit_mark, image.seq)
        self._layers.clear()
        self._result_events.clear()
        self._images_installed += 1
        period = self.checkpoint_period
        if period and image.seq % period == 0:
            self._open_layer(image.seq)
        return self.state_digest()

    def take_final(self) -> list[FinalBlock]:
        """The final blocks' changes applied since the last call, in seq order (record_changes)."""
        out = self._final_out
        if out:
            self._final_out = []
        return out

    def redo(
        self,
        seq: int,
        view: int,
        batch_digest: bytes,
        results_digest: bytes,
        writes: Sequence[tuple[int, Any]],
        clients: Sequence[tuple[int, int, bytes]],
    ) -> Block:
        """Apply a persisted final block back (recovery): its writes, its replay-cache entries
        (through the same bounded window as ``apply``), its ledger block. Not handed out again."""
        if seq != self._last_seq + 1:
            raise ExecutionOrderError(f"redo of block {seq} after {self._last_seq}")
        store = self._store
        written = []
        for key, value in writes:
            written.append((key, store.get(key, _MISSING)))
            store[key] = value
        if written:
            self._note_writes(written)
        states = self._clients
        for cid, ts, result in clients:
            state = states.get(cid)
            new_client = state is None
            if state is None:
                state = _ClientState()
            if self._layers:
                saved = self._layers[-1].clients
                if cid not in saved:
                    saved[cid] = None if new_client else state.copy()
            self._remember(state, cid, ts, result, new_client, None)
        if self._result_events:
            self._fold_results()
        block = self.ledger.append(seq, view, batch_digest, results_digest)
        self._last_seq = seq
        self._final_seq = seq
        self._commit_mark = max(self._commit_mark, seq)
        period = self.checkpoint_period
        if period and seq % period == 0:
            self._open_layer(seq)
        return block

    def _admit(
        self,
        req: Request,
        undo: _Undo | None,
        pending: list[_Pending],
        remembered: list[tuple[int, int, Any]] | None = None,
    ) -> bytes | _Pending:
        """The replay-cache half of one request: its known result, or a ``_Pending`` slot
        whose transactions the engine runs with the rest of the block."""
        self._requests += 1
        cid, ts = req.client_id, req.timestamp
        state = self._clients.get(cid)
        new_client = state is None
        if state is None:
            if len(self._clients) >= self.max_clients:
                self._refused_clients += 1
                return INVALID_RESULT
            state = _ClientState()
        else:
            cached = state.results.get(ts)
            if cached is not None:
                self._replayed += 1
                return cached
            if ts <= state.floor:
                self._stale += 1
                return STALE_RESULT
        result: bytes | _Pending
        try:
            txns = decode_txns(
                req.txns,
                self.max_txns_per_request,
                max_value_bytes=self.max_value_bytes,
                max_scan_length=self.max_scan_length,
            )
        except TxnDecodeError:
            self._invalid += 1
            result = INVALID_RESULT
        else:
            result = _Pending(txns, state, ts)
            pending.append(result)
        if remembered is not None:
            remembered.append((cid, ts, result))
        if self._layers:  # copy-on-write: the client's state at the newest kept checkpoint
            saved = self._layers[-1].clients
            if cid not in saved:
                saved[cid] = None if new_client else state.copy()
        self._remember(state, cid, ts, result, new_client, undo)
        return result

    def _remember(
        self,
        state: _ClientState,
        cid: int,
        ts: int,
        result: Any,
        new_client: bool,
        undo: _Undo | None,
    ) -> None:
        """Remember ``result`` for replays of (cid, ts): a bounded window per client."""
        if new_client:
            self._clients[cid] = state
        results = state.results
        results[ts] = result  # type: ignore[assignment]  # a _Pending is patched after the block
        old_floor = state.floor
        pos = state.inserted
        acc = self._clients_acc
        if not new_client:
            acc -= client_element(cid, old_floor, pos)
        state.inserted = pos + 1
        events = self._result_events
        events.append((1, cid, pos, ts, result))
        evicted: tuple[int, bytes] | None = None
        if len(results) > self.replay_window:
            ev_ts = next(iter(results))
            evicted = (ev_ts, results.pop(ev_ts))
            events.append((-1, cid, pos - len(results), ev_ts, evicted[1]))
            if ev_ts > state.floor:
                state.floor = ev_ts
        self._clients_acc = (acc + client_element(cid, state.floor, pos + 1)) % ACC_MOD
        if undo is not None:
            undo.clients.append((cid, ts, evicted, old_floor, new_client))

    def _execute_pending(
        self,
        pending: list[_Pending],
        undo: _Undo | None,
        written: list[tuple[int, Any]] | None = None,
    ) -> None:
        """Run every admitted request's transactions as one block on the engine, in order."""
        block: list[Txn] = []
        ends: list[int] = []
        counts = self._op_counts
        for p in pending:
            for txn in p.txns:
                counts[txn[0]] += 1
            block.extend(p.txns)
            ends.append(len(block))
        if written is None and undo is not None:
            written = undo.store
        digests = self.engine.run(block, ends, self._store, written)
        for p, digest in zip(pending, digests, strict=True):
            p.result = digest
            if p.state.results.get(p.ts) is p:
                p.state.results[p.ts] = digest
        if undo is not None:  # a pending result evicted within this block
            clients = undo.clients
            for i, (cid, ts, evicted, floor, new) in enumerate(clients):
                if evicted is not None and type(evicted[1]) is _Pending:
                    clients[i] = (cid, ts, (evicted[0], evicted[1].result), floor, new)

    # --- speculation -----------------------------------------------------------------
    def commit_upto(self, seq: int) -> int:
        """Mark batches <= ``seq`` final and drop their undo logs; return how many were trimmed.

        ``seq`` may be ahead of ``last_seq``: batches applied later at or below it are final.
        """
        if seq > self._commit_mark:
            self._commit_mark = seq
        upto = min(seq, self._last_seq)
        trimmed = 0
        undo = self._undo
        while undo and undo[0].seq <= upto:
            undo.popleft()
            trimmed += 1
        if upto > self._final_seq:
            self._final_seq = upto
        unfinal = self._unfinal
        while unfinal and unfinal[0][0].seq <= upto:
            self._final_out.append(unfinal.popleft())
        return trimmed

    def rollback(self, to_seq: int) -> int:
        """Undo every batch after ``to_seq`` (store, replay cache, ledger); return how many.

        Raises ``RollbackError`` (and changes nothing) if any of them is final.
        """
        if to_seq >= self._last_seq:
            return 0
        if to_seq < self._final_seq:
            raise RollbackError(
                f"rollback to {to_seq} would undo final batches (final up to {self._final_seq})"
            )
        count = self._last_seq - to_seq
        assert len(self._undo) >= count and self._undo[-1].seq == self._last_seq
        store = self._store
        clients = self._clients
        undone = list(self._undo)[-count:]
        dirty = self._dirty
        for rec in undone:
            for key, _ in rec.store:
                if key not in dirty:
                    dirty[key] = store.get(key, _MISSING)
        cids = {entry[0] for rec in undone for entry in rec.clients}
        clients_acc = self._clients_acc
        for cid in cids:
            if cid in clients:
                clients_acc -= clients[cid].element_sum(cid)
        for _ in range(count):
            rec = self._undo.pop()
            for key, old in reversed(rec.store):
                if old is _MISSING:
                    store.pop(key, None)
                else:
                    store[key] = old
            for cid, ts, evicted, old_floor, new_client in reversed(rec.clients):
                state = clients[cid]
                del state.results[ts]
                if evicted is not None:
                    # put the evicted entry back first, so eviction order stays as before
                    state.results = {evicted[0]: evicted[1], **state.results}
                state.floor = old_floor
                state.inserted -= 1
                if new_client:
                    del clients[cid]
        for cid in cids:
            if cid in clients:
                clients_acc += clients[cid].element_sum(cid)
        self._clients_acc = clients_acc % ACC_MOD
        layers = self._layers
        while layers and layers[-1].seq > to_seq:  # re-executed later: their images are void
            layers.pop()
        self.ledger.truncate(to_seq)
        unfinal = self._unfinal
        while unfinal and unfinal[-1][0].seq > to_seq:
            unfinal.pop()
        self._last_seq = to_seq
        self._rollbacks += 1
        self._rolled_back_batches += count
        return count


# --- benchmark -------------------------------------------------------------------------


def main() -> None:
    """Print µs per transaction of ``apply`` (decode included) for YCSB A-F, batches of 100,
    then the cluster's shape on a warm store (``cluster_shape_us_per_txn``)."""
    import time

    from protocols.common import make_batch
    from workloads.txn import encode_txns
    from workloads.ycsb import MIXES, YcsbGenerator

    n_batches, size = 200, 100
    for mix in sorted(MIXES):
        gen = YcsbGenerator(seed=1, record_count=100_000, value_size=100, mix=mix)
        batches = [
            make_batch((Request(100, s, encode_txns(gen.next_txns(size)), b""),))
            for s in range(1, n_batches + 1)
        ]
        for speculative in (False, True):
            passes = []
            for _ in range(3):
                ex = Executor(100_000, 100)
                started = time.perf_counter()
                for seq, b in enumerate(batches, 1):
                    ex.apply(seq, b, speculative)
                    if seq % 10 == 0:  # a checkpoint: the state digest (folds the writes)
                        ex.state_digest()
                        if speculative:
                            ex.commit_upto(seq)
                passes.append(time.perf_counter() - started)
            median = sorted(passes)[1]
            per_txn_us = median / (n_batches * size) * 1e6
            print(
                f"execute mix {mix} speculative={speculative!s:<5}: {per_txn_us:6.2f} us/txn, "
                f"{median / n_batches * 1e3:6.2f} ms per batch of {size}"
            )
    passes = [cluster_shape_us_per_txn() for _ in range(3)]
    print(
        f"execute cluster shape (100,000 records all written, YCSB-A zipfian, 1 request of "
        f"{size}, a checkpoint every 100 batches, thread CPU): {sorted(passes)[1]:6.2f} us/txn"
    )


def cluster_shape_us_per_txn(n_batches: int = 300, period: int = 100) -> float:
    """Thread-CPU µs per transaction of ``apply`` in the cluster's shape: a store that holds
    every one of 100,000 records of 100 B (a long run writes them all; installed as an image
    first, outside the timing), YCSB-A zipfian, one request of 100 transactions per batch, the
    state digest and an image layer every ``period`` batches (txn_per_chkpt 10,000). The
    mixes above start from an empty store, whose dicts stay small and in cache."""
    import time

    from protocols.common import make_batch
    from workloads.txn import encode_txns
    from workloads.ycsb import YcsbGenerator, initial_value_fn

    records, size = 100_000, 100
    gen = YcsbGenerator(seed=1, record_count=records, value_size=100, mix="a")
    batches = [
        make_batch((Request(100, s, encode_txns(gen.next_txns(size)), b""),))
        for s in range(1, n_batches + 1)
    ]
    init = initial_value_fn(100)
    warm = tuple((k, init(k)[::-1]) for k in range(records))
    ex = Executor(records, 100, checkpoint_period=period)
    ex.install_image(StateImage(0, GENESIS_HASH, warm, ()))
    started = time.thread_time()
    for seq, b in enumerate(batches, 1):
        ex.apply(seq, b)
        if ex.is_checkpoint(seq):
            ex.state_digest()
    return (time.thread_time() - started) / (n_batches * size) * 1e6


if __name__ == "__main__":
    main()
