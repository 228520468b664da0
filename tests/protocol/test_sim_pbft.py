"""PBFT (protocols/pbft) in the deterministic simulator: many seeds, every fault mix.

The big runs (``@pytest.mark.slow``, part of ``make test``) sweep >= 1000 seeds at n=4 and
140 at n=7 across all fault mixes and demand zero safety violations and zero liveness
failures; a failure prints each seed's replay command. A PBFT subclass with quorums of f
(Castro & Liskov 4.2 needs 2f prepares and 2f+1 commits) must be caught under an
equivocating primary, which shows the checkers and the Byzantine senders bite on PBFT.

Must not live here: simulator internals (test_sim.py), PBFT unit tests (the PBFT engineer's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fabric.sim import MIXES, SimOptions, SimSummary, Simulator, run_many, run_seed
from protocols.common import NULL_BATCH

pbft = pytest.importorskip("protocols.pbft")
Pbft = pbft.Pbft
REPO = Path(__file__).resolve().parents[2]


class WeakQuorumPbft(Pbft):
    """PBFT with prepare and commit quorums of f: a faulty primary can split the backups."""

    name = "pbft-weak-quorum"

    def __init__(self, config, verifier) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, verifier)
        self.prepare_quorum = self.f
        self.commit_quorum = self.f


def _failures(summary: SimSummary) -> str:
    return "\n".join(r.report() for r in summary.failures)


def _print_figures(summary: SimSummary) -> None:
    per_batch = summary.messages_per_batch()
    print(
        f"\nPBFT n={summary.n}: {summary.runs} seeds in {summary.wall_s:.1f} s, "
        f"outcomes {dict(summary.outcomes)}, committed {summary.committed}"
    )
    print(
        "  messages per committed batch: " + ", ".join(f"{k} {v:.2f}" for k, v in per_batch.items())
    )


# Known PBFT liveness bugs the simulator found (n=4, seed -> mix), reported to the PBFT
# engineer; no safety violation is known. Each replays with
#   python -m fabric sim --protocol pbft --replicas 4 --seed <seed> --faults mixed --verbose
# (seed 538 [mixed], a garbled-FetchReply catch-up stall, was fixed in PBFT's catch-up.)
# test_known_pbft_liveness_bugs_still_reproduce fails as soon as one is fixed: then delete
# its entry here so the big run guards it again.
KNOWN_PBFT_LIVENESS_BUGS_N4: dict[int, str] = {}


# --- the big runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_pbft_1050_seeds_n4_all_mixes() -> None:
    """BIG RUN: seeds 0..1049 at n=4, seed s under mix s % 7 (150 seeds per mix).

    Zero safety violations, full stop; zero liveness failures apart from the known bugs.
    """
    summary = run_many("pbft", 4, range(1050), MIXES)
    _print_figures(summary)
    assert summary.runs == 1050
    assert set(summary.by_mix) == set(MIXES)
    assert summary.violations == 0, _failures(summary)
    unexpected = [
        r for r in summary.failures if KNOWN_PBFT_LIVENESS_BUGS_N4.get(r.seed) != r.faults
    ]
    assert not unexpected, "\n".join(r.report() for r in unexpected)
    assert summary.runs - summary.outcomes["ok"] == len(summary.failures)  # none left unseen


@pytest.mark.parametrize(("seed", "mix"), sorted(KNOWN_PBFT_LIVENESS_BUGS_N4.items()))
def test_known_pbft_liveness_bugs_still_reproduce(seed: int, mix: str) -> None:
    result = run_seed("pbft", 4, seed, mix)
    assert result.outcome == "liveness", (
        f"seed {seed} [{mix}] passes now: remove it from KNOWN_PBFT_LIVENESS_BUGS_N4\n"
        + result.report()
    )


@pytest.mark.slow
def test_pbft_140_seeds_n7_all_mixes() -> None:
    """BIG RUN: seeds 0..139 at n=7 (f=2: two crashed or Byzantine replicas at most)."""
    summary = run_many("pbft", 7, range(140), MIXES)
    _print_figures(summary)
    assert summary.violations == 0, _failures(summary)
    assert summary.ok, _failures(summary)


# --- smaller, sharper checks -----------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 7])
def test_pbft_normal_case_message_counts(n: int) -> None:
    """Castro & Liskov 4.2, no faults: per batch n-1 pre-prepares, (n-1)^2 prepares, n(n-1) commits."""
    summary = run_many(
        "pbft", n, range(10), "none", SimOptions(checkpoint_period=1000, watermark_window=2000)
    )
    assert summary.ok, _failures(summary)
    assert summary.committed > 0
    sent = summary.sent_by_kind
    assert sent["PrePrepare"] == (n - 1) * summary.committed
    assert sent["Prepare"] == (n - 1) ** 2 * summary.committed
    assert sent["Commit"] == n * (n - 1) * summary.committed
    assert sent["Reply"] == n * summary.requests_accepted
    assert sent.get("ViewChange", 0) == 0 and summary.counters["view_changes"] == 0


def test_pbft_view_change_after_primary_crash() -> None:
    """Castro & Liskov 4.4: a crashed primary is replaced and every request still completes."""
    found = 0
    for seed in range(60):
        result = run_seed("pbft", 4, seed, "crash")
        if "crash(r0@" not in result.plan:
            continue
        found += 1
        assert result.ok, result.report()
        assert result.counters["max_view"] >= 1, result.report()
        assert result.requests_accepted == result.requests_total
        if found == 3:
            break
    assert found == 3


def test_pbft_trace_is_the_same_in_another_process() -> None:
    """The replay command reproduces a run even under another PYTHONHASHSEED."""
    digests = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fabric",
                "sim",
                "--protocol",
                "pbft",
                "--seed",
                "40",
                "--faults",
                "mixed",
            ],
            cwd=REPO,
            env=dict(os.environ, PYTHONHASHSEED=hash_seed),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        digests.update(line for line in out.splitlines() if line.startswith("trace digest"))
    assert len(digests) == 1


def test_pbft_seed_replays_exactly() -> None:
    a = run_seed("pbft", 4, 40, "mixed")
    b = run_seed("pbft", 4, 40, "mixed")
    assert a.trace_digest == b.trace_digest and a.counters == b.counters
    assert run_seed("pbft", 4, 41, "mixed").trace_digest != a.trace_digest


def test_weak_quorum_pbft_is_caught_under_equivocation() -> None:
    """Quorums of f let an equivocating primary commit batch A at some backups, B at others."""
    equivocating = [
        seed
        for seed in range(300)
        if "byzantine(r0:equivocate)" in Simulator(Pbft, 4, seed, "byzantine").plan.describe()
    ][:5]
    assert equivocating, "no seed with an equivocating primary"
    for seed in equivocating:
        strong = run_seed(Pbft, 4, seed, "byzantine")
        assert strong.outcome != "violation", strong.report()
        weak = run_seed(WeakQuorumPbft, 4, seed, "byzantine")
        assert weak.outcome == "violation", weak.report()
        assert weak.violation is not None
        assert weak.violation.kind in ("agreement", "prefix", "accepted_result"), weak.report()
        assert "--protocol pbft-weak-quorum --replicas 4" in weak.replay


# --- unsigned votes (MACs only): the claims-based view change ---------------------------------

UNSIGNED = SimOptions(params={"pbft_signed_votes": False})


@pytest.mark.slow
def test_pbft_unsigned_votes_1050_seeds_n4_all_mixes() -> None:
    """BIG RUN: MAC-only votes, seeds 0..1049 at n=4 (150 per mix). Byzantine replicas sign
    lying VIEW-CHANGEs (fabric/runtime/forgery.py): prepared claims of their alternative
    batches in the latest view they may name, backed by pre-prepare claims."""
    summary = run_many("pbft", 4, range(1050), MIXES, UNSIGNED)
    _print_figures(summary)
    assert summary.violations == 0, _failures(summary)
    assert summary.ok, _failures(summary)
    assert summary.counters["byzantine_forged"] > 0  # the lies were told


@pytest.mark.slow
def test_pbft_unsigned_votes_140_seeds_n7_and_rcc() -> None:
    for protocol, n in (("pbft", 7), ("rcc", 4)):
        summary = run_many(protocol, n, range(140), MIXES, UNSIGNED)
        assert summary.violations == 0, _failures(summary)
        assert summary.ok, _failures(summary)


class HighestClaimPbft(Pbft):
    """Unsigned votes with the signed mode's rule (the highest-view prepared claim wins),
    which is what PBFT did here before the claims rule: a signed lie outranks a commit."""

    name = "pbft-highest-claim"

    def _plan_from_claims(self, view_changes: Any, min_s: int) -> Any:
        best: dict[int, Any] = {}
        for vc in view_changes:
            for cert in vc.prepared:
                pp = cert.pre_prepare
                cur = best.get(pp.seq)
                if pp.seq > min_s and (
                    cur is None or (pp.view, pp.batch.digest) > (cur.view, cur.batch.digest)
                ):
                    best[pp.seq] = pp
        top = max(best, default=min_s)
        return [(s, best[s].batch if s in best else NULL_BATCH) for s in range(min_s + 1, top + 1)]


def test_unsigned_votes_need_the_claims_rule() -> None:
    """The simulator's signed lies break the highest-claim rule; the real one passes there."""
    for seed in range(300):
        mix = ("byzantine", "mixed")[seed % 2]
        result = run_seed(HighestClaimPbft, 4, seed, mix, UNSIGNED)
        if result.outcome == "violation":
            assert run_seed("pbft", 4, seed, mix, UNSIGNED).ok
            return
    pytest.fail("the highest-claim rule was never caught in 300 seeds")
