"""Recovery on start: a store's checked records -> the executor's state.

``recover_into(executor, store)`` streams what the store holds (``scan()``: each block is
checked, hash, link and record digest, before it is handed over, and a bad one raises
CorruptLedgerError naming the file and that block, so nothing unchecked is ever applied;
memory holds one block at a time, not the file), installs the base image if a state
transfer left one (fabric.runtime.state_image), then has the executor redo every block after
it (``Executor.redo``: the executor's own code, not a copy). On a refusal the executor holds
a partial state: the replica does not start, so it is discarded with it. It returns what the protocol
needs to resume: the seq and state digest now held, and the newest certified checkpoint.

Must not live here: reading files (the backends), threads, protocol calls (the replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fabric.runtime.storage.base import CheckpointRecord, LedgerStore


@dataclass(frozen=True, slots=True)
class RecoveredState:
    path: str
    seq: int  # the last block now executed (0: the store was empty)
    state_digest: bytes  # executor.state_digest() after recovery
    checkpoint: CheckpointRecord | None  # the newest certified checkpoint at or below seq
    base_seq: int  # 0, or the seq of the state image blocks were redone from
    blocks: int  # blocks redone


def recover_into(executor: Any, store: LedgerStore) -> RecoveredState:
    """Reinstall what ``store`` holds into a fresh ``executor`` (see the module comment)."""
    if executor.last_seq != 0:
        raise ValueError(f"recovery needs a fresh executor (it holds seq {executor.last_seq})")
    scan = store.scan()
    base_seq = 0
    if scan.base is not None:
        from fabric.runtime.state_image import StateImage

        executor.install_image(StateImage.decode(scan.base.image))
        base_seq = scan.base.seq
    redone = 0
    for r in scan.blocks:
        executor.redo(r.seq, r.view, r.batch_digest, r.results_digest, r.writes, r.clients)
        redone += 1
    seq = executor.last_seq
    store.last_seq = seq
    checkpoint = next((c for c in reversed(scan.checkpoints) if c.seq <= seq), None)
    return RecoveredState(scan.path, seq, executor.state_digest(), checkpoint, base_seq, redone)
