"""workloads.ycsb: determinism, mixes A-F, key choosers (Cooper et al. SoCC'10; Gray et al. zipfian)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from workloads.txn import INSERT, READ, RMW, SCAN, UPDATE, decode_txns, encode_txns
from workloads.ycsb import (
    MIXES,
    YcsbGenerator,
    ZipfianRanks,
    fnvhash64,
    initial_value,
    initial_value_fn,
    zeta,
)

N_TXNS = 20_000
OPS = {"read": READ, "update": UPDATE, "insert": INSERT, "scan": SCAN, "rmw": RMW}
DEFAULT_YAML = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def gen(**kw) -> YcsbGenerator:  # type: ignore[no-untyped-def]
    args = {"seed": 7, "record_count": 1000, "value_size": 32}
    args.update(kw)
    return YcsbGenerator(**args)


# --- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["a", "b", "c", "d", "e", "f"])
def test_same_seed_same_transactions(mix: str) -> None:
    assert gen(mix=mix).next_txns(2000) == gen(mix=mix).next_txns(2000)


def test_different_seeds_differ() -> None:
    assert gen(seed=1).next_txns(200) != gen(seed=2).next_txns(200)


def test_batching_does_not_change_the_stream() -> None:
    g1, g2 = gen(mix="e"), gen(mix="e")
    one_by_one = [g1.next_txn() for _ in range(300)]
    chunks = g2.next_txns(100) + g2.next_txns(150) + g2.next_txns(50)
    assert one_by_one == chunks


def test_transactions_encode_and_decode() -> None:
    for mix in MIXES:
        txns = gen(mix=mix, value_size=100).next_txns(100)
        assert decode_txns(encode_txns(txns), max_scan_length=100) == txns


# --- mixes ---------------------------------------------------------------------------


def _op_shares(g: YcsbGenerator, n: int = N_TXNS) -> dict[int, float]:
    counts = Counter(op for op, _, _ in g.next_txns(n))
    return {op: c / n for op, c in counts.items()}


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_mix_proportions_within_tolerance(mix: str) -> None:
    shares = _op_shares(gen(mix=mix))
    expected = {OPS[name]: p for name, p in MIXES[mix].items()}
    assert set(shares) == set(expected)  # no operation outside the mix
    for op, p in expected.items():
        assert abs(shares[op] - p) < 0.015, (mix, op, shares[op], p)


def test_custom_mix() -> None:
    props = {"read": 0.2, "update": 0.1, "insert": 0.1, "scan": 0.3, "rmw": 0.3}
    shares = _op_shares(gen(mix="custom", proportions=props))
    for name, p in props.items():
        assert abs(shares[OPS[name]] - p) < 0.015, (name, shares)


def test_workload_a_values_and_keys() -> None:
    g = gen(mix="a", value_size=48)
    for op, key, arg in g.next_txns(N_TXNS):
        assert 0 <= key < 1000
        if op == UPDATE:
            assert type(arg) is bytes and len(arg) == 48
        else:
            assert op == READ and arg is None


def test_values_vary() -> None:
    values = [arg for op, _, arg in gen(mix="a").next_txns(2000) if op == UPDATE]
    assert len(set(values)) > 0.9 * len(values)


# --- inserts and scans ---------------------------------------------------------------


def test_inserts_take_increasing_keys_beyond_record_count() -> None:
    g = gen(mix="d")
    inserted = [key for op, key, _ in g.next_txns(N_TXNS) if op == INSERT]
    assert inserted == list(range(1000, 1000 + len(inserted)))
    assert g.next_insert_key == 1000 + len(inserted)


def test_generators_in_different_insert_lanes_never_insert_the_same_key() -> None:
    """YCSB gives each client its own insert range; here lanes interleave: lane l of L
    inserts record_count + l, + l + L, ... (three clients' generators, as fabric.runtime.client)."""
    gens = [gen(mix="d", seed=s, insert_lane=s, insert_lanes=3) for s in range(3)]
    inserted = [[k for op, k, _ in g.next_txns(N_TXNS) if op == INSERT] for g in gens]
    for lane, keys in enumerate(inserted):
        assert keys == [1000 + lane + 3 * i for i in range(len(keys))]
    assert not set(inserted[0]) & set(inserted[1]) and not set(inserted[1]) & set(inserted[2])
    with pytest.raises(ValueError, match="insert_lane 3 not in 0..2"):
        gen(insert_lane=3, insert_lanes=3)


def test_latest_reads_loaded_records_and_own_inserts_only() -> None:
    g = gen(mix="d", insert_lane=1, insert_lanes=4)
    mine: set[int] = set()
    for op, key, _ in g.next_txns(N_TXNS):
        if op == INSERT:
            mine.add(key)
        else:
            assert key < 1000 or key in mine, key


def test_scan_lengths_bounded_and_spread() -> None:
    lengths = [
        arg for op, _, arg in gen(mix="e", max_scan_length=40).next_txns(N_TXNS) if op == SCAN
    ]
    assert min(lengths) == 1 and max(lengths) == 40
    assert abs(sum(lengths) / len(lengths) - 20.5) < 1.0  # uniform 1..40


@pytest.mark.parametrize("chooser", ["uniform", "zipfian", "latest"])
def test_keys_in_range(chooser: str) -> None:
    g = gen(mix="custom", key_chooser=chooser, proportions={"read": 0.7, "insert": 0.3})
    for _ in range(20):
        for op, key, _ in g.next_txns(1000):
            assert 0 <= key < g.next_insert_key
            if op == READ and chooser != "latest":
                assert key < 1000  # uniform and zipfian choose among the loaded records


# --- key choosers --------------------------------------------------------------------


def _read_key_counts(g: YcsbGenerator, n: int = N_TXNS) -> Counter[int]:
    return Counter(key for op, key, _ in g.next_txns(n) if op == READ)


def test_uniform_is_flat() -> None:
    counts = _read_key_counts(gen(mix="c", key_chooser="uniform"))
    assert len(counts) > 990  # 20 draws per key on average: nearly every key is hit
    assert max(counts.values()) < 60


def test_zipfian_hottest_key_far_above_uniform() -> None:
    counts = _read_key_counts(gen(mix="c", key_chooser="zipfian"))
    uniform_mean = N_TXNS / 1000
    assert counts.most_common(1)[0][1] > 50 * uniform_mean


def test_zipfian_hot_keys_are_scrambled() -> None:
    """Rank r lands on fnvhash64(r) mod record_count, so hot keys are spread, not 0, 1, 2..."""
    counts = _read_key_counts(gen(mix="c", key_chooser="zipfian"))
    top = [key for key, _ in counts.most_common(3)]
    assert top[0] == fnvhash64(0) % 1000
    assert top != [0, 1, 2]


def test_zipfian_theta_respected() -> None:
    """Gray et al.: P(rank 0) = 1/zeta(n, theta), P(rank 1) = 2^-theta / zeta(n, theta)."""
    import random

    for theta in (0.5, 0.8, 0.99):
        z = ZipfianRanks(1000, theta)
        rng = random.Random(3)
        counts = Counter(z.rank(rng.random()) for _ in range(N_TXNS))
        p0 = 1 / zeta(1000, theta)
        p1 = 2**-theta / zeta(1000, theta)
        assert abs(counts[0] / N_TXNS - p0) < 0.2 * p0 + 0.005, (theta, counts[0])
        assert abs(counts[1] / N_TXNS - p1) < 0.2 * p1 + 0.005, (theta, counts[1])
        assert all(0 <= r < 1000 for r in counts)
    # more skew with a larger theta: the ten hottest keys take a larger share
    top10 = {}
    for theta in (0.5, 0.99):
        counts = _read_key_counts(gen(mix="c", zipf_theta=theta))
        top10[theta] = sum(c for _, c in counts.most_common(10))
    assert top10[0.99] > 2 * top10[0.5]


def test_scrambled_chooser_matches_reference_ranks() -> None:
    """The inlined fast chooser draws the same keys as ZipfianRanks + fnvhash64 on the same draws."""
    import random

    g = gen(mix="c", key_chooser="zipfian", seed=11)
    ref = ZipfianRanks(1000, 0.99)
    rng = random.Random()
    rng.setstate(g._rng.getstate())  # the same uniform draws the generator is about to make
    expected = [fnvhash64(ref.rank(rng.random())) % 1000 for _ in range(5000)]
    assert [g.next_key() for _ in range(5000)] == expected


def test_zipfian_grow_matches_fresh_zeta() -> None:
    z = ZipfianRanks(100, 0.9)
    z.grow(250)
    fresh = ZipfianRanks(250, 0.9)
    assert z.items == 250
    assert z.zetan == pytest.approx(fresh.zetan, rel=1e-12)
    assert z.eta == pytest.approx(fresh.eta, rel=1e-12)


def test_latest_favours_recent_inserts() -> None:
    g = gen(mix="d", record_count=10_000)
    distances = []
    newest = g.next_insert_key - 1
    for _ in range(40):
        for op, key, _ in g.next_txns(500):
            if op == INSERT:
                newest = key
            elif op == READ:
                distances.append(newest - key)
    assert all(d >= 0 for d in distances)
    distances.sort()
    # zipfian over "how many keys back": the newest key is the most read, half within the newest 1%
    assert Counter(distances).most_common(1)[0][0] == 0
    assert distances[len(distances) // 2] < 100


def test_workload_d_forces_latest() -> None:
    assert gen(mix="d", key_chooser="uniform").key_chooser == "latest"
    assert gen(mix="a", key_chooser="uniform").key_chooser == "uniform"


def test_fnvhash64_is_fnv1a_over_little_endian_bytes() -> None:
    """Check against a byte-wise FNV-1a written independently (YCSB Utils.fnvhash64)."""

    def reference(v: int) -> int:
        h = 0xCBF29CE484222325
        for b in v.to_bytes(8, "little"):
            h = ((h ^ b) * 1099511628211) % 2**64
        signed = h - 2**64 if h >= 2**63 else h
        return abs(signed)

    for v in [
        0,
        1,
        255,
        256,
        12345,
        2**24 - 1,
        2**24,
        2**32 + 5,
        2**40 + 7,
        2**63 - 1,
        *range(0, 10**6, 7919),
    ]:
        assert fnvhash64(v) == reference(v)
    assert fnvhash64(0) != fnvhash64(1)


# --- initial values ------------------------------------------------------------------


def test_initial_value_deterministic_and_distinct() -> None:
    assert initial_value(42, 100) == initial_value(42, 100)
    assert len(initial_value(42, 100)) == 100
    values = {initial_value(k, 100) for k in range(5000)}
    assert len(values) == 5000
    assert initial_value_fn(100)(42) == initial_value(42, 100)


@pytest.mark.parametrize("size", [0, 1, 8, 9, 1000])
def test_initial_value_sizes(size: int) -> None:
    assert len(initial_value(123456, size)) == size


# --- configuration -------------------------------------------------------------------


def test_from_config_default_yaml() -> None:
    section = yaml.safe_load(DEFAULT_YAML.read_text())["workload"]
    g = YcsbGenerator.from_config(SimpleNamespace(**section), seed=5)
    assert (g.record_count, g.value_size, g.mix, g.key_chooser) == (
        section["record_count"],
        section["value_size"],
        section["mix"],
        section["key_chooser"],
    )
    assert g.next_txns(50) == YcsbGenerator.from_config(section, seed=5).next_txns(50)


def test_from_config_custom_uses_proportions() -> None:
    section = yaml.safe_load(DEFAULT_YAML.read_text())["workload"]
    section.update(
        mix="custom",
        record_count=500,
        read_proportion=0.0,
        update_proportion=0.0,
        insert_proportion=0.0,
        scan_proportion=0.0,
        rmw_proportion=1.0,
    )
    g = YcsbGenerator.from_config(SimpleNamespace(**section), seed=5)
    assert {op for op, _, _ in g.next_txns(500)} == {RMW}


@pytest.mark.parametrize(
    "kw",
    [
        {"mix": "z"},
        {"key_chooser": "hotspot"},
        {"zipf_theta": 1.0},
        {"zipf_theta": 0.0},
        {"record_count": 0},
        {"value_size": 0},
        {"max_scan_length": 0},
        {"mix": "custom"},  # no proportions
        {"mix": "custom", "proportions": {"read": 0.5}},  # does not sum to 1
        {"mix": "custom", "proportions": {"read": 1.5, "update": -0.5}},
        {"mix": "custom", "proportions": {"read": 0.5, "delete": 0.5}},
        {"mix": "a", "proportions": {"read": 1.0}},  # proportions only with custom
    ],
)
def test_bad_settings_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        gen(**kw)
