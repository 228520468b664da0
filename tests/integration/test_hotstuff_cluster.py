"""Chained HotStuff (protocols/hotstuff) on a real cluster on 127.0.0.1: a leader crashes
mid-run (replica 1, which leads every fourth view); its views time out, NEW-VIEWs recover
the QCs it was collecting, the chain keeps committing and the ledgers audit. A few seconds
of cluster; every process the runner starts is gone when the test ends."""

from __future__ import annotations

import csv

import pytest

from fabric.harness import runner
from fabric.harness.config import load_config
from fabric.harness.paths import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_hotstuff_survives_a_crashed_leader_and_audits(base_port, tmp_path, spawned) -> None:
    cfg = load_config(
        None,
        [
            f"transport.base_port={base_port}",
            "protocol.name=hotstuff",
            "cluster.clients=2",
            "client.request_timeout_ms=1000",
            "protocol.view_change_timeout_ms=300",
            "run.duration_s=8",
            "run.warmup_s=1",
            "failures=[{replica: 1, at_s: 2.0, kind: crash}]",
        ],
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="hotstuff-crash")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert any("replica 1 crashed as configured" in e for e in summary["run"]["events"])
    audit = summary["audit"]
    assert audit["ok"] and audit["honest"] == [0, 2, 3] and audit["common_prefix"] > 0
    with RunPaths(outcome.folder).throughput.open() as fh:
        rows = list(csv.DictReader(fh))
    late = sum(int(r["txn"]) for r in rows if r["role"] == "client" and int(r["time_s"]) >= 5)
    assert late > 0, "no transaction accepted after the leader's crash"
