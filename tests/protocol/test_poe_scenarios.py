"""Scripted PoE scenarios (tests/protocol/scenarios/poe_*.txt): each runs through the shared
scenario runner (``cluster protocol=poe``) and its trace must equal poe_<name>.expected.

When behaviour changes on purpose, regenerate the expected traces and review the diff:
    PBFT_SCENARIO_REGEN=1 .venv/bin/pytest tests/protocol/test_poe_scenarios.py
(the variable is the shared runner's; test_pbft_scenarios.py also replays these files).

Must not live here: the runner (scenario.py), the PoE cluster (poe_cluster.py).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.protocol.scenario import run_script

SCENARIOS = Path(__file__).parent / "scenarios"
REGEN = os.environ.get("PBFT_SCENARIO_REGEN") == "1"
NAMES = sorted(p.stem for p in SCENARIOS.glob("poe_*.txt"))


def _run(name: str) -> list[str]:
    return run_script((SCENARIOS / f"{name}.txt").read_text())


def _ledgers(trace: list[str]) -> dict[str, str]:
    return {
        ln.split()[0]: ln.partition(" ledger")[2].strip()
        for ln in trace
        if ln.startswith("r") and " ledger" in ln
    }


def test_there_are_poe_scenarios() -> None:
    assert {"poe_normal_case", "poe_macs", "poe_rollback"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_poe_scenario_trace_matches_expected(name: str) -> None:
    text = "\n".join(_run(name)) + "\n"
    expected_path = SCENARIOS / f"{name}.expected"
    if REGEN:
        expected_path.write_text(text)
    assert expected_path.exists(), f"no {expected_path.name}: run with PBFT_SCENARIO_REGEN=1"
    expected = expected_path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{name}.expected",
                f"{name} (now)",
            )
        )
        pytest.fail(f"scenario {name} changed:\n{diff}")


# The expected files pin every action; these state what each scenario is about, so that a
# regenerated expected file that breaks the point of a scenario still fails.


def test_normal_case_executes_in_order_after_out_of_order_certificates() -> None:
    """EDBT'21 §3: r3 holds seq 2's certificate before seq 1's and still executes 1, 2."""
    trace = _run("poe_normal_case")
    assert set(_ledgers(trace).values()) == {"1:b1 2:b2"}
    r3 = [ln for ln in trace if ln.startswith("r3 Deliver")]
    assert r3 == ["r3 Deliver s1 v0 b1", "r3 Deliver s2 v0 b2"]
    assert "r0 Broadcast Certify v0 s1 b1 by [r0,r1,r2]" in trace
    assert not any("Broadcast Support" in ln for ln in trace), "supports go to the primary only"


def test_macs_scenario_has_no_certify_and_all_to_all_supports() -> None:
    trace = _run("poe_macs")
    assert not any("Certify" in ln for ln in trace)
    assert sum("Broadcast Support" in ln for ln in trace) == 6  # 3 backups x 2 seqs
    assert set(_ledgers(trace).values()) == {"1:b1 2:b2"}
    assert sum(ln.endswith("StableCheckpoint s2") for ln in trace) == 4


def test_rollback_scenario_rolls_back_and_ledgers_agree() -> None:
    """EDBT'21 §4: a speculatively executed batch that does not survive is rolled back."""
    trace = _run("poe_rollback")
    assert "r0 Deliver s2 v0 b2" in trace  # executed speculatively (its INFORM went out)
    # ... and undone when r0 enters view 1, with s1 too: the plan keeps b1 at s1, but r0
    # re-executes it in view 1 so its INFORM matches the others' (view, seq, result)
    assert "r0 Rollback to s0" in trace
    assert "r0 Deliver s1 v1 b1" in trace
    assert "r1 Broadcast NvCertify v1 plan=[1:b1,2:null,3:null,4:null]" in trace
    ledgers = _ledgers(trace)
    assert set(ledgers.values()) == {"1:b1 2:null 3:null 4:null 5:b2 6:b3"}, ledgers
    assert "r0 status view=1 mode=active last_executed=6 stable_seq=6 rollbacks=1" in trace
    # Nobody executes the new view's plan before it is locked by n-f NV-COMMITs.
    first_commit = trace.index("r1 Broadcast NvCommit v1 from r1 waiting")
    first_plan_delivery = trace.index("r3 Deliver s2 v1 null")
    assert first_commit < first_plan_delivery
