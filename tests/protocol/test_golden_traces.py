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
#: 11a349a (before the PBFT hot-path changes)
GOLDEN: dict[tuple[Any, ...], str] = {
    ("pbft", 4, 300, "none", (), 1): "8b5d724fe05a6736",
    ("pbft", 4, 310, "none", (), 1): "3c95468a14fc7b38",
    ("pbft", 4, 301, "lossy", (), 1): "f93e77134c65ba9e",
    ("pbft", 4, 311, "lossy", (), 1): "2c082e8149373e61",
    ("pbft", 4, 302, "reorder", (), 1): "2cdccefb928a131d",
    ("pbft", 4, 312, "reorder", (), 1): "59f9c36416ebaebf",
    ("pbft", 4, 303, "partition", (), 1): "3537c4f636abe0de",
    ("pbft", 4, 313, "partition", (), 1): "b4de047e7d58e283",
    ("pbft", 4, 304, "crash", (), 1): "e348677568778e68",
    ("pbft", 4, 314, "crash", (), 1): "6ba079699f1a6518",
    ("pbft", 4, 305, "byzantine", (), 1): "2b391c3255733a1c",
    ("pbft", 4, 315, "byzantine", (), 1): "c600bf822fef6450",
    ("pbft", 4, 306, "mixed", (), 1): "2fc6425fcd36bc9e",
    ("pbft", 4, 316, "mixed", (), 1): "cbc2342af86ec2a1",
    ("pbft", 4, 300, "none", (("pbft_signed_votes", False),), 1): "bdbd45a31a13b557",
    ("pbft", 4, 310, "none", (("pbft_signed_votes", False),), 1): "297537d98ab282a6",
    ("pbft", 4, 301, "lossy", (("pbft_signed_votes", False),), 1): "25df7b74cb4688a9",
    ("pbft", 4, 311, "lossy", (("pbft_signed_votes", False),), 1): "40b735c86f1e84a4",
    ("pbft", 4, 302, "reorder", (("pbft_signed_votes", False),), 1): "5d8d31875fa769d5",
    ("pbft", 4, 312, "reorder", (("pbft_signed_votes", False),), 1): "55ca9b645dcfcf9a",
    ("pbft", 4, 303, "partition", (("pbft_signed_votes", False),), 1): "d0134ebdb695919c",
    ("pbft", 4, 313, "partition", (("pbft_signed_votes", False),), 1): "97b5b0bb566c5b0b",
    ("pbft", 4, 304, "crash", (("pbft_signed_votes", False),), 1): "bc28a2067eef342b",
    ("pbft", 4, 314, "crash", (("pbft_signed_votes", False),), 1): "a6e99ef313b00061",
    ("pbft", 4, 305, "byzantine", (("pbft_signed_votes", False),), 1): "19967299be7a6d7b",
    ("pbft", 4, 315, "byzantine", (("pbft_signed_votes", False),), 1): "99c9d6003deea1fe",
    ("pbft", 4, 306, "mixed", (("pbft_signed_votes", False),), 1): "9f48abbb331ea5b1",
    ("pbft", 4, 316, "mixed", (("pbft_signed_votes", False),), 1): "977cb3dfc951ae1f",
    ("pbft", 7, 300, "none", (), 1): "712497060e0a0b22",
    ("pbft", 7, 301, "lossy", (), 1): "7ad83415b43bb80d",
    ("pbft", 7, 302, "reorder", (), 1): "ca176d5e22fbdda0",
    ("pbft", 7, 303, "partition", (), 1): "deabac7b1dca98f7",
    ("pbft", 7, 304, "crash", (), 1): "dd953f1121d99b9d",
    ("pbft", 7, 305, "byzantine", (), 1): "fc4fecd26e504c46",
    ("pbft", 7, 306, "mixed", (), 1): "e0767fe8385ed8a2",
    ("poe", 4, 300, "none", (), 1): "158513954bb9bc84",
    ("poe", 4, 301, "lossy", (), 1): "71e36cc4d6a977f0",
    ("poe", 4, 302, "reorder", (), 1): "2ea2c16ce058520f",
    ("poe", 4, 303, "partition", (), 1): "c7211180f1fa1004",
    ("poe", 4, 304, "crash", (), 1): "079ffa4a7ac97470",
    ("poe", 4, 305, "byzantine", (), 1): "31306042de1eb729",
    ("poe", 4, 306, "mixed", (), 1): "b427671d4c19ba94",
    ("poe", 4, 300, "none", (("poe_certificate", "macs"),), 1): "6b085148c3fc3139",
    ("poe", 4, 301, "lossy", (("poe_certificate", "macs"),), 1): "3d3aeda09477a3ec",
    ("poe", 4, 302, "reorder", (("poe_certificate", "macs"),), 1): "c5482be8dde50070",
    ("poe", 4, 303, "partition", (("poe_certificate", "macs"),), 1): "7a9a8e21acbca268",
    ("poe", 4, 304, "crash", (("poe_certificate", "macs"),), 1): "4acdf07c54b41c6e",
    ("poe", 4, 305, "byzantine", (("poe_certificate", "macs"),), 1): "e6deb36bf69250e9",
    ("poe", 4, 306, "mixed", (("poe_certificate", "macs"),), 1): "c66c0cf731a02509",
    ("rcc", 4, 300, "none", (), 1): "5d439b8ffb901c60",
    ("rcc", 4, 301, "lossy", (), 1): "53d5d58597115eaa",
    ("rcc", 4, 302, "reorder", (), 1): "ecb305a8276083f8",
    ("rcc", 4, 303, "partition", (), 1): "5044a44a59a0321e",
    ("rcc", 4, 304, "crash", (), 1): "bdcc1ebe2c4298ee",
    ("rcc", 4, 305, "byzantine", (), 1): "22b0ff0f9c029be8",
    ("rcc", 4, 306, "mixed", (), 1): "f52c9a72c4e38134",
    ("rcc", 4, 300, "none", (), 2): "c31e644c70441727",
    ("rcc", 4, 301, "lossy", (), 2): "38321674bd53bf48",
    ("rcc", 4, 302, "reorder", (), 2): "84c665544fcc9c44",
    ("rcc", 4, 303, "partition", (), 2): "bbae673e55df256b",
    ("rcc", 4, 304, "crash", (), 2): "738b16aabab188aa",
    ("rcc", 4, 305, "byzantine", (), 2): "0e2e8d024b1ac121",
    ("rcc", 4, 306, "mixed", (), 2): "fffbe330eea044e1",
    ("hotstuff", 4, 300, "none", (), 1): "322306d73447bd3d",
    ("hotstuff", 4, 301, "lossy", (), 1): "c3e5e360d68655ed",
    ("hotstuff", 4, 302, "reorder", (), 1): "4ac3ba0d9e1cbc08",
    ("hotstuff", 4, 303, "partition", (), 1): "b05ef23a4eefebb0",
    ("hotstuff", 4, 304, "crash", (), 1): "793b02ebb42fcc1d",
    ("hotstuff", 4, 305, "byzantine", (), 1): "736f5cc2e0dd31b2",
    ("hotstuff", 4, 306, "mixed", (), 1): "8f7247b46f48605c",
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


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-n{c[1]}-{c[3]}-s{c[2]}-w{c[5]}")
def test_seeded_run_matches_its_golden_fingerprint(case: tuple[Any, ...]) -> None:
    assert fingerprint(*case) == GOLDEN[case]
