"""Byzantine replicas in real clusters on 127.0.0.1 (fabric/runtime/byzantine.py): one short
run per failure kind. Each checks that the honest replicas keep committing, that the audit
passes over the honest ledgers (the liar left out; a slow replica audited as honest), that
the run reports the kind (summary.json, res.out, nodes.csv) and that the effect shows in
counters: proposals sent in two versions, votes rewritten, frames held back, MAC drops at
the receivers and the view change they cause. Behaviour only, never speed."""

from __future__ import annotations

import csv

import pytest

from fabric.harness import runner
from fabric.harness.paths import RunPaths
from tests.integration.test_cluster import _config

# every process a run spawns is gone when a test ends (tests/integration/conftest.py)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("spawned"),
]

FAST_TIMEOUTS = ("client.request_timeout_ms=600", "protocol.view_change_timeout_ms=600")
SHORT = ("run.duration_s=3", "run.warmup_s=0.5")


def _run(base_port, tmp_path, failure: str, *extra: str, report: bool = False):
    cfg = _config(base_port, *SHORT, f"failures=[{failure}]", *extra)
    outcome = runner.run_experiment(cfg, tmp_path, label="byz", report=report)
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    paths = RunPaths(outcome.folder)
    assert summary["audit"]["ok"], summary["audit"]
    if report:  # the timeline marks the fault with its kind (fabric.analysis.report)
        assert paths.figure("throughput").exists()
    res_out = paths.res_out.read_text()
    with paths.nodes.open() as fh:
        states = {
            row["node"]: row["state"] for row in csv.DictReader(fh) if row["role"] == "replica"
        }
    return summary, res_out, states


def _honest_committed(summary, honest):
    return min(summary["per_node"][str(n)]["executed_seq"] for n in honest)


def test_equivocating_pbft_primary_splits_its_proposals_and_the_honest_replicas_agree(
    base_port, tmp_path
):
    summary, res_out, states = _run(
        base_port,
        tmp_path,
        "{replica: 0, at_s: 0.5, kind: equivocate}",
        *FAST_TIMEOUTS,
        report=True,
    )
    byz = summary["byzantine"]["0"]
    assert byz["kind"] == "equivocate" and byz["active"]
    assert byz["output"]["proposals_equivocated"] > 0
    assert summary["audit"]["honest"] == [1, 2, 3]
    assert _honest_committed(summary, (1, 2, 3)) > 0
    assert states["0"] == "equivocate"
    assert "Byzantine: replica 0 equivocate" in res_out and "proposals_equivocated" in res_out


def test_equivocating_poe_primary_is_survived(base_port, tmp_path):
    summary, _, _ = _run(
        base_port,
        tmp_path,
        "{replica: 0, at_s: 0.5, kind: equivocate}",
        "protocol.name=poe",
        *FAST_TIMEOUTS,
    )
    assert summary["byzantine"]["0"]["output"]["proposals_equivocated"] > 0
    assert summary["audit"]["honest"] == [1, 2, 3]
    assert _honest_committed(summary, (1, 2, 3)) > 0


def test_bad_mac_primary_is_dropped_by_the_receivers_and_replaced_by_a_view_change(
    base_port, tmp_path
):
    summary, res_out, _ = _run(
        base_port,
        tmp_path,
        "{replica: 0, at_s: 1.0, kind: bad_mac}",
        "run.duration_s=4",
        *FAST_TIMEOUTS,
    )
    byz = summary["byzantine"]["0"]
    assert byz["output"]["macs_corrupted"] > 0
    assert byz["honest_mac_drops"] > 0, "the receivers dropped its frames for their MAC"
    assert byz["honest_view_changes"] >= 1
    for node in ("1", "2", "3"):
        assert summary["per_node"][node]["view"] >= 1
    assert summary["audit"]["honest"] == [1, 2, 3]
    assert "dropped" in res_out and "for a bad MAC" in res_out


def test_wrong_digest_votes_are_outvoted(base_port, tmp_path):
    summary, _, states = _run(base_port, tmp_path, "{replica: 1, at_s: 0.3, kind: wrong_digest}")
    assert summary["byzantine"]["1"]["output"]["votes_rewritten"] > 0
    assert summary["audit"]["honest"] == [0, 2, 3]
    assert _honest_committed(summary, (0, 2, 3)) > 0
    assert states["1"] == "wrong_digest"


def test_throttling_primary_delays_every_proposal_but_stays_inside_the_timeout(base_port, tmp_path):
    summary, res_out, _ = _run(
        base_port, tmp_path, "{replica: 0, at_s: 0.3, kind: throttle, delay_ms: 150}"
    )
    byz = summary["byzantine"]["0"]
    assert byz["delay_ms"] == 150 and byz["output"]["frames_delayed"] > 0
    assert byz["honest_view_changes"] == 0, "under the view-change timeout: no view change"
    # every transaction measured (after the 0.5 s warm-up) waited for a held proposal
    assert summary["latency_ms"]["p50"] >= 150
    assert summary["audit"]["honest"] == [1, 2, 3]
    assert "throttle 150 ms" in res_out


def test_slow_replica_sends_late_and_is_audited_as_honest(base_port, tmp_path):
    summary, _, states = _run(
        base_port, tmp_path, "{replica: 2, at_s: 0.3, kind: slow, delay_ms: 50}"
    )
    assert summary["byzantine"]["2"]["output"]["frames_delayed"] > 0
    assert summary["audit"]["honest"] == [0, 1, 2, 3]
    assert states["2"] == "slow"
