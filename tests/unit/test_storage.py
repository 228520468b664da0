"""fabric.runtime.storage and the persist stage: round trip per backend, recovery refuses a
corrupt or truncated ledger by file and block, a full disk fails loudly, only final blocks are
persisted, and a full persist ring pushes back on the execute stage."""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric.runtime.execute import Executor
from fabric.runtime.ring import Ring
from fabric.runtime.stages import E_COMMIT, E_DELIVER, ExecuteStage, ReplicaShared
from fabric.runtime.stages.base import P_BASE, P_BLOCK, P_CHECKPOINT
from fabric.runtime.stages.persist import PersistStage, block_record, decode_proof, encode_proof
from fabric.runtime.storage import (
    BACKENDS,
    SYNC_POLICIES,
    CheckpointRecord,
    CorruptLedgerError,
    LedgerStore,
    MemoryStore,
    StorageFullError,
    ledger_file,
    open_store,
)
from fabric.runtime.storage.base import is_full_errno
from fabric.runtime.storage.recovery import recover_into
from protocols.checkpoints import Checkpoint
from protocols.common import Batch, Request, make_batch
from workloads.txn import encode_txns
from workloads.ycsb import YcsbGenerator

RC, VS = 1_000, 32
DURABLE = ("sqlite", "lmdb")


def batches(count: int, seed: int = 1, mix: str = "a") -> list[Batch]:
    gen = YcsbGenerator(seed=seed, record_count=RC, value_size=VS, mix=mix)
    return [
        make_batch(
            tuple(
                Request(100 + c, s, encode_txns(gen.next_txns(10)), b"")
                for c in range(3)  # three clients per batch
            )
        )
        for s in range(1, count + 1)
    ]


def batch_stream(seed: int = 1) -> Iterator[Batch]:
    """``batches`` without an end, made as they are taken."""
    gen = YcsbGenerator(seed=seed, record_count=RC, value_size=VS, mix="a")
    for s in itertools.count(1):
        yield make_batch(
            tuple(Request(100 + c, s, encode_txns(gen.next_txns(10)), b"") for c in range(3))
        )


def executor(**kw: Any) -> Executor:
    return Executor(RC, VS, replay_window=8, **kw)


def state_of(ex: Executor) -> tuple[Any, ...]:
    clients = {cid: (dict(st.results), st.floor) for cid, st in ex._clients.items()}
    return dict(ex._store), clients, ex.ledger.chain(), ex.state_digest(), ex.last_seq


def store_at(kind: str, tmp_path: Path, **kw: Any) -> LedgerStore:
    return open_store(
        kind, ledger_file(tmp_path / "replica-0", kind) if kind != "memory" else None, **kw
    )


def persist_all(ex: Executor, store: LedgerStore) -> int:
    entries = ex.take_final()
    store.write([block_record((0, *e)) for e in entries])
    return len(entries)


def test_backends_and_policies_match_the_config_rules() -> None:
    from fabric.harness.config import _RULES

    assert "memory | sqlite | lmdb" == _RULES["ledger.storage"].allowed()
    assert " | ".join(SYNC_POLICIES) == _RULES["ledger.sync"].allowed()
    assert BACKENDS == ("memory", "sqlite", "lmdb")


@pytest.mark.parametrize("kind", DURABLE)
@pytest.mark.parametrize("sync", SYNC_POLICIES)
def test_round_trip_recovers_the_same_state(kind: str, sync: str, tmp_path: Path) -> None:
    ex = executor(record_changes=True)
    store = store_at(kind, tmp_path, sync=sync, max_blocks_per_txn=7)
    for seq, b in enumerate(batches(40), 1):
        ex.apply(seq, b)
        if seq % 9 == 0:
            persist_all(ex, store)
    persist_all(ex, store)
    store.write_checkpoint(CheckpointRecord(30, ex.ledger.hash_at(30), (b"vote-a", b"vote-b")))
    assert store.last_seq == 40
    assert store.transactions == (40 if sync == "every_block" else 9)  # 5 chunks of <= 7 blocks
    store.close()

    again = open_store(kind, ledger_file(tmp_path / "replica-0", kind))
    fresh = executor(record_changes=True)
    got = recover_into(fresh, again)
    assert state_of(fresh) == state_of(ex)
    assert got.seq == 40 and got.blocks == 40 and got.state_digest == ex.state_digest()
    assert got.checkpoint == CheckpointRecord(30, ex.ledger.hash_at(30), (b"vote-a", b"vote-b"))
    assert fresh.take_final() == []  # redone blocks are not persisted again
    # and it goes on from there exactly like the original
    more = batches(45)[40:]
    for seq, b in enumerate(more, 41):
        assert fresh.apply(seq, b) == ex.apply(seq, b)
    assert state_of(fresh) == state_of(ex)
    again.close()


def test_memory_store_round_trip() -> None:
    ex = executor(record_changes=True)
    store = MemoryStore()
    for seq, b in enumerate(batches(12, mix="d"), 1):  # inserts
        ex.apply(seq, b)
    persist_all(ex, store)
    fresh = executor()
    recover_into(fresh, store)
    assert state_of(fresh) == state_of(ex)


def test_only_final_blocks_are_persisted(tmp_path: Path) -> None:
    """PoE: speculative blocks wait for commit_upto; rolled-back ones never reach storage."""
    bs = batches(10)
    ex = executor(record_changes=True)
    ref = executor()
    for seq in range(1, 4):
        ex.apply(seq, bs[seq - 1])
        ref.apply(seq, bs[seq - 1])
    for seq in range(4, 8):
        ex.apply(seq, bs[seq - 1], speculative=True)
    assert [e[0].seq for e in ex.take_final()] == [1, 2, 3]
    ex.commit_upto(5)
    assert [e[0].seq for e in ex.take_final()] == [4, 5]
    ex.rollback(5)  # 6 and 7 are undone: never persisted
    other = batches(10, seed=2)
    ex.apply(6, other[5], speculative=True)
    ex.apply(7, other[6])  # final: 6 becomes final with it
    assert [e[0].seq for e in ex.take_final()] == [6, 7]
    assert ex.take_final() == []


def test_speculative_changes_record_the_values_of_their_own_block() -> None:
    """A key a later speculative block overwrites is persisted with the earlier block's value."""
    ex = executor(record_changes=True)
    ref = executor(record_changes=True)
    bs = batches(6)
    for seq, b in enumerate(bs, 1):
        ex.apply(seq, b, speculative=True)
        ref.apply(seq, b)
    ex.commit_upto(6)
    assert ex.take_final() == ref.take_final()


@pytest.mark.parametrize("kind", [*DURABLE, "memory"])
def test_a_flipped_byte_in_a_block_is_refused_naming_file_and_block(
    kind: str, tmp_path: Path
) -> None:
    ex = executor(record_changes=True)
    store = store_at(kind, tmp_path)
    for seq, b in enumerate(batches(30), 1):
        ex.apply(seq, b)
    persist_all(ex, store)
    target = ex.ledger.recent_blocks()[16]  # block 17
    assert target.seq == 17
    if kind == "memory":
        raw = bytearray(store.blocks[17])  # type: ignore[attr-defined]
        at = raw.find(target.batch_digest)
        raw[at + 3] ^= 0x40
        store.blocks[17] = bytes(raw)  # type: ignore[attr-defined]
        path = store.path
    else:
        store.close()
        path = str(ledger_file(tmp_path / "replica-0", kind))
        data = bytearray(Path(path).read_bytes())
        at = data.find(target.batch_digest)
        assert at >= 0
        while at >= 0:  # LMDB may keep a freed copy of the page: flip every copy
            data[at + 3] ^= 0x40
            at = data.find(target.batch_digest, at + 1)
        Path(path).write_bytes(bytes(data))
        store = open_store(kind, path)
    fresh = executor()
    with pytest.raises(CorruptLedgerError) as err:
        recover_into(fresh, store)
    assert err.value.seq == 17
    assert path in str(err.value) and "block 17" in str(err.value)
    # recovery streams: blocks before the bad one were redone (the replica refuses to start
    # and discards this executor), nothing from block 17 on
    assert fresh.last_seq == 16


@pytest.mark.parametrize("kind", DURABLE)
def test_a_truncated_file_is_refused_naming_the_file(kind: str, tmp_path: Path) -> None:
    ex = executor(record_changes=True)
    store = store_at(kind, tmp_path)
    for seq, b in enumerate(batches(60), 1):
        ex.apply(seq, b)
    persist_all(ex, store)
    store.close()
    path = ledger_file(tmp_path / "replica-0", kind)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CorruptLedgerError) as err:
        recover_into(executor(), open_store(kind, path))
    message = str(err.value)
    assert str(path) in message and "block 1" in message, message
    assert err.value.seq == 1  # nothing in a torn file can be trusted


def test_missing_tail_blocks_are_refused_by_the_head_record() -> None:
    ex = executor(record_changes=True)
    store = MemoryStore()
    for seq, b in enumerate(batches(10), 1):
        ex.apply(seq, b)
    persist_all(ex, store)
    del store.blocks[10], store.blocks[9]
    with pytest.raises(CorruptLedgerError, match="block 9: truncated: the head says block 10"):
        store.recover()
    del store.blocks[5]
    with pytest.raises(CorruptLedgerError, match="block 5: block missing"):
        store.recover()


def test_a_full_file_cap_raises_storage_full(tmp_path: Path) -> None:
    for kind in DURABLE:
        ex = executor(record_changes=True)
        store = open_store(kind, tmp_path / kind / "ledger", max_file_mb=1)
        with pytest.raises(StorageFullError, match="full") as err:
            for seq, b in zip(range(1, 100_000), batch_stream(), strict=False):
                ex.apply(seq, b)
                if seq % 50 == 0:
                    persist_all(ex, store)
        assert str(tmp_path / kind / "ledger") in str(err.value)
        store.close()


def test_enospc_counts_as_full() -> None:
    inner = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("write failed") from exc
    except RuntimeError as outer:
        assert is_full_errno(outer)
    assert not is_full_errno(RuntimeError("other"))


class _FullStore(MemoryStore):
    def _write_txn(self, records: Any) -> None:
        raise StorageFullError(self.path, "disk full: [Errno 28] No space left on device")


def test_persist_stage_dies_loudly_on_a_full_disk() -> None:
    shared = ReplicaShared(2, 4)
    ring = Ring(64, "persist")
    stage = PersistStage("persist", shared, _FullStore(), ring)
    ex = executor(record_changes=True)
    ex.apply(1, batches(1)[0])
    ring.push_many([(P_BLOCK, *e) for e in ex.take_final()], 1.0)
    stage.start()
    assert shared.stop.wait(5.0)
    stage.join(5.0)
    assert len(shared.fatal) == 1 and "persist" in shared.fatal[0]
    assert "No space left on device" in shared.fatal[0]


def test_persist_stage_writes_blocks_and_certificates_in_bounded_transactions() -> None:
    shared = ReplicaShared(0, 4)
    ring = Ring(256, "persist")
    store = MemoryStore(max_blocks_per_txn=16)
    stage = PersistStage("persist", shared, store, ring)
    ex = executor(record_changes=True)
    for seq, b in enumerate(batches(100), 1):
        ex.apply(seq, b)
    vote = Checkpoint(0, 100, ex.state_digest(), 3, b"s" * 64)
    items = [(P_BLOCK, *e) for e in ex.take_final()] + [
        (P_CHECKPOINT, 100, ex.state_digest(), [vote])
    ]
    stage.start()
    ring.push_many(items, 1.0)
    deadline = time.monotonic() + 5.0
    while stage.checkpoints < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    shared.stop.set()
    stage.join(5.0)
    assert stage.blocks == 100 and store.last_seq == 100
    assert all(n <= 16 for n in [store.max_blocks_per_txn])
    assert store.transactions >= 100 // 16
    rec = store.recover()
    assert rec.last_seq == 100 and rec.head == ex.ledger.head
    cp = rec.last_checkpoint()
    assert cp is not None and decode_proof(cp.proof) == [vote]
    assert encode_proof(()) == ()


def test_a_full_persist_ring_pushes_back_on_the_execute_stage() -> None:
    """The execute stage parks on a full persist ring (the ring never grows), and resumes
    as soon as the persist stage drains it."""
    shared = ReplicaShared(0, 4)
    execute_ring, output_ring = Ring(1024, "execute"), Ring(4096, "output")
    checkpoint_ring, persist_ring = Ring(1024, "checkpoint"), Ring(64, "persist")
    ex = executor(record_changes=True)
    stage = ExecuteStage(
        "execute", shared, ex, execute_ring, output_ring, checkpoint_ring, 4, persist_ring
    )
    bs = batches(300)
    execute_ring.push_many(
        [(E_DELIVER, seq, 0, b, False) for seq, b in enumerate(bs, 1)]
        + [(E_COMMIT, 300, b"d" * 32, ())],
        1.0,
    )
    stage.start()
    deadline = time.monotonic() + 5.0
    while len(persist_ring) < 64 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(persist_ring) == 64 and persist_ring.capacity == 64
    assert ex.last_seq < 300  # the execute stage waits for the disk
    store = MemoryStore()
    persist = PersistStage("persist", shared, store, persist_ring)
    persist.start()
    deadline = time.monotonic() + 10.0
    while persist.checkpoints < 1 and time.monotonic() < deadline:
        output_ring.pop_many(4096, 0)
        checkpoint_ring.pop_many(1024, 0)
        time.sleep(0.01)
    shared.stop.set()
    for r in (execute_ring, output_ring, checkpoint_ring, persist_ring):
        r.close()
    stage.join(5.0)
    persist.join(5.0)
    assert not shared.fatal
    assert persist.blocks == 300 and ex.last_seq == 300
    assert store.recover().last_checkpoint() == CheckpointRecord(300, b"d" * 32, ())


def test_an_installed_state_image_replaces_the_blocks_before_it_in_order() -> None:
    """persist_base (after a state transfer): blocks before the image are written first, the
    image then replaces them, blocks after it follow; recovery starts from the image."""
    shared = ReplicaShared(0, 4)
    persist_ring = Ring(64, "persist")
    ex = executor(record_changes=True)
    stage = ExecuteStage(
        "execute", shared, ex, Ring(64, "e"), Ring(64, "o"), Ring(64, "c"), 4, persist_ring
    )
    bs = batches(5)
    stage.apply_items([(E_DELIVER, s, 0, bs[s - 1], False) for s in (1, 2, 3)])
    stage.persist_base(3, ex.ledger.head, b"image-at-3")
    stage.apply_items([(E_DELIVER, s, 0, bs[s - 1], False) for s in (4, 5)])
    items = stage.take_persist()
    assert [(i[0], i[1] if i[0] != P_BLOCK else i[1].seq) for i in items] == [
        (P_BLOCK, 1),
        (P_BLOCK, 2),
        (P_BLOCK, 3),
        (P_BASE, 3),
        (P_BLOCK, 4),
        (P_BLOCK, 5),
    ]
    assert stage.take_persist() == []
    store = MemoryStore()
    PersistStage("persist", shared, store, persist_ring).persist(items)
    rec = store.recover()
    assert rec.base is not None and (rec.base.seq, rec.base.image) == (3, b"image-at-3")
    assert [b.seq for b in rec.blocks] == [4, 5] and rec.head == ex.ledger.head


def test_a_clean_stop_drains_the_ring_in_bounded_transactions_even_under_every_block() -> None:
    shared = ReplicaShared(0, 4)
    ring = Ring(256, "persist")
    store = MemoryStore(sync="every_block", max_blocks_per_txn=64)
    assert store.max_blocks_per_txn == 1  # while running: one transaction (fsync) per block
    ex = executor(record_changes=True)
    for seq, b in enumerate(batches(200), 1):
        ex.apply(seq, b)
    ring.push_many([(P_BLOCK, *e) for e in ex.take_final()], 1.0)
    shared.stop.set()  # stopped before it ever ran: everything is left to the drain
    stage = PersistStage("persist", shared, store, ring)
    stage.start()
    stage.join(5.0)
    assert not stage.is_alive() and stage.blocks == 200
    assert store.transactions == 4  # 64 + 64 + 64 + 8
    assert store.recover().last_seq == 200


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Any:
    """A 9 MiB tmpfs mounted for this test (root only; skipped elsewhere), always unmounted."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


@pytest.mark.parametrize("kind", DURABLE)
def test_a_really_full_filesystem_is_refused_by_name_and_what_was_written_recovers(
    kind: str, tiny_filesystem: Path
) -> None:
    """9 MiB of disk, an 8 MiB margin: the store stops with StorageFullError naming the file
    (LMDB would otherwise fault the process on a page of its map), and every block committed
    before it recovers."""
    from fabric.runtime.storage.base import MIN_FREE_DISK_BYTES

    path = tiny_filesystem / f"ledger.{kind}"
    store = open_store(kind, path, max_file_mb=64)
    ex = executor(record_changes=True)
    with pytest.raises(StorageFullError) as err:
        for seq, b in zip(range(1, 100_000), batch_stream(), strict=False):
            ex.apply(seq, b)
            if seq % 20 == 0:
                persist_all(ex, store)
    assert f"{path}: disk full" in str(err.value)
    assert os.statvfs(tiny_filesystem).f_bavail * os.statvfs(tiny_filesystem).f_frsize < (
        MIN_FREE_DISK_BYTES
    )
    written = store.last_seq
    assert written > 0
    store.close()
    fresh = executor()
    assert recover_into(fresh, open_store(kind, path, max_file_mb=64)).seq == written
    assert fresh.ledger.chain() == ex.ledger.chain()[:written]


def test_the_inline_pipeline_hands_final_blocks_to_the_persist_ring_too() -> None:
    """execution.pipeline inline: the worker runs the execute stage's code, and so its
    hand-over to the persist ring (speculative blocks only once a stable checkpoint covers
    them, with the certificate after them)."""
    from fabric.runtime.stages import W_MSG, WorkerStage
    from protocols.base import ProtocolConfig
    from tests.unit.test_runner_stages import (
        DeliveringProtocol,
        FakeVerifier,
        Running,
        drain,
        req,
        worker_rings,
    )

    n = 4
    shared = ReplicaShared(1, n)
    rings = worker_rings()
    persist_ring = Ring(64, "persist")
    ex = Executor(100, 8, record_changes=True)
    proto = DeliveringProtocol(ProtocolConfig(replica_id=1, n=n), FakeVerifier(), ex)
    execute = ExecuteStage(
        "execute",
        shared,
        ex,
        rings["worker"],
        rings["output"],
        rings["checkpoint"],
        n,
        persist_ring,
    )
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01, inline=execute)
    with Running(worker, *rings.values(), persist_ring):
        rings["worker"].push_many([(W_MSG, 0, req(20)), (W_MSG, 0, req(21))])
        drain(rings["output"], 2)
        assert len(persist_ring) == 0  # speculative: not final yet
        rings["worker"].push((E_COMMIT, 2, b"d" * 32, ("vote",)))
        items = drain(persist_ring, 3)
    assert [i[0] for i in items] == [P_CHECKPOINT, P_BLOCK, P_BLOCK]
    assert [i[1].seq for i in items[1:]] == [1, 2] and items[0][1:] == (2, b"d" * 32, ("vote",))


_WRITER = r"""
import sys
from fabric.runtime.stages.persist import block_record
from fabric.runtime.storage import open_store
from tests.unit.test_storage import batch_stream, executor

kind, path, sync = sys.argv[1:4]
store = open_store(kind, path, sync, 8)
ex = executor(record_changes=True)
for seq, b in enumerate(batch_stream(), 1):
    ex.apply(seq, b)
    if seq % 8 == 0:
        store.write([block_record((0, *e)) for e in ex.take_final()])
        print(seq, flush=True)  # committed up to here
"""


@pytest.mark.parametrize("kind", DURABLE)
@pytest.mark.parametrize("sync", ["none", "batch"])
def test_a_writer_killed_mid_write_leaves_a_ledger_that_recovers(
    kind: str, sync: str, tmp_path: Path
) -> None:
    """SIGKILL while the store commits (what failure kind restart does to a replica): the file
    reopens, every block it reported committed is there, and the chain checks."""
    import signal
    import subprocess
    import sys

    path = tmp_path / f"ledger.{kind}"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, kind, str(path), sync],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        committed = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            committed = int(line)
            if committed >= 400:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert committed >= 400
    store = open_store(kind, path)
    got = recover_into(executor(), store)
    store.close()
    assert got.seq >= committed  # nothing reported committed is lost
    reference = executor()
    for seq, b in zip(range(1, got.seq + 1), batch_stream(), strict=False):
        reference.apply(seq, b)
    assert got.state_digest == reference.state_digest()


@pytest.mark.parametrize("kind", [*DURABLE, "memory"])
def test_compaction_replaces_old_blocks_by_the_checkpoint_image_and_recovers(
    kind: str, tmp_path: Path
) -> None:
    """ledger.compact_blocks: at a stable checkpoint 30+ blocks past the stored base the
    store keeps the state image there and the blocks after it only; recovery installs the
    image, redoes the rest and reaches the live executor's state digest."""
    shared = ReplicaShared(0, 4)
    ex = executor(record_changes=True, checkpoint_period=10)
    stage = ExecuteStage(
        "execute",
        shared,
        ex,
        Ring(64, "e"),
        Ring(64, "o"),
        Ring(64, "c"),
        4,
        Ring(64, "persist"),
        compact_blocks=30,
    )
    store = store_at(kind, tmp_path)
    persist = PersistStage("persist", shared, store, Ring(64, "unused"))
    for seq, b in zip(range(1, 101), batch_stream(), strict=False):
        stage.apply_items([(E_DELIVER, seq, 0, b, False)])
        if seq % 10 == 3 and seq > 10:  # checkpoint seq - 3 became stable meanwhile
            stable = seq - 3
            stage.apply_items([(E_COMMIT, stable, ex.image_digest(stable), ())])
        persist.persist(stage.take_persist())
    # stable checkpoints at 10, 20, ..., 90: 30 blocks past the base at 30, 60, 90
    assert stage.compactions == 3 and persist.compactions == 3 and store.compactions == 3
    rec = store.recover()
    assert rec.base is not None and rec.base.seq == 90
    assert [b.seq for b in rec.blocks] == list(range(91, 101))
    if kind != "memory":
        store.close()
        store = open_store(kind, ledger_file(tmp_path / "replica-0", kind))
    fresh = executor(checkpoint_period=10)
    got = recover_into(fresh, store)
    assert (got.seq, got.base_seq, got.blocks) == (100, 90, 10)
    assert got.state_digest == ex.state_digest()
    assert fresh.ledger.chain() == ex.ledger.chain()[90:]
    assert got.checkpoint is not None and got.checkpoint.seq == 90
