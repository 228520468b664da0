"""Engine counters reach summary.json, execution.csv and res.out (issue 11, item 6)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fabric.analysis.summary import HEADERS, build_summary, format_report, write_tables
from fabric.harness.paths import RunPaths, SweepPaths
from fabric.harness.sweep import run_sweep, spec_from_mapping
from fabric.runtime.execute import Executor
from protocols.common import Request, make_batch
from tests.fixtures.fake_runner import FakeRunner
from tests.unit.test_runner_summary import client_stats, info, replica_stats
from workloads.txn import RMW, encode_txns


def engine_stats(engine: str) -> dict:
    ex = Executor(10, 4, engine=engine, threads=2)
    try:
        txns = [(RMW, 0, b"v")] * 20 + [(RMW, k, b"w") for k in range(10)]
        ex.apply(1, make_batch((Request(10, 1, encode_txns(txns), b""),)))
        return ex.stats()
    finally:
        ex.close()


def test_engine_counters_in_summary_csv_and_report(tmp_path: Path) -> None:
    engines = ["serial", "block-stm", "conflict-dag", "block-stm"]
    reps = {i: replica_stats(i, executor=engine_stats(e)) for i, e in enumerate(engines)}
    summary, tables = build_summary(info(), reps, {4: client_stats()}, None, [], [])
    json.dumps(summary)
    per_node = summary["per_node"]
    assert [per_node[str(i)]["execution"]["engine"] for i in range(4)] == engines
    assert per_node["2"]["execution"]["dag_levels_max"] == 21  # the RMW chain on key 0, + 1
    assert all(per_node[str(i)]["execution"]["txns"] == 30 for i in range(4))
    paths = RunPaths(tmp_path)
    write_tables(tables, paths)
    with paths.execution.open() as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == HEADERS["execution"] and len(rows) == 5
    report = format_report(summary, tables)
    assert "Execution (engine" in report and "conflict-dag x2" in report


def test_older_stats_without_engine_counters_still_summarise() -> None:
    summary, tables = build_summary(
        info(), {0: replica_stats(0)}, {4: client_stats()}, None, [], []
    )
    assert summary["per_node"]["0"]["execution"] is None and tables.execution == []
    assert "Execution (engine" not in format_report(summary, tables)


class EngineRunner(FakeRunner):
    """A fake run whose replicas report engine counters: re-executions grow with theta."""

    def __call__(self, cfg, results_root, label="", progress=False):  # type: ignore[no-untyped-def]
        outcome = super().__call__(cfg, results_root, label, progress)
        rate = cfg.workload.zipf_theta if cfg.execution.engine_for(0) == "block-stm" else 0.0
        for node in outcome.summary["per_node"].values():
            node["execution"] = {"txns": 1000, "re_executions": int(1000 * rate * 0.1)}
        return outcome


def test_sweep_tabulates_and_draws_re_executions_vs_contention(tmp_path: Path) -> None:
    spec = spec_from_mapping(
        {
            "name": "engines",
            "description": "test sweep",
            "base": {"run": {"duration_s": 4, "warmup_s": 1}},
            "grid": {"workload.zipf_theta": [0.5, 0.99]},
            "cases": [
                {"execution.engine": "serial"},
                {"execution.engine": "block-stm", "label": "stm"},
            ],
            "repetitions": 1,
        }
    )
    folder = run_sweep(spec, tmp_path, runner=EngineRunner(), progress=False).folder
    paths = SweepPaths(folder)
    with paths.combined.open() as fh:
        rows = list(csv.DictReader(fh))
    rates = sorted(float(r["re_executions_per_txn"]) for r in rows)
    assert rates == [0.0, 0.0, 0.05, 0.099]
    assert paths.figure("re_executions_vs_zipf_theta").is_file()
    assert paths.figure("throughput_vs_zipf_theta").is_file()
