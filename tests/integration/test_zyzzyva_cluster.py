"""Zyzzyva (SOSP'07, known unsafe) on a real cluster on 127.0.0.1, run with
``protocol.allow_unsafe: true``: the fast path commits and the ledgers audit; with a crashed
backup, clients complete on the slow path (commit certificates, LOCAL-COMMITs). A few
seconds each; every process the runner starts is gone when a test ends."""

from __future__ import annotations

import json

import pytest

from fabric.harness import runner
from fabric.harness.config import load_config
from fabric.harness.paths import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _config(base_port: int, *extra: str):
    return load_config(
        None,
        [
            f"transport.base_port={base_port}",
            "protocol.name=zyzzyva",
            "protocol.allow_unsafe=true",
            "run.duration_s=5",
            "run.warmup_s=1",
            *extra,
        ],
    )


def _client(outcome, node: int = 4) -> dict:
    return json.loads(RunPaths(outcome.folder).client_stats(node).read_text())


def test_zyzzyva_fast_path_commits_and_audits(base_port, tmp_path, spawned) -> None:
    outcome = runner.run_experiment(_config(base_port), tmp_path, label="zyzzyva")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["audit"]["ok"] and summary["audit"]["common_prefix"] > 0
    client = _client(outcome)
    assert client["reply_quorum"] == 4  # 3f+1 speculative replies
    assert client["counters"]["fast_path_accepted"] > 0


def test_zyzzyva_slow_path_with_a_crashed_backup(base_port, tmp_path, spawned) -> None:
    cfg = _config(
        base_port,
        "run.duration_s=6",
        "protocol.zyzzyva_commit_wait_ms=50",
        "failures=[{replica: 2, at_s: 2.0, kind: crash}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="zyzzyva-slow")
    assert outcome.ok, outcome.reason
    assert outcome.summary["audit"]["ok"]
    counters = _client(outcome)["counters"]
    assert counters["commits_sent"] > 0 and counters["slow_path_accepted"] > 0
