"""The SQLite backend (standard library): one file ``ledger.sqlite`` in WAL journal mode.

Tables: ``blocks(seq PRIMARY KEY, value)`` (base.pack_block), ``meta(name, value)`` (the head
written with every transaction, the base image), ``checkpoints(seq, value)``. One explicit
transaction (BEGIN ... COMMIT) per chunk of at most max_blocks_per_txn blocks.

ledger.sync -> SQLite: ``none`` = PRAGMA synchronous=OFF (no fsync; the WAL is in the OS cache
when COMMIT returns, so a killed process loses nothing committed, a power cut may);
``batch`` = synchronous=FULL (the WAL is fsynced at every COMMIT, one per chunk);
``every_block`` = synchronous=FULL with one COMMIT per block. ledger.max_file_mb -> PRAGMA
max_page_count; reaching it, or a full disk (SQLITE_FULL), raises StorageFullError.

Must not live here: the record encoding and checks (base.py), threads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence

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

_SYNCHRONOUS = {"none": "OFF", "batch": "FULL", "every_block": "FULL"}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blocks (seq INTEGER PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, value BLOB NOT NULL)",
)


class SqliteStore(LedgerStore):
    kind = "sqlite"

    def __init__(
        self, path: str, sync: str = "batch", max_blocks_per_txn: int = 64, max_file_mb: int = 4096
    ) -> None:
        super().__init__(path, sync, max_blocks_per_txn)
        self.max_file_mb = max_file_mb
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[sync]}")
            page = self.db.execute("PRAGMA page_size").fetchone()[0]
            self.db.execute(f"PRAGMA max_page_count={max(1, (max_file_mb << 20) // page)}")
            for statement in _SCHEMA:
                self.db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise CorruptLedgerError(
                path, 1, f"file unreadable ({exc}): no block could be verified"
            ) from None

    def _run(self, statements: Sequence[tuple[str, tuple]]) -> None:
        db = self.db
        try:
            db.execute("BEGIN")
            for sql, args in statements:
                db.execute(sql, args)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            if full or is_full_errno(exc) or "full" in str(exc):
                raise StorageFullError(
                    self.path, f"disk or ledger.max_file_mb ({self.max_file_mb} MiB) full: {exc}"
                ) from exc
            raise StorageError(self.path, f"write failed: {exc}") from exc

    def _write_txn(self, records: Sequence[BlockRecord]) -> None:
        statements: list[tuple[str, tuple]] = []
        for record in records:
            raw = pack_block(record)
            self.bytes_written += len(raw)
            statements.append(("INSERT OR REPLACE INTO blocks VALUES (?, ?)", (record.seq, raw)))
        last = records[-1]
        statements.append(
            ("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (pack_head(last.seq, last.hash),))
        )
        self._run(statements)

    def _write_checkpoint(self, cp: CheckpointRecord) -> None:
        self._run(
            [
                ("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (cp.seq, pack_checkpoint(cp))),
                (
                    "DELETE FROM checkpoints WHERE seq NOT IN "
                    "(SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT ?)",
                    (MAX_CHECKPOINTS_KEPT,),
                ),
            ]
        )

    def _install_base(self, base: BaseImage) -> None:
        self._run(
            [
                ("DELETE FROM blocks", ()),
                ("INSERT OR REPLACE INTO meta VALUES ('base', ?)", (pack_base(base),)),
                (
                    "INSERT OR REPLACE INTO meta VALUES ('head', ?)",
                    (pack_head(base.seq, base.head),),
                ),
            ]
        )

    def _compact(self, base: BaseImage) -> None:
        self._run(
            [
                ("DELETE FROM blocks WHERE seq <= ?", (base.seq,)),
                ("INSERT OR REPLACE INTO meta VALUES ('base', ?)", (pack_base(base),)),
            ]
        )

    def scan(self) -> Scan:
        path = self.path
        db = self.db
        try:
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            rows = db.execute("SELECT value FROM checkpoints ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CorruptLedgerError(
                path, 1, f"unreadable ({exc}): no block could be verified"
            ) from None
        return self._scan_of(meta.get("base"), meta.get("head"), [r for (r,) in rows], self._rows)

    def _rows(self, first: int) -> Iterator[tuple[int, bytes]]:
        """(seq, value) in seq order; an unreadable page names the block after the last read."""
        expected = first
        try:
            for seq, raw in self.db.execute("SELECT seq, value FROM blocks ORDER BY seq"):
                yield seq, raw
                expected = seq + 1
        except sqlite3.DatabaseError as exc:
            raise CorruptLedgerError(
                self.path, expected, f"unreadable ({exc}); blocks before it verify"
            ) from None

    def file_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def close(self) -> None:
        self.db.close()
