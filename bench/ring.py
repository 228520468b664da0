"""``python -m bench ring``: hand-off throughput of fabric.runtime.ring.Ring vs queue.SimpleQueue.

Measures, in one run and as medians of 3 passes, items/s from a producer thread
to a consumer thread through:
  * Ring, chunked: ``push_many`` of 64-item chunks, ``pop_many(64)`` (how the
    pipeline stages use it), against SimpleQueue ``put``/``get`` per item;
  * Ring item by item (``push``/``pop``);
  * SimpleQueue of 64-item lists, for reference (unbounded: not a substitute);
and the CPU seconds burnt over 1 s by a consumer parked on an empty ring plus a
producer parked on a full ring. Prints figures; never asserts speed.
Must not live here: correctness checks beyond "every item arrived" (tests/unit).
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections.abc import Callable

from fabric.runtime.ring import Ring, RingClosed, RingEmpty

ITEMS = 500_000  # per pass
CHUNK = 64  # items per push_many / pop_many
CAPACITY = 4096  # config/default.yaml pipeline.ring_capacity
PASSES = 3
IDLE_S = 1.0


def _run(producer: Callable[[], None], consumer: Callable[[], int]) -> float:
    """Run the pair on two threads; return items/s (after checking every item arrived)."""
    received: list[int] = []

    def consume() -> None:
        received.append(consumer())

    cons = threading.Thread(target=consume, name="bench-consumer")
    prod = threading.Thread(target=producer, name="bench-producer")
    cons.start()
    started = time.perf_counter()
    prod.start()
    prod.join()
    cons.join()
    elapsed = time.perf_counter() - started
    if received != [ITEMS]:
        raise RuntimeError(f"hand-off lost items: received {received} of {ITEMS}")
    return ITEMS / elapsed


def ring_chunked() -> float:
    ring = Ring(CAPACITY, name="bench")
    data = list(range(ITEMS))
    chunks = [data[i : i + CHUNK] for i in range(0, ITEMS, CHUNK)]

    def produce() -> None:
        push_many = ring.push_many
        for chunk in chunks:
            push_many(chunk)
        ring.close()

    def consume() -> int:
        pop_many = ring.pop_many
        count = 0
        while True:
            items = pop_many(CHUNK)
            if not items:
                return count
            count += len(items)

    return _run(produce, consume)


def ring_items() -> float:
    ring = Ring(CAPACITY, name="bench")

    def produce() -> None:
        push = ring.push
        for i in range(ITEMS):
            push(i)
        ring.close()

    def consume() -> int:
        pop = ring.pop
        count = 0
        try:
            while True:
                pop()
                count += 1
        except RingEmpty:
            return count

    return _run(produce, consume)


def simplequeue_items() -> float:
    q: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def produce() -> None:
        put = q.put
        for i in range(ITEMS):
            put(i)
        put(None)

    def consume() -> int:
        get = q.get
        count = 0
        while get() is not None:
            count += 1
        return count

    return _run(produce, consume)


def simplequeue_chunked() -> float:
    q: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
    data = list(range(ITEMS))
    chunks = [data[i : i + CHUNK] for i in range(0, ITEMS, CHUNK)]

    def produce() -> None:
        put = q.put
        for chunk in chunks:
            put(chunk)
        put(None)

    def consume() -> int:
        get = q.get
        count = 0
        while (chunk := get()) is not None:
            count += len(chunk)
        return count

    return _run(produce, consume)


def parked_cpu_s() -> tuple[float, float, float]:
    """(CPU-s of the whole process, consumer idle_s, producer full_wait_s) over IDLE_S
    with one consumer parked on an empty ring and one producer on a full ring."""
    empty = Ring(CAPACITY, name="empty")
    full = Ring(1, name="full")
    full.push(0)

    def park_consumer() -> None:
        empty.pop_many(CHUNK, timeout=None)

    def park_producer() -> None:
        try:
            full.push(1, timeout=None)
        except RingClosed:
            pass

    threads = [threading.Thread(target=park_consumer), threading.Thread(target=park_producer)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    cpu_before = time.process_time()
    time.sleep(IDLE_S)
    cpu_s = time.process_time() - cpu_before
    empty.close()
    full.close()
    for t in threads:
        t.join()
    return cpu_s, empty.idle_s, full.full_wait_s


RING_CHUNKED = f"Ring push_many({CHUNK})/pop_many({CHUNK})"
SQ_ITEMS = "queue.SimpleQueue put/get per item"
RING_ITEMS = "Ring push/pop per item"
SQ_CHUNKED = f"queue.SimpleQueue of {CHUNK}-item lists (unbounded, ref.)"
VARIANTS: dict[str, Callable[[], float]] = {
    RING_CHUNKED: ring_chunked,
    SQ_ITEMS: simplequeue_items,
    RING_ITEMS: ring_items,
    SQ_CHUNKED: simplequeue_chunked,
}


def main() -> None:
    print(f"   {ITEMS} items per pass, producer and consumer threads, ring capacity {CAPACITY}")
    print(f"   medians of {PASSES} interleaved passes (ratios: median of per-pass ratios)")
    samples: dict[str, list[float]] = {label: [] for label in VARIANTS}
    for _ in range(PASSES):  # interleaved, so a burst of load on the box hits every variant
        for label, fn in VARIANTS.items():
            samples[label].append(fn())
    for label, values in samples.items():
        rate = statistics.median(values)
        print(f"   {label:<56} {rate / 1e6:7.2f} M items/s  {1e9 / rate:7.0f} ns/item")
    for label in (RING_CHUNKED, RING_ITEMS):
        ratio = statistics.median(
            r / q for r, q in zip(samples[label], samples[SQ_ITEMS], strict=True)
        )
        print(f"   ratio {label} / SimpleQueue per item: {ratio:5.2f}x")
    cpu = [parked_cpu_s() for _ in range(PASSES)]
    cpu_s = statistics.median(c[0] for c in cpu)
    idle_s = statistics.median(c[1] for c in cpu)
    wait_s = statistics.median(c[2] for c in cpu)
    print(
        f"   parked consumer + parked producer over {IDLE_S:.0f} s: {cpu_s:.4f} CPU-s "
        f"({100 * cpu_s / IDLE_S:.2f}% of a core); idle_s {idle_s:.2f}, full_wait_s {wait_s:.2f}"
    )


if __name__ == "__main__":
    main()
