"""A replica's durable ledger: backends behind one interface (``LedgerStore``), chosen by
``ledger.storage``, and where a replica's file lives.

    base.py       records (BlockRecord, CheckpointRecord, BaseImage), their checked encoding,
                  the chain check of recovery, errors, the LedgerStore interface
    memory.py     MemoryStore: same records in dicts (simulator, tests, bench baseline)
    sqlite.py     SqliteStore: stdlib sqlite3, WAL journal
    lmdbstore.py  LmdbStore: the lmdb package
    recovery.py   recovered records -> executor state (blocks redone by the executor itself)

Must not live here: the persist thread (fabric.runtime.stages.persist), protocol logic.
"""

from __future__ import annotations

from pathlib import Path

from fabric.runtime.storage.base import (
    MAX_CHECKPOINTS_KEPT,
    SYNC_POLICIES,
    BaseImage,
    BlockRecord,
    CheckpointRecord,
    CorruptLedgerError,
    LedgerStore,
    Recovered,
    Scan,
    StorageError,
    StorageFullError,
)
from fabric.runtime.storage.memory import MemoryStore

#: ledger.storage values; memory runs no persist stage in a real replica (nothing durable)
BACKENDS = ("memory", "sqlite", "lmdb")
#: durable backends -> file name inside replica-<i>/
FILE_NAMES = {"sqlite": "ledger.sqlite", "lmdb": "ledger.lmdb"}


def ledger_file(replica_dir: Path, storage: str) -> Path:
    """The ledger file of a durable backend inside a replica's folder."""
    return Path(replica_dir) / FILE_NAMES[storage]


def open_store(
    storage: str,
    path: Path | str | None = None,
    sync: str = "batch",
    max_blocks_per_txn: int = 64,
    max_file_mb: int = 4096,
) -> LedgerStore:
    """A store of kind ``storage`` at ``path`` (created if absent; ignored for memory)."""
    if storage == "memory":
        return MemoryStore(sync=sync, max_blocks_per_txn=max_blocks_per_txn)
    if path is None:
        raise ValueError(f"ledger.storage {storage} needs a file")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if storage == "sqlite":
        from fabric.runtime.storage.sqlite import SqliteStore

        return SqliteStore(str(path), sync, max_blocks_per_txn, max_file_mb)
    if storage == "lmdb":
        from fabric.runtime.storage.lmdbstore import LmdbStore

        return LmdbStore(str(path), sync, max_blocks_per_txn, max_file_mb)
    raise ValueError(f"ledger.storage {storage!r}; allowed: {' | '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "BaseImage",
    "BlockRecord",
    "CheckpointRecord",
    "CorruptLedgerError",
    "FILE_NAMES",
    "LedgerStore",
    "MAX_CHECKPOINTS_KEPT",
    "MemoryStore",
    "Recovered",
    "Scan",
    "SYNC_POLICIES",
    "StorageError",
    "StorageFullError",
    "ledger_file",
    "open_store",
]
