"""The replica's pipeline stages, one at a time: feed the ring a stage reads, read the ring it
writes (fabric.runtime.stages). Fake receivers/senders/verifiers stand in for sockets and Ed25519."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from fabric.runtime.execute import Executor
from fabric.runtime.ring import Ring
from fabric.runtime.stages import (
    C_EXECUTED,
    C_STABLE,
    E_COMMIT,
    E_DELIVER,
    E_ROLLBACK,
    W_BATCH,
    W_EXECUTED,
    W_MSG,
    CachedVerifier,
    CheckpointStage,
    ExecuteStage,
    InputStage,
    OutputStage,
    ReplicaShared,
    ReplyCache,
    Stage,
    Timers,
    VerifiedCache,
    WorkerStage,
)
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    Protocol,
    ProtocolConfig,
    Send,
    SetTimer,
    StableCheckpoint,
)
from protocols.common import Batch, Reply, Request, make_batch
from protocols.null import NullProtocol
from protocols.pbft.messages import PrePrepare
from transport import wire
from workloads.txn import READ, UPDATE, encode_txns

pytestmark = pytest.mark.timeout(30)
N = 4


class FakeVerifier:
    def __init__(self, bad: set[int] = frozenset()) -> None:
        self.bad = bad  # timestamps whose signature is "invalid"
        self.calls = 0

    def sign(self, payload: bytes) -> bytes:
        return b"s"

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        return True

    def verify_request(self, request: Request) -> bool:
        self.calls += 1
        return request.timestamp not in self.bad


def req(ts: int, client: int = N, txns: bytes | None = None) -> Request:
    body = txns if txns is not None else encode_txns([(READ, ts, None), (UPDATE, ts + 1, b"v")])
    return Request(client, ts, body, b"sig%d" % ts)


def drain(ring: Ring, want: int, timeout: float = 5.0) -> list[Any]:
    """Pop until ``want`` items arrived or ``timeout`` passed (bounded)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += ring.pop_many(want - len(got), 0.05)
    return got


class Running:
    """Start a stage thread; stop and join it on exit (also when the test fails)."""

    def __init__(self, stage: Stage, *rings: Ring) -> None:
        self.stage = stage
        self.rings = rings

    def __enter__(self) -> Stage:
        self.stage.start()
        return self.stage

    def __exit__(self, *exc: Any) -> None:
        self.stage.shared.stop.set()
        for ring in self.rings:
            ring.close()
        self.stage.join(5)
        assert not self.stage.is_alive()


# --- timers and the verification cache --------------------------------------------------


def test_timers_fire_in_deadline_order_rearm_restarts_cancel_forgets():
    t = Timers(tick_s=0.01)
    t.set("a", 5, now=0.0)  # 0.05
    t.set("b", 2, now=0.0)  # 0.02
    t.set("c", 3, now=0.0)  # 0.03
    t.set("b", 10, now=0.0)  # re-armed: 0.10
    t.cancel("c")
    assert t.next_deadline() == pytest.approx(0.05)
    assert t.due(0.04) == []
    assert t.due(0.06) == ["a"]
    assert t.due(1.0) == ["b"]
    assert t.next_deadline() is None and len(t) == 0


def test_timer_heap_stays_bounded_when_one_timer_is_rearmed_forever():
    t = Timers(tick_s=0.01)
    for i in range(20_000):
        t.set("view_change", 100, now=i * 0.001)
    assert len(t._heap) <= 4 * len(t) + 1025
    assert len(t) == 1


def test_verified_cache_hits_only_identical_requests():
    inner = FakeVerifier(bad={9})
    cache = VerifiedCache(inner, capacity=4)
    r = req(1)
    assert cache.check(r) and cache.check(Request(r.client_id, r.timestamp, r.txns, r.signature))
    assert inner.calls == 1 and cache.hits == 1
    tampered = Request(r.client_id, r.timestamp, r.txns + b"x", r.signature)
    assert cache.check(tampered)  # the fake accepts it, but it had to be verified again
    assert inner.calls == 2
    # a failure is remembered (issue 19: a replayed junk request costs no verification)
    assert not cache.check(req(9)) and not cache.check(req(9))
    assert inner.calls == 3 and cache.failures == 1 and cache.failures_remembered == 1
    for ts in range(10, 20):
        cache.check(req(ts))
    assert cache.stats()["size"] == 4  # bounded, oldest first out
    verifier = CachedVerifier(inner, cache)
    calls = inner.calls
    assert verifier.verify_request(req(19)) and inner.calls == calls


# --- worker ------------------------------------------------------------------------------


def worker_rings() -> dict[str, Ring]:
    return {
        name: Ring(256, name, multi_producer=True)
        for name in ("worker", "output", "execute", "checkpoint")
    }


def test_worker_proposes_ready_batches_and_delivers_in_order_null_protocol():
    shared = ReplicaShared(0, N)
    rings = worker_rings()
    proto = NullProtocol(ProtocolConfig(replica_id=0, n=N), FakeVerifier())
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01)
    assert shared.is_proposer
    batches = [make_batch((req(ts),)) for ts in range(1, 6)]
    with Running(worker, *rings.values()):
        rings["worker"].push_many([(W_BATCH, b) for b in batches])
        got = drain(rings["execute"], 5)
    assert [(tag, seq) for tag, seq, *_ in got] == [(E_DELIVER, s) for s in range(1, 6)]
    assert [item[3] for item in got] == batches
    assert worker.proposed == 5 and worker.delivered == 5


class ScriptedProtocol(Protocol):
    """A toy protocol whose replies to calls are scripted by the test."""

    name = "scripted-test"

    def __init__(self, config: ProtocolConfig, verifier: Any) -> None:
        super().__init__(config, verifier)
        self.received: list[tuple[int, Any]] = []
        self.timeouts: list[Any] = []
        self.executed_seqs: list[int] = []
        self.proposer = False

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return f + 1

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Any) -> int:
        return 0

    def is_proposer(self) -> bool:
        return self.proposer

    def proposal_room(self) -> int:
        return 1

    def propose(self, batch: Batch) -> list:
        return []

    def receive(self, sender: int, msg: Any) -> list:
        if msg.timestamp == 13:
            raise ValueError("a message this protocol cannot handle")
        if msg.timestamp == 14:
            raise AssertionError("an invariant broke")
        self.received.append((sender, msg))
        if msg.timestamp == 1:
            return [SetTimer(("t", 1), 2), Broadcast(msg)]
        if msg.timestamp == 2:
            return [
                Send(N, msg),
                StableCheckpoint(7, b"d"),
                SetTimer("never", 1),
                CancelTimer("never"),
            ]
        return []

    def timeout(self, timer: Any) -> list:
        self.timeouts.append(timer)
        return [Send(1, req(99))]

    def executed(self, seq: int, state_digest: bytes) -> list:
        self.executed_seqs.append(seq)
        return []


def test_worker_turns_actions_into_ring_items_and_drives_timers():
    shared = ReplicaShared(2, N)
    rings = worker_rings()
    proto = ScriptedProtocol(ProtocolConfig(replica_id=2, n=N), FakeVerifier())
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01)
    with Running(worker, *rings.values()):
        rings["worker"].push_many([(W_MSG, 1, req(1)), (W_MSG, 3, req(2)), (W_EXECUTED, 5, b"h")])
        out = drain(rings["output"], 3)
        chk = drain(rings["checkpoint"], 1)
    assert out[0] == ((0, 1, 3), req(1))  # Broadcast: every replica but this one
    assert out[1] == (N, req(2))  # Send to a client
    assert out[2] == (1, req(99))  # the timer fired after ~2 ticks
    assert chk == [(C_STABLE, 7, b"d", ())]  # (seq, digest, certificate: none given)
    assert proto.timeouts == [("t", 1)]  # the cancelled timer never fired
    assert proto.executed_seqs == [5]
    assert [s for s, _ in proto.received] == [1, 3]


def test_worker_hands_pending_requests_to_the_protocol_when_it_is_not_the_proposer():
    shared = ReplicaShared(2, N)
    rings = worker_rings()
    proto = ScriptedProtocol(ProtocolConfig(replica_id=2, n=N), FakeVerifier())
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01)
    with Running(worker, *rings.values()):
        rings["worker"].push((W_BATCH, make_batch((req(5), req(6, client=N + 1)))))
        deadline = time.monotonic() + 5
        while len(proto.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    # as a backup receives them from the clients (PBFT then forwards them to the primary)
    assert proto.received == [(N, req(5)), (N + 1, req(6, client=N + 1))]
    assert worker.forwarded == 2 and worker.proposed == 0 and not worker.drops


class DeliveringProtocol(ScriptedProtocol):
    """Delivers one batch per message with timestamp 20..29 (seq = ts - 19) and records what
    the executor had applied when each message arrived (the inline pipeline's promise)."""

    def __init__(self, config: ProtocolConfig, verifier: Any, executor: Executor) -> None:
        super().__init__(config, verifier)
        self.executor = executor
        self.seen_executed: list[int] = []

    def receive(self, sender: int, msg: Any) -> list:
        self.seen_executed.append(self.executor.last_seq)
        if 20 <= msg.timestamp < 30:
            batch = make_batch((req(msg.timestamp, client=N),))
            return [Deliver(msg.timestamp - 19, 0, batch, speculative=True)]
        return []


def test_inline_pipeline_executes_each_delivery_on_the_worker_before_its_next_message():
    shared = ReplicaShared(1, N)
    rings = worker_rings()
    executor = Executor(record_count=100, value_size=8)
    proto = DeliveringProtocol(ProtocolConfig(replica_id=1, n=N), FakeVerifier(), executor)
    # the execute stage is built but not started: the worker runs its code (apply_items)
    execute = ExecuteStage(
        "execute", shared, executor, rings["worker"], rings["output"], rings["checkpoint"], N
    )
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01, inline=execute)
    with Running(worker, *rings.values()):
        # one pop: three messages; each delivery is executed before the next message
        rings["worker"].push_many([(W_MSG, 0, req(20)), (W_MSG, 0, req(21)), (W_MSG, 0, req(5))])
        replies = drain(rings["output"], 2)
        feedback = drain(rings["checkpoint"], 2)
        assert executor.speculative_batches() == 2
        # a stable checkpoint comes back on the worker ring (the inline execute ring)
        rings["worker"].push((E_COMMIT, 2))
        deadline = time.monotonic() + 5
        while executor.speculative_batches() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert proto.seen_executed == [0, 1, 2]
    assert [(dest, r.seq) for dest, r in replies] == [(N, 1), (N, 2)]
    assert [(tag, seq) for tag, seq, _ in feedback] == [(C_EXECUTED, 1), (C_EXECUTED, 2)]
    assert executor.speculative_batches() == 0  # E_COMMIT applied: undo logs trimmed
    assert len(rings["execute"]) == 0  # nothing went to an execute thread
    assert execute.txns_total == 4 and execute.last_seq == 2 and worker.delivered == 2


def test_execute_ring_tags_never_equal_worker_ring_tags():
    # the inline pipeline carries both kinds on the worker ring and tells them apart by tag
    from fabric.runtime.stages import base

    worker_tags = {v for k, v in vars(base).items() if k.startswith("W_")}
    execute_tags = {v for k, v in vars(base).items() if k.startswith("E_") and k != "E_FIRST"}
    assert execute_tags and worker_tags
    assert min(execute_tags) >= base.E_FIRST > max(worker_tags)


# --- execute, checkpoint ----------------------------------------------------------------


def test_execute_replies_once_per_request_and_feeds_back_the_state_digest():
    shared = ReplicaShared(1, N)
    exe, out, chk = Ring(64, "e"), Ring(64, "o"), Ring(64, "c")
    executor = Executor(record_count=100, value_size=8)
    stage = ExecuteStage("execute", shared, executor, exe, out, chk, N)
    batch = make_batch((req(1, client=N), req(1, client=N + 1)))
    with Running(stage, exe, out, chk):
        exe.push((E_DELIVER, 1, 0, batch, False))
        exe.push((E_COMMIT, 1))
        replies = drain(out, 2)
        feedback = drain(chk, 1)
    assert sorted(dest for dest, _ in replies) == [N, N + 1]
    for dest, reply in replies:
        assert isinstance(reply, Reply)
        assert (reply.seq, reply.replica, reply.client_id, reply.timestamp) == (1, 1, dest, 1)
    assert feedback == [(C_EXECUTED, 1, executor.state_digest())]
    assert stage.txns_total == 4 and stage.last_seq == 1
    assert sum(n for _, n in stage.executed_per_s.as_pairs()) == 4


def test_execute_feeds_back_only_checkpoint_seqs_with_their_state_digest():
    """Protocol.executed acts at checkpoint seqs alone: the execute stage says nothing for the
    seqs between (no ring hand-off, no checkpoint-thread wake-up per batch)."""
    shared = ReplicaShared(1, N)
    exe, out, chk = Ring(64, "e"), Ring(64, "o"), Ring(64, "c")
    executor = Executor(record_count=100, value_size=8, checkpoint_period=3)
    stage = ExecuteStage("execute", shared, executor, exe, out, chk, N)
    digests = {}
    for seq in range(1, 8):
        batch = make_batch((req(seq, client=N),))
        _, feedback = stage.apply_items([(E_DELIVER, seq, 0, batch, False)])
        if seq % 3 == 0:
            digests[seq] = executor.state_digest()
            assert feedback == [(C_EXECUTED, seq, digests[seq])]
        else:
            assert feedback == []
    assert stage.last_seq == 7 and sorted(digests) == [3, 6]


def test_execute_out_of_order_delivery_fails_the_replica_loudly():
    shared = ReplicaShared(1, N)
    exe, out, chk = Ring(64, "e"), Ring(64, "o"), Ring(64, "c")
    stage = ExecuteStage("execute", shared, Executor(100, 8), exe, out, chk, N)
    stage.start()
    exe.push((E_DELIVER, 2, 0, make_batch((req(1),)), False))  # seq 1 never came
    assert shared.stop.wait(5)
    stage.join(5)
    assert not stage.is_alive()
    assert shared.fatal and "execute" in shared.fatal[0]


def test_checkpoint_never_blocks_on_a_full_worker_ring_and_flushes_later():
    shared = ReplicaShared(0, N)
    chk, worker, exe = Ring(64, "c"), Ring(4, "w"), Ring(64, "e")
    worker.push_many([(W_MSG, 1, "filler")] * 4)  # full
    stage = CheckpointStage("checkpoint", shared, chk, worker, exe)
    with Running(stage, chk, worker, exe):
        chk.push_many([(C_EXECUTED, s, b"h") for s in range(1, 4)] + [(C_STABLE, 2, b"d")])
        assert drain(exe, 1) == [(E_COMMIT, 2, b"d", ())]  # not stuck behind the full worker ring
        assert len(stage.to_worker) == 3
        assert len(worker.pop_many(4, 1)) == 4  # the worker drains: room appears
        fed = drain(worker, 3)
    assert fed == [(W_EXECUTED, s, b"h") for s in range(1, 4)]
    assert stage.stable_seq == 2 and stage.executed_seq == 3


# --- input, batch, output ----------------------------------------------------------------


class FakeReceiver:
    def __init__(self, script: list[list[tuple[int, Any]]]) -> None:
        self.script = script
        self.closed = False
        self.drops: Counter[str] = Counter()
        self.received_by_kind: Counter[int] = Counter()

    def recv_batch(self, max_items: int, timeout_ms: int) -> list[tuple[int, Any]]:
        if self.script:
            return self.script.pop(0)
        time.sleep(min(timeout_ms, 5) / 1000)
        return []

    def close(self) -> None:
        self.closed = True


def test_input_routes_client_requests_and_protocol_messages_and_pre_verifies():
    shared = ReplicaShared(0, N)
    shared.is_proposer = True
    worker, b0, b1 = Ring(64, "w"), Ring(64, "b0"), Ring(64, "b1")
    inner = FakeVerifier()
    cache = VerifiedCache(inner)
    inside = req(7, client=N + 1)
    # a proposal from its proposer (replica 2 is the primary of view 2) is pre-verified;
    # one from another replica is not (cheap checks first: issue 19)
    msg = PrePrepare(0, 2, 1, make_batch((inside,)))
    stranger = PrePrepare(0, 1, 1, make_batch((req(8, client=N + 1),)))
    script = [
        [
            (N, req(1, client=N)),
            (N + 1, req(2, client=N + 1)),
            (2, msg),
            (2, stranger),
            (N, Reply(0, 1, 0, N, 1, b"", False)),
        ],
    ]
    receiver = FakeReceiver(script)
    stage = InputStage("input-0", shared, receiver, [worker], [b0, b1], cache)
    with Running(stage, worker, b0, b1):
        to_b0 = drain(b0, 1)
        to_b1 = drain(b1, 1)
        to_worker = drain(worker, 2)
    assert to_b0 == [req(1, client=N)] and to_b1 == [req(2, client=N + 1)]  # by client id
    assert to_worker == [(W_MSG, 2, msg), (W_MSG, 2, stranger)]  # the protocol decides
    assert cache.known(inside) and inner.calls == 1
    assert stage.preverify == {"verified": 1, "not_from_proposer": 1}
    assert stage.drops["client_sent_non_request"] == 1
    assert receiver.closed


def test_input_at_a_backup_sends_client_requests_to_the_worker_and_silence_drops_all():
    shared = ReplicaShared(1, N)
    worker, b0 = Ring(64, "w"), Ring(64, "b0")
    receiver = FakeReceiver([[(N, req(1))]])
    stage = InputStage("input-0", shared, receiver, [worker], [b0], None)
    with Running(stage, worker, b0):
        assert drain(worker, 1) == [(W_MSG, N, req(1))]
        shared.silent = True
        receiver.script.append([(2, req(5))])
        deadline = time.monotonic() + 5
        while not stage.drops["silent"] and time.monotonic() < deadline:
            time.sleep(0.01)
    assert stage.drops["silent"] == 1 and len(b0) == 0


class FakeSender:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.closed = False

    def send_frame(self, to: int, frame: bytes) -> bool:
        self.frames.append((to, frame))
        return True

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        self.frames.extend((to, frame) for frame in frames)
        return len(frames)

    def close(self) -> None:
        self.closed = True


def test_output_encodes_once_and_sends_to_every_destination():
    shared = ReplicaShared(0, N)
    out = Ring(64, "o")
    sender = FakeSender()
    stage = OutputStage("output-0", shared, sender, out)
    reply = Reply(0, 3, 0, N, 9, b"r", False)
    with Running(stage, out):
        out.push_many([((1, 2, 3), req(4)), (N, reply)])
        deadline = time.monotonic() + 5
        while len(sender.frames) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [to for to, _ in sender.frames] == [1, 2, 3, N]
    assert len({frame for _, frame in sender.frames[:3]}) == 1  # encoded once
    assert wire.decode(sender.frames[0][1]) == (0, req(4))
    assert wire.decode(sender.frames[3][1]) == (0, reply)
    assert sender.closed


def test_a_stage_that_raises_stops_the_replica_with_the_reason():
    class Broken(Stage):
        role = "broken"

        def loop(self) -> None:
            raise RuntimeError("boom")

    shared = ReplicaShared(0, N)
    stage = Broken("broken-0", shared)
    stage.start()
    stage.join(5)
    assert shared.stop.is_set() and "boom" in shared.fatal[0]
    assert stage.clock.snapshot()["busy_s"] >= 0


def test_worker_counts_a_message_the_protocol_rejects_and_keeps_going():
    shared = ReplicaShared(2, N)
    rings = worker_rings()
    proto = ScriptedProtocol(ProtocolConfig(replica_id=2, n=N), FakeVerifier())
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01)
    with Running(worker, *rings.values()):
        rings["worker"].push_many([(W_MSG, 1, req(13)), (W_MSG, 1, req(2))])
        assert drain(rings["output"], 1) == [(N, req(2))]
    assert worker.drops["protocol_error:ValueError"] == 1
    assert not shared.fatal


def test_worker_stops_the_replica_when_a_protocol_invariant_breaks():
    shared = ReplicaShared(2, N)
    rings = worker_rings()
    proto = ScriptedProtocol(ProtocolConfig(replica_id=2, n=N), FakeVerifier())
    worker = WorkerStage("worker-0", shared, proto, *rings.values(), tick_s=0.01)
    worker.start()
    rings["worker"].push((W_MSG, 1, req(14)))
    assert shared.stop.wait(5)
    worker.join(5)
    assert "AssertionError" in shared.fatal[0]


def test_a_resent_request_already_executed_gets_its_cached_reply_and_is_not_reordered():
    """Castro & Liskov 4.1: a replica re-sends the reply of an executed request."""
    shared = ReplicaShared(1, N)
    exe, out, chk = Ring(64, "e"), Ring(64, "o"), Ring(64, "c")
    worker, b0 = Ring(64, "w"), Ring(64, "b0")
    execute = ExecuteStage("execute", shared, Executor(100, 8), exe, out, chk, N)
    receiver = FakeReceiver([])
    inputs = InputStage("input-0", shared, receiver, [worker], [b0], None, output_ring=out)
    with Running(execute, exe, chk), Running(inputs, worker, b0, out):
        exe.push((E_DELIVER, 1, 0, make_batch((req(1),)), False))
        [(dest, first)] = drain(out, 1)
        receiver.script.append([(N, req(1)), (N, req(2))])  # 1 re-sent, 2 new
        [(again_dest, again)] = drain(out, 1)
        assert drain(worker, 1) == [(W_MSG, N, req(2))]  # only the new one is ordered
    assert dest == again_dest == N and again == first and inputs.replies_resent == 1


def test_reply_cache_is_bounded_and_a_rollback_voids_it():
    cache = ReplyCache(capacity=3)
    for ts in range(5):
        cache.put((N, ts), ts)
    assert len(cache) == 3 and cache.get((N, 0)) is None and cache.get((N, 4)) == 4
    shared = ReplicaShared(1, N)
    exe, out, chk = Ring(64, "e"), Ring(64, "o"), Ring(64, "c")
    stage = ExecuteStage("execute", shared, Executor(100, 8), exe, out, chk, N)
    with Running(stage, exe, out, chk):
        exe.push((E_DELIVER, 1, 0, make_batch((req(1),)), True))  # speculative (PoE)
        drain(out, 1)
        assert shared.replies.get((N, 1)) is not None
        exe.push((E_ROLLBACK, 0))
        deadline = time.monotonic() + 5
        while stage.rollbacks == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert stage.rollbacks == 1 and shared.replies.get((N, 1)) is None
