"""Golden digests of generated workloads: the same seed gives the same transactions, byte for byte.

The digests were computed with the generators as they stood before their hot loops were
tuned (issue 16); any speed-up that changes a single drawn key, value or operation fails
here. Each case hashes the encoded ``next_txns(100)`` chunks of the first 10,000
transactions (100,000 records, 100-byte values, as the cluster runs them).
"""

from __future__ import annotations

import hashlib

import pytest

from workloads.smallbank import SmallbankGenerator
from workloads.txn import encode_txns
from workloads.ycsb import YcsbGenerator

N_TXNS = 10_000
CHUNK = 100

YCSB_GOLDEN = {
    # (mix, key_chooser, insert_lane, insert_lanes): sha256 prefix
    ("a", "zipfian", 0, 1): "14f03b44fc3d5124299366e24aade69c",
    ("b", "zipfian", 0, 1): "600dce6219cd97486c147ed7dadfbcb2",
    ("c", "zipfian", 0, 1): "de4a076c110ef98b2024934eb834838e",
    ("d", "latest", 0, 1): "505904401779cba55eaa174f53494e09",
    ("e", "zipfian", 0, 1): "49ac438d78973908870d189b3381e316",
    ("f", "zipfian", 0, 1): "7de2bd56d0a7a4eb31f71c234f4f0c71",
    ("a", "uniform", 0, 1): "5a0276c5e081885ff1062b8f88cc4b12",
    ("e", "uniform", 0, 1): "f1c48664cae667a70ca3e48a04f0c4c9",
    ("d", "latest", 3, 7): "e3f146e40e6267719f3c2ecaf89d2543",
    ("e", "zipfian", 3, 7): "5d97cf4ea20d524691fb6145638d93a7",
}


def _digest(next_txns) -> str:  # type: ignore[no-untyped-def]
    h = hashlib.sha256()
    for _ in range(N_TXNS // CHUNK):
        h.update(encode_txns(next_txns(CHUNK)))
    return h.hexdigest()[:32]


@pytest.mark.parametrize("case", sorted(YCSB_GOLDEN), ids=lambda c: "-".join(map(str, c)))
def test_ycsb_stream_is_pinned(case: tuple[str, str, int, int]) -> None:
    mix, chooser, lane, lanes = case
    gen = YcsbGenerator(
        seed=11,
        record_count=100_000,
        value_size=100,
        key_chooser=chooser,
        mix=mix,
        insert_lane=lane,
        insert_lanes=lanes,
    )
    assert _digest(gen.next_txns) == YCSB_GOLDEN[case]


def test_ycsb_custom_mix_stream_is_pinned() -> None:
    shares = {"read": 0.2, "update": 0.2, "insert": 0.2, "scan": 0.2, "rmw": 0.2}
    gen = YcsbGenerator(
        seed=5, record_count=100_000, value_size=100, mix="custom", proportions=shares
    )
    assert _digest(gen.next_txns) == "f6b0d463a1a17efdd2654ddfc42ba809"


@pytest.mark.parametrize(
    ("hotspot", "golden"),
    [(0.0, "7679becde0f30338edf61703e167f788"), (0.9, "c576cf7970eb7db19e9b983e5afa4dd4")],
)
def test_smallbank_stream_is_pinned(hotspot: float, golden: str) -> None:
    gen = SmallbankGenerator(seed=11, accounts=100_000, hot_accounts=100, hotspot=hotspot)
    assert _digest(gen.next_txns) == golden
