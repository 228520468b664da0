"""Issue 19, findings 1-4 and the worker-raise check: the attack recipes against the runtime's
own pieces (wire decode, the input stage's pre-verification and fetch budget, the worker's
fetch-answer shedding, the held-message byte budget), without sockets. Each test names the
recipe it replays; each failed before the fix it checks.

The socket-level recipes (a client's 16.8 MB Batch through a real Receiver) are in
tests/integration/test_hostile.py.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import msgpack
import pytest

from fabric.runtime.ring import Ring
from fabric.runtime.stages import (
    W_MSG,
    InputStage,
    ReplicaShared,
    VerifiedCache,
    WorkerStage,
)
from protocols import codec, limits
from protocols.base import ProtocolConfig, Send
from protocols.common import Request, make_batch
from protocols.pbft import Pbft
from protocols.pbft.messages import Commit, Fetch, FetchReply, PrePrepare
from tests.unit.test_runner_stages import FakeReceiver, FakeVerifier, Running, drain
from transport import wire

pytestmark = pytest.mark.timeout(60)
N = 4


def batch_frame_of_minimal_requests(count: int, sender: int) -> bytes:
    """Finding 1's recipe: a Batch (kind 2) whose body is an array of ``count`` minimal
    Requests [0, 0, b"", b""] (7 bytes each); 2.4 million of them make ~16.8 MB."""
    item = b"\x94\x00\x00\xc4\x00\xc4\x00"
    body = b"\x92\xdd" + struct.pack("!I", count) + item * count + b"\xc4\x20" + b"d" * 32
    return wire.HEADER.pack(wire.MAGIC, wire.VERSION, 2, sender, len(body)) + body


# --- finding 1: client frames ----------------------------------------------------------


def test_a_client_batch_frame_is_refused_on_its_header() -> None:
    frame = batch_frame_of_minimal_requests(2_400_000, sender=N)
    assert len(frame) > 16_000_000
    policy = wire.FramePolicy(N, frozenset({Request.KIND}), limits.MAX_CLIENT_FRAME_BYTES)
    kind, sender, _ = wire.decode_header(frame, 32 * 1024 * 1024)
    assert policy.refuse(kind, sender, len(frame)) == "client_kind"
    ok = wire.encode(Request(N, 1, b"t" * 100, b"s" * 64), N)
    assert policy.refuse(Request.KIND, N, len(ok)) is None
    assert policy.refuse(Request.KIND, N, limits.MAX_CLIENT_FRAME_BYTES + 1) == "client_too_long"
    assert policy.refuse(kind, 1, len(frame)) is None  # a replica may send a Batch kind
    assert policy.refuse(kind, -1, len(frame)) == "bad_sender"


def test_an_array_longer_than_its_kind_allows_fails_in_the_unpacker() -> None:
    # the same recipe from a replica: the requests array claims 2.4 million items, more than
    # MAX_BATCH_REQUESTS, and msgpack refuses the array header before building any Request
    frame = batch_frame_of_minimal_requests(2_400_000, sender=1)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(frame, 32 * 1024 * 1024)
    assert info.value.reason == "body" and "array" in info.value.detail.lower()
    small = batch_frame_of_minimal_requests(3, sender=1)  # the same shape, within bounds
    assert len(wire.decode(small)[1].requests) == 3


def test_a_request_body_with_any_nested_array_is_refused() -> None:
    body = msgpack.packb([1, 1, [b"x"] * 5, b""], use_bin_type=True)
    frame = wire.HEADER.pack(wire.MAGIC, wire.VERSION, Request.KIND, N, len(body)) + body
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(frame)
    assert info.value.reason == "body"  # max_array_len 4 for a Request


# --- finding 3: every field bounded ----------------------------------------------------


def test_every_protocol_message_bounds_every_bytes_and_array_field() -> None:
    import protocols.pbft  # noqa: F401  (registers kinds)
    import protocols.poe  # noqa: F401
    import protocols.rcc  # noqa: F401

    for kind, cls in codec.registered_kinds().items():
        if cls.__module__.startswith("protocols."):
            assert codec.unbounded_fields(cls) == [], cls.__name__
            assert codec.max_body_of(kind) is not None, cls.__name__


def test_a_commit_with_an_8_mib_digest_is_refused_on_its_header() -> None:
    # finding 3's recipe: 150 Commits for a future view, each with an 8 MiB digest
    commit = Commit(0, 5, 1, b"d" * (8 * 1024 * 1024), 1)
    frame = wire.encode(commit, 1)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode_header(frame)
    assert info.value.reason == "too_long_for_kind"
    ok = wire.encode(Commit(0, 5, 1, b"d" * 32, 1), 1)
    assert wire.decode(ok) == (1, Commit(0, 5, 1, b"d" * 32, 1))


def test_a_field_over_its_bound_is_refused_even_when_the_kind_fits() -> None:
    body = msgpack.packb([1, 1, b"t", b"s" * 65], use_bin_type=True)  # a 65-byte signature
    frame = wire.HEADER.pack(wire.MAGIC, wire.VERSION, Request.KIND, N, len(body)) + body
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(frame)
    assert info.value.reason == "field_too_long"


def test_held_messages_are_bounded_in_bytes_too() -> None:
    # finding 3, second line of defence: PrePrepares for a future view, each with a large
    # (in-bound) request, from one backup; the count bound alone would let 2,500 of them in
    pbft = Pbft(ProtocolConfig(replica_id=0, n=N), FakeVerifier())
    pbft.max_held_bytes_per_sender = 1_000_000
    big = Request(N, 1, b"t" * 200_000, b"")
    for seq in range(1, 151):
        pbft.receive(1, PrePrepare(0, 5, seq, make_batch((big,))))  # view 5: primary 1
    assert pbft.held_bytes <= 1_000_000
    assert 0 < len(pbft.held) < 150
    assert pbft.ignored.get("held_bytes_full", 0) == 150 - len(pbft.held)


# --- finding 2: pre-verification -------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def junk_proposal(view: int, count: int, salt: int = 0) -> PrePrepare:
    reqs = tuple(Request(N + i % 3, salt * 10_000 + i, b"t%d" % i, b"j" * 64) for i in range(count))
    return PrePrepare(0, view, 1, make_batch(reqs))


def input_stage(clock: Clock | None = None) -> tuple[InputStage, FakeVerifier]:
    inner = FakeVerifier(bad=set(range(10**6)))  # every junk signature fails
    shared = ReplicaShared(0, N)
    stage = InputStage(
        "input-0",
        shared,
        FakeReceiver([]),
        [Ring(64, "w")],
        [],
        VerifiedCache(inner),
        clock=clock or time.monotonic,
    )
    return stage, inner


def test_a_proposal_from_a_non_primary_costs_no_verification() -> None:
    # finding 2's recipe: a PrePrepare from a backup that is not the primary, 900 requests
    # with junk 64-byte signatures
    stage, inner = input_stage()
    pp = junk_proposal(view=0, count=900)  # primary of view 0 is replica 0, sent by 2
    for _ in range(197):
        stage.pre_verify(2, pp, pp.batch)
    assert inner.calls == 0 and stage.preverify["not_from_proposer"] == 197


def test_a_junk_proposal_from_its_primary_costs_one_verification_then_none() -> None:
    stage, inner = input_stage()
    pp = junk_proposal(view=2, count=900)  # replica 2 is the primary of view 2
    for _ in range(10):
        stage.pre_verify(2, pp, pp.batch)
    assert inner.calls == 1  # stops at the first bad signature; replays remembered
    assert stage.cache.failures_remembered == 9


def test_a_wrong_digest_costs_no_verification() -> None:
    stage, inner = input_stage()
    pp = junk_proposal(view=2, count=900)
    forged = PrePrepare(0, 2, 1, type(pp.batch)(pp.batch.requests, b"x" * 32))
    stage.pre_verify(2, forged, forged.batch)
    assert inner.calls == 0 and stage.preverify["bad_digest"] == 1


def test_verification_work_per_sender_is_budgeted() -> None:
    clock = Clock()
    stage, inner = input_stage(clock)
    inner.bad = set()  # valid-looking signatures: each distinct request costs one verify
    for salt in range(limits.PREVERIFY_BURST // 100 + 20):
        pp = junk_proposal(view=2, count=100, salt=salt)
        stage.pre_verify(2, pp, pp.batch)
    assert inner.calls == limits.PREVERIFY_BURST
    assert stage.cache.refused_by_budget > 0
    clock.now += 1.0  # a second later the bucket has refilled by the rate
    calls = inner.calls
    for salt in range(1000, 1000 + limits.PREVERIFY_PER_SENDER_S // 100 + 5):
        pp = junk_proposal(view=2, count=100, salt=salt)
        stage.pre_verify(2, pp, pp.batch)
    assert inner.calls - calls == limits.PREVERIFY_PER_SENDER_S
    # another sender has its own budget (the primary of view 3)
    pp = junk_proposal(view=3, count=10, salt=5000)
    stage.pre_verify(3, pp, pp.batch)
    assert inner.calls - calls == limits.PREVERIFY_PER_SENDER_S + 10


# --- finding 4: fetch amplification ----------------------------------------------------


def test_fetch_requests_are_rate_limited_per_sender() -> None:
    # finding 4's recipe: 985 Fetch(0, 1, 2**62) from one backup
    fetches = [(1, Fetch(0, 1, 2**62, 1)) for _ in range(985)]
    script = [fetches[i : i + 100] for i in range(0, 985, 100)]
    shared = ReplicaShared(0, N)
    worker = Ring(2048, "w")
    clock = Clock()
    stage = InputStage("input-0", shared, FakeReceiver(script), [worker], [], None, clock=clock)
    with Running(stage, worker):
        got = drain(worker, limits.FETCH_BURST, timeout=5)
        deadline = time.monotonic() + 5
        while stage.drops["fetch_rate"] < 985 - limits.FETCH_BURST and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(got) == limits.FETCH_BURST and all(item[0] == W_MSG for item in got)
    assert stage.drops["fetch_rate"] == 985 - limits.FETCH_BURST


class Answering:
    """A protocol stub that answers every message with ``fan`` fetch replies (and a Prepare-
    like protocol message), or raises for messages of type ``int``."""

    def __init__(self, fan: int) -> None:
        self.fan = fan
        self.batch = make_batch((Request(N, 1, b"t", b""),))

    def is_proposer(self) -> bool:
        return False

    def receive(self, sender: int, msg: Any) -> list[Any]:
        if msg == "boom":
            raise ValueError("hostile input the protocol could not handle")
        if msg == "assert":
            raise AssertionError("an invariant broke")
        out: list[Any] = [Send(sender, FetchReply(0, s, 0, self.batch, 0)) for s in range(self.fan)]
        out.append(Send(sender, Commit(0, 0, 1, b"d" * 32, 0)))
        return out

    def timeout(self, timer: Any) -> list[Any]:
        return []


def worker(protocol: Any, output: Ring) -> tuple[WorkerStage, Ring]:
    ring = Ring(256, "w")
    shared = ReplicaShared(0, N)
    stage = WorkerStage(
        "worker-0", shared, protocol, ring, output, Ring(64, "e"), Ring(64, "c"), tick_s=0.01
    )
    return stage, ring


def test_fetch_answers_are_shed_before_protocol_messages() -> None:
    output = Ring(256, "out")
    stage, ring = worker(Answering(fan=200), output)
    ring.push_many([(W_MSG, 1, f"fetch{i}") for i in range(5)], 0)
    with Running(stage, ring):
        deadline = time.monotonic() + 5
        while stage.messages < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        items = output.pop_many(256, 0.5)
    commits = [m for _, m in items if type(m) is Commit]
    replies = [m for _, m in items if type(m) is FetchReply]
    assert len(commits) == 5  # every protocol message got through
    assert len(replies) <= stage.shed_catch_up_at == 64
    assert stage.drops["fetch_answer_shed"] == 5 * 200 - len(replies)


# --- a protocol that raises in a worker ------------------------------------------------


def test_a_message_that_makes_the_protocol_raise_is_counted_and_the_worker_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = Ring(256, "out")
    stage, ring = worker(Answering(fan=0), output)
    ring.push_many([(W_MSG, 1, "boom")] * 50 + [(W_MSG, 1, "ok")], 0)
    with Running(stage, ring):
        got = drain(output, 1)
    assert [type(m) for _, m in got] == [Commit]  # the message after the bad ones was handled
    assert stage.drops["protocol_error:ValueError"] == 50
    assert capsys.readouterr().err.count("Traceback") == 1  # logged once per kind
    assert not stage.shared.fatal


def test_a_broken_invariant_stops_the_replica_loudly() -> None:
    output = Ring(256, "out")
    stage, ring = worker(Answering(fan=0), output)
    ring.push((W_MSG, 1, "assert"), 0)
    with Running(stage, ring):
        stage.join(5)
    assert stage.shared.fatal and "AssertionError" in stage.shared.fatal[0]
    assert stage.shared.stop.is_set()
