"""The CPU ledger (fabric.analysis.summary.cpu_ledger): CPU microseconds per committed
transaction, cluster-wide, per process and per thread kind, from fake stats."""

from __future__ import annotations

import pytest

from fabric.analysis.summary import HEADERS, RunInfo, build_summary, cpu_ledger, format_report


def _replica(node: int, cpu_s: float, txns: int) -> dict:
    return {
        "executed_txns": txns,
        "executed_seq": txns // 100,
        "threads": [
            {"thread": "input-0", "role": "input", "busy_s": 2.0, "idle_s": 1.0, "cpu_s": 1.0},
            {"thread": "worker-0", "role": "worker", "busy_s": 3.0, "idle_s": 0.0, "cpu_s": 2.5},
        ],
        "resources": {"cpu_s": cpu_s, "peak_rss_mb": 50.0},
    }


def _client() -> dict:
    return {
        "threads": [
            {"thread": "io", "role": "client-io", "busy_s": 1.0, "idle_s": 1.0, "cpu_s": 0.5}
        ],
        "resources": {"cpu_s": 1.0, "peak_rss_mb": 30.0},
    }


def test_start_up_cpu_is_left_out_and_reported_apart():
    """Start-up (imports, keys, sockets) is a fixed cost per process, not per transaction:
    a 10 s run and a 60 s one must not differ by it."""
    rep = _replica(0, 4.0, 1_000_000)
    rep["resources"]["startup_cpu_s"] = 0.4
    client = _client()
    client["resources"]["startup_cpu_s"] = 0.3
    led = cpu_ledger({0: rep}, {1: client})
    assert led["startup_cpu_s"] == pytest.approx(0.7)
    assert led["cluster_us_per_txn"] == pytest.approx(4.3)  # (3.6 + 0.7) CPU-s / 1e6
    assert led["cluster_us_per_txn_with_startup"] == pytest.approx(5.0)
    assert led["per_process_us_per_txn"] == {"replica 0": 3.6, "client 1": 0.7}
    assert led["per_kind_us_per_txn"]["other"] == pytest.approx(0.1)  # 3.6 - 3.5 of threads
    assert led["per_kind_us_per_txn"]["client-other"] == pytest.approx(0.2)


def test_ledger_per_process_and_kind():
    reps = {0: _replica(0, 4.0, 1_000_000), 1: _replica(1, 4.0, 999_900)}
    led = cpu_ledger(reps, {2: _client()})
    assert led is not None
    assert led["committed_txns"] == 1_000_000
    assert led["cluster_us_per_txn"] == pytest.approx(9.0)  # 9 CPU-s / 1e6 txns
    assert led["per_process_us_per_txn"] == {"replica 0": 4.0, "replica 1": 4.0, "client 2": 1.0}
    kinds = led["per_kind_us_per_txn"]
    assert kinds["worker"] == pytest.approx(5.0) and kinds["input"] == pytest.approx(2.0)
    # a process's CPU outside its thread clocks (ZeroMQ I/O threads, start-up) is "other"
    assert kinds["other"] == pytest.approx(1.0) and kinds["client-other"] == pytest.approx(0.5)
    assert list(kinds) == sorted(kinds, key=lambda k: -kinds[k])  # largest first


def test_ledger_counts_honest_replicas_only_and_needs_figures():
    reps = {0: _replica(0, 4.0, 500), 1: _replica(1, 4.0, 10_000)}
    assert cpu_ledger(reps, {}, failed=[1])["committed_txns"] == 500
    assert cpu_ledger({0: _replica(0, 1.0, 0)}, {}) is None  # nothing committed
    missing = _replica(0, 1.0, 100)
    missing["resources"] = {}
    assert cpu_ledger({0: missing}, {}) is None


def test_summary_and_report_carry_the_ledger():
    info = RunInfo(
        name="x",
        protocol="pbft",
        replicas=1,
        clients=1,
        batch_size=100,
        duration_s=10.0,
        warmup_s=1.0,
        started_at=1000.0,
        crypto="-",
    )
    summary, tables = build_summary(info, {0: _replica(0, 4.0, 1000)}, {1: _client()}, None, [], [])
    assert summary["cpu_ledger"]["cluster_us_per_txn"] == pytest.approx(5000.0)
    assert HEADERS["threads"][-1] == "cpu_s"
    assert tables.threads[0][-1] == 1.0
    assert "CPU ledger" in format_report(summary, tables)
