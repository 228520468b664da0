"""fabric.runtime.state_transfer: replicas joined by a fake link (no sockets, no sleeps) fetch
a certified image in chunks; a lying, empty or silent peer is counted and the next one asked."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from fabric.runtime.execute import Executor
from fabric.runtime.state_transfer import Arm, Installed, Out, StateTransfer, executor_images
from protocols import codec
from protocols.common import Request, make_batch
from protocols.state_transfer import StateChunk, StateRequest
from workloads.txn import RMW, UPDATE, encode_txns

N = 4
CHUNK = 128


def _executor(batches: int, seed: int = 1) -> Executor:
    rng = random.Random(seed)
    ex = Executor(200, 16, checkpoint_period=5)
    for seq in range(1, batches + 1):
        txns = [(rng.choice((UPDATE, RMW)), rng.randrange(200), b"v%d" % seq) for _ in range(8)]
        ex.apply(seq, make_batch((Request(10 + seq % 3, seq, encode_txns(txns), b""),)))
    return ex


class Link:
    """Replicas' StateTransfers; messages are encoded and decoded like on the wire."""

    def __init__(self, servers: dict[int, Any]) -> None:
        self.st = {
            r: StateTransfer(r, N, src, chunk_bytes=CHUNK, retry_ticks=3)
            for r, src in servers.items()
        }
        self.silent: set[int] = set()
        self.installed: list[Installed] = []
        self.armed = 0
        self.sent = 0

    def run(self, outs: list[Any], sender: int) -> None:
        queue = [(sender, o) for o in outs]
        while queue:
            frm, o = queue.pop(0)
            if type(o) is Installed:
                self.installed.append(o)
            elif type(o) is Arm:
                self.armed += 1
            elif type(o) is Out:
                self.sent += 1
                if o.to in self.silent:
                    continue
                kind, body = codec.kind_and_body(o.msg)
                msg = codec.decode_body(kind, body)
                queue += [(o.to, x) for x in self.st[o.to].receive(frm, msg)]


def _sources(ex: Executor, liar: Executor | None = None) -> dict[int, Any]:
    src = {r: executor_images(ex) for r in range(1, N)}
    if liar is not None:
        src[1] = executor_images(liar)
    src[0] = lambda seq: None
    return src


def test_a_fetched_image_is_assembled_in_chunks_verified_and_installed() -> None:
    ex = _executor(20)
    link = Link(_sources(ex))
    digest = ex.image_digest(15)
    assert digest is not None
    link.run(link.st[0].fetch(15, digest, ()), 0)
    (done,) = link.installed
    assert done.image == ex.export_image(15) and done.digest == digest
    counts = link.st[0].counts
    assert counts["chunks_received"] == -(-len(done.image.encode()) // CHUNK) > 3
    fresh = Executor(200, 16)
    assert fresh.install_image(done.image) == digest
    assert not link.st[0].fetching


def test_a_lying_peer_is_discarded_counted_and_the_next_one_asked() -> None:
    ex = _executor(20)
    liar = _executor(20, seed=2)  # another state at the same seq
    link = Link(_sources(ex, liar))
    digest = ex.image_digest(15)
    link.run(link.st[0].fetch(15, digest, ()), 0)
    assert link.st[0].counts["digest_mismatch"] == 1  # peer 1 asked first, refused
    assert [i.image.digest() for i in link.installed] == [digest]


def test_a_peer_lying_in_the_bytes_only_is_caught_by_the_certified_digest() -> None:
    ex = _executor(20)
    real = executor_images(ex)

    def forged(seq: int) -> tuple[bytes, bytes] | None:
        got = real(seq)
        assert got is not None
        image = ex.export_image(seq)
        key, value = image.store[0]
        bad = dataclasses.replace(image, store=((key, value + b"!"), *image.store[1:]))
        return bad.encode(), got[1]  # claims the right digest

    src = _sources(ex)
    src[1] = forged
    link = Link(src)
    digest = ex.image_digest(15)
    link.run(link.st[0].fetch(15, digest, ()), 0)
    assert link.st[0].counts["digest_mismatch"] == 1
    assert len(link.installed) == 1 and link.installed[0].image == ex.export_image(15)


def test_a_peer_without_the_image_or_silent_is_skipped() -> None:
    ex = _executor(20)
    src = _sources(ex)
    src[1] = lambda seq: None
    link = Link(src)
    link.silent.add(2)
    digest = ex.image_digest(15)
    link.run(link.st[0].fetch(15, digest, ()), 0)
    st = link.st[0]
    assert st.counts["peer_has_no_image"] == 1 and not link.installed and st.peer == 2
    link.run(st.timeout(), 0)  # nothing came from 2 for a whole period
    assert st.counts["peer_timeout"] == 1 and len(link.installed) == 1


def test_signers_are_asked_first_and_bad_sizes_are_refused() -> None:
    ex = _executor(20)
    st = StateTransfer(0, N, lambda s: None, chunk_bytes=CHUNK, max_image_bytes=10_000)

    @dataclasses.dataclass
    class Vote:
        replica: int

    outs = st.fetch(15, ex.image_digest(15) or b"", (Vote(3), Vote(2), Vote(0)))
    assert [o.to for o in outs if type(o) is Out] == [3] and st._peers == [3, 2, 1]
    assert [type(o.msg) for o in outs if type(o) is Out] == [StateRequest]
    huge = StateChunk(15, 0, 1 << 20, (1 << 20) * CHUNK, bytes(32), b"x", 3)
    st.receive(3, huge)
    assert st.counts["bad_sizes"] == 1 and st.peer == 2  # refused before any memory is held
    assert st.fetch(10, b"", ()) == [] and st.counts["fetch_superseded"] == 1


def test_execute_stages_serve_fetch_install_and_skip_below_the_image() -> None:
    """The runtime's wiring: E_FETCH_STATE / E_STATE_MSG through ExecuteStage.apply_items on
    both sides; the install is announced (C_STATE_INSTALLED) and Delivers below it skipped."""
    from fabric.runtime.ring import Ring
    from fabric.runtime.stages.base import (
        C_STATE_INSTALLED,
        E_DELIVER,
        E_FETCH_STATE,
        E_STATE_MSG,
        ReplicaShared,
    )
    from fabric.runtime.stages.execute import ExecuteStage

    def stage(me: int, ex: Executor) -> ExecuteStage:
        st = StateTransfer(me, N, executor_images(ex), chunk_bytes=CHUNK)
        rings = [Ring(64, f"r{k}") for k in range(3)]
        return ExecuteStage("execute", ReplicaShared(me, N), ex, *rings, N, state_transfer=st)

    server = _executor(20)
    digest = server.image_digest(15)
    stages = {1: stage(1, server), 0: stage(0, Executor(200, 16, checkpoint_period=5))}
    replies, feedback = stages[0].apply_items([(E_FETCH_STATE, 15, digest, ())])
    installed = []
    for _ in range(100):
        if not replies:
            break
        nxt: list[Any] = []
        for to, msg in replies:
            src = 1 - to
            r, f = stages[to].apply_items([(E_STATE_MSG, src, msg)])
            nxt += r
            installed += [x for x in f if x[0] == C_STATE_INSTALLED]
        replies = nxt
    assert installed == [(C_STATE_INSTALLED, 15, digest, ())]
    fresh = stages[0]
    assert fresh.executor.last_seq == 15 and fresh.restored_upto == 15
    # the protocol had delivered seq 14 before it heard of the install: skipped, counted
    rng = random.Random(9)
    b16 = make_batch((Request(10, 16, encode_txns([(UPDATE, rng.randrange(200), b"x")]), b""),))
    fresh.apply_items([(E_DELIVER, 14, 0, b16, False), (E_DELIVER, 16, 0, b16, False)])
    assert fresh.skipped_below_install == 1 and fresh.executor.last_seq == 16


def test_a_round_of_peers_without_the_image_pauses_until_the_timer() -> None:
    """Peers keep images from their stable checkpoint on: when none has the one asked for,
    the fetcher waits a retry period before the next round (no tight request loop), and a
    fetch execution overtook is dropped."""
    src: dict[int, Any] = {r: (lambda seq: None) for r in range(N)}
    link = Link(src)
    st = link.st[0]
    link.run(st.fetch(15, bytes(32), ()), 0)
    asked = st.counts["chunks_asked"]
    assert asked == N - 1 and st.counts["peer_rounds"] == 1 and st.fetching
    assert link.sent == 2 * (N - 1)  # one request and one "no image" answer per peer
    link.run(st.timeout(), 0)  # the pause is over: one more round
    assert st.counts["chunks_asked"] == 2 * asked and st.counts["peer_rounds"] == 2
    st.reached(14)
    assert st.fetching
    st.reached(15)
    assert not st.fetching and st.counts["fetch_cancelled"] == 1
