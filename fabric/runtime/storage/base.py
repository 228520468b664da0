"""What every ledger backend shares: the records it stores, their checked encoding, the errors,
and ``LedgerStore``, the interface the persist stage writes through and recovery reads.

A backend keeps, per replica: the final blocks in seq order, each with the state changes it
made (store writes, replay-cache entries), sealed by a record digest; optionally a base image
(the state at a seq installed by state transfer, or written by ``compact`` at a stable
checkpoint; blocks start after it); the newest certified
checkpoints (seq, state digest, the encoded 2f+1 votes). ``scan()`` reads it back block by block and
checks each before it is used: every block's hash (fabric.runtime.execute.block_hash), its
link to the one before, its record digest, and that the blocks reach the head the last
transaction wrote. The first failure raises ``CorruptLedgerError`` naming the file and block.

Record digest of a block: sha256(hash || view (8 bytes) || changes), where ``changes`` is the
msgpack encoding of [writes, clients]; the hash chain commits to seq, batch and results, the
record digest to what the chain does not (the view and the state changes).

Must not live here: threads (the persist stage), how a backend stores bytes (sqlite.py,
lmdbstore.py, memory.py), how recovered records become executor state (recovery.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from fabric.runtime.execute import GENESIS_HASH, HASH_BYTES, block_hash

_SEQ = struct.Struct("!Q")
_sha256 = hashlib.sha256

#: newest certified checkpoints a store keeps (older ones are deleted as new ones arrive)
MAX_CHECKPOINTS_KEPT = 8
#: sync policies, in order of cost (ledger.sync)
SYNC_POLICIES = ("none", "batch", "every_block")
#: free bytes the ledger's filesystem must keep before each write transaction; below it the
#: write is refused (StorageFullError). LMDB maps its file: on a filesystem that fills up
#: mid-transaction a page it touches can fault the process (SIGBUS) instead of failing a call,
#: so the store stops, named, while there is still room
MIN_FREE_DISK_BYTES = 8 << 20
#: errno values that mean the disk (or the file's cap) is full
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StorageError(OSError):
    """Base of the ledger store's errors; ``path`` names the file. An OSError, so a replica
    that cannot open or recover its ledger refuses to start like one that cannot bind."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class CorruptLedgerError(StorageError):
    """The ledger file fails its checks on recovery; ``seq`` is the first bad block (or None)."""

    def __init__(self, path: str, seq: int | None, why: str) -> None:
        where = f" at block {seq}" if seq is not None else ""
        super().__init__(path, f"ledger refused{where}: {why}")
        self.seq = seq
        self.why = why


class StorageFullError(StorageError):
    """The disk, or the file's cap (ledger.max_file_mb), is full: the replica cannot persist."""


def is_full_errno(exc: BaseException) -> bool:
    """True if ``exc`` (or its cause) is an OSError saying the disk is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One final block and the state changes it made (what the persist stage writes)."""

    seq: int
    view: int
    batch_digest: bytes
    results_digest: bytes
    prev_hash: bytes
    hash: bytes
    writes: tuple[tuple[int, Any], ...] = ()  # (key, value after the block), first-write order
    clients: tuple[tuple[int, int, bytes], ...] = ()  # (client id, timestamp, result) remembered

    def changes(self) -> bytes:
        """The state changes, encoded (msgpack [writes, clients])."""
        return msgpack.packb([self.writes, self.clients], use_bin_type=True)

    def record_digest(self, changes: bytes | None = None) -> bytes:
        if changes is None:
            changes = self.changes()
        return _sha256(self.hash + _SEQ.pack(self.view) + changes).digest()


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A certified stable checkpoint: ``proof`` holds the encoded signed votes (opaque here)."""

    seq: int
    digest: bytes
    proof: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The state at ``seq`` installed whole (state transfer): blocks start at seq + 1."""

    seq: int
    head: bytes  # the ledger hash at seq (the chain's prev_hash for block seq + 1)
    image: bytes  # the encoded state image (fabric.runtime.state_image)


@dataclass(slots=True)
class Recovered:
    """What a store held, checked: the base image if any, the blocks after it, checkpoints."""

    path: str
    base: BaseImage | None = None
    blocks: list[BlockRecord] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)  # oldest first

    @property
    def last_seq(self) -> int:
        if self.blocks:
            return self.blocks[-1].seq
        return self.base.seq if self.base is not None else 0

    @property
    def head(self) -> bytes:
        if self.blocks:
            return self.blocks[-1].hash
        return self.base.head if self.base is not None else GENESIS_HASH

    def last_checkpoint(self) -> CheckpointRecord | None:
        """The newest certified checkpoint at or below the recovered state (None if none)."""
        upto = self.last_seq
        found = [c for c in self.checkpoints if c.seq <= upto]
        return found[-1] if found else None


# --- encodings shared by the backends --------------------------------------------------


def pack_block(record: BlockRecord) -> bytes:
    """A block as one value: msgpack [seq, view, batch, results, prev, hash, digest, changes]."""
    changes = record.changes()
    return msgpack.packb(
        [
            record.seq,
            record.view,
            record.batch_digest,
            record.results_digest,
            record.prev_hash,
            record.hash,
            record.record_digest(changes),
            changes,
        ],
        use_bin_type=True,
    )


def unpack_block(path: str, seq: int, raw: bytes) -> tuple[BlockRecord, bytes, bytes]:
    """(record, stored record digest, encoded changes) from ``pack_block``'s bytes; a value
    that does not decode to that shape is corruption of block ``seq``."""
    try:
        fields = msgpack.unpackb(raw, raw=False, use_list=False)
        s, view, bd, rd, prev, h, digest, changes = fields
        writes, clients = msgpack.unpackb(changes, raw=False, use_list=False, strict_map_key=False)
        record = BlockRecord(int(s), int(view), bd, rd, prev, h, writes, clients)
    except Exception as exc:  # any decode failure of our own file is corruption
        raise CorruptLedgerError(path, seq, f"record does not decode ({exc!r})") from None
    return record, digest, changes


def pack_checkpoint(cp: CheckpointRecord) -> bytes:
    body = msgpack.packb([cp.seq, cp.digest, list(cp.proof)], use_bin_type=True)
    return _sha256(body).digest() + body


def unpack_checkpoint(path: str, raw: bytes) -> CheckpointRecord:
    digest, body = raw[:HASH_BYTES], raw[HASH_BYTES:]
    if _sha256(body).digest() != digest:
        raise CorruptLedgerError(path, None, "a checkpoint certificate fails its digest")
    seq, state_digest, proof = msgpack.unpackb(body, raw=False)
    return CheckpointRecord(int(seq), state_digest, tuple(proof))


def pack_base(base: BaseImage) -> bytes:
    body = msgpack.packb([base.seq, base.head, base.image], use_bin_type=True)
    return _sha256(body).digest() + body


def unpack_base(path: str, raw: bytes) -> BaseImage:
    digest, body = raw[:HASH_BYTES], raw[HASH_BYTES:]
    if _sha256(body).digest() != digest:
        raise CorruptLedgerError(path, None, "the base state image fails its digest")
    seq, head, image = msgpack.unpackb(body, raw=False)
    return BaseImage(int(seq), head, image)


def pack_head(seq: int, head: bytes) -> bytes:
    return _SEQ.pack(seq) + head


def unpack_head(path: str, raw: bytes) -> tuple[int, bytes]:
    if len(raw) != 8 + HASH_BYTES:
        raise CorruptLedgerError(path, None, f"the head record has {len(raw)} bytes")
    return _SEQ.unpack(raw[:8])[0], raw[8:]


def verified_blocks(
    path: str,
    base: BaseImage | None,
    raws: Iterable[tuple[int, bytes]],
    head: tuple[int, bytes] | None,
) -> Iterator[BlockRecord]:
    """Decode and check each stored (seq, value) in order, yielding a block only once it
    verifies (hash, link, seq, record digest); at the end the head must match the last
    block. The first failure raises CorruptLedgerError naming the file and that block."""
    prev = base.head if base is not None else GENESIS_HASH
    expected = (base.seq if base is not None else 0) + 1
    for seq, raw in raws:
        record, digest, changes = unpack_block(path, seq, raw)
        if record.seq != expected:
            raise CorruptLedgerError(
                path, expected, f"block missing (the next stored block is {record.seq})"
            )
        if record.prev_hash != prev:
            raise CorruptLedgerError(path, record.seq, "does not link to the block before it")
        if record.hash != block_hash(prev, record.seq, record.batch_digest, record.results_digest):
            raise CorruptLedgerError(path, record.seq, "hash does not match its contents")
        if record.record_digest(changes) != digest:
            raise CorruptLedgerError(path, record.seq, "record digest does not match its changes")
        yield record
        prev = record.hash
        expected += 1
    last = expected - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last:
            raise CorruptLedgerError(
                path, last + 1, f"truncated: the head says block {head_seq}, blocks end at {last}"
            )
        if head_seq < last or head_hash != prev:
            raise CorruptLedgerError(path, head_seq, "the head record does not match the blocks")
    elif last:
        raise CorruptLedgerError(path, None, "blocks but no head record")


@dataclass(slots=True)
class Scan:
    """A store's contents as a stream: base image and checkpoints read up front, ``blocks``
    an iterator that yields each block once it verifies (one block in memory at a time) and
    raises CorruptLedgerError at the first bad one or at a bad head after the last."""

    path: str
    base: BaseImage | None
    checkpoints: list[CheckpointRecord]  # oldest first
    blocks: Iterator[BlockRecord]


class LedgerStore:
    """A replica's durable ledger. One writer thread (the persist stage); ``recover`` at start.

    ``write`` takes final blocks in seq order, each chunk in transactions of at most
    ``max_blocks_per_txn`` blocks (``every_block``: one per block); ``sync`` says when a
    commit is fsynced (see SYNC_POLICIES and config/default.yaml ``ledger.sync``). A full
    disk or file cap raises ``StorageFullError``; nothing is ever silently dropped.
    """

    kind = "abstract"

    def __init__(self, path: str, sync: str = "batch", max_blocks_per_txn: int = 64) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(f"ledger.sync {sync!r}; allowed: {' | '.join(SYNC_POLICIES)}")
        if max_blocks_per_txn < 1:
            raise ValueError("max_blocks_per_txn must be >= 1")
        self.path = path
        self.sync = sync
        self.max_blocks_per_txn = 1 if sync == "every_block" else max_blocks_per_txn
        self.drain_blocks_per_txn = max_blocks_per_txn  # at a clean stop (see ``write``)
        self.blocks_written = 0
        self.transactions = 0
        self.bytes_written = 0
        self.checkpoints_written = 0
        self.compactions = 0
        self.last_seq = 0

    def write(self, records: Sequence[BlockRecord], draining: bool = False) -> None:
        """Persist ``records`` (consecutive, after everything stored) in bounded transactions.

        ``draining`` (a clean stop writing what the ring still holds): transactions of up to
        ledger.max_blocks_per_txn blocks whatever the sync policy, so every_block's backlog
        is on disk, fsynced, within the stop budget instead of one fsync per block."""
        step = self.drain_blocks_per_txn if draining else self.max_blocks_per_txn
        for i in range(0, len(records), step):
            chunk = records[i : i + step]
            self.check_free_disk()
            self._write_txn(chunk)
            self.transactions += 1
            self.blocks_written += len(chunk)
            self.last_seq = chunk[-1].seq

    def check_free_disk(self) -> None:
        """Refuse to write (StorageFullError) when the file's filesystem has fewer than
        MIN_FREE_DISK_BYTES free (one statvfs call; a store without a file skips it)."""
        folder = os.path.dirname(self.path)
        if not folder or not os.path.isdir(folder):
            return
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_DISK_BYTES:
            raise StorageFullError(
                self.path,
                f"disk full: {free} bytes free on {folder}, below the "
                f"{MIN_FREE_DISK_BYTES >> 20} MiB margin (storage.base.MIN_FREE_DISK_BYTES)",
            )

    def write_checkpoint(self, cp: CheckpointRecord) -> None:
        """Persist a certified checkpoint; keep the newest MAX_CHECKPOINTS_KEPT."""
        self.check_free_disk()
        self._write_checkpoint(cp)
        self.checkpoints_written += 1

    def install_base(self, base: BaseImage) -> None:
        """Replace everything stored by a state image at ``base.seq`` (after a state transfer)."""
        self.check_free_disk()
        self._install_base(base)
        self.last_seq = base.seq

    def scan(self) -> Scan:
        """Everything stored as a checked stream (see ``Scan``; recovery redoes block by
        block, so memory holds one block, not the file)."""
        raise NotImplementedError

    def _scan_of(
        self,
        raw_base: bytes | None,
        raw_head: bytes | None,
        raw_checkpoints: Iterable[bytes],
        rows: Callable[[int], Iterable[tuple[int, bytes]]],
    ) -> Scan:
        """The Scan of a backend's raw records: its meta values (None where absent), its
        checkpoint values oldest first, and ``rows(first)``, its stored (seq, value) blocks
        from seq ``first`` on (what follows the base), each checked as it is read."""
        path = self.path
        base = unpack_base(path, raw_base) if raw_base is not None else None
        head = unpack_head(path, raw_head) if raw_head is not None else None
        checkpoints = [unpack_checkpoint(path, raw) for raw in raw_checkpoints]
        first = (base.seq if base is not None else 0) + 1
        return Scan(path, base, checkpoints, verified_blocks(path, base, rows(first), head))

    def compact(self, base: BaseImage) -> None:
        """Make ``base`` (the state image at stable checkpoint ``base.seq``, whose block is
        stored) the stored base and delete the blocks up to it, in one transaction: the file
        and the next recovery hold the image and the blocks after it only."""
        if base.seq > self.last_seq:
            raise ValueError(f"compaction at {base.seq} past the stored blocks ({self.last_seq})")
        self.check_free_disk()
        self._compact(base)
        self.compactions += 1

    def recover(self) -> Recovered:
        """Everything stored, checked, in memory (tests and tools; recovery uses ``scan``)."""
        scan = self.scan()
        return Recovered(self.path, scan.base, list(scan.blocks), scan.checkpoints)

    def close(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {
            "storage": self.kind,
            "sync": self.sync,
            "path": self.path,
            "blocks_written": self.blocks_written,
            "transactions": self.transactions,
            "bytes_written": self.bytes_written,
            "checkpoints_written": self.checkpoints_written,
            "compactions": self.compactions,
            "last_seq": self.last_seq,
        }

    # backend hooks
    def _write_txn(self, records: Sequence[BlockRecord]) -> None:
        raise NotImplementedError

    def _write_checkpoint(self, cp: CheckpointRecord) -> None:
        raise NotImplementedError

    def _install_base(self, base: BaseImage) -> None:
        raise NotImplementedError

    def _compact(self, base: BaseImage) -> None:
        raise NotImplementedError
