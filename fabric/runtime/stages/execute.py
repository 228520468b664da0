"""The execute stage: applies committed batches in sequence order through the Executor
(fabric.runtime.execute: engines, undo log, ledger), answers each request once, feeds
executed(seq) back through the checkpoint ring, and (a durable ledger) the final blocks'
state changes and certified checkpoints to the persist ring (``take_persist``: the persist
stage writes them; a full persist ring parks this thread, never grows). ``apply_items`` is that work without the
thread: with ``execution.pipeline: inline`` the stage is not started and the worker calls
it (fabric.runtime.stages.worker), so both pipelines run the same code.

State transfer (fabric.runtime.state_transfer, sans-IO, driven here because this thread
owns the executor whose images are served and installed): E_FETCH_STATE starts a fetch,
E_STATE_MSG items are peers' requests and chunks, the retry timer is polled every pass; a
verified image is installed (``Executor.install_image``), handed to the persist stage as the
new base, and announced to the worker (C_STATE_INSTALLED -> ``protocol.state_installed``).
After an install (or a restart's reload, ``restored_upto``), a Deliver at or below that seq
is skipped (counted): the protocol may deliver batches below it before it hears of it.

Must not live here: how a batch is executed (fabric.runtime.execute and its engines).
"""

from __future__ import annotations

import time
from typing import Any

from fabric.analysis.metrics import PerSecond
from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    C_EXECUTED,
    C_STATE_INSTALLED,
    E_DELIVER,
    E_FETCH_STATE,
    E_ROLLBACK,
    E_STATE_MSG,
    P_BASE,
    P_BLOCK,
    P_CHECKPOINT,
    P_COMPACT,
    ReplicaShared,
    Stage,
)
from fabric.runtime.state_transfer import Arm, Installed, Out
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
        state_transfer: Any = None,
        tick_s: float = 0.01,
    ) -> None:
        super().__init__(name, shared)
        self.executor = executor
        # fabric.runtime.state_transfer.StateTransfer (None: no state transfer, e.g. tests)
        self.state_transfer = state_transfer
        self.tick_s = tick_s
        self._state_deadline: float | None = None
        self.states_installed = 0
        self.skipped_below_install = 0
        # Delivers at or below this are already in the state (an installed image, or what a
        # restarted replica reloaded: the replica sets it) and are skipped
        self.restored_upto = 0
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
            if self._state_deadline is not None:
                self._poll_state_timer(replies, feedback)
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
                if seq <= self.restored_upto:
                    self.skipped_below_install += 1  # below an installed image / reloaded state
                    continue
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
                # Executed feedback only where a checkpoint signs the state (the digest is
                # O(keys written since)): every protocol acts on executed() at its
                # checkpoint seqs alone (Protocol.executed), so a notice per batch cost two
                # ring hand-offs and a checkpoint-thread wake-up for nothing
                if executor.is_checkpoint(seq):
                    feedback.append((C_EXECUTED, seq, executor.state_digest()))
            elif tag == E_STATE_MSG or tag == E_FETCH_STATE:
                st = self.state_transfer
                if st is None:
                    self.drops["state_transfer_off"] += 1
                elif tag == E_STATE_MSG:
                    self._state_outputs(st.receive(item[1], item[2]), replies, feedback)
                elif item[1] > executor.last_seq:
                    self._state_outputs(st.fetch(item[1], item[2], item[3]), replies, feedback)
            elif tag == E_ROLLBACK:
                executor.rollback(item[1])
                self.shared.replies.clear()  # speculative replies past the rollback are void
                self.rollbacks += 1
                self.last_seq = executor.last_seq
            else:  # a stable checkpoint: final up to it, older images are not served
                executor.commit_upto(item[1])
                executor.release_images_below(item[1])
                if self.state_transfer is not None:
                    self.state_transfer.forget_served_below(item[1])
                if self.persist_ring is not None and len(item) > 3:
                    # (E_COMMIT, seq, state_digest, proof): persisted with the ledger
                    self._to_persist.append((P_CHECKPOINT, item[1], item[2], item[3]))
                    if self.compact_blocks and item[1] - self.compacted_from >= self.compact_blocks:
                        self._compact(item[1])
        st = self.state_transfer
        if st is not None and st.target is not None:
            st.reached(executor.last_seq)  # caught up by batches: stop asking
        if self._state_deadline is not None and time.monotonic() >= self._state_deadline:
            self._poll_state_timer(replies, feedback)
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

    # --- state transfer -------------------------------------------------------------------
    def _poll_state_timer(self, replies: list[Any], feedback: list[Any]) -> None:
        deadline = self._state_deadline
        if deadline is not None and time.monotonic() >= deadline:
            self._state_deadline = None
            self._state_outputs(self.state_transfer.timeout(), replies, feedback)

    def _state_outputs(self, outs: list[Any], replies: list[Any], feedback: list[Any]) -> None:
        for o in outs:
            t = type(o)
            if t is Out:
                replies.append((o.to, o.msg))  # the output ring takes (destination, message)
            elif t is Arm:
                self._state_deadline = time.monotonic() + o.ticks * self.tick_s
            elif t is Installed:
                self._install(o, feedback)

    def _install(self, done: Installed, feedback: list[Any]) -> None:
        executor = self.executor
        image = done.image
        if executor.last_seq >= image.seq:
            self.drops["state_not_needed"] += 1  # caught up by batches meanwhile
            return
        digest = executor.install_image(image)
        self.restored_upto = image.seq
        self.shared.replies.clear()  # replies cached for seqs the image replaced
        self.last_seq = image.seq
        self.states_installed += 1
        self.persist_base(image.seq, image.ledger_head, image.encode())
        feedback.append((C_STATE_INSTALLED, image.seq, digest, done.proof))
