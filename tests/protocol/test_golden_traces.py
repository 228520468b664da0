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
#: payload (head + txns) matched all 70 fingerprints of c9bb51f. Re-pinned again when the batch
#: digest came to hash each request's txns digest (protocols.common.batch_digest); shown
#: before: the new code with the former batch_digest matched the previous table.
GOLDEN: dict[tuple[Any, ...], str] = {
    ("pbft", 4, 300, "none", (), 1): "4d98422308f656e7",
    ("pbft", 4, 310, "none", (), 1): "3b8dc0addfa5bb45",
    ("pbft", 4, 301, "lossy", (), 1): "3a915651d3bad74d",
    ("pbft", 4, 311, "lossy", (), 1): "b104ad0284e7fc19",
    ("pbft", 4, 302, "reorder", (), 1): "498d6c33724e9b45",
    ("pbft", 4, 312, "reorder", (), 1): "1c30325515a81ff7",
    ("pbft", 4, 303, "partition", (), 1): "94034c94fb757a7c",
    ("pbft", 4, 313, "partition", (), 1): "573d6bbde06806c3",
    ("pbft", 4, 304, "crash", (), 1): "ace10e0834908708",
    ("pbft", 4, 314, "crash", (), 1): "800c5a5719ca345e",
    ("pbft", 4, 305, "byzantine", (), 1): "b0e95a9013663b39",
    ("pbft", 4, 315, "byzantine", (), 1): "f78f2423783603cc",
    ("pbft", 4, 306, "mixed", (), 1): "525ddfbb46532282",
    ("pbft", 4, 316, "mixed", (), 1): "26c570b46a6899b2",
    ("pbft", 4, 300, "none", (("pbft_signed_votes", False),), 1): "2f51715d310e44e3",
    ("pbft", 4, 310, "none", (("pbft_signed_votes", False),), 1): "6ee463170bd474be",
    ("pbft", 4, 301, "lossy", (("pbft_signed_votes", False),), 1): "5ef3087199e4553a",
    ("pbft", 4, 311, "lossy", (("pbft_signed_votes", False),), 1): "1dbbb412bbe0dfd9",
    ("pbft", 4, 302, "reorder", (("pbft_signed_votes", False),), 1): "4c60498d3d3b6724",
    ("pbft", 4, 312, "reorder", (("pbft_signed_votes", False),), 1): "8667060ce7351324",
    ("pbft", 4, 303, "partition", (("pbft_signed_votes", False),), 1): "7b405346c4d81c44",
    ("pbft", 4, 313, "partition", (("pbft_signed_votes", False),), 1): "78d1e3bc4f2d5e84",
    ("pbft", 4, 304, "crash", (("pbft_signed_votes", False),), 1): "c9c7a23704214dd9",
    ("pbft", 4, 314, "crash", (("pbft_signed_votes", False),), 1): "d15bf34bd17bc43f",
    ("pbft", 4, 305, "byzantine", (("pbft_signed_votes", False),), 1): "d5955c03ffb89502",
    ("pbft", 4, 315, "byzantine", (("pbft_signed_votes", False),), 1): "8b3012a4764863ab",
    ("pbft", 4, 306, "mixed", (("pbft_signed_votes", False),), 1): "f476de311a872694",
    ("pbft", 4, 316, "mixed", (("pbft_signed_votes", False),), 1): "864b38012dac37b7",
    ("pbft", 7, 300, "none", (), 1): "e03f42c9bdc1623c",
    ("pbft", 7, 301, "lossy", (), 1): "c5fef2335e2ca371",
    ("pbft", 7, 302, "reorder", (), 1): "775921a2d444bd70",
    ("pbft", 7, 303, "partition", (), 1): "de3ce3410a511504",
    ("pbft", 7, 304, "crash", (), 1): "2dcc60aebda647f0",
    ("pbft", 7, 305, "byzantine", (), 1): "73a7d11b19532cb9",
    ("pbft", 7, 306, "mixed", (), 1): "f2704e11abd0e71e",
    ("poe", 4, 300, "none", (), 1): "fcbcd524c7adda63",
    ("poe", 4, 301, "lossy", (), 1): "6d6426a369d967ed",
    ("poe", 4, 302, "reorder", (), 1): "b5f015577d1a7be4",
    ("poe", 4, 303, "partition", (), 1): "8be32b441def7f91",
    ("poe", 4, 304, "crash", (), 1): "48a7a4e070d6d184",
    ("poe", 4, 305, "byzantine", (), 1): "91292655ad98da82",
    ("poe", 4, 306, "mixed", (), 1): "c086bcb67948633a",
    ("poe", 4, 300, "none", (("poe_certificate", "macs"),), 1): "a2922b409dede0fe",
    ("poe", 4, 301, "lossy", (("poe_certificate", "macs"),), 1): "cd0452d845da241f",
    ("poe", 4, 302, "reorder", (("poe_certificate", "macs"),), 1): "13f98d05c741685e",
    ("poe", 4, 303, "partition", (("poe_certificate", "macs"),), 1): "8a1176238c853f66",
    ("poe", 4, 304, "crash", (("poe_certificate", "macs"),), 1): "70fa1e730013f476",
    ("poe", 4, 305, "byzantine", (("poe_certificate", "macs"),), 1): "f02c030951293f9d",
    ("poe", 4, 306, "mixed", (("poe_certificate", "macs"),), 1): "dcc5328750c87312",
    ("rcc", 4, 300, "none", (), 1): "791a978975b4b2d4",
    ("rcc", 4, 301, "lossy", (), 1): "245a27807b24d634",
    ("rcc", 4, 302, "reorder", (), 1): "df85fcfe401969c6",
    ("rcc", 4, 303, "partition", (), 1): "08c6edc09f5fb636",
    ("rcc", 4, 304, "crash", (), 1): "569c1007f9b20edc",
    ("rcc", 4, 305, "byzantine", (), 1): "6e0f25c1109f80c0",
    ("rcc", 4, 306, "mixed", (), 1): "521e8a47f18b5b5c",
    ("rcc", 4, 300, "none", (), 2): "3236e9bad7e92864",
    ("rcc", 4, 301, "lossy", (), 2): "a4096d3d5e460d98",
    ("rcc", 4, 302, "reorder", (), 2): "3ea03532d0c94912",
    ("rcc", 4, 303, "partition", (), 2): "289fb8d17a7e3bd4",
    ("rcc", 4, 304, "crash", (), 2): "1e29c1ac3bdc5928",
    ("rcc", 4, 305, "byzantine", (), 2): "2b804c30e2591fb7",
    ("rcc", 4, 306, "mixed", (), 2): "6d0fb25b7a3dafe8",
    ("hotstuff", 4, 300, "none", (), 1): "74c73cc9d40bbbd1",
    ("hotstuff", 4, 301, "lossy", (), 1): "3ae710ad692cf46c",
    ("hotstuff", 4, 302, "reorder", (), 1): "6f0ad7ada751a4fc",
    ("hotstuff", 4, 303, "partition", (), 1): "274200cdefdac562",
    ("hotstuff", 4, 304, "crash", (), 1): "8b3ba11152ab42a2",
    ("hotstuff", 4, 305, "byzantine", (), 1): "4e3270a576fd5aa5",
    ("hotstuff", 4, 306, "mixed", (), 1): "353583048a48c687",
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
