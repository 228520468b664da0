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
#: checkpoint seqs only, which changed every trace's events, not the replicas' actions)
GOLDEN: dict[tuple[Any, ...], str] = {
    ("pbft", 4, 300, "none", (), 1): "95c43262a0ea3cf8",
    ("pbft", 4, 310, "none", (), 1): "1833408586969552",
    ("pbft", 4, 301, "lossy", (), 1): "4d97624afb5c8bee",
    ("pbft", 4, 311, "lossy", (), 1): "0fad132c9cb6aab4",
    ("pbft", 4, 302, "reorder", (), 1): "9735fabb4cc2a125",
    ("pbft", 4, 312, "reorder", (), 1): "d9e7d8e24d399486",
    ("pbft", 4, 303, "partition", (), 1): "be7b8ccfc394fe32",
    ("pbft", 4, 313, "partition", (), 1): "d5eaa5a698374db5",
    ("pbft", 4, 304, "crash", (), 1): "624371740d885e99",
    ("pbft", 4, 314, "crash", (), 1): "c0a46fcc109d5d88",
    ("pbft", 4, 305, "byzantine", (), 1): "56aa560dafd3593f",
    ("pbft", 4, 315, "byzantine", (), 1): "145b1e59f4c8c43a",
    ("pbft", 4, 306, "mixed", (), 1): "9b8d1f55ea887217",
    ("pbft", 4, 316, "mixed", (), 1): "863970221f570917",
    ("pbft", 4, 300, "none", (("pbft_signed_votes", False),), 1): "3a414417678f5b00",
    ("pbft", 4, 310, "none", (("pbft_signed_votes", False),), 1): "fd9d1cb23391ff59",
    ("pbft", 4, 301, "lossy", (("pbft_signed_votes", False),), 1): "7409b6f1d33b85ae",
    ("pbft", 4, 311, "lossy", (("pbft_signed_votes", False),), 1): "6a1a87c031901134",
    ("pbft", 4, 302, "reorder", (("pbft_signed_votes", False),), 1): "8f2000c53dee1f71",
    ("pbft", 4, 312, "reorder", (("pbft_signed_votes", False),), 1): "b970a63d189c0463",
    ("pbft", 4, 303, "partition", (("pbft_signed_votes", False),), 1): "cf153f7297072c00",
    ("pbft", 4, 313, "partition", (("pbft_signed_votes", False),), 1): "15e826a7d9c7b5f5",
    ("pbft", 4, 304, "crash", (("pbft_signed_votes", False),), 1): "1c34c029cd962d4f",
    ("pbft", 4, 314, "crash", (("pbft_signed_votes", False),), 1): "d52df41bee995012",
    ("pbft", 4, 305, "byzantine", (("pbft_signed_votes", False),), 1): "42dbc2b7011b64dd",
    ("pbft", 4, 315, "byzantine", (("pbft_signed_votes", False),), 1): "3b4eb4a7476103b0",
    ("pbft", 4, 306, "mixed", (("pbft_signed_votes", False),), 1): "a394b904b1ba55d0",
    ("pbft", 4, 316, "mixed", (("pbft_signed_votes", False),), 1): "8577d260dd43aefe",
    ("pbft", 7, 300, "none", (), 1): "69fb5c9a0b082ef5",
    ("pbft", 7, 301, "lossy", (), 1): "22953984779153c2",
    ("pbft", 7, 302, "reorder", (), 1): "5f7f9898cb9c0f2e",
    ("pbft", 7, 303, "partition", (), 1): "72c97019415d4ec9",
    ("pbft", 7, 304, "crash", (), 1): "92b9d3f20162dfad",
    ("pbft", 7, 305, "byzantine", (), 1): "50d56bc7d4c1fb37",
    ("pbft", 7, 306, "mixed", (), 1): "005167461aed4843",
    ("poe", 4, 300, "none", (), 1): "38ac075f6ea3a235",
    ("poe", 4, 301, "lossy", (), 1): "c7e289bc766779ff",
    ("poe", 4, 302, "reorder", (), 1): "c84d50a186faa545",
    ("poe", 4, 303, "partition", (), 1): "24a428b660a673d5",
    ("poe", 4, 304, "crash", (), 1): "48637804f51a9485",
    ("poe", 4, 305, "byzantine", (), 1): "9b95258526cac712",
    ("poe", 4, 306, "mixed", (), 1): "cd769cc96d33456c",
    ("poe", 4, 300, "none", (("poe_certificate", "macs"),), 1): "4e654bf2b89c1c20",
    ("poe", 4, 301, "lossy", (("poe_certificate", "macs"),), 1): "7247402351f49deb",
    ("poe", 4, 302, "reorder", (("poe_certificate", "macs"),), 1): "e8a2f5b206e7409a",
    ("poe", 4, 303, "partition", (("poe_certificate", "macs"),), 1): "32aa8758614e58c1",
    ("poe", 4, 304, "crash", (("poe_certificate", "macs"),), 1): "ee64af34d86c01af",
    ("poe", 4, 305, "byzantine", (("poe_certificate", "macs"),), 1): "ac46ef7871e223f9",
    ("poe", 4, 306, "mixed", (("poe_certificate", "macs"),), 1): "a6948cceb9daf205",
    ("rcc", 4, 300, "none", (), 1): "974e6b1c1ec625cd",
    ("rcc", 4, 301, "lossy", (), 1): "095685b5ece59784",
    ("rcc", 4, 302, "reorder", (), 1): "0a5b5d517f4c655c",
    ("rcc", 4, 303, "partition", (), 1): "20213743bd92d61f",
    ("rcc", 4, 304, "crash", (), 1): "ad7ade03b3d9a62e",
    ("rcc", 4, 305, "byzantine", (), 1): "a8e96a21e7c96a14",
    ("rcc", 4, 306, "mixed", (), 1): "591fc9d202976e05",
    ("rcc", 4, 300, "none", (), 2): "c34c2b6f32705a10",
    ("rcc", 4, 301, "lossy", (), 2): "452172cdebfc5870",
    ("rcc", 4, 302, "reorder", (), 2): "f0ad4ad0c8dce705",
    ("rcc", 4, 303, "partition", (), 2): "e4f01087592b678d",
    ("rcc", 4, 304, "crash", (), 2): "a30fbd25f4eb5e17",
    ("rcc", 4, 305, "byzantine", (), 2): "ce225d54ba1c2057",
    ("rcc", 4, 306, "mixed", (), 2): "cf7374ad6b5ef104",
    ("hotstuff", 4, 300, "none", (), 1): "c0515364d4708eab",
    ("hotstuff", 4, 301, "lossy", (), 1): "dfa33f883bd0f5a1",
    ("hotstuff", 4, 302, "reorder", (), 1): "e79a51f2ddbaa3e0",
    ("hotstuff", 4, 303, "partition", (), 1): "ef0183185aed1190",
    ("hotstuff", 4, 304, "crash", (), 1): "a3e61f48f7cdfc88",
    ("hotstuff", 4, 305, "byzantine", (), 1): "150beb3cb7ea0e9c",
    ("hotstuff", 4, 306, "mixed", (), 1): "0c3ecbe9f4bbbc62",
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
