"""The memory backend: the same records and checks as the durable ones, kept in this process.

What it is for: the simulator's durable state (it survives a simulated crash because the
simulator keeps the object), tests and the persist bench's baseline (encoding and hand-off,
no disk). In a real replica ``ledger.storage: memory`` runs no persist stage at all (nothing
would survive the process), see fabric.runtime.storage.open_store.

Must not live here: anything that touches a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from fabric.runtime.storage.base import (
    MAX_CHECKPOINTS_KEPT,
    BaseImage,
    BlockRecord,
    CheckpointRecord,
    LedgerStore,
    Scan,
    pack_base,
    pack_block,
    pack_checkpoint,
    pack_head,
)


class MemoryStore(LedgerStore):
    """Blocks, head, base image and checkpoints as encoded bytes in dicts."""

    kind = "memory"

    def __init__(self, path: str = "<memory>", sync: str = "none", max_blocks_per_txn: int = 64):
        super().__init__(path, sync, max_blocks_per_txn)
        self.blocks: dict[int, bytes] = {}
        self.meta: dict[str, bytes] = {}
        self.checkpoints: dict[int, bytes] = {}

    def _write_txn(self, records: Sequence[BlockRecord]) -> None:
        for record in records:
            raw = pack_block(record)
            self.blocks[record.seq] = raw
            self.bytes_written += len(raw)
        last = records[-1]
        self.meta["head"] = pack_head(last.seq, last.hash)

    def _write_checkpoint(self, cp: CheckpointRecord) -> None:
        self.checkpoints[cp.seq] = pack_checkpoint(cp)
        for seq in sorted(self.checkpoints)[:-MAX_CHECKPOINTS_KEPT]:
            del self.checkpoints[seq]

    def _install_base(self, base: BaseImage) -> None:
        self.blocks.clear()
        self.meta["base"] = pack_base(base)
        self.meta["head"] = pack_head(base.seq, base.head)

    def _compact(self, base: BaseImage) -> None:
        for seq in [s for s in self.blocks if s <= base.seq]:
            del self.blocks[seq]
        self.meta["base"] = pack_base(base)

    def scan(self) -> Scan:
        raws = [(seq, self.blocks[seq]) for seq in sorted(self.blocks)]
        return self._scan_of(
            self.meta.get("base"),
            self.meta.get("head"),
            [self.checkpoints[s] for s in sorted(self.checkpoints)],
            lambda first: raws,
        )

    def close(self) -> None:
        pass
