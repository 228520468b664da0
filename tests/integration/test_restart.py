"""Crash-restart on real clusters (issue 12 items 4 and 6): the runner SIGKILLs a backup, starts
it again a few seconds later with ``--restart``, and the replica reloads what its storage kept
(nothing with ``ledger.storage: memory``), catches up from its peers and rejoins.

Per protocol (PBFT, PoE, RCC) a backup is down 3 s at a light, fixed load, so what it missed
is within the watermark window (block fetch); PBFT with a checkpoint every 5 batches and a
window of 10 leaves it too far behind for that, so it needs a snapshot of the state at a
stable checkpoint (its ledger then starts there, and the audit says so). The memory backend
and both durable ones (sqlite, lmdb: it reloads its final blocks first) are covered, and the
inline pipeline (PoE, and one snapshot run) as well as the decoupled one. Each test
checks the outcome, never speed: the run is OK (not DEGRADED: the restarted replica ended
within run.degraded_lag_seq of the others), the audit covers the restarted replica and
agrees, it executed again after it came back, and the report keeps both of its lives. Every
process is gone at the end (the ``spawned`` fixture), pass or fail.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from fabric.harness import runner
from fabric.harness.config import load_config
from fabric.harness.paths import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RESTARTED = 2  # a backup in view 0 for PBFT and PoE (replica 0 is the primary)
AT_S = 1.5
DOWN_S = 3.0


def _config(base_port: int, *extra: str) -> Any:
    return load_config(
        None,
        [
            f"transport.base_port={base_port}",
            "run.duration_s=10",
            "run.warmup_s=1",
            f"failures=[{{replica: {RESTARTED}, at_s: {AT_S}, kind: restart, down_s: {DOWN_S}}}]",
            *extra,
        ],
    )


#: a light fixed load (~20 batches/s) and a checkpoint a second: 3-4 s down leaves the replica
#: a few checkpoints behind, inside the window, within block fetch; a durable backend has
#: final (checkpointed) blocks to reload by the kill
LIGHT_LOAD = (
    "client.mode=open",
    "client.rate_txn_s=2000",
    "checkpoint.txn_per_chkpt=2000",
    "protocol.watermark_window=400",
)


def _check_restarted_run(outcome: Any, spawned: list[runner.Child]) -> dict[str, Any]:
    """What every restart run must show; the summary, for the test's own checks."""
    summary = outcome.summary
    node = str(RESTARTED)
    assert outcome.status == "ok", f"{outcome.status}: {outcome.reason}"
    events = summary["run"]["events"]
    assert any(f"replica {node} killed (SIGKILL)" in e for e in events), events
    assert any(f"replica {node} started again" in e for e in events), events
    fail = summary["per_node"][node]["failure"]
    assert fail["kind"] == "restart" and fail["down_s"] == DOWN_S
    assert fail["at_s"] >= AT_S and fail["back_at_s"] >= fail["at_s"] + DOWN_S
    assert fail["seq_before"] > 0  # it had committed before the kill
    # the audit covers the restarted replica, and its ledger agrees with the others'
    audit = summary["audit"]
    assert audit["ok"], audit["message"]
    assert RESTARTED in audit["honest"]
    final = summary["final_seq"]
    assert set(final) == {"0", "1", "2", "3"}
    assert max(final.values()) - final[node] <= summary["degraded_lag_seq"]
    assert final[node] > fail["seq_before"]  # it caught up past where it died
    paths = RunPaths(outcome.folder)
    # it executed again after it came back (its second life's per-second counts)
    with paths.throughput.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["role"] == "replica" and r["node"] == node]
    after = sum(int(r["txn"]) for r in rows if int(r["time_s"]) > fail["back_at_s"])
    before = sum(int(r["txn"]) for r in rows if int(r["time_s"]) < fail["at_s"])
    assert after > 0 and before > 0, rows
    with paths.nodes.open() as fh:
        states = {r["node"]: r for r in csv.DictReader(fh) if r["role"] == "replica"}
    assert states[node]["state"] == "restarted"
    report = paths.res_out.read_text()
    assert f"killed at {fail['at_s']:.1f} s, down {DOWN_S:g} s, back at" in report
    # two processes were replica 2: the first died of the runner's SIGKILL, the second stopped
    lives = [c for c in spawned if c.label == f"replica {node}"]
    assert [c.restarted for c in lives] == [False, True]
    assert lives[0].proc.returncode == -9 and lives[1].proc.returncode == 0
    assert "restarted by the runner" in paths.replica_log(RESTARTED).read_text()
    return summary


@pytest.mark.parametrize(
    ("protocol", "storage"),
    [
        ("pbft", "memory"),
        ("poe", "memory"),  # with execution.pipeline inline (below)
        ("rcc", "memory"),
        ("pbft", "sqlite"),  # it reloads its final blocks, then fetches the rest
        ("rcc", "lmdb"),
    ],
)
def test_a_backup_down_3_s_comes_back_catches_up_and_its_ledger_agrees(
    base_port: int, tmp_path: Path, spawned: list[runner.Child], protocol: str, storage: str
) -> None:
    extra = [f"protocol.name={protocol}", f"ledger.storage={storage}", *LIGHT_LOAD]
    if protocol == "poe":
        # the worker executes (and rolls back) itself: the restart path is the same
        extra.append("execution.pipeline=inline")
    if protocol == "rcc":
        extra.append("cluster.clients=4")  # one client per instance
    cfg = _config(base_port, *extra)
    outcome = runner.run_experiment(cfg, tmp_path, label=f"restart-{protocol}", report=False)
    summary = _check_restarted_run(outcome, spawned)
    if storage != "memory":
        # the durable ledger it reloaded lives in its own folder of the run
        folder = outcome.folder / f"replica-{RESTARTED}"
        assert any(p.name.startswith("ledger.") for p in folder.iterdir()), list(folder.iterdir())
    assert summary["per_node"][str(RESTARTED)]["failure"]["installed_seq"] == 0  # block fetch


@pytest.mark.parametrize(
    ("protocol", "storage", "pipeline"),
    [
        ("pbft", "memory", "decoupled"),
        ("pbft", "sqlite", "inline"),
        ("rcc", "memory", "decoupled"),  # its lanes fetch the state at a round checkpoint
    ],
)
def test_a_replica_too_far_behind_for_block_fetch_installs_a_snapshot(
    base_port: int,
    tmp_path: Path,
    spawned: list[runner.Child],
    protocol: str,
    storage: str,
    pipeline: str,
) -> None:
    # the light load (~20 batches/s), a checkpoint every 5 batches and a window of 2
    # checkpoints: 3 s down is ~20 checkpoints behind, past what block fetch may ask (the
    # window); once the snapshot is in, it is within the window again and orders new batches
    cfg = _config(
        base_port,
        *LIGHT_LOAD[:2],
        "checkpoint.txn_per_chkpt=500",
        "protocol.watermark_window=10",
        f"ledger.storage={storage}",
        f"execution.pipeline={pipeline}",
        f"protocol.name={protocol}",
        *(["cluster.clients=4"] if protocol == "rcc" else []),  # one client per instance
    )
    label = f"snapshot-{protocol}-{storage}"
    outcome = runner.run_experiment(cfg, tmp_path, label=label, report=False)
    summary = _check_restarted_run(outcome, spawned)
    fail = summary["per_node"][str(RESTARTED)]["failure"]
    installed = fail["installed_seq"]
    assert installed > fail["seq_before"], fail  # state from a snapshot past where it died
    # its ledger starts at the snapshot: the audit compares it from there and says so
    audit = summary["audit"]
    assert f"replica {RESTARTED} compared from seq {installed}" in audit["message"]
    assert audit["heads"][str(RESTARTED)][0] == summary["final_seq"][str(RESTARTED)]
    report = RunPaths(outcome.folder).res_out.read_text()
    assert f"state from a snapshot at seq {installed}" in report
