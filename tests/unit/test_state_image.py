"""fabric.runtime.state_image and the Executor's images: the checkpoint digest commits to the
whole state (ledger head, store, replay state), images at kept checkpoints, install, codec."""

from __future__ import annotations

import dataclasses
import random

import pytest

from fabric.runtime import state_image
from fabric.runtime.execute import Executor
from fabric.runtime.state_image import (
    ClientImage,
    ImageError,
    StateImage,
    decode_image,
)
from protocols.common import Batch, Request, make_batch
from workloads.txn import INSERT, READ, RMW, UPDATE, encode_txns

RC, VS = 50, 8


def _batch(rng: random.Random, seq: int, clients: int = 4) -> Batch:
    reqs = []
    for c in range(rng.randint(1, 3)):
        cid = 10 + rng.randrange(clients)
        txns = []
        for _ in range(rng.randint(1, 4)):
            op = rng.choice((READ, UPDATE, RMW, INSERT))
            key = rng.randrange(RC + 20)
            txns.append((op, key) if op == READ else (op, key, b"v%d.%d" % (seq, c)))
        # repeated timestamps now and then: replays must not change the state
        ts = seq if rng.random() < 0.9 else max(1, seq - 1)
        reqs.append(Request(cid, ts, encode_txns(txns), b""))
    return make_batch(tuple(reqs))


def _executors(**kw: int) -> tuple[Executor, Executor]:
    return Executor(RC, VS, replay_window=3, **kw), Executor(RC, VS, replay_window=3, **kw)


def test_digest_equals_image_digest_and_commits_to_the_store() -> None:
    rng = random.Random(1)
    ex = Executor(RC, VS, replay_window=3)
    for seq in range(1, 40):
        ex.apply(seq, _batch(rng, seq))
        image = ex.export_image()
        assert image.digest() == ex.state_digest(), seq
    # the same ledger head with a different store is a different state
    image = ex.export_image()
    key, value = image.store[0]
    other = dataclasses.replace(image, store=((key, value + b"x"), *image.store[1:]))
    assert other.digest() != image.digest() and other.ledger_head == image.ledger_head
    c = image.clients[0]
    moved = dataclasses.replace(c, results=tuple(reversed(c.results)))  # order is committed
    assert (
        dataclasses.replace(image, clients=(moved, *image.clients[1:])).digest() != image.digest()
    )


def test_kept_checkpoint_image_equals_a_replica_that_stopped_there() -> None:
    rng = random.Random(2)
    batches = [_batch(rng, s) for s in range(1, 31)]
    ex = Executor(RC, VS, replay_window=3, checkpoint_period=5, max_images=8)
    for seq, b in enumerate(batches, 1):
        ex.apply(seq, b)
    assert ex.image_seqs() == [5, 10, 15, 20, 25, 30]
    for at in ex.image_seqs():
        ref = Executor(RC, VS, replay_window=3)
        for seq, b in enumerate(batches[:at], 1):
            ref.apply(seq, b)
        image = ex.export_image(at)
        assert image == ref.export_image()
        assert image.digest() == ref.state_digest() == ex.image_digest(at)
    assert ex.release_images_below(20) == 3 and ex.image_seqs() == [20, 25, 30]
    with pytest.raises(KeyError):
        ex.export_image(15)


def test_install_then_continue_matches_the_replica_that_executed_everything() -> None:
    rng = random.Random(3)
    batches = [_batch(rng, s) for s in range(1, 41)]
    ref, fresh = _executors(checkpoint_period=10)
    expected = [ref.apply(seq, b) for seq, b in enumerate(batches, 1)]
    image = decode_image(ref.export_image(30).encode())
    assert fresh.install_image(image) == image.digest()
    assert fresh.last_seq == 30 and fresh.ledger.base_seq == 30 and fresh.ledger.chain() == []
    assert fresh.image_seqs() == [30]
    for seq, b in enumerate(batches[30:], 31):
        assert fresh.apply(seq, b) == expected[seq - 1]  # replays, stale ones, reads: all equal
    assert fresh.state_digest() == ref.state_digest()
    assert fresh.ledger.chain() == ref.ledger.chain()[30:]
    assert fresh.ledger.hash_at(30) == ref.ledger.hash_at(30)


def test_rollback_restores_the_digest_and_voids_later_images() -> None:
    rng = random.Random(4)
    ex = Executor(RC, VS, replay_window=2, checkpoint_period=3)
    for seq in range(1, 7):
        ex.apply(seq, _batch(rng, seq))
    before = ex.state_digest()
    image6 = ex.export_image(6)
    for seq in range(7, 14):
        ex.apply(seq, _batch(rng, seq), speculative=True)
    assert 9 in ex.image_seqs() and 12 in ex.image_seqs()
    assert ex.rollback(6) == 7
    assert ex.state_digest() == before == image6.digest()
    assert ex.export_image() == image6 and max(ex.image_seqs()) == 6
    # and the same speculative batches re-applied give the same digest as a fresh run
    rng2 = random.Random(5)
    again = [_batch(rng2, s) for s in range(7, 14)]
    ref = Executor(RC, VS, replay_window=2)
    ref.install_image(image6)
    for seq, b in zip(range(7, 14), again, strict=True):
        ex.apply(seq, b, speculative=True)
        ref.apply(seq, b)
    assert ex.state_digest() == ref.state_digest()


def test_decode_refuses_malformed_images(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = Executor(RC, VS)
    ex.apply(1, _batch(random.Random(6), 1))
    good = ex.export_image().encode()
    assert decode_image(good) == ex.export_image()
    for bad in (b"", b"\xc1", good[:-3], b"\x95" + good[1:2], b"\x80"):
        with pytest.raises(ImageError):
            decode_image(bad)
    image = ex.export_image()
    unsorted = dataclasses.replace(image, store=tuple(reversed(image.store)))
    if len(image.store) > 1:
        with pytest.raises(ImageError):
            decode_image(unsorted.encode())
    dup = StateImage(1, bytes(32), (), (ClientImage(5, -1, 2, ((1, bytes(32)), (1, bytes(32)))),))
    with pytest.raises(ImageError, match="duplicate"):
        decode_image(dup.encode())
    monkeypatch.setattr(state_image, "MAX_IMAGE_BYTES", len(good) - 1)
    with pytest.raises(ImageError, match="too_long"):
        decode_image(good)


def test_an_image_installed_over_a_used_executor_keeps_no_trace_of_its_past() -> None:
    """An executor with a history of its own (its accumulators folded after every batch)
    takes an image of another history: from then on its digest is the image's and the
    other replica's, batch after batch (nothing of what it folded before survives)."""
    rng = random.Random(6)
    used, ref = _executors()
    for seq in range(1, 25):  # used: its own history, a digest (so a fold) after each batch
        used.apply(seq, _batch(rng, seq))
        used.state_digest()
    batches = [_batch(rng, s) for s in range(1, 41)]
    for seq, b in enumerate(batches, 1):
        ref.apply(seq, b)
        if seq == 20:
            image = ref.export_image()
    used.install_image(image)
    for seq, b in enumerate(batches[20:], 21):
        used.apply(seq, b)
        assert used.state_digest() == used.export_image().digest(), seq
    assert used.state_digest() == ref.state_digest()
