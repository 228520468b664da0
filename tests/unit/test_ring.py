"""Tests of fabric.runtime.ring.Ring: order, bounds, parking, timeouts, close, counters.

Concurrency tests push hundreds of thousands of items through real threads and
check that nothing is lost, duplicated or reordered. Timing is only checked as
behaviour (a timeout is honoured, an idle consumer burns ~no CPU) with generous
bounds; speed is bench/ring.py's business, never asserted here.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.runtime.ring import MAX_CAPACITY, Ring, RingClosed, RingEmpty

JOIN_S = 60.0  # a thread that has not finished by then is stuck (a lost wake-up)


@pytest.fixture
def preempt_often() -> Iterator[None]:
    """Switch threads every few bytecodes, so races hit the narrow windows between
    a check and a park (with the default 5 ms interval they almost never do)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class Worker(threading.Thread):
    """A daemon thread that keeps its target's result or exception for the test."""

    def __init__(self, target: Callable[[], Any], name: str = "") -> None:
        super().__init__(name=name or None, daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        self.ended_at = time.monotonic()


def finish(workers: list[Worker], rings: list[Ring], join_s: float = JOIN_S) -> None:
    """Join every worker; on a hang close the rings (freeing the threads) and fail."""
    deadline = time.monotonic() + join_s
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    stuck = [w.name for w in workers if w.is_alive()]
    if stuck:
        for ring in rings:
            ring.close()
        pytest.fail(f"threads still blocked after {join_s} s (lost wake-up?): {stuck}")


def wait_parked(predicate: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait (sleeping, never spinning) until ``predicate`` holds -- typically a
    ring's private parked flag -- then a little longer for the thread to block."""
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)


# --------------------------------------------------------------------- construction


@pytest.mark.parametrize("capacity", [0, -4, 3, 6, 100, MAX_CAPACITY * 2])
def test_capacity_must_be_a_power_of_two_in_range(capacity: int) -> None:
    with pytest.raises(ValueError):
        Ring(capacity)


@pytest.mark.parametrize("capacity", [4.0, "8", True])
def test_capacity_must_be_an_int(capacity: Any) -> None:
    with pytest.raises(TypeError):
        Ring(capacity)


def test_fresh_ring_reports_its_shape() -> None:
    ring = Ring(16, name="input")
    assert ring.capacity == 16
    assert len(ring) == 0
    assert not ring.closed
    assert ring.stats() == {
        "name": "input",
        "capacity": 16,
        "depth": 0,
        "pushes": 0,
        "pops": 0,
        "max_depth": 0,
        "full_waits": 0,
        "full_wait_s": 0.0,
        "idle_s": 0.0,
        "consumer_parks": 0,
        "closed": False,
    }


def test_consumer_parks_count_each_blocking_wait_on_the_empty_ring_only() -> None:
    ring = Ring(8)
    ring.push(1)
    assert ring.pop_many(8, 0.05) == [1]  # an item was there: no park
    assert ring.pop_many(8, 0) == []  # timeout 0 never blocks
    assert ring.consumer_parks == 0
    assert ring.pop_many(8, 0.01) == []  # empty: blocked once, until the timeout
    got: list[Any] = []
    consumer = threading.Thread(target=lambda: got.extend(ring.pop_many(8, 5.0)))
    consumer.start()
    while not ring._c_parked:  # parked before the push: the push wakes it
        time.sleep(0.001)
    ring.push(2)
    consumer.join(5.0)
    assert got == [2]
    assert ring.consumer_parks == ring.stats()["consumer_parks"] == 2


# --------------------------------------------------------------------- single thread


def test_fifo_order_across_many_wrap_arounds() -> None:
    ring = Ring(8)
    rng = random.Random(7)
    expected: deque[int] = deque()
    got: list[int] = []
    sent: list[int] = []
    next_item = 0
    for _ in range(2000):
        if rng.random() < 0.5:
            n = rng.randint(0, 5)
            batch = list(range(next_item, next_item + n))
            pushed = ring.push_many(batch, timeout=0)
            assert pushed == min(n, 8 - len(expected))
            expected.extend(batch[:pushed])
            sent.extend(batch[:pushed])
            next_item += pushed
        elif rng.random() < 0.5:
            if ring.push(next_item, timeout=0):
                expected.append(next_item)
                sent.append(next_item)
                next_item += 1
            else:
                assert len(expected) == 8
        else:
            k = rng.randint(1, 6)
            items = ring.pop_many(k, timeout=0)
            assert items == [expected.popleft() for _ in range(min(k, len(expected)))]
            got.extend(items)
        assert len(ring) == len(expected) <= ring.capacity
    got.extend(ring.pop_many(8, timeout=0))
    assert got == sent
    assert next_item > 8 * 50  # the ring wrapped many times


def test_bounded_push_on_full_ring_returns_false_without_waiting() -> None:
    ring = Ring(4)
    assert all(ring.push(i, timeout=0) for i in range(4))
    assert len(ring) == 4
    assert ring.push(99, timeout=0) is False
    assert ring.push_many([5, 6], timeout=0) == 0
    assert len(ring) == 4
    assert ring.full_waits == 2
    assert ring.pop_many(10, timeout=0) == [0, 1, 2, 3]


def test_push_many_pushes_what_fits_in_order() -> None:
    ring = Ring(4)
    ring.push("a")
    assert ring.push_many(["b", "c", "d", "e", "f"], timeout=0) == 3
    assert ring.pop_many(8) == ["a", "b", "c", "d"]
    assert ring.push_many(("x", "y"), timeout=0) == 2  # tuples, and any iterable
    assert ring.push_many(iter(["z"]), timeout=0) == 1
    assert ring.push_many([], timeout=0) == 0
    assert ring.pop_many(8) == ["x", "y", "z"]


def test_pop_many_returns_at_most_max_items() -> None:
    ring = Ring(64)
    ring.push_many(list(range(50)))
    assert ring.pop_many(1) == [0]
    assert ring.pop_many(7) == list(range(1, 8))
    assert ring.pop_many(100) == list(range(8, 50))
    with pytest.raises(ValueError):
        ring.pop_many(0)


def test_pop_one_and_empty_ring_raises() -> None:
    ring = Ring(2)
    ring.push("only")
    assert ring.pop(timeout=0) == "only"
    with pytest.raises(RingEmpty):
        ring.pop(timeout=0)
    assert ring.pop_many(3, timeout=0) == []


def test_negative_timeout_is_refused() -> None:
    ring = Ring(2)
    with pytest.raises(ValueError):
        ring.pop_many(1, timeout=-1)
    ring.push_many([1, 2])
    with pytest.raises(ValueError):
        ring.push(3, timeout=-0.5)


def test_popped_items_are_not_kept_alive_by_the_ring() -> None:
    class Payload:
        pass

    ring = Ring(8)
    for _ in range(3):  # wrap around: both the one-slice and the two-slice paths
        objs = [Payload() for _ in range(5)]
        refs = [weakref.ref(o) for o in objs]
        ring.push(objs[0])
        ring.push_many(objs[1:])
        assert ring.pop() is objs[0]
        assert ring.pop_many(8) == objs[1:]
        del objs
        gc.collect()
        assert all(ref() is None for ref in refs)


def test_counters_after_a_known_sequence() -> None:
    ring = Ring(4, name="out")
    ring.push_many([1, 2, 3])
    ring.pop_many(2)
    ring.push_many([4, 5, 6, 7], timeout=0)  # 3 fit, found full once
    ring.push(8, timeout=0)  # full again
    ring.pop()
    stats = ring.stats()
    assert stats["pushes"] == ring.pushes == 6
    assert stats["pops"] == ring.pops == 3
    assert stats["depth"] == len(ring) == 3
    assert stats["max_depth"] == ring.max_depth == 4
    assert stats["full_waits"] == ring.full_waits == 2
    assert stats["name"] == "out"


# --------------------------------------------------------------------- model check

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 0)),
        st.tuples(st.just("push_many"), st.integers(0, 9)),
        st.tuples(st.just("pop"), st.integers(0, 0)),
        st.tuples(st.just("pop_many"), st.integers(1, 9)),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(cap_log2=st.integers(0, 3), ops=_ops)
def test_ring_behaves_like_a_bounded_deque(cap_log2: int, ops: list[tuple[str, int]]) -> None:
    cap = 1 << cap_log2
    ring = Ring(cap)
    model: deque[int] = deque()
    counter = 0
    full_waits = 0
    max_depth = 0
    for op, arg in ops:
        if op == "push":
            ok = ring.push(counter, timeout=0)
            assert ok == (len(model) < cap)
            if ok:
                model.append(counter)
                counter += 1
            else:
                full_waits += 1
        elif op == "push_many":
            batch = list(range(counter, counter + arg))
            pushed = ring.push_many(batch, timeout=0)
            assert pushed == min(arg, cap - len(model))
            if pushed < arg:
                full_waits += 1
            model.extend(batch[:pushed])
            counter += pushed
        elif op == "pop":
            if model:
                assert ring.pop(timeout=0) == model.popleft()
            else:
                with pytest.raises(RingEmpty):
                    ring.pop(timeout=0)
        else:
            want = [model.popleft() for _ in range(min(arg, len(model)))]
            assert ring.pop_many(arg, timeout=0) == want
        max_depth = max(max_depth, len(model))
        assert len(ring) == len(model)
    assert ring.full_waits == full_waits
    assert ring.max_depth == max_depth
    assert ring.pushes - ring.pops == len(model)


# --------------------------------------------------------------------- timeouts and parking


def test_push_timeout_is_honoured_on_a_full_ring() -> None:
    ring = Ring(2)
    ring.push_many([1, 2])
    started = time.monotonic()
    assert ring.push(3, timeout=0.2) is False
    assert ring.push_many([3, 4], timeout=0.1) == 0
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 10.0
    assert ring.full_waits == 2
    assert 0.2 <= ring.full_wait_s <= elapsed
    assert ring.pop_many(5) == [1, 2]


def test_pop_timeout_is_honoured_and_idle_time_accounted() -> None:
    ring = Ring(4)
    started = time.monotonic()
    assert ring.pop_many(4, timeout=0.3) == []
    with pytest.raises(RingEmpty):
        ring.pop(timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 10.0
    assert 0.45 <= ring.idle_s <= elapsed


def test_parked_consumer_wakes_on_push_and_accounts_the_parked_time() -> None:
    ring = Ring(8)
    consumer = Worker(lambda: ring.pop_many(8, timeout=None), "consumer")
    consumer.start()
    wait_parked(lambda: ring._c_parked)
    time.sleep(0.3)
    pushed_at = time.monotonic()
    ring.push_many(["a", "b"])
    finish([consumer], [ring])
    assert consumer.error is None
    assert consumer.result == ["a", "b"]
    call_s = consumer.ended_at - consumer.started_at
    assert pushed_at - consumer.started_at >= 0.3
    assert 0.25 <= ring.idle_s <= call_s


def test_parked_producer_wakes_when_the_consumer_makes_room() -> None:
    ring = Ring(2)
    ring.push_many([0, 1])
    producer = Worker(lambda: ring.push_many([2, 3, 4], timeout=None), "producer")
    producer.start()
    time.sleep(0.2)
    got: list[int] = []
    deadline = time.monotonic() + JOIN_S
    while len(got) < 5 and time.monotonic() < deadline:
        got.extend(ring.pop_many(2, timeout=1.0))
    finish([producer], [ring])
    assert producer.error is None
    assert producer.result == 3
    assert got == [0, 1, 2, 3, 4]
    assert ring.full_waits == 1
    assert ring.full_wait_s > 0.1


def test_parked_threads_burn_no_cpu() -> None:
    empty = Ring(4, name="empty")
    full = Ring(1, name="full")
    full.push("x")
    consumer = Worker(lambda: empty.pop_many(4, timeout=None), "consumer")
    producer = Worker(lambda: full.push("y", timeout=None), "producer")
    consumer.start()
    producer.start()
    time.sleep(0.2)  # both are parked by now
    cpu_before = time.process_time()
    wall_before = time.monotonic()
    time.sleep(1.0)
    cpu_s = time.process_time() - cpu_before
    wall_s = time.monotonic() - wall_before
    empty.close()
    full.close()
    finish([consumer, producer], [empty, full])
    assert cpu_s < 0.2, f"parked threads burnt {cpu_s:.3f} CPU-s in {wall_s:.2f} s"
    assert empty.idle_s >= 1.0  # the whole sleep was spent parked
    assert full.full_wait_s >= 1.0
    assert isinstance(producer.error, RingClosed)


# --------------------------------------------------------------------- close


def test_close_refuses_pushes_and_drains_what_is_left() -> None:
    ring = Ring(8)
    ring.push_many([1, 2, 3])
    ring.close()
    ring.close()  # idempotent
    assert ring.closed
    with pytest.raises(RingClosed):
        ring.push(4)
    with pytest.raises(RingClosed) as info:
        ring.push_many([4, 5])
    assert info.value.pushed == 0
    assert ring.pop() == 1
    assert ring.pop_many(10, timeout=None) == [2, 3]  # returns at once, never parks
    assert ring.pop_many(10, timeout=None) == []
    with pytest.raises(RingEmpty):
        ring.pop(timeout=None)


@pytest.mark.parametrize("multi", [False, True])
def test_close_wakes_every_parked_consumer_and_producer(multi: bool) -> None:
    empty = Ring(4, multi_consumer=multi)
    full = Ring(2, multi_producer=multi)
    full.push_many(["x", "y"])
    workers = [Worker(lambda: empty.pop_many(4, timeout=None), "pop_many")]
    workers.append(Worker(lambda: full.push("z", timeout=None), "push"))
    if multi:
        workers.append(Worker(lambda: empty.pop(timeout=None), "pop"))
        workers.append(Worker(lambda: full.push_many(["z"], timeout=None), "push_many"))
    for w in workers:
        w.start()
    time.sleep(0.3)
    assert all(w.is_alive() for w in workers)  # all parked
    empty.close()
    full.close()
    finish(workers, [empty, full], join_s=10.0)
    by_name = {w.name: w for w in workers}
    assert by_name["pop_many"].error is None and by_name["pop_many"].result == []
    assert isinstance(by_name["push"].error, RingClosed)
    if multi:
        assert isinstance(by_name["pop"].error, RingEmpty)
        assert isinstance(by_name["push_many"].error, RingClosed)
    assert full.pop_many(4) == ["x", "y"]


def test_close_while_push_many_waits_reports_what_was_pushed() -> None:
    ring = Ring(4)
    ring.push_many([0, 1])
    producer = Worker(lambda: ring.push_many([2, 3, 4, 5, 6], timeout=None), "producer")
    producer.start()
    wait_parked(lambda: ring._p_parked)
    ring.close()
    finish([producer], [ring])
    assert isinstance(producer.error, RingClosed)
    assert producer.error.pushed == 2
    assert ring.pop_many(10) == [0, 1, 2, 3]


# --------------------------------------------------------------------- multi forms


def test_multi_producer_timeout_zero_waits_for_a_busy_peer_not_a_parked_one() -> None:
    ring = Ring(4, multi_producer=True)
    lock = ring._push_lock  # stand in for a peer that is in the middle of a push
    assert lock is not None
    lock.acquire()
    releaser = threading.Timer(0.1, lock.release)
    releaser.start()
    assert ring.push("a", timeout=0) is True  # not full: waited for the busy peer
    releaser.join()
    ring.push_many(["b", "c", "d"])
    parked = Worker(lambda: ring.push("e", timeout=None), "parked producer")
    parked.start()
    wait_parked(lambda: ring._p_parked)
    assert ring.push("f", timeout=0) is False  # the holder is parked: really full
    assert ring.push_many(["f"], timeout=0.05) == 0
    assert ring.pop_many(8) == ["a", "b", "c", "d"]
    finish([parked], [ring])
    assert parked.result is True
    assert ring.pop_many(8) == ["e"]


def test_multi_consumer_timeout_zero_returns_empty_when_a_peer_is_parked() -> None:
    ring = Ring(4, multi_consumer=True)
    parked = Worker(lambda: ring.pop_many(4, timeout=None), "parked consumer")
    parked.start()
    wait_parked(lambda: ring._c_parked)
    assert ring.pop_many(4, timeout=0) == []
    with pytest.raises(RingEmpty):
        ring.pop(timeout=0.05)
    ring.push("a")
    finish([parked], [ring])
    assert parked.result == ["a"]


# --------------------------------------------------------------------- stress


def _produce(ring: Ring, producer_id: int, count: int, seed: int) -> int:
    """Push (producer_id, 0..count-1), mixing push and push_many of random sizes."""
    rng = random.Random(seed)
    seq = 0
    while seq < count:
        if rng.random() < 0.3:
            ring.push((producer_id, seq))
            seq += 1
        else:
            n = min(rng.randint(1, 100), count - seq)
            assert ring.push_many([(producer_id, s) for s in range(seq, seq + n)]) == n
            seq += n
    return seq


def _consume(ring: Ring, seed: int, depth_seen: list[int]) -> list[tuple[int, int]]:
    """Pop until the ring is closed and drained, mixing pop and pop_many."""
    rng = random.Random(seed)
    got: list[tuple[int, int]] = []
    while True:
        depth_seen.append(len(ring))
        if rng.random() < 0.2:
            try:
                got.append(ring.pop())
            except RingEmpty:
                return got
        else:
            items = ring.pop_many(rng.choice((1, 7, 64)))
            assert 0 < len(items) or ring.closed
            if not items:
                return got
            got.extend(items)


def _stress(producers: int, consumers: int, per_producer: int, capacity: int) -> None:
    ring = Ring(capacity, multi_producer=producers > 1, multi_consumer=consumers > 1)
    depths: list[list[int]] = [[] for _ in range(consumers)]
    prods = [
        Worker(lambda p=p: _produce(ring, p, per_producer, seed=100 + p), f"producer-{p}")
        for p in range(producers)
    ]
    cons = [
        Worker(lambda c=c: _consume(ring, 200 + c, depths[c]), f"consumer-{c}")
        for c in range(consumers)
    ]
    for w in cons + prods:
        w.start()
    finish(prods, [ring])
    ring.close()
    finish(cons, [ring])
    for w in prods + cons:
        assert w.error is None, f"{w.name}: {w.error!r}"
    received = [item for w in cons for item in w.result]
    expected = [(p, s) for p in range(producers) for s in range(per_producer)]
    assert len(received) == len(expected)
    assert Counter(received) == Counter(expected)  # nothing lost, nothing duplicated
    for w in cons:  # each consumer sees each producer's items in the order pushed
        last = [-1] * producers
        for p, s in w.result:
            assert s > last[p], f"{w.name}: producer {p} item {s} after {last[p]}"
            last[p] = s
    assert max(max(d, default=0) for d in depths) <= capacity
    assert ring.max_depth <= capacity
    assert ring.pushes == ring.pops == len(expected)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("capacity", "count"), [(4, 30_000), (256, 300_000)])
def test_stress_spsc_no_loss_no_duplicate_in_order(
    capacity: int, count: int, preempt_often: None
) -> None:
    _stress(producers=1, consumers=1, per_producer=count, capacity=capacity)


@pytest.mark.timeout(120)
def test_stress_mpsc_three_producers(preempt_often: None) -> None:
    _stress(producers=3, consumers=1, per_producer=100_000, capacity=256)


@pytest.mark.timeout(120)
def test_stress_mpmc_three_producers_two_consumers(preempt_often: None) -> None:
    _stress(producers=3, consumers=2, per_producer=100_000, capacity=256)


@pytest.mark.timeout(120)
def test_no_lost_wake_up_in_a_ping_pong(preempt_often: None) -> None:
    """Both threads park on every hand-off; one lost wake-up hangs the game."""
    ping, pong = Ring(1, name="ping"), Ring(1, name="pong")
    rounds = 5000

    def server() -> int:
        served = 0
        while True:
            try:
                pong.push(ping.pop(timeout=None) + 1, timeout=None)
            except (RingEmpty, RingClosed):
                return served
            served += 1

    def client() -> list[int]:
        answers = []
        for i in range(rounds):
            ping.push(i, timeout=None)
            answers.append(pong.pop(timeout=None))
        return answers

    workers = [Worker(server, "server"), Worker(client, "client")]
    for w in workers:
        w.start()
    finish(workers[1:], [ping, pong])
    ping.close()
    finish(workers[:1], [ping, pong])
    assert workers[1].error is None
    assert workers[1].result == [i + 1 for i in range(rounds)]
    assert workers[0].result == rounds


@pytest.mark.timeout(120)
def test_no_lost_wake_up_with_a_one_slot_ring(preempt_often: None) -> None:
    """Producer and consumer alternately park on full and empty, item by item."""
    ring = Ring(1)
    count = 20_000

    def produce() -> None:
        for i in range(count):
            ring.push(i, timeout=None)

    def consume() -> list[int]:
        return [ring.pop(timeout=None) for _ in range(count)]

    workers = [Worker(produce, "producer"), Worker(consume, "consumer")]
    for w in workers:
        w.start()
    finish(workers, [ring])
    assert workers[0].error is None and workers[1].error is None
    assert workers[1].result == list(range(count))
