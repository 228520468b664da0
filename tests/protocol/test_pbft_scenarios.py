"""Scripted PBFT scenarios: each tests/protocol/scenarios/<name>.txt runs through the scenario
runner and its trace must equal <name>.expected line for line.

When behaviour changes on purpose, regenerate the expected traces and review the diff:
    PBFT_SCENARIO_REGEN=1 .venv/bin/pytest tests/protocol/test_pbft_scenarios.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.protocol.scenario import run_script

SCENARIOS = Path(__file__).parent / "scenarios"
REGEN = os.environ.get("PBFT_SCENARIO_REGEN") == "1"
NAMES = sorted(p.stem for p in SCENARIOS.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert {"normal_case", "view_change_prepared", "checkpoint_gc"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_scenario_trace_matches_expected(name: str) -> None:
    script = (SCENARIOS / f"{name}.txt").read_text()
    trace = run_script(script)
    expected_path = SCENARIOS / f"{name}.expected"
    text = "\n".join(trace) + "\n"
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


def _ledgers(trace: list[str]) -> dict[str, str]:
    return {
        ln.split()[0]: ln.partition(" ledger")[2].strip()
        for ln in trace
        if ln.startswith("r") and " ledger" in ln
    }


# The expected files pin every action; these state what each scenario is about, so that a
# regenerated expected file that breaks the point of a scenario still fails.


def test_normal_case_scenario_delivers_in_order() -> None:
    trace = run_script((SCENARIOS / "normal_case.txt").read_text())
    assert set(_ledgers(trace).values()) == {"1:b1 2:b2"}
    r3 = [ln for ln in trace if ln.startswith("r3 Deliver")]
    assert r3 == ["r3 Deliver s1 v0 b1", "r3 Deliver s2 v0 b2"]


def test_view_change_scenario_keeps_prepared_batch_at_its_seq() -> None:
    trace = run_script((SCENARIOS / "view_change_prepared.txt").read_text())
    ledgers = _ledgers(trace)
    assert ledgers["r0"] == ""
    assert {ledgers[r] for r in ("r1", "r2", "r3")} == {"1:b1 2:b2"}
    assert "r1 Broadcast NewView v1 from=[r1,r2,r3] pre_prepares=[1:b1]" in trace


def test_checkpoint_scenario_collects_garbage_and_slides_the_window() -> None:
    trace = run_script((SCENARIOS / "checkpoint_gc.txt").read_text())
    assert "r0 status last_assigned=4 queued=1 low_watermark=0 high_watermark=4" in trace
    assert "r1 status stable_seq=4 low_watermark=4 high_watermark=8 last_delivered=5" in trace
    assert set(_ledgers(trace).values()) == {"1:b1 2:b2 3:b3 4:b4 5:b5"}


def test_null_fill_scenario() -> None:
    trace = run_script((SCENARIOS / "null_fill.txt").read_text())
    assert {v for k, v in _ledgers(trace).items() if k != "r0"} == {"1:null 2:b2 3:b3"}


def test_lagging_scenario_catches_up() -> None:
    trace = run_script((SCENARIOS / "lagging_catch_up.txt").read_text())
    assert set(_ledgers(trace).values()) == {"1:b1 2:b2 3:b3 4:b4"}


def test_runner_rejects_unknown_steps() -> None:
    with pytest.raises(ValueError, match="line 2"):
        run_script("cluster n=4\nfly r0\n")
    with pytest.raises(ValueError, match="start with 'cluster'"):
        run_script("propose r0 b1\n")
