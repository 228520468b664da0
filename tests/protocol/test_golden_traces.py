"""Golden simulator traces: the replicas' behaviour pinned across refactors of their hot paths.

Each case replays one seeded simulator run (fabric/sim) and compares a fingerprint of it, the
trace digest (every delivered message's frame bytes, time, sender and receiver, so every
action that sends or times anything) with the run's counters and committed length, against
the value the code gave before the performance work of issue 16 (protocols/pbft, replica_core,
checkpoints: same actions in the same order for the same inputs). A change that alters what
a replica does for some input changes a fingerprint; if that change is meant, regenerate
the table (see ``fingerprint``) and say why in the commit.

Must not live here: safety or liveness checks (the *_sim suites make those).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from fabric.sim import MIXES
from fabric.sim.simulator import SimOptions, run_seed

#: (protocol, n, seed, mix, params, worker_threads) -> fingerprint; computed with the code of
#: c9bb51f (before the PBFT hot-path changes; 6c55806 had moved the executed() feedback to
#: checkpoint seqs only, which changed every trace's events, not the replicas' actions), then
#: re-pinned when clients began to sign a digest of their transactions (protocols.common
#: request_signing_payload): every request's signature bytes changed, nothing else. Shown before
#: re-pinning: the new code with the simulator's fake request signatures mapped back to the old
#: payload (head + txns) matched all 70 fingerprints of c9bb51f.
GOLDEN: dict[tuple[Any, ...], str] = {
    ("pbft", 4, 300, "none", (), 1): "8d119ac0d92ee932",
    ("pbft", 4, 310, "none", (), 1): "5f5c4018be23d51b",
    ("pbft", 4, 301, "lossy", (), 1): "c1e3bca9a2917c07",
    ("pbft", 4, 311, "lossy", (), 1): "0905c2ba20e9b944",
    ("pbft", 4, 302, "reorder", (), 1): "0344b2c73007d2cc",
    ("pbft", 4, 312, "reorder", (), 1): "b58db553830695f7",
    ("pbft", 4, 303, "partition", (), 1): "f867679b984f46d4",
    ("pbft", 4, 313, "partition", (), 1): "eff112a58f47e9c4",
    ("pbft", 4, 304, "crash", (), 1): "e92ef57253690f45",
    ("pbft", 4, 314, "crash", (), 1): "5a4ebba86e8326ab",
    ("pbft", 4, 305, "byzantine", (), 1): "4e6ece90adaa9f87",
    ("pbft", 4, 315, "byzantine", (), 1): "ea1a46648fdf6000",
    ("pbft", 4, 306, "mixed", (), 1): "df2551fd50ba2c97",
    ("pbft", 4, 316, "mixed", (), 1): "36107770afb9c2f9",
    ("pbft", 4, 300, "none", (("pbft_signed_votes", False),), 1): "b564f84ad31c19e5",
    ("pbft", 4, 310, "none", (("pbft_signed_votes", False),), 1): "d5588af898189738",
    ("pbft", 4, 301, "lossy", (("pbft_signed_votes", False),), 1): "5b658d15cd62b18e",
    ("pbft", 4, 311, "lossy", (("pbft_signed_votes", False),), 1): "95b7c225ddb39948",
    ("pbft", 4, 302, "reorder", (("pbft_signed_votes", False),), 1): "c0b889861e1c2e43",
    ("pbft", 4, 312, "reorder", (("pbft_signed_votes", False),), 1): "48f103fad544f12a",
    ("pbft", 4, 303, "partition", (("pbft_signed_votes", False),), 1): "8035041c953c8859",
    ("pbft", 4, 313, "partition", (("pbft_signed_votes", False),), 1): "24806f46130974c8",
    ("pbft", 4, 304, "crash", (("pbft_signed_votes", False),), 1): "3a2b9d3b5996e94e",
    ("pbft", 4, 314, "crash", (("pbft_signed_votes", False),), 1): "2bb27ceb9bfa2b1d",
    ("pbft", 4, 305, "byzantine", (("pbft_signed_votes", False),), 1): "2c6187986470e91d",
    ("pbft", 4, 315, "byzantine", (("pbft_signed_votes", False),), 1): "c9f9ad2023b4f44e",
    ("pbft", 4, 306, "mixed", (("pbft_signed_votes", False),), 1): "a89e8f207276f529",
    ("pbft", 4, 316, "mixed", (("pbft_signed_votes", False),), 1): "f2cdd7f070aa8f96",
    ("pbft", 7, 300, "none", (), 1): "88c1e8e6c210fdac",
    ("pbft", 7, 301, "lossy", (), 1): "2098a5be94c2d478",
    ("pbft", 7, 302, "reorder", (), 1): "44f6f5324895de4c",
    ("pbft", 7, 303, "partition", (), 1): "a499ac40b9fe38d0",
    ("pbft", 7, 304, "crash", (), 1): "ba58ea6e2f35141e",
    ("pbft", 7, 305, "byzantine", (), 1): "308304e0b26335db",
    ("pbft", 7, 306, "mixed", (), 1): "ff697c105c4be538",
    ("poe", 4, 300, "none", (), 1): "37d8e48ac42c2707",
    ("poe", 4, 301, "lossy", (), 1): "951d83644aed5840",
    ("poe", 4, 302, "reorder", (), 1): "37c21d5d74cf97b5",
    ("poe", 4, 303, "partition", (), 1): "76378e5b4a85bae6",
    ("poe", 4, 304, "crash", (), 1): "d2cc1952be897002",
    ("poe", 4, 305, "byzantine", (), 1): "596f488eebbbcc97",
    ("poe", 4, 306, "mixed", (), 1): "e6d23b3fcf87d407",
    ("poe", 4, 300, "none", (("poe_certificate", "macs"),), 1): "40a4bd11116d80a8",
    ("poe", 4, 301, "lossy", (("poe_certificate", "macs"),), 1): "848657c31ccdab47",
    ("poe", 4, 302, "reorder", (("poe_certificate", "macs"),), 1): "822cb9b53cd2c628",
    ("poe", 4, 303, "partition", (("poe_certificate", "macs"),), 1): "ed8946431cf3dc1b",
    ("poe", 4, 304, "crash", (("poe_certificate", "macs"),), 1): "5d05509197a87a7e",
    ("poe", 4, 305, "byzantine", (("poe_certificate", "macs"),), 1): "b42a313dcd8ed595",
    ("poe", 4, 306, "mixed", (("poe_certificate", "macs"),), 1): "391304eabf5b99e0",
    ("rcc", 4, 300, "none", (), 1): "8353b9957eb07afa",
    ("rcc", 4, 301, "lossy", (), 1): "5ec86bb533a5b617",
    ("rcc", 4, 302, "reorder", (), 1): "8c74c35a300745ea",
    ("rcc", 4, 303, "partition", (), 1): "afee997110556662",
    ("rcc", 4, 304, "crash", (), 1): "953d2f16531142a0",
    ("rcc", 4, 305, "byzantine", (), 1): "4b00f8e8f1f7378c",
    ("rcc", 4, 306, "mixed", (), 1): "52108bed7d81caff",
    ("rcc", 4, 300, "none", (), 2): "f79934866b4d906b",
    ("rcc", 4, 301, "lossy", (), 2): "34a2def1ae9bf8c0",
    ("rcc", 4, 302, "reorder", (), 2): "949af1e17b48a7ef",
    ("rcc", 4, 303, "partition", (), 2): "a0ce425191f9b074",
    ("rcc", 4, 304, "crash", (), 2): "9aa3bb71d2ecedac",
    ("rcc", 4, 305, "byzantine", (), 2): "b68618c608a056eb",
    ("rcc", 4, 306, "mixed", (), 2): "d5b5aab370d46cc7",
    ("hotstuff", 4, 300, "none", (), 1): "05e6352c94ebe07b",
    ("hotstuff", 4, 301, "lossy", (), 1): "9c652ad3e89fbbc9",
    ("hotstuff", 4, 302, "reorder", (), 1): "4999d0e1fb3f0f57",
    ("hotstuff", 4, 303, "partition", (), 1): "c6d1d0ae01622e2b",
    ("hotstuff", 4, 304, "crash", (), 1): "fbe1d9b37a6d1ddf",
    ("hotstuff", 4, 305, "byzantine", (), 1): "7fbe7706a09023ec",
    ("hotstuff", 4, 306, "mixed", (), 1): "60b7b81245f7bb73",
}

_RUNS: tuple[tuple[str, int, tuple[tuple[str, Any], ...], int, int], ...] = (
    # protocol, n, params, worker_threads, seeds per mix
    ("pbft", 4, (), 1, 2),
    ("pbft", 4, (("pbft_signed_votes", False),), 1, 2),
    ("pbft", 7, (), 1, 1),
    ("poe", 4, (), 1, 1),
    ("poe", 4, (("poe_certificate", "macs"),), 1, 1),
    ("rcc", 4, (), 1, 1),
    ("rcc", 4, (), 2, 1),
    ("hotstuff", 4, (), 1, 1),
)

CASES: tuple[tuple[Any, ...], ...] = tuple(
    (proto, n, 300 + 10 * k + i, mix, params, workers)
    for proto, n, params, workers, per_mix in _RUNS
    for i, mix in enumerate(MIXES)
    for k in range(per_mix)
)


def fingerprint(
    proto: str, n: int, seed: int, mix: str, params: tuple[tuple[str, Any], ...], workers: int
) -> str:
    """The run's trace digest, counters and committed length, hashed (16 hex digits)."""
    options = SimOptions(
        clients=3,
        requests=12,
        in_flight=3,
        think_ticks=20.0,
        settle_ticks=0.0 if proto == "hotstuff" else 2000.0,
        params=dict(params),
        worker_threads=workers,
    )
    r = run_seed(proto, n, seed, mix, options)
    assert r.ok, r.report()
    text = f"{r.trace_digest}|{sorted(r.counters.items())}|{r.committed}|{r.steps}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _case_id(case: tuple[Any, ...]) -> str:
    proto, n, seed, mix, params, workers = case
    knobs = "".join(f"-{k}={v}" for k, v in params)
    return f"{proto}-n{n}-{mix}-s{seed}-w{workers}{knobs}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_seeded_run_matches_its_golden_fingerprint(case: tuple[Any, ...]) -> None:
    assert fingerprint(*case) == GOLDEN[case]
