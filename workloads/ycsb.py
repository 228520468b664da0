"""YCSB workload generator (Cooper et al., SoCC'10 core workloads), seeded and deterministic.

``YcsbGenerator`` draws transactions ``(op, key, arg)`` (encoding in workloads.txn):

- operation mix: YCSB core workloads A-F, or ``custom`` proportions;
- key chooser: ``uniform``, ``zipfian`` (YCSB's ScrambledZipfianGenerator: the
  Gray et al. ZipfianGenerator over ranks, with precomputed zeta, then an FNV-64
  hash of the rank spreads the hot keys over the key space) or ``latest``
  (YCSB's SkewedLatestGenerator: zipfian over "how many inserts ago");
- values: ``value_size`` random bytes, sliced from a pre-generated buffer drawn
  from the seeded RNG (cheap: the client draws tens of thousands per second).

Key space: records ``0..record_count-1`` are loaded before the run (every
replica derives the same value with ``initial_value``, nothing is shipped);
inserts take keys ``record_count, record_count+1, ...`` in order. Several
generators (client processes and threads) would insert the same keys, so each
takes an *insert lane* (YCSB's insertstart/insertcount per client, interleaved):
generator ``lane`` of ``lanes`` inserts ``record_count + lane + i * lanes``. As in
YCSB, uniform and zipfian choose among the loaded records; latest chooses among
the loaded records and this generator's own inserts, skewed to the newest. Workload D always uses latest (as YCSB's
workloadd does); the others use ``key_chooser``. Scan lengths are uniform in
``1..max_scan_length`` (YCSB's default scan length distribution).

One generator is not thread-safe: give each client thread its own (own seed).

Must not live here: transaction encoding (workloads.txn) or execution (fabric.runtime.execute).
``main()`` (``python -m workloads.ycsb``) prints the generation cost per transaction.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from workloads.txn import INSERT, READ, RMW, SCAN, UPDATE, Txn

KEY_CHOOSERS = ("uniform", "zipfian", "latest")
OP_ORDER = ("read", "update", "insert", "scan", "rmw")
_OP_CODE = {"read": READ, "update": UPDATE, "insert": INSERT, "scan": SCAN, "rmw": RMW}

# YCSB core workloads: operation proportions (and a forced key chooser where the workload names one).
MIXES: dict[str, dict[str, float]] = {
    "a": {"read": 0.5, "update": 0.5},
    "b": {"read": 0.95, "update": 0.05},
    "c": {"read": 1.0},
    "d": {"read": 0.95, "insert": 0.05},
    "e": {"scan": 0.95, "insert": 0.05},
    "f": {"read": 0.5, "rmw": 0.5},
}
MIX_KEY_CHOOSER: dict[str, str] = {"d": "latest"}

FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325
FNV_PRIME_64 = 0x100000001B3
_MASK64 = (1 << 64) - 1

_VALUE_POOL_BYTES = 1 << 16  # values are slices of a random pool this large (plus value_size)
_SCRAMBLE_TABLE_MAX = 1 << 20  # ranks whose scrambled key a zipfian chooser caches (8 B each)
_INITIAL_POOL_BYTES = 4096  # offsets into the deterministic pool initial values are cut from


_FNV_PRIME_POW6 = pow(FNV_PRIME_64, 6, 1 << 64)
# the FNV state after the first byte b, for each b
_FNV_FIRST_BYTE = tuple(((FNV_OFFSET_BASIS_64 ^ b) * FNV_PRIME_64) & _MASK64 for b in range(256))


def fnvhash64(value: int) -> int:
    """YCSB's ``Utils.fnvhash64``: FNV-1a over the 8 low-order bytes, absolute value as a Java long.

    Unrolled. Below 2**24 (every rank of a cached zipfian table) the first byte's step is a
    table lookup, the third byte is ``value >> 16`` whole, and the five high bytes are
    zero (xor with zero is the identity), so the last six multiplications fold into one
    by FNV_PRIME**6.
    """
    p, m, v = FNV_PRIME_64, _MASK64, value
    if 0 <= v < 1 << 24:
        h = ((_FNV_FIRST_BYTE[v & 255] ^ ((v >> 8) & 255)) * p) & m
        h = ((h ^ (v >> 16)) * _FNV_PRIME_POW6) & m
    else:
        h = ((FNV_OFFSET_BASIS_64 ^ (v & 255)) * p) & m
        h = ((h ^ ((v >> 8) & 255)) * p) & m
        h = ((h ^ ((v >> 16) & 255)) * p) & m
        h = ((h ^ ((v >> 24) & 255)) * p) & m
        h = ((h ^ ((v >> 32) & 255)) * p) & m
        h = ((h ^ ((v >> 40) & 255)) * p) & m
        h = ((h ^ ((v >> 48) & 255)) * p) & m
        h = ((h ^ ((v >> 56) & 255)) * p) & m
    return (1 << 64) - h if h >= 1 << 63 else h  # Java: Math.abs of the signed 64-bit value


@functools.lru_cache(maxsize=32)
def zeta(n: int, theta: float) -> float:
    """sum_{i=1..n} 1 / i^theta (Gray et al.'s normalisation constant; cached per (n, theta))."""
    return math.fsum(1.0 / (i**theta) for i in range(1, n + 1))


class ZipfianRanks:
    """Gray et al.'s fast zipfian rank generator (YCSB ``ZipfianGenerator``): ranks in 0..items-1.

    Rank 0 is the most popular. ``items`` may grow (``next_rank(u, items)`` with a
    larger count extends zeta incrementally, as YCSB does for the latest chooser).
    """

    def __init__(self, items: int, theta: float) -> None:
        if items < 1:
            raise ValueError(f"zipfian needs at least one item, got {items}")
        if not 0.0 < theta < 1.0:
            raise ValueError(f"zipf_theta must be in (0, 1), got {theta}")
        self.theta = theta
        self.alpha = 1.0 / (1.0 - theta)
        self.zeta2theta = zeta(2, theta)
        self.half_pow_theta = 1.0 + 0.5**theta
        self.items = items
        self.zetan = zeta(items, theta)
        self.eta = self._eta(items)

    def _eta(self, items: int) -> float:
        if items < 2:
            return 1.0  # unused: one item always draws rank 0
        return (1.0 - (2.0 / items) ** (1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)

    def grow(self, items: int) -> None:
        """Extend to ``items`` (>= current): add the new terms to zeta, recompute eta."""
        if items <= self.items:
            return
        theta = self.theta
        self.zetan += math.fsum(1.0 / (i**theta) for i in range(self.items + 1, items + 1))
        self.items = items
        self.eta = self._eta(items)

    def rank(self, u: float) -> int:
        """The rank for a uniform draw ``u`` in [0, 1)."""
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow_theta:
            return 1 if self.items > 1 else 0
        r = int(self.items * (self.eta * u - self.eta + 1.0) ** self.alpha)
        return r if r < self.items else self.items - 1


@functools.lru_cache(maxsize=8)
def initial_value_fn(value_size: int) -> Callable[[int], bytes]:
    """A fast ``key -> initial_value(key, value_size)`` (the executor's hot path uses it)."""
    if value_size < 0:
        raise ValueError(f"value_size must be >= 0, got {value_size}")
    pool = hashlib.shake_256(b"bft-fabric/ycsb/initial/%d" % value_size).digest(
        _INITIAL_POOL_BYTES + value_size
    )
    tail = value_size - 8

    if value_size <= 8:

        def short(key: int) -> bytes:
            return key.to_bytes(8, "big")[8 - value_size :]

        return short

    def value_of(key: int) -> bytes:
        off = (key * 0x9E3779B1) % _INITIAL_POOL_BYTES
        return key.to_bytes(8, "big") + pool[off : off + tail]

    return value_of


def initial_value(key: int, value_size: int) -> bytes:
    """The value record ``key`` holds before the run: deterministic, the same at every replica.

    The key's 8 bytes followed by a slice of a fixed pseudo-random pool (shake-256
    of a constant), so different keys hold different values and nothing is shipped.
    Keys are non-negative and below 2**64.
    """
    return initial_value_fn(value_size)(key)


def _mix_thresholds(props: Mapping[str, float]) -> tuple[list[float], list[int]]:
    unknown = set(props) - set(OP_ORDER)
    if unknown:
        raise ValueError(f"unknown operations in proportions: {sorted(unknown)}")
    for name, p in props.items():
        if not (isinstance(p, int | float) and not isinstance(p, bool)) or p < 0 or math.isnan(p):
            raise ValueError(f"proportion of {name} must be a number >= 0, got {p!r}")
    total = math.fsum(float(props.get(name, 0.0)) for name in OP_ORDER)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"operation proportions must sum to 1, got {total}")
    cum, ops, acc = [], [], 0.0
    for name in OP_ORDER:
        p = float(props.get(name, 0.0))
        if p > 0:
            acc += p
            cum.append(acc)
            ops.append(_OP_CODE[name])
    cum[-1] = 1.0  # absorb rounding: u < 1.0 always lands somewhere
    return cum, ops


class YcsbGenerator:
    """Seeded YCSB transaction generator; see the module comment for the model."""

    def __init__(
        self,
        seed: int,
        record_count: int,
        value_size: int,
        key_chooser: str = "zipfian",
        zipf_theta: float = 0.99,
        mix: str = "a",
        proportions: Mapping[str, float] | None = None,
        max_scan_length: int = 100,
        insert_lane: int = 0,
        insert_lanes: int = 1,
    ) -> None:
        if not 0 <= insert_lane < insert_lanes:
            raise ValueError(f"insert_lane {insert_lane} not in 0..{insert_lanes - 1}")
        if record_count < 1:
            raise ValueError(f"record_count must be >= 1, got {record_count}")
        if value_size < 1:
            raise ValueError(f"value_size must be >= 1, got {value_size}")
        if max_scan_length < 1:
            raise ValueError(f"max_scan_length must be >= 1, got {max_scan_length}")
        if mix == "custom":
            if proportions is None:
                raise ValueError("mix 'custom' needs proportions")
            props: Mapping[str, float] = proportions
        elif mix in MIXES:
            if proportions is not None:
                raise ValueError(f"proportions are only for mix 'custom', not {mix!r}")
            props = MIXES[mix]
        else:
            raise ValueError(f"unknown mix {mix!r}: a | b | c | d | e | f | custom")
        chooser = MIX_KEY_CHOOSER.get(mix, key_chooser)
        if chooser not in KEY_CHOOSERS:
            raise ValueError(f"unknown key_chooser {chooser!r}: {' | '.join(KEY_CHOOSERS)}")

        self.seed = seed
        self.record_count = record_count
        self.value_size = value_size
        self.key_chooser = chooser
        self.zipf_theta = zipf_theta
        self.mix = mix
        self.max_scan_length = max_scan_length
        self._cum, self._ops = _mix_thresholds(props)
        self._rng = random.Random(seed)
        self._random = self._rng.random
        self._pool = self._rng.randbytes(_VALUE_POOL_BYTES + value_size)
        self.insert_lane, self.insert_lanes = insert_lane, insert_lanes
        self.inserted = 0  # INSERTs drawn so far
        self.next_insert_key = record_count + insert_lane  # the key the next INSERT takes
        self._zipf: ZipfianRanks | None = None
        # (zetan, 1 + 0.5**theta, items, eta, alpha, rank -> key table, key of rank 0, key of
        # rank 1, record_count): the scrambled zipfian chooser's state, for next_txns's loop
        self._inline_zipf: tuple[Any, ...] | None = None
        self._choose: Callable[[], int]
        if chooser == "uniform":
            self._choose = self._uniform_chooser()
        elif chooser == "zipfian":
            self._zipf = ZipfianRanks(record_count, zipf_theta)
            self._choose = self._scrambled_zipfian_chooser(self._zipf)
        else:
            self._zipf = ZipfianRanks(record_count, zipf_theta)
            self._choose = self._latest

    @classmethod
    def from_config(
        cls, workload_cfg: Any, seed: int, insert_lane: int = 0, insert_lanes: int = 1
    ) -> YcsbGenerator:
        """Build from the ``workload:`` section (an object with its attribute names, or a
        mapping); ``insert_lane`` of ``insert_lanes``: see the module comment."""

        def get(name: str) -> Any:
            if isinstance(workload_cfg, Mapping):
                return workload_cfg[name]
            return getattr(workload_cfg, name)

        mix = get("mix")
        proportions = None
        if mix == "custom":
            proportions = {name: get(f"{name}_proportion") for name in OP_ORDER}
        return cls(
            seed=seed,
            record_count=int(get("record_count")),
            value_size=int(get("value_size")),
            key_chooser=get("key_chooser"),
            zipf_theta=float(get("zipf_theta")),
            mix=mix,
            proportions=proportions,
            max_scan_length=int(get("max_scan_length")),
            insert_lane=insert_lane,
            insert_lanes=insert_lanes,
        )

    # key choosers ------------------------------------------------------------------
    def _uniform_chooser(self) -> Callable[[], int]:
        rnd = self._random
        n = self.record_count

        def uniform() -> int:
            return int(rnd() * n)

        return uniform

    def _scrambled_zipfian_chooser(self, zipf: ZipfianRanks) -> Callable[[], int]:
        """YCSB ScrambledZipfian: a zipfian rank, then fnvhash64(rank) mod record_count.

        The FNV hash costs ~1-2 us in Python, so the rank -> key map is cached in a
        lazily filled table of at most _SCRAMBLE_TABLE_MAX ranks (8 bytes each).
        """
        rnd = self._random
        n = self.record_count
        items = zipf.items
        zetan, eta, alpha, second = zipf.zetan, zipf.eta, zipf.alpha, zipf.half_pow_theta
        table = array("q", [-1]) * min(items, _SCRAMBLE_TABLE_MAX)
        cached = len(table)
        if items <= cached:  # every rank cached: next_txns draws inline
            key1 = fnvhash64(1 if items > 1 else 0) % n
            self._inline_zipf = (zetan, second, items, eta, alpha, table, fnvhash64(0) % n, key1, n)

        def scrambled_zipfian() -> int:
            u = rnd()
            uz = u * zetan
            if uz < 1.0:
                rank = 0
            elif uz < second:
                rank = 1 if items > 1 else 0
            else:
                rank = int(items * (eta * u - eta + 1.0) ** alpha)
                if rank >= items:
                    rank = items - 1
            if rank < cached:
                key = table[rank]
                if key < 0:
                    key = table[rank] = fnvhash64(rank) % n
                return key
            return fnvhash64(rank) % n

        return scrambled_zipfian

    def _latest(self) -> int:
        zipf = self._zipf
        assert zipf is not None
        n = self.record_count
        items = n + self.inserted  # every key we know: loaded records plus our inserts
        if items != zipf.items:
            zipf.grow(items)
        index = (items - 1) - zipf.rank(self._random())
        if index < n:
            return index
        return n + self.insert_lane + (index - n) * self.insert_lanes

    def next_key(self) -> int:
        """One key from the key chooser (no operation drawn)."""
        return self._choose()

    # transactions ------------------------------------------------------------------
    def next_txn(self) -> Txn:
        """One transaction ``(op, key, arg)``."""
        return self.next_txns(1)[0]

    def next_txns(self, k: int) -> list[Txn]:
        """``k`` transactions (the fast path: one call per client batch).

        One loop draws, per transaction and in this order, the operation (unless the mix
        has one), the key (not for INSERT), then the value offset or the scan length. The
        uniform and the scrambled zipfian draws are inlined here (the same arithmetic as
        their choosers', float for float: tests/unit/test_workload_golden.py); latest, and
        zipfian beyond _SCRAMBLE_TABLE_MAX records, call the chooser.
        """
        rnd = self._random
        cum = self._cum
        ops = self._ops
        pool = self._pool
        vs = self.value_size
        span = len(pool) - vs
        max_scan = self.max_scan_length
        single = ops[0] if len(ops) == 1 else -1
        first_cut = cum[0]
        first_op = ops[0]
        inline = self._inline_zipf
        if inline is not None:
            zetan, second, items, eta, alpha, table, key0, key1, n = inline
        else:
            choose = self._choose
            uniform = self.key_chooser == "uniform"  # _uniform_chooser's draw, inlined
            n = self.record_count
        out: list[Txn] = []
        append = out.append
        for _ in range(k):
            if single >= 0:
                op = single
            else:
                u = rnd()
                if u < first_cut:
                    op = first_op
                else:
                    i = 1
                    while u >= cum[i]:
                        i += 1
                    op = ops[i]
            if op == INSERT:
                key = self.next_insert_key
                self.next_insert_key = key + self.insert_lanes
                self.inserted += 1
                off = int(rnd() * span)
                append((INSERT, key, pool[off : off + vs]))
                continue
            if inline is None:
                key = int(rnd() * n) if uniform else choose()
            else:  # scrambled zipfian, as _scrambled_zipfian_chooser draws it
                u = rnd()
                uz = u * zetan
                if uz < 1.0:
                    key = key0
                elif uz < second:
                    key = key1
                else:
                    rank = int(items * (eta * u - eta + 1.0) ** alpha)
                    if rank >= items:
                        rank = items - 1
                    key = table[rank]
                    if key < 0:
                        key = table[rank] = fnvhash64(rank) % n
            if op == READ:
                append((READ, key, None))
            elif op == SCAN:
                append((SCAN, key, 1 + int(rnd() * max_scan)))
            else:  # UPDATE, RMW
                off = int(rnd() * span)
                append((op, key, pool[off : off + vs]))
        return out


def main() -> None:
    """Print µs per transaction of ``next_txns(100)`` (and of encoding) for each mix and chooser."""
    import time

    from workloads.txn import encode_txns

    n = 20_000
    started = time.perf_counter()
    zeta.cache_clear()
    YcsbGenerator(seed=1, record_count=100_000, value_size=100)
    print(f"zipfian set-up, 100k records: {(time.perf_counter() - started) * 1e3:.1f} ms")
    for mix in sorted(MIXES):
        for chooser in ("zipfian", "uniform") if mix != "d" else ("latest",):
            gen = YcsbGenerator(seed=1, record_count=100_000, value_size=100, mix=mix,
                                key_chooser=chooser)  # fmt: skip
            passes = []
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(n // 100):
                    gen.next_txns(100)
                passes.append(time.perf_counter() - started)
            print(f"ycsb mix {mix} {chooser:<8}: {sorted(passes)[1] / n * 1e6:5.2f} us/txn")
    gen = YcsbGenerator(seed=1, record_count=100_000, value_size=100)
    batches = [gen.next_txns(100) for _ in range(n // 100)]
    started = time.perf_counter()
    for b in batches:
        encode_txns(b)
    print(f"encode_txns (mix a): {(time.perf_counter() - started) / n * 1e6:5.2f} us/txn")


if __name__ == "__main__":
    main()
