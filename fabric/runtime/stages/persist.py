"""The persist stage: writes final blocks, the state changes they made and certified
checkpoints to the replica's LedgerStore (fabric.runtime.storage), off the execute thread's
path (DiemBFT's persist phase).

The execute stage (or the worker, with execution.pipeline inline) pushes P_ items into the
persist ring after each chunk it applied; it never waits on the disk, only on a full ring:
then it parks until this stage has written a chunk (back-pressure: the replica executes no
faster than its disk persists, and the ring never grows). This stage pops at most
``max_blocks_per_txn`` items, writes the blocks among them in one transaction (``sync``
decides the fsync, see fabric.runtime.storage), and is the store's only writer. A write that
fails (a full disk, the file cap) raises out of ``loop``: Stage.run reports the stage failed,
naming the replica, and the replica stops and exits 1, so the run fails loudly. At a clean
stop it writes what the ring still holds in transactions of ledger.max_blocks_per_txn blocks
(also under every_block: one fsync per block of a full ring would outlast the stop budget).

Must not live here: how records are stored or checked (fabric.runtime.storage).
"""

from __future__ import annotations

import struct
import time
from typing import Any

from fabric.analysis.metrics import PerSecond
from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    P_BASE,
    P_BLOCK,
    P_CHECKPOINT,
    P_COMPACT,
    ReplicaShared,
    Stage,
)
from fabric.runtime.storage import BaseImage, BlockRecord, CheckpointRecord, LedgerStore
from protocols import codec

_KIND = struct.Struct("!H")


def encode_proof(proof: Any) -> tuple[bytes, ...]:
    """A checkpoint certificate's votes as bytes: each message as its kind (2 bytes) and body
    (protocols.codec, never pickle); entries already bytes are kept."""
    out = []
    for vote in proof or ():
        if isinstance(vote, bytes | bytearray):
            out.append(bytes(vote))
        else:
            kind, body = codec.kind_and_body(vote)
            out.append(_KIND.pack(kind) + body)
    return tuple(out)


def decode_proof(blobs: Any) -> list[Any]:
    """``encode_proof``'s bytes back as messages (bounded decode: protocols.codec). The
    votes' kind must be registered: protocols.checkpoints (Checkpoint) is imported here; a
    protocol's own vote kinds are once its module is (as in any replica running it)."""
    import protocols.checkpoints  # noqa: F401  (registers the Checkpoint kind)

    out = []
    for blob in blobs:
        (kind,) = _KIND.unpack_from(blob)
        codec.check_body_length(kind, len(blob) - _KIND.size)
        out.append(codec.decode_body(kind, blob[_KIND.size :]))
    return out


def block_record(item: tuple[Any, ...]) -> BlockRecord:
    """A P_BLOCK ring item as the record a store writes."""
    _, b, writes, clients = item
    return BlockRecord(
        b.seq, b.view, b.batch_digest, b.results_digest, b.prev_hash, b.hash, writes, clients
    )


class PersistStage(Stage):
    """Persist ring -> LedgerStore, in bounded transactions; the store's only writer."""

    role = "persist"

    def __init__(self, name: str, shared: ReplicaShared, store: LedgerStore, ring: Ring) -> None:
        super().__init__(name, shared)
        self.store = store
        self.ring = ring
        self.persisted_per_s = PerSecond()
        self.blocks = 0
        self.checkpoints = 0
        self.compactions = 0
        self.last_seq = 0
        self.write_s = 0.0  # wall time inside store writes (includes fsync waits)

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.ring
        chunk = self.store.max_blocks_per_txn
        while not stop.is_set():
            items = self.pop(ring, chunk=chunk)
            if items:
                self.persist(items)
        # what was handed over before the stop: written in ledger.max_blocks_per_txn chunks
        self.persist(ring.pop_many(ring.capacity, 0), draining=True)

    def persist(self, items: list[Any], draining: bool = False) -> None:
        """Write ``items`` in order (blocks batched into the store's transactions)."""
        store = self.store
        blocks: list[BlockRecord] = []
        started = time.perf_counter()
        for item in items:
            tag = item[0]
            if tag == P_BLOCK:
                blocks.append(block_record(item))
                continue
            if blocks:
                self._write(blocks, draining)
                blocks = []
            if tag == P_CHECKPOINT:
                store.write_checkpoint(CheckpointRecord(item[1], item[2], encode_proof(item[3])))
                self.checkpoints += 1
            elif tag == P_BASE:
                store.install_base(BaseImage(item[1], item[2], item[3]))
                self.last_seq = item[1]
            elif tag == P_COMPACT:  # encoded here, off the execute thread
                image = item[2]
                store.compact(BaseImage(item[1], image.ledger_head, image.encode()))
                self.compactions += 1
        if blocks:
            self._write(blocks, draining)
        self.write_s += time.perf_counter() - started

    def _write(self, blocks: list[BlockRecord], draining: bool = False) -> None:
        self.store.write(blocks, draining)
        self.blocks += len(blocks)
        self.last_seq = blocks[-1].seq
        self.persisted_per_s.add(time.time(), len(blocks))

    def cleanup(self) -> None:
        self.store.close()

    def stats(self) -> dict[str, Any]:
        return {
            **self.store.stats(),
            "persisted_blocks": self.blocks,
            "persisted_checkpoints": self.checkpoints,
            "compactions": self.compactions,
            "persisted_seq": self.last_seq,
            "write_s": round(self.write_s, 6),
            "persisted_per_s": self.persisted_per_s.as_pairs(),
        }
