"""The LMDB backend (the ``lmdb`` package): one file ``ledger.lmdb`` (and its ``-lock`` file).

Named databases: ``blocks`` (8-byte big-endian seq -> base.pack_block), ``meta`` (``head``,
written with every transaction, and ``base``), ``checkpoints`` (seq -> certificate). One
write transaction per chunk of at most max_blocks_per_txn blocks.

ledger.sync -> LMDB: ``none`` = Environment(sync=False, metasync=False) (no fsync at commit;
the pages are in the OS cache, so a killed process loses nothing committed, a power cut
may); ``batch`` = sync=True, metasync=True (fsync at every commit, one per chunk);
``every_block`` = the same with one commit per block. ledger.max_file_mb -> map_size; reaching
it (MapFullError) or a full disk raises StorageFullError.

Recovery checks the file's length against the last page its meta page names before reading
any record: LMDB maps the file, and a page past a truncated end would fault the process.

Must not live here: the record encoding and checks (base.py), threads.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence

import lmdb

from fabric.runtime.storage.base import (
    MAX_CHECKPOINTS_KEPT,
    BaseImage,
    BlockRecord,
    CheckpointRecord,
    CorruptLedgerError,
    LedgerStore,
    Scan,
    StorageError,
    StorageFullError,
    is_full_errno,
    pack_base,
    pack_block,
    pack_checkpoint,
    pack_head,
)

_KEY = struct.Struct("!Q")


class LmdbStore(LedgerStore):
    kind = "lmdb"

    def __init__(
        self, path: str, sync: str = "batch", max_blocks_per_txn: int = 64, max_file_mb: int = 4096
    ) -> None:
        super().__init__(path, sync, max_blocks_per_txn)
        self.max_file_mb = max_file_mb
        if os.path.exists(path):
            self._check_length()
        durable = sync != "none"
        try:
            self.env = lmdb.open(
                path,
                subdir=False,
                map_size=max_file_mb << 20,
                max_dbs=3,
                sync=durable,
                metasync=durable,
                readahead=False,
                meminit=False,
            )
            self.blocks = self.env.open_db(b"blocks")
            self.meta = self.env.open_db(b"meta")
            self.checkpoints = self.env.open_db(b"checkpoints")
        except lmdb.Error as exc:
            raise CorruptLedgerError(
                path, 1, f"file unreadable ({exc}): no block could be verified"
            ) from None

    def _check_length(self) -> None:
        """Refuse a file shorter than its last page (before LMDB maps and reads it)."""
        path = self.path
        size = os.path.getsize(path)
        try:
            env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=3)
        except lmdb.Error as exc:
            raise CorruptLedgerError(
                path, 1, f"file unreadable ({exc}): no block could be verified"
            ) from None
        try:
            need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        finally:
            env.close()
        if size < need:
            raise CorruptLedgerError(
                path,
                1,
                f"truncated: {size} bytes, its last page ends at byte {need}; "
                "no block can be read safely",
            )

    def _commit(self, puts: Sequence[tuple[object, bytes, bytes]], clear: object = None) -> None:
        try:
            with self.env.begin(write=True) as txn:
                if clear is not None:
                    txn.drop(clear, delete=False)
                for db, key, value in puts:
                    txn.put(key, value, db=db)
        except lmdb.MapFullError as exc:
            raise StorageFullError(
                self.path, f"ledger.max_file_mb ({self.max_file_mb} MiB) full: {exc}"
            ) from exc
        except (lmdb.Error, OSError) as exc:
            if is_full_errno(exc) or "No space" in str(exc):
                raise StorageFullError(self.path, f"disk full: {exc}") from exc
            raise StorageError(self.path, f"write failed: {exc}") from exc

    def _write_txn(self, records: Sequence[BlockRecord]) -> None:
        puts = []
        for record in records:
            raw = pack_block(record)
            self.bytes_written += len(raw)
            puts.append((self.blocks, _KEY.pack(record.seq), raw))
        last = records[-1]
        puts.append((self.meta, b"head", pack_head(last.seq, last.hash)))
        self._commit(puts)

    def _write_checkpoint(self, cp: CheckpointRecord) -> None:
        self._commit([(self.checkpoints, _KEY.pack(cp.seq), pack_checkpoint(cp))])
        try:
            with self.env.begin(write=True, db=self.checkpoints) as txn:
                keys = [k for k, _ in txn.cursor()]
                for key in keys[:-MAX_CHECKPOINTS_KEPT]:
                    txn.delete(key)
        except lmdb.Error as exc:
            raise StorageError(self.path, f"write failed: {exc}") from exc

    def _install_base(self, base: BaseImage) -> None:
        self._commit(
            [
                (self.meta, b"base", pack_base(base)),
                (self.meta, b"head", pack_head(base.seq, base.head)),
            ],
            clear=self.blocks,
        )

    def _compact(self, base: BaseImage) -> None:
        try:
            with self.env.begin(write=True) as txn:
                cursor = txn.cursor(db=self.blocks)
                last = _KEY.pack(base.seq)
                if cursor.first():
                    while cursor.key() <= last:
                        if not cursor.delete():
                            break
                txn.put(b"base", pack_base(base), db=self.meta)
        except lmdb.MapFullError as exc:
            raise StorageFullError(
                self.path, f"ledger.max_file_mb ({self.max_file_mb} MiB) full: {exc}"
            ) from exc
        except lmdb.Error as exc:
            raise StorageError(self.path, f"compaction failed: {exc}") from exc

    def scan(self) -> Scan:
        path = self.path
        try:
            with self.env.begin() as txn:
                raw_base = txn.get(b"base", db=self.meta)
                raw_head = txn.get(b"head", db=self.meta)
                rows = [bytes(v) for _, v in txn.cursor(db=self.checkpoints)]
        except lmdb.Error as exc:
            raise CorruptLedgerError(
                path, 1, f"unreadable ({exc}): no block could be verified"
            ) from None
        return self._scan_of(
            None if raw_base is None else bytes(raw_base),
            None if raw_head is None else bytes(raw_head),
            rows,
            self._rows,
        )

    def _rows(self, first: int) -> Iterator[tuple[int, bytes]]:
        """(seq, value) in key order inside one read transaction (held while the caller
        consumes the stream, on its thread); an unreadable page names the next block."""
        expected = first
        try:
            with self.env.begin() as txn:
                for key, raw in txn.cursor(db=self.blocks):
                    seq = _KEY.unpack(key)[0] if len(key) == _KEY.size else expected
                    yield seq, bytes(raw)
                    expected = seq + 1
        except lmdb.Error as exc:
            raise CorruptLedgerError(
                self.path, expected, f"unreadable ({exc}); blocks before it verify"
            ) from None

    def file_bytes(self) -> int:
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def close(self) -> None:
        self.env.close()
