"""The batch stage cuts proposals of whole client requests (issue 13 item 8): up to
batching.batch_size transactions, a partial batch after batching.batch_timeout_ms, never
more than protocols.limits.MAX_BATCH_REQUESTS requests or the byte budget, per-client
order kept, one group (RCC instance) per batch.

BatchCutter is clock-free (times are passed in); one test runs the real thread.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fabric.runtime.ring import Ring
from fabric.runtime.stages import W_BATCH, BatchStage, ReplicaShared, VerifiedCache
from fabric.runtime.stages.batch import (
    REQUEST_OVERHEAD_BYTES,
    BatchCutter,
    max_batch_bytes,
    txn_count,
)
from protocols import limits
from protocols.common import Request, make_batch
from workloads.txn import READ, UPDATE, encode_txns

pytestmark = pytest.mark.timeout(30)


class FakeVerifier:
    def __init__(self, bad: frozenset[int] = frozenset()) -> None:
        self.bad = bad  # timestamps whose signature is "invalid"

    def verify_request(self, request: Request) -> bool:
        return request.timestamp not in self.bad


def req(ts: int, client: int = 4, txns: int = 1) -> Request:
    body = encode_txns([(UPDATE if i % 2 else READ, ts * 100 + i, b"v") for i in range(txns)])
    return Request(client, ts, body, b"sig%d" % ts)


def sizes(batches: list[tuple[int, tuple[Request, ...]]]) -> list[int]:
    return [sum(txn_count(r.txns) for r in reqs) for _, reqs in batches]


def test_txn_count_reads_the_msgpack_array_header():
    for n in (1, 15, 16, 300, 70_000):
        assert txn_count(encode_txns([(READ, i, None) for i in range(n)])) == n
    assert txn_count(b"") == 1 and txn_count(b"\x01junk") == 1 and txn_count(b"\xdc") == 1


def test_cut_at_batch_size_txns_never_over_it():
    cutter = BatchCutter(txns_per_batch=10, timeout_s=1.0)
    out = []
    for ts, n in enumerate([3, 3, 3, 3, 7, 10, 1], start=1):
        out += cutter.add(req(ts, txns=n), now=0.0)
    # 3+3+3 (+3 would be 12: cut first), 3+7 = 10 full, 10 alone; 1 stays partial
    assert sizes(out) == [9, 10, 10]
    assert [r.timestamp for _, reqs in out for r in reqs] == [1, 2, 3, 4, 5, 6]
    assert cutter.pending_requests() == 1


def test_partial_batch_cut_after_the_timeout_and_not_before():
    cutter = BatchCutter(txns_per_batch=100, timeout_s=0.005)
    assert cutter.next_deadline() is None
    assert cutter.add(req(1, txns=2), now=10.0) == []
    assert cutter.add(req(2, txns=2), now=10.003) == []
    assert cutter.next_deadline() == pytest.approx(10.005)
    assert cutter.due(10.004) == []
    got = cutter.due(10.005)
    assert [[r.timestamp for r in reqs] for _, reqs in got] == [[1, 2]]
    assert cutter.next_deadline() is None and cutter.due(99.0) == []


def test_never_more_than_max_batch_requests_requests():
    cutter = BatchCutter(txns_per_batch=100_000, timeout_s=1.0, max_requests=10**9)
    assert cutter.max_requests == limits.MAX_BATCH_REQUESTS
    out = []
    for ts in range(1, limits.MAX_BATCH_REQUESTS + 6):
        out += cutter.add(req(ts), now=0.0)
    assert [len(reqs) for _, reqs in out] == [limits.MAX_BATCH_REQUESTS]
    assert cutter.pending_requests() == 5
    small = BatchCutter(txns_per_batch=100, timeout_s=1.0, max_requests=3)
    out = []
    for ts in range(1, 8):
        out += small.add(req(ts), now=0.0)
    assert [len(reqs) for _, reqs in out] == [3, 3]


def test_byte_budget_cuts_before_a_frame_would_overflow():
    one = len(req(1, txns=4).txns) + REQUEST_OVERHEAD_BYTES
    cutter = BatchCutter(txns_per_batch=1000, timeout_s=1.0, max_bytes=int(2.5 * one))
    out = []
    for ts in range(1, 6):
        out += cutter.add(req(ts, txns=4), now=0.0)
    assert [len(reqs) for _, reqs in out] == [2, 2]
    assert max_batch_bytes(16 << 20) == (16 << 20) - 64 * 1024
    assert max_batch_bytes(1000) == 500


def test_per_client_order_kept_and_groups_never_mixed():
    m = 3  # RCC: instance = client % m
    cutter = BatchCutter(txns_per_batch=4, timeout_s=0.01, group_of=lambda r: r.client_id % m)
    out = []
    seq = [(c, ts) for ts in range(1, 7) for c in (4, 5, 6, 7)]  # clients 4 and 7 share a group
    for c, ts in seq:
        out += cutter.add(req(ts, client=c), now=0.0)
    out += cutter.due(1.0)
    for group, reqs in out:
        assert {r.client_id % m for r in reqs} == {group}
    for c in (4, 5, 6, 7):
        mine = [r.timestamp for _, reqs in out for r in reqs if r.client_id == c]
        assert mine == list(range(1, 7))
    assert sum(len(reqs) for _, reqs in out) == len(seq)


def drain(ring: Ring, want: int, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += ring.pop_many(want - len(got), 0.05)
    return got


def test_stage_thread_batches_small_requests_drops_bad_ones_and_cuts_partials():
    shared = ReplicaShared(0, 4)
    batch_ring, worker = Ring(256, "b"), Ring(256, "w")
    cache = VerifiedCache(FakeVerifier(bad=frozenset({3})))
    stage = BatchStage("batch-0", shared, batch_ring, worker, cache, 10, 0.2)
    stage.start()
    try:
        batch_ring.push_many([req(ts, txns=2) for ts in range(1, 9)])  # 7 good x 2 txns
        got = drain(worker, 2)
    finally:
        shared.stop.set()
        batch_ring.close()
        worker.close()
        stage.join(5)
    assert not stage.is_alive()
    assert [item[0] for item in got] == [W_BATCH, W_BATCH]
    good = [req(ts, txns=2) for ts in (1, 2, 4, 5, 6, 7, 8)]
    # 5 requests = 10 txns cut at once; the last 2 (4 txns) cut by the timeout
    assert [item[1] for item in got] == [make_batch(tuple(good[:5])), make_batch(tuple(good[5:]))]
    assert stage.drops["bad_signature"] == 1
    assert stage.stats() == {"batches": 2, "requests": 7, "txns": 14, "timeout_cuts": 1}
