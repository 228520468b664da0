"""Codec benchmark: wire.encode + wire.decode of the batches a proposer orders.

Prints µs per encode+decode (median of 3 passes) of a Batch holding one Request of
100 YCSB-like transactions and of a Batch holding 100 one-transaction Requests,
plus the cost of the transaction blob itself (msgpack arrays of (op, key, value)).
Figures, never assertions. Must not live here: anything the runtime imports.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import msgpack

from protocols.common import Batch, Request, make_batch
from transport import wire

PASSES = 3
VALUE_BYTES = 100
TXNS = 100
OPS = (0, 1)  # YCSB workload A: read, update (50/50)


def ycsb_txns(rng: random.Random, count: int) -> list[tuple[int, str, bytes]]:
    """``count`` (op, key, value) transactions; reads carry an empty value."""
    out = []
    for _ in range(count):
        op = rng.choice(OPS)
        key = f"user{rng.randrange(10**10):010d}"
        value = rng.randbytes(VALUE_BYTES) if op == 1 else b""
        out.append((op, key, value))
    return out


def pack_txns(txns: list[tuple[int, str, bytes]]) -> bytes:
    return msgpack.packb(txns, use_bin_type=True)


def median_us(fn: Callable[[], object], iterations: int) -> float:
    """Median over PASSES passes of the mean µs per call of ``fn``."""
    fn()  # warm up
    results = []
    for _ in range(PASSES):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(results)


def report(name: str, batch: Batch, iterations: int) -> None:
    frame = wire.encode(batch, 0)
    assert wire.decode(frame) == (0, batch)
    encode = median_us(lambda: wire.encode(batch, 0), iterations)
    decode = median_us(lambda: wire.decode(frame), iterations)
    both = median_us(lambda: wire.decode(wire.encode(batch, 0)), iterations)
    print(
        f"{name:<34} {len(frame):>7} B   encode {encode:7.1f} µs   decode {decode:7.1f} µs"
        f"   encode+decode {both:7.1f} µs",
        flush=True,
    )


def main() -> None:
    rng = random.Random(1)
    signature = rng.randbytes(64)
    txns = ycsb_txns(rng, TXNS)
    blob = pack_txns(txns)
    blob_us = median_us(lambda: msgpack.unpackb(pack_txns(txns), use_list=False), 2000)
    print(
        f"txns blob: {TXNS} YCSB-A txns (op, key, {VALUE_BYTES} B value) as msgpack arrays: "
        f"{len(blob)} B, pack+unpack {blob_us:.1f} µs",
        flush=True,
    )
    one = make_batch((Request(4, 1, blob, signature),))
    many = make_batch(
        tuple(Request(4 + i, 1, pack_txns([t]), signature) for i, t in enumerate(txns))
    )
    report("Batch(1 Request x 100 txns)", one, 5000)
    report("Batch(100 Requests x 1 txn)", many, 1000)
    print(f"(median of {PASSES} passes; wire frame = 13 B header + msgpack body, no MAC)")


if __name__ == "__main__":
    main()
