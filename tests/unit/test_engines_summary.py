"""Engine counters reach summary.json, execution.csv and res.out (issue 11, item 6)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fabric.execute import Executor
from fabric.paths import RunPaths
from fabric.summary import HEADERS, build_summary, format_report, write_tables
from protocols.common import Request, make_batch
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
    summary, tables = build_summary(info(), {0: replica_stats(0)}, {4: client_stats()}, None, [], [])
    assert summary["per_node"]["0"]["execution"] is None and tables.execution == []
    assert "Execution (engine" not in format_report(summary, tables)
