"""Twins in the simulator (Bano, Sonnino, Chursin, Perelman, Li, Ching, Malkhi: "Twins: BFT
Systems Made Robust", OPODIS 2021): a Byzantine node realised as two copies of the honest
replica with the same id and keys, each heard by a different side of a partition that
changes over time (``--faults twins``). Its own seed mix for every protocol and mode;
bounded (a few seconds in all).
"""

from __future__ import annotations

import random

import pytest

from fabric.sim import SimOptions, Simulator, make_plan, run_many, run_seed

SIGNED = SimOptions()
PBFT_MACS = SimOptions(params={"pbft_signed_votes": False})
POE_MACS = SimOptions(params={"poe_certificate": "macs"})


def test_twins_plan_two_copies_one_id_phases_cover_the_window() -> None:
    plan = make_plan("twins", random.Random(3), 7, 2, 0, 400.0)
    assert 1 <= len(plan.twins) <= 2 and plan.byzantine_ids() == frozenset(plan.twins)
    assert plan.twin_phases[0].start == 0.0 and plan.twin_phases[-1].end == 400.0
    for a, b in zip(plan.twin_phases, plan.twin_phases[1:], strict=False):
        assert a.end == b.start
    t = plan.twins[0]
    assert plan.twin_side(t, 0, 10.0) == 0 and plan.twin_side(t, 1, 10.0) == 1
    assert plan.twin_side(t, 1, 400.0) is None  # healed: everyone hears both copies
    assert "twins=" in plan.describe() and "phase[" in plan.describe()


def test_twins_copies_run_and_the_partition_really_splits() -> None:
    sim = Simulator("pbft", 4, 0, "twins")
    result = sim.run()
    assert result.ok, result.report()
    [t] = sim.plan.twins
    twin = sim.twin_slot[t]
    assert sim.replicas[twin].id == t and type(sim.replicas[twin]) is type(sim.replicas[t])
    assert sim.execs[twin].replica == t
    assert result.counters["twins_split_dropped"] > 0
    # both copies took part: each executed batches of its own
    assert sim.execs[t].last_seq > 0 and sim.execs[twin].last_seq > 0


def test_poe_twins_request_accepted_after_heal_issue_19() -> None:
    """Issue 19: with Twins, a client request was never accepted after the network healed.
    Seed 655 (n=4, signatures): replicas kept view-0 executions of entries the new view
    kept, so INFORMs of one request split between two views and never reached n-f
    identical (view, seq, result); fixed by re-executing the new view's plan in it."""
    result = run_seed("poe", 4, 655, "twins")
    assert result.ok, result.report()
    assert result.requests_accepted == result.requests_total


@pytest.mark.parametrize(
    ("protocol", "n", "seeds", "options"),
    [
        ("pbft", 4, 150, SIGNED),
        ("pbft", 4, 150, PBFT_MACS),
        ("poe", 4, 150, SIGNED),
        ("poe", 4, 150, POE_MACS),
        ("rcc", 4, 60, SIGNED),
        ("rcc", 4, 40, PBFT_MACS),  # RCC's instances are PBFT: MAC-only votes there too
        ("pbft", 7, 30, SIGNED),
        ("poe", 7, 30, POE_MACS),
        ("hotstuff", 4, 40, SIGNED),
    ],
    ids=[
        "pbft",
        "pbft-macs",
        "poe",
        "poe-macs",
        "rcc",
        "rcc-macs",
        "pbft-n7",
        "poe-macs-n7",
        "hotstuff",
    ],
)
def test_twins_seed_mix_safe_and_live(protocol: str, n: int, seeds: int, options) -> None:
    summary = run_many(protocol, n, range(seeds), "twins", options, keep_failures=3)
    assert summary.ok, "\n".join(r.report() for r in summary.failures)
    assert summary.counters["twins_split_dropped"] > 0
