"""Crash-restart and state transfer in the simulator (issue 12 item 5), PBFT (Castro & Liskov
OSDI'99 §4.3: a replica brought up to date from a stable checkpoint).

Mix ``restart``: one replica (the primary half the time) is down for 40-70% of the fault
window, then started again with a new protocol instance and either its durable state (what
it had made final, as the persist stage writes it) or nothing (memory storage). Small
watermark windows (checkpoint every 2 seqs, window 4: peers keep 16 delivered batches) so a
replica down that long is often further behind than the peers' history and must fetch the
state at a certified checkpoint (fabric.runtime.state_transfer, the runtime's own code).
Every run must be safe, and after the clients are done (``settle_ticks``) EVERY honest
replica, the restarted one included, must reach the longest final prefix.

PoE rejoins the same way (its finals and stable proofs answer the restarted replica's
FETCH; state_installed takes the installed state as executed and final). So does RCC: a lane
stable far beyond what it decided, or holding 2f+1 votes for a checkpoint beyond its
far-round gate, fetches the state at that round's global seq; state_installed skips the
round coordinator and every lane to the installed round (protocols/rcc/lane.py). Its lanes
run in one thread (the composite Rcc) and split over two workers (fabric/sim/lanes.py, the
runtime's LaneGroups and coordinator code).
"""

from __future__ import annotations

from collections import Counter

import pytest

from fabric.sim.simulator import SimOptions, Simulator

OPTIONS = SimOptions(
    checkpoint_period=2, watermark_window=4, settle_ticks=2000, requests=12, think_ticks=20
)


def _run(
    seeds: range, protocol: str = "pbft", options: SimOptions = OPTIONS, n: int = 4
) -> Counter[str]:
    counts: Counter[str] = Counter()
    for seed in seeds:
        sim = Simulator(protocol, n, seed, "restart", options)
        result = sim.run()
        assert result.ok, result.report()
        counts["runs"] += 1
        for key in ("state_fetches", "states_installed", "restarts"):
            counts[key] += sim.counters.get(key, 0)
        restart = sim.plan.restarts[0]
        counts["durable" if restart[3] else "memory"] += 1
        if sim.counters.get("states_installed"):
            counts["durable_transfers" if restart[3] else "memory_transfers"] += 1
    return counts


@pytest.mark.parametrize("protocol", ["pbft", "poe", "rcc"])
def test_restarted_replica_catches_up_by_batches_or_state_transfer(protocol: str) -> None:
    counts = _run(range(150), protocol)
    assert counts["runs"] == counts["restarts"] == 150
    # both kinds of restart, and both kinds of catch-up, happen
    assert counts["durable"] > 30 and counts["memory"] > 30
    assert counts["durable_transfers"] > 5 and counts["memory_transfers"] > 5
    assert counts["states_installed"] < counts["runs"]  # others caught up by batches alone


@pytest.mark.parametrize("macs", [False, True])
def test_pbft_restart_with_signed_and_mac_votes_n7(macs: bool) -> None:
    """n=7 (f=2), both vote modes of PBFT."""
    opts = SimOptions(
        checkpoint_period=2,
        watermark_window=4,
        settle_ticks=2000,
        requests=12,
        think_ticks=20,
        params={"pbft_signed_votes": not macs},
    )
    counts: Counter[str] = Counter()
    for seed in range(30):
        sim = Simulator("pbft", 7, seed, "restart", opts)
        result = sim.run()
        assert result.ok, result.report()
        counts["installed"] += sim.counters.get("states_installed", 0)
    assert counts["installed"] > 0


def test_poe_restart_with_mac_certificates() -> None:
    opts = SimOptions(
        checkpoint_period=2,
        watermark_window=4,
        settle_ticks=2000,
        requests=12,
        think_ticks=20,
        params={"poe_certificate": "macs"},
    )
    assert _run(range(40), "poe", opts)["states_installed"] > 0


@pytest.mark.parametrize("n", [4, 7])
def test_rcc_restart_with_lanes_split_over_two_workers(n: int) -> None:
    """RCC's lanes on two LaneGroups with the coordinator between them (as the runtime's
    worker threads run them): the install crosses to every worker the same way."""
    opts = SimOptions(
        checkpoint_period=2,
        watermark_window=4,
        settle_ticks=2000,
        requests=12,
        think_ticks=20,
        worker_threads=2,
    )
    counts = _run(range(60 if n == 4 else 30), "rcc", opts, n)
    assert counts["memory_transfers"] > 3 and counts["durable_transfers"] > 3
