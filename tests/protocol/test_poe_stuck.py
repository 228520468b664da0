"""PoE schedules of issue 19, written by hand: a replica cut off right after it executed a
proposal the others never certified must not hold that speculative entry forever.

The schedule (``stuck_schedule``): n=4, one client, batches of one request, no jitter, so
every step lands on a known tick. The primary r0 proposes at tick 1; its PROPOSE reaches
r1 and r2 only (r3 is cut off from r0's side while it travels); their SUPPORTs reach r0 at
tick 3 and r0 executes seq 1 speculatively; r0 is cut off from tick 2.9, so its CERTIFY
(signatures) never leaves. r1-r3 change view without it: the new view's plan has no
certificate for seq 1 (null there) and they go on in view 1. The partition heals at 650,
the client finishes, and the run settles 3000 ticks more with no traffic at all. Before the
fix r0 ended in view 0 with its view-0 entry at seq 1 (the others: a null batch in view 1)
and never rolled it back or caught up: nothing it still expected would ever arrive.
Now executed entries that stay unfinal arm a finality probe (a FETCH from its verified
prefix, doubling while nothing changes): the others' final replies roll r0 back and
bring it to their prefix, in both certificate modes.
"""

from __future__ import annotations

import pytest

from fabric.sim import SimOptions, Simulator
from fabric.sim.faults import FaultPlan, Partition

WINDOW = 700.0
SETTLE = 3000.0


def stuck_schedule() -> FaultPlan:
    return FaultPlan(
        "targeted",
        WINDOW,
        partitions=(
            Partition(0.5, 1.5, ((0, 1, 2), (3,))),  # the PROPOSE reaches r1 and r2 only
            Partition(2.9, 650.0, ((0,), (1, 2, 3))),  # r0 cut off before its CERTIFY
        ),
    )


def run_stuck(params: dict, settle: float = SETTLE) -> Simulator:
    opt = SimOptions(
        clients=1,
        requests=20,
        in_flight=2,
        batch_size=1,
        jitter_ticks=0.0,
        think_ticks=0.0,
        fault_window_ticks=WINDOW,
        params=params,
        settle_ticks=settle,
    )
    sim = Simulator("poe", 4, 0, "targeted", opt, plan=stuck_schedule())
    sim.result = sim.run()  # type: ignore[attr-defined]
    return sim


@pytest.mark.parametrize("params", [{}, {"poe_certificate": "macs"}], ids=["signatures", "macs"])
def test_cut_off_primary_rolls_back_its_view_0_entry_and_catches_up(params: dict) -> None:
    sim = run_stuck(params)
    result = sim.result  # type: ignore[attr-defined]
    assert result.ok, result.report()
    last = {sim.execs[r].last_seq for r in range(4)}
    assert len(last) == 1
    heads = {sim.execs[r].head_at(max(last)) for r in range(4)}
    assert len(heads) == 1 and None not in heads  # everyone holds the same state
    # r0's seq 1 is the others' now (signatures: its view-0 batch rolled back for the null),
    # or r0, further behind than the others' history, installed their certified state over
    # it (issue 12's state transfer: no entry of its own below the image)
    r0 = sim.execs[0]
    assert r0.base_seq >= 1 or r0.entry(1).digest == sim.execs[1].entry(1).digest
    assert sim.replicas[0].final_probes >= 1


def test_the_schedule_does_strand_r0_without_the_settle_period() -> None:
    """The schedule is sharp: when the run stops with the clients (no settle period), r0 is
    still in view 0 holding its own seq 1 (signatures: the others have a null batch there)."""
    sim = run_stuck({}, settle=0.0)
    assert sim.result.ok  # type: ignore[attr-defined]
    r0, r1 = sim.execs[0], sim.execs[1]
    assert sim.replicas[0].view == 0 and r0.entry(1).view == 0
    assert r1.entry(1).view == 1 and r1.entry(1).digest != r0.entry(1).digest
