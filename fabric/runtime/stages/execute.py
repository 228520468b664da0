"""The execute stage: applies committed batches in sequence order through the Executor
(fabric.runtime.execute: engines, undo log, ledger), answers each request once, feeds
executed(seq) back through the checkpoint ring, and (a durable ledger) the final blocks'
state changes and certified checkpoints to the persist ring (``take_persist``: the persist
stage writes them; a full persist ring parks this thread, never grows). ``apply_items`` is that work without the
thread: with ``execution.pipeline: inline`` the stage is not started and the worker calls
it (fabric.runtime.stages.worker), so both pipelines run the same code.

Must not live here: how a batch is executed (fabric.runtime.execute and its engines).
"""

from __future__ import annotations

import time
from typing import Any

from fabric.analysis.metrics import PerSecond
from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    C_EXECUTED,
    E_DELIVER,
    E_ROLLBACK,
    P_BASE,
    P_BLOCK,
    P_CHECKPOINT,
    P_COMPACT,
    ReplicaShared,
    Stage,
)
from protocols.common import Reply


class ExecuteStage(Stage):
    """Apply delivered batches in order; one Reply per request; executed feedback."""

    role = "execute"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        executor: Any,
        execute_ring: Ring,
        output_ring: Ring,
        checkpoint_ring: Ring,
        n: int,
        persist_ring: Ring | None = None,
        compact_blocks: int = 0,
    ) -> None:
        super().__init__(name, shared)
        self.executor = executor
        self.execute_ring = execute_ring
        self.output_ring = output_ring
        self.checkpoint_ring = checkpoint_ring
        self.n = n
        self.persist_ring = persist_ring  # None: nothing is persisted (ledger.storage memory)
        self._to_persist: list[Any] = []  # certified checkpoints seen by apply_items
        # ledger.compact_blocks: at a stable checkpoint this many blocks past the stored base,
        # the store replaces the blocks up to it by the state image there (0: never)
        self.compact_blocks = compact_blocks
        self.compacted_from = 0  # the stored base's seq (recovery or a compaction sets it)
        self.compactions = 0
        self.executed_per_s = PerSecond()
        self.txns_total = 0
        self.batches = 0
        self.last_seq = 0
        self.rollbacks = 0

    def loop(self) -> None:
        stop = self.shared.stop
        ring = self.execute_ring
        while not stop.is_set():
            items = self.pop(ring)
            if not items:
                continue
            replies, feedback = self.apply_items(items)
            if replies:
                self.push_all(self.output_ring, replies)
            if feedback:
                self.push_all(self.checkpoint_ring, feedback)
            if self.persist_ring is not None:
                self.push_all(self.persist_ring, self.take_persist())

    def take_persist(self) -> list[Any]:
        """The persist ring items since the last call, in the order they happened: certified
        checkpoints and an installed state image (``persist_base``), then each final block
        with its changes (Executor.take_final)."""
        items, self._to_persist = self._to_persist, []
        items.extend((P_BLOCK, *entry) for entry in self.executor.take_final())
        return items

    def persist_base(self, seq: int, head: bytes, image: bytes) -> None:
        """After a state transfer installed the state at ``seq`` (ledger hash ``head``,
        ``image`` its encoding: fabric.runtime.state_image): the store replaces what it held
        by that image, blocks follow from seq + 1. Call on the thread that executes."""
        if self.persist_ring is not None:
            self._to_persist = self.take_persist()  # blocks before the image go first
            self._to_persist.append((P_BASE, seq, head, image))
            self.compacted_from = seq

    def apply_items(self, items: list[Any]) -> tuple[list[Any], list[Any]]:
        """Apply execute-ring items in order; the replies (for the output ring) and the
        executed feedback (for the checkpoint ring) they produce. The one place a delivered
        batch is executed: this thread's loop calls it (pipeline decoupled), or the worker
        that delivered the batch does, before its next message (execution.pipeline inline)."""
        executor = self.executor
        apply = executor.apply
        remember = self.shared.replies.put
        me = self.shared.id
        n = self.n
        per_s = self.executed_per_s
        replies: list[Any] = []
        feedback: list[Any] = []
        for item in items:
            tag = item[0]
            if tag == E_DELIVER:
                seq, view, batch, speculative = item[1:5]
                history, signature = item[5:7] if len(item) > 5 else (b"", b"")
                results = apply(seq, batch, speculative, view)
                total = executor.txns_executed
                txns = total - self.txns_total
                self.txns_total = total
                for req, result in results:
                    cid = req.client_id
                    if cid >= n:
                        ts = req.timestamp
                        reply = Reply(
                            view, seq, me, cid, ts, result, speculative, history, signature
                        )
                        remember((cid, ts), reply)
                        replies.append((cid, reply))
                self.batches += 1
                self.last_seq = seq
                per_s.add(time.time(), txns)
                # the state digest only where a checkpoint signs it (O(keys written since))
                digest = executor.state_digest() if executor.is_checkpoint(seq) else b""
                feedback.append((C_EXECUTED, seq, digest))
            elif tag == E_ROLLBACK:
                executor.rollback(item[1])
                self.shared.replies.clear()  # speculative replies past the rollback are void
                self.rollbacks += 1
                self.last_seq = executor.last_seq
            else:  # a stable checkpoint: final up to it, older images are not served
                executor.commit_upto(item[1])
                executor.release_images_below(item[1])
                if self.persist_ring is not None and len(item) > 3:
                    # (E_COMMIT, seq, state_digest, proof): persisted with the ledger
                    self._to_persist.append((P_CHECKPOINT, item[1], item[2], item[3]))
                    if self.compact_blocks and item[1] - self.compacted_from >= self.compact_blocks:
                        self._compact(item[1])
        return replies, feedback

    def _compact(self, seq: int) -> None:
        """Hand the store the state image at stable checkpoint ``seq`` (after every block
        before it): it becomes the stored base and the blocks up to ``seq`` are deleted.
        The image is taken here (O(store): a kept checkpoint's copy-on-write layers over the
        live store); the persist stage encodes and writes it. No image kept: skipped."""
        executor = self.executor
        if seq > executor.last_seq or seq not in executor.image_seqs():
            return
        image = executor.export_image(seq)
        self._to_persist = self.take_persist()  # the blocks up to (and past) seq go first
        self._to_persist.append((P_COMPACT, seq, image))
        self.compacted_from = seq
        self.compactions += 1
