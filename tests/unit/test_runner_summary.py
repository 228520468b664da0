"""The runner's arithmetic and report from fake stats (fabric.analysis.summary, fabric.harness.runner helpers)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from fabric.analysis.summary import (
    HEADERS,
    RunInfo,
    build_summary,
    format_report,
    window_count,
    write_tables,
)
from fabric.harness import cli, runner
from fabric.harness.paths import RunPaths

T0 = 1_000_000.25  # a time zero that is not on a whole second


def info(**kw) -> RunInfo:
    args = dict(
        name="20250101-000000-pbft-n4-b100",
        protocol="pbft",
        replicas=4,
        clients=1,
        batch_size=100,
        duration_s=10.0,
        warmup_s=2.0,
        started_at=T0,
        crypto="ed25519 + cmac-aes",
    )
    args.update(kw)
    return RunInfo(**args)


def replica_stats(node: int, per_s_txn: int = 1000, seq: int = 100, **extra) -> dict:
    base = int(T0)
    st = {
        "role": "replica",
        "node": node,
        "executed_per_s": [[base + s, per_s_txn] for s in range(0, 12)],
        "executed_seq": seq,
        "executed_txns": seq * 100,
        "view": 0,
        "threads": [
            {"thread": "input-0", "role": "input", "busy_s": 3.0, "idle_s": 9.0},
            {"thread": "worker-0", "role": "worker", "busy_s": 6.0, "idle_s": 6.0},
        ],
        "rings": [
            {
                "name": "worker-0",
                "capacity": 4096,
                "pushes": 10,
                "pops": 10,
                "max_depth": 3,
                "full_waits": 0,
            }
        ],
        "messages": {"sent": {"Prepare": 3 * seq, "Commit": 3 * seq}, "received": {"Prepare": 9}},
        "drops": {"mac": 2} if node == 1 else {},
        "resources": {"cpu_s": 5.5, "peak_rss_mb": 80.0 + node},
        "failure": None,
    }
    st.update(extra)
    return st


def client_stats(node: int = 4) -> dict:
    base = int(T0)
    # 2000 accepted txns in every whole second; latencies 10..109 ms spread over the run
    lat = [[T0 + 0.1 * i, 10.0 + (i % 100)] for i in range(120)]
    return {
        "role": "client",
        "node": node,
        "accepted_per_s": [[base + s, 2000] for s in range(0, 12)],
        "latency": lat,
        "counters": {"requests_accepted": 240, "retransmissions": 1, "requests_given_up": 0},
        "threads": [{"thread": "io", "role": "client-io", "busy_s": 4.0, "idle_s": 6.0}],
        "messages": {"sent": {"Request": 240}, "received": {"Reply": 720}},
        "drops": {},
        "resources": {"cpu_s": 3.0, "peak_rss_mb": 40.0},
    }


def test_window_count_weights_straddling_seconds():
    per_s = [[10, 100], [11, 100], [12, 100]]
    assert window_count(per_s, 10.0, 13.0) == pytest.approx(300)
    assert window_count(per_s, 10.5, 12.25) == pytest.approx(50 + 100 + 25)
    assert window_count(per_s, 20.0, 30.0) == 0


def test_summary_figures_from_fake_stats():
    reps = {i: replica_stats(i) for i in range(4)}
    summary, tables = build_summary(info(), reps, {4: client_stats()}, None, [], [])
    # measured window [T0+2, T0+10): 8 s of 2000 txn/s
    assert summary["throughput_txn_s"] == pytest.approx(2000.0)
    assert summary["per_node"]["0"]["throughput_txn_s"] == pytest.approx(1000.0)
    assert summary["per_node"]["3"]["peak_rss_mb"] == 83.0
    assert summary["run"]["status"] == "ok" and summary["run"]["failure"] is None
    assert summary["run"]["measured_s"] == pytest.approx(8.0)
    # latencies inside the window: samples 20..99 (t = T0+2.0 .. T0+9.9)
    inside = sorted(10.0 + (i % 100) for i in range(20, 100))
    assert summary["latency_ms"]["count"] == len(inside)
    assert summary["latency_ms"]["avg"] == pytest.approx(sum(inside) / len(inside), abs=1e-3)
    assert summary["latency_ms"]["max"] == pytest.approx(max(inside))
    # messages per committed batch: 4 replicas x 3 Prepare per seq
    assert summary["messages_per_batch"] == {"Commit": 12.0, "Prepare": 12.0}
    assert summary["committed_batches"] == 100
    assert len(tables.latency) == len(inside)
    assert len(tables.threads) == 4 * 2 + 1
    assert ("1", "input", "mac", 2) not in tables.drops and (1, "input", "mac", 2) in tables.drops
    json.dumps(summary)  # serialisable as is


def test_failed_replica_excluded_from_committed_count():
    reps = {i: replica_stats(i, seq=100) for i in range(3)}
    reps[3] = replica_stats(3, seq=500)  # a configured faulty replica claims more
    inf = info(failures=({"replica": 3, "at_s": 4.0, "kind": "silent"},))
    summary, _ = build_summary(inf, reps, {4: client_stats()}, None, [], [])
    assert summary["committed_batches"] == 100


def test_problems_make_the_status_failed_and_the_report_says_so():
    reps = {i: replica_stats(i) for i in range(4)}
    audit = {"ok": False, "message": "honest ledgers diverge at seq 7", "common_prefix": 9}
    summary, tables = build_summary(
        info(), reps, {4: client_stats()}, audit, ["AUDIT FAILED: diverge at seq 7"], []
    )
    assert summary["run"]["status"] == "failed"
    text = format_report(summary, tables)
    assert "Status: FAILED: AUDIT FAILED" in text
    assert "Audit: FAILED: honest ledgers diverge at seq 7" in text
    assert "Status: OK" not in text


def test_report_has_the_classic_sections():
    reps = {i: replica_stats(i) for i in range(4)}
    reps[2]["failure"] = {"kind": "silent", "at": T0 + 5, "at_s": 5.0}
    audit = {"ok": True, "message": "4 honest ledgers agree up to seq 100", "common_prefix": 100}
    summary, tables = build_summary(
        info(), reps, {4: client_stats()}, audit, [], ["replica 3 crashed as configured"]
    )
    text = format_report(summary, tables)
    for needle in (
        "Throughput (txn/s",
        "replica   0:",
        "client    4:",
        "Latency (ms",
        "p99",
        "Idleness",
        "input-0 75%",  # 9 idle of 12 s
        "worker-0 50%",
        "Memory (peak RSS)",
        "83.0 MB",
        "Messages sent per committed batch",
        "Drops: input mac 2",
        "Audit: ok",
        "[silent at 5.0 s]",
        "Event: replica 3 crashed as configured",
        "Total throughput:   2,000.0 txn/s accepted",
        "Status: OK",
    ):
        assert needle in text, needle


def test_empty_stats_give_nan_free_json_and_a_readable_report():
    summary, tables = build_summary(info(), {}, {}, None, ["nothing committed"], [])
    assert summary["throughput_txn_s"] == 0
    assert summary["latency_ms"]["avg"] is None  # nan is not valid JSON
    assert "nan" not in json.dumps(summary).lower()
    text = format_report(summary, tables)
    assert "Average latency:    - ms" in text
    assert math.isfinite(summary["run"]["measured_s"])


def test_tables_written_with_the_documented_headers(tmp_path: Path):
    reps = {i: replica_stats(i) for i in range(4)}
    _, tables = build_summary(info(), reps, {4: client_stats()}, None, [], [])
    paths = RunPaths(tmp_path).make()
    write_tables(tables, paths)
    for name, header in HEADERS.items():
        with getattr(paths, name).open() as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == header, name
    with paths.throughput.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["role"] for r in rows} == {"replica", "client"}
    assert min(int(r["time_s"]) for r in rows) == 0


def _args(*argv: str):
    args, rest = runner.parser().parse_known_args(list(argv))
    assert not rest
    return args


def test_cli_overrides_and_the_short_run_warmup_rule():
    from fabric.harness.config import load_config

    base = load_config()
    args = _args("--replicas", "7", "--clients", "2", "--protocol", "null", "--duration", "4")
    out = runner.overrides(args, base)
    assert "cluster.replicas=7" in out and "cluster.clients=2" in out
    assert "protocol.name=null" in out and "run.duration_s=4.0" in out
    assert "run.warmup_s=0.8" in out  # min(5, 20% of 4 s)
    cfg = base.with_overrides(out)
    assert cfg.run.warmup_s == pytest.approx(0.8) and cfg.cluster.replicas == 7
    explicit = runner.overrides(_args("--duration", "4", "--warmup", "1"), base)
    assert "run.warmup_s=1.0" in explicit and "run.warmup_s=0.8" not in explicit


def test_cli_sweep_delegates_to_fabric_sweep(monkeypatch):
    import fabric.harness.sweep

    seen: list[list[str]] = []
    monkeypatch.setattr(fabric.harness.sweep, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["--sweep", "config/experiments/x.yaml", "--quick"]) == 0
    assert seen == [["config/experiments/x.yaml", "--quick"]]
    argv = ["--sweep", "s.yaml", "--replicas", "7", "--set", "batch_size=10", "--results-dir", "R"]
    assert cli.main([*argv, "--quiet", "--resume", "latest"]) == 0
    assert seen[1] == [
        "s.yaml",
        "--resume",
        "latest",
        "--set",
        "batch_size=10",
        "--set",
        "cluster.replicas=7",
        "--results-dir",
        "R",
        "--no-progress",
    ]


def test_cli_bad_config_exits_2(capsys):
    assert cli.main(["--set", "batching.batch_size=0", "--quiet"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_view_changes_become_events_with_their_time():
    reps = {i: replica_stats(i) for i in range(4)}
    for i in (1, 2, 3):
        reps[i]["view_changes"] = [[T0 + 4.0 + i / 10, 1, 1]]
    summary, tables = build_summary(info(), reps, {4: client_stats()}, None, [], ["x"])
    events = summary["run"]["events"]
    assert events[0] == "x"
    assert events[1] == "view 1 (primary 1) entered by replicas 1,2,3 from t=4.1 s"
    assert "Event: view 1 (primary 1)" in format_report(summary, tables)


def test_a_run_whose_ports_are_taken_moves_to_a_free_block(capsys) -> None:
    import socket

    from fabric.harness.config import load_config
    from fabric.harness.ports import free_port_block
    from fabric.harness.runner import _with_free_ports

    base = free_port_block(40)
    cfg = load_config(None, [f"transport.base_port={base}"])
    assert _with_free_ports(cfg) is cfg  # free: untouched
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", base + 9))
        listener.listen()
        moved = _with_free_ports(cfg)
    finally:
        listener.close()
    assert moved.transport.base_port != base
    assert moved.with_overrides([f"transport.base_port={base}"]) == cfg  # nothing else changed
    assert "in use" in capsys.readouterr().err


def test_rcc_with_fewer_clients_than_instances_is_noted() -> None:
    from fabric.harness.config import load_config
    from fabric.harness.runner import config_warnings

    few = load_config(None, ["protocol.name=rcc", "cluster.clients=1"])
    [note] = config_warnings(few)
    assert "3 instance(s) only propose no-ops" in note and "--clients 4" in note
    assert config_warnings(few.with_overrides(["cluster.clients=4"])) == []
    assert config_warnings(load_config(None, ["cluster.clients=1"])) == []  # pbft: nothing to say


# --- degraded: an honest replica that ends behind (issue 19, finding 6) ------------------------


def test_an_honest_replica_far_behind_makes_the_run_degraded_and_is_named():
    reps = {i: replica_stats(i, seq=14949) for i in range(3)}
    reps[3] = replica_stats(3, seq=4713)
    summary, tables = build_summary(
        info(degraded_lag_seq=100), reps, {4: client_stats()}, None, [], []
    )
    assert summary["run"]["status"] == "degraded"
    assert "replica 3 ended at seq 4713, 10236 behind" in summary["run"]["degraded"]
    assert summary["final_seq"] == {"0": 14949, "1": 14949, "2": 14949, "3": 4713}
    text = format_report(summary, tables)
    assert "Status: DEGRADED: replica 3 ended at seq 4713" in text
    assert "Final seq (honest replicas): replica 0 14949" in text and "replica 3 4713" in text
    assert "BEHIND by 10236" in text and "Status: OK" not in text
    nodes = {row[0]: row for row in tables.nodes if row[1] == "replica"}
    assert nodes[3][6] == 10236 and nodes[0][6] == 0


def test_a_lag_within_the_bound_is_ok_and_a_faulty_replica_never_degrades():
    reps = {i: replica_stats(i, seq=1000) for i in range(3)}
    reps[3] = replica_stats(3, seq=901)  # 99 behind, bound 100
    summary, _ = build_summary(info(degraded_lag_seq=100), reps, {4: client_stats()}, None, [], [])
    assert summary["run"]["status"] == "ok"
    reps[3] = replica_stats(3, seq=10)  # far behind, but configured silent: not honest
    inf = info(degraded_lag_seq=100, failures=({"replica": 3, "at_s": 4.0, "kind": "silent"},))
    summary, _ = build_summary(inf, reps, {4: client_stats()}, None, [], [])
    assert summary["run"]["status"] == "ok" and "3" not in summary["final_seq"]
    # a stalled replica is honest: far behind, the run is degraded
    inf = info(
        degraded_lag_seq=100,
        failures=({"replica": 3, "at_s": 2.0, "kind": "stall", "duration_s": 4.0},),
    )
    summary, _ = build_summary(inf, reps, {4: client_stats()}, None, [], [])
    assert summary["run"]["status"] == "degraded"


def test_a_problem_outranks_degraded():
    reps = {i: replica_stats(i, seq=1000) for i in range(3)}
    reps[3] = replica_stats(3, seq=1)
    summary, _ = build_summary(
        info(degraded_lag_seq=100), reps, {4: client_stats()}, None, ["client 4 died"], []
    )
    assert summary["run"]["status"] == "failed"


def test_stall_failures_are_validated_like_crash_and_silent():
    from fabric.harness.config import ConfigError, load_config

    cfg = load_config(None, ["failures=[{replica: 3, at_s: 2, kind: stall, duration_s: 4}]"])
    assert cfg.failures[0].duration_s == 4.0 and cfg.degraded_lag_seq == cfg.checkpoint_period
    for bad, key in (
        ("[{replica: 3, at_s: 2, kind: stall}]", "failures[0].duration_s"),
        ("[{replica: 3, at_s: 2, kind: stall, duration_s: 40}]", "failures[0].duration_s"),
        ("[{replica: 3, at_s: 2, kind: crash, duration_s: 3}]", "failures[0].duration_s"),
        ("[{replica: 3, at_s: 2, kind: freeze}]", "failures[0].kind"),
    ):
        with pytest.raises(ConfigError) as err:
            load_config(None, [f"failures={bad}"])
        assert key in str(err.value) and "allowed" in str(err.value)
    assert load_config(None, ["run.degraded_lag_seq=7"]).degraded_lag_seq == 7


# --- a crashed replica keeps the figures the runner sampled (issue 15, item 6) -----------------


class _FakeProc:
    pid = 0

    def poll(self):
        return CRASH


CRASH = 86


def test_a_crashed_replica_keeps_its_sampled_figures_in_every_table(tmp_path: Path):
    child = runner.Child("replica", 0, _FakeProc(), tmp_path / "r0.log")  # type: ignore[arg-type]
    base = int(T0)
    for s in range(1, 6):  # five progress lines: 1000 txns and 10 seqs a second, view 0
        child.samples.append((base + s + 0.5, 1000 * s, 10 * s, 0))
    child.resources = {"cpu_s": 2.5, "peak_rss_mb": 61.0}
    child.exited_at = T0 + 5.6
    crashed = child.sampled_stats(T0)
    assert crashed["executed_per_s"] == [[base + s, 1000] for s in range(1, 6)]
    assert crashed["executed_seq"] == 50 and crashed["stats_source"] == "runner"
    assert crashed["failure"]["kind"] == "crash" and crashed["failure"]["at_s"] == 5.6
    reps = {0: crashed, **{i: replica_stats(i) for i in range(1, 4)}}
    inf = info(failures=({"replica": 0, "at_s": 5.0, "kind": "crash"},), degraded_lag_seq=100)
    summary, tables = build_summary(inf, reps, {4: client_stats()}, None, [], [])
    assert summary["run"]["status"] == "ok"  # a crashed replica is faulty: not behind
    row = summary["per_node"]["0"]
    assert row["executed_seq"] == 50 and row["peak_rss_mb"] == 61.0
    assert row["throughput_txn_s"] > 0
    assert any(r[1] == 0 and r[2] == "replica" for r in tables.throughput)
    assert (0, "replica", 61.0, 2.5) in tables.memory
    assert (0, "replica", "crashed", 5.6, 50, 0, "", "runner") in tables.nodes
    text = format_report(summary, tables)
    assert "replica   0:" in text and "[crashed at 5.6 s; figures until then sampled" in text


def test_an_interrupted_run_says_what_was_measured():
    reps = {i: replica_stats(i) for i in range(4)}
    summary, tables = build_summary(
        info(stopped_at=T0 + 6.0), reps, {4: client_stats()}, None, ["interrupted"], []
    )
    assert summary["run"]["measured_s"] == pytest.approx(4.0)
    assert summary["throughput_txn_s"] == pytest.approx(2000.0)
    text = format_report(summary, tables)
    assert "interrupted at t=6.0 s: measured 4.0 s of the planned 8 s" in text
    summary, tables = build_summary(
        info(stopped_at=T0 + 1.0), reps, {4: client_stats()}, None, ["interrupted"], []
    )
    assert "inside the 2 s warm-up: nothing measured" in format_report(summary, tables)


def test_total_throughput_is_named_total_with_a_per_client_figure():
    clients = {4: client_stats(4), 5: client_stats(5)}
    summary, tables = build_summary(info(clients=2), {}, clients, None, [], [])
    text = format_report(summary, tables)
    assert (
        "Total throughput:   4,000.0 txn/s accepted (2 clients, 2,000.0 txn/s per client)" in text
    )
    assert "Average throughput" not in text


def test_drops_are_labelled_by_where_they_happen():
    from fabric.analysis.summary import drop_where

    reps = {i: replica_stats(i) for i in range(4)}
    reps[0]["drops"] = {"send_full": 5, "mac": 1, "batch_ring_full": 2, "protocol_error:X": 1}
    summary, tables = build_summary(info(), reps, {4: client_stats()}, None, [], [])
    assert (0, "send", "send_full", 5) in tables.drops and (0, "input", "mac", 1) in tables.drops
    assert drop_where("batch_ring_full") == drop_where("protocol_error:KeyError") == "pipeline"
    text = format_report(summary, tables)
    assert (
        "Drops: input mac 3; pipeline batch_ring_full 2, protocol_error:X 1; send send_full 5"
        in text
    )


def test_the_null_baseline_is_never_degraded_since_only_replica_0_executes():
    from fabric.harness.config import load_config

    assert runner._degraded_lag_seq(load_config(None, ["protocol.name=null"])) == 0
    pbft = load_config(None, ["run.degraded_lag_seq=7"])
    assert runner._degraded_lag_seq(pbft) == 7


def test_a_restarted_replica_keeps_both_lives_in_every_table(tmp_path: Path):
    """Issue 12 item 4: the runner's samples until the kill and the restarted process's own
    stats make one replica: per-second counts of both lives (none while down), CPU added, the
    larger peak, the restarted process's ledger; honest, so DEGRADED applies to it."""
    first = runner.Child("replica", 2, _FakeProc(), tmp_path / "r2.log")  # type: ignore[arg-type]
    base = int(T0)
    for s in range(1, 4):  # killed after three progress lines: 1000 txns, 10 seqs a second
        first.samples.append((base + s + 0.5, 1000 * s, 10 * s, 0))
    first.resources = {"cpu_s": 1.5, "peak_rss_mb": 70.0}
    first.exited_at = T0 + 3.6
    record = {
        "kind": "restart",
        "at": T0 + 3.6,
        "at_s": 3.6,
        "down_s": 2.0,
        "seq_before": 30,
        "txns_before": 3000,
        "started_at_s": 5.6,
        "back_at_s": 6.4,
    }
    after = replica_stats(2, seq=100, ledger_base=[40, "ab" * 32])
    after["executed_per_s"] = [[base + s, 2000] for s in range(7, 12)]
    after["resources"] = {"cpu_s": 2.0, "peak_rss_mb": 65.0}
    merged = runner.merge_restart(first.sampled_stats(T0, "restart"), after, record)
    per_s = dict(merged["executed_per_s"])
    assert [per_s.get(base + s, 0) for s in range(0, 12)] == [0, 1000, 1000, 1000] + [0] * 3 + [
        2000
    ] * 5
    assert merged["resources"] == {"cpu_s": 3.5, "peak_rss_mb": 70.0}
    assert merged["executed_seq"] == 100 and merged["ledger_base"] == [40, "ab" * 32]
    assert merged["failure"]["kind"] == "restart" and merged["failure"]["installed_seq"] == 40
    assert merged["restart"]["before"]["executed_seq"] == 30
    reps = {2: merged, **{i: replica_stats(i, seq=400) for i in (0, 1, 3)}}
    inf = info(
        failures=({"replica": 2, "at_s": 3.6, "kind": "restart", "down_s": 2.0},),
        degraded_lag_seq=100,
    )
    summary, tables = build_summary(inf, reps, {4: client_stats()}, None, [], [])
    # honest: it ended 300 behind the others, so the run is degraded and names it
    assert summary["run"]["status"] == "degraded" and "replica 2" in summary["run"]["degraded"]
    assert summary["final_seq"]["2"] == 100
    lives = summary["per_node"]["2"]["restart"]  # summary.json keeps both lives' figures
    assert lives["before"]["executed_seq"] == 30 and lives["after"]["executed_seq"] == 100
    assert "restart" not in summary["per_node"]["0"]
    assert (2, "replica", "restarted", 3.6, 100, 0, 300, "process") in tables.nodes
    assert (2, "replica", 70.0, 3.5) in tables.memory
    text = format_report(summary, tables)
    assert "killed at 3.6 s, down 2 s, back at 6.4 s (seq 30 before" in text
    assert "state from a snapshot at seq 40" in text
    assert "(both lives: CPU added, the larger peak)" in text


def test_a_restarted_replica_that_never_came_back_is_said_so():
    from fabric.analysis.summary import restart_note

    record = {"kind": "restart", "at_s": 3.6, "down_s": 2.0, "seq_before": 30}
    assert (
        restart_note(record)
        == "killed at 3.6 s, down 2 s, never back: figures until the kill sampled by the runner"
    )


@pytest.mark.parametrize(
    ("kind", "honest"),
    [
        ("equivocate", False),
        ("bad_mac", False),
        ("wrong_digest", False),
        ("throttle", False),
        ("slow", True),  # every frame late, none false: audited as honest, like a stall
    ],
)
def test_byzantine_kinds_are_reported_and_left_out_of_the_honest_figures(kind, honest):
    from fabric.analysis.summary import faulty_replicas

    fault = {"replica": 0, "at_s": 2.0, "kind": kind, "delay_ms": 50.0}
    assert (faulty_replicas([fault]) == set()) is honest
    reps = {i: replica_stats(i, seq=100) for i in range(1, 4)}
    failure = {"kind": kind, "at": T0 + 2, "at_s": 2.0, "delay_ms": 50.0}
    reps[0] = replica_stats(0, seq=900, failure=failure, byzantine={"frames_delayed": 7})
    reps[0]["view_changes"] = []
    reps[2]["view_changes"] = [[T0 + 3, 1, 1]]
    summary, tables = build_summary(
        info(failures=(fault,)), reps, {4: client_stats()}, None, [], []
    )
    assert summary["committed_batches"] == (900 if honest else 100)
    byz = summary["byzantine"]["0"]
    assert byz["kind"] == kind and byz["active"] and byz["output"] == {"frames_delayed": 7}
    assert byz["honest_mac_drops"] == 2 and byz["honest_view_changes"] == 1  # replica 1's drops
    assert summary["per_node"]["0"]["byzantine"] == {"frames_delayed": 7}
    assert ("0", kind) in {(str(row[0]), row[2]) for row in tables.nodes}
    text = format_report(summary, tables)
    assert f"[{kind} at 2.0 s, delay 50 ms; did: frames_delayed 7]" in text
    assert f"Byzantine: replica 0 {kind} 50 ms from 2 s (active): did frames_delayed 7" in text


def test_a_run_without_byzantine_failures_has_no_byzantine_section():
    reps = {i: replica_stats(i) for i in range(4)}
    summary, tables = build_summary(info(), reps, {4: client_stats()}, None, [], [])
    assert summary["byzantine"] is None
    assert "Byzantine:" not in format_report(summary, tables)


class _LiveProc:
    """A process that runs until killed (wait returns at once once it is)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode


def test_the_runner_kills_then_restarts_a_replica_once_and_starts_it_when_ready(
    tmp_path: Path, monkeypatch
):
    """The restart's steps, without processes: SIGKILL at at_s (once), a new process with
    --restart at at_s + down_s (once), ``start <t0>`` to it when it says ready (once)."""
    import signal

    from fabric.harness.config import load_config

    cfg = load_config(None, ["failures=[{replica: 2, at_s: 3, kind: restart, down_s: 2}]"])
    run = runner.Runner(cfg, RunPaths(tmp_path), progress=False)
    run.t0 = T0
    first = runner.Child("replica", 2, _LiveProc(100), tmp_path / "r2.log")  # type: ignore[arg-type]
    first.samples.append((T0 + 2.5, 2500, 25, 0))
    run.children.append(first)
    killed: list[tuple[int, int]] = []

    def fake_signal(child: runner.Child, sig: int) -> None:
        killed.append((child.proc.pid, sig))
        child.proc.returncode = -sig  # type: ignore[attr-defined]

    monkeypatch.setattr(runner.Child, "signal_group", fake_signal)
    spawned: list[runner.Child] = []

    def fake_spawn(self, role, node, restart=False):
        child = runner.Child(role, node, _LiveProc(200), tmp_path / "r2.log", restarted=restart)  # type: ignore[arg-type]
        said: list[str] = []
        child.say = said.append  # type: ignore[method-assign]
        child.said = said  # type: ignore[attr-defined]
        self.children.append(child)
        spawned.append(child)
        return child

    monkeypatch.setattr(runner.Runner, "_spawn", fake_spawn)
    run._apply_restarts(T0 + 2.9)
    assert not killed and not run.restarts  # not yet
    run._apply_restarts(T0 + 3.0)
    run._apply_restarts(T0 + 3.1)
    assert killed == [(100, signal.SIGKILL)] and first.retired  # once
    assert run.restarts[2]["seq_before"] == 25 and run.restarts[2]["at_s"] == 3.0
    assert not run.check_deaths()  # the runner's own kill is no unexpected death
    run._apply_restarts(T0 + 4.9)
    assert not spawned  # down for down_s
    run._apply_restarts(T0 + 5.0)
    run._apply_restarts(T0 + 5.1)
    assert [c.restarted for c in spawned] == [True]  # once, flagged --restart
    second = spawned[0]
    assert run._current("replica", 2) is second
    run._apply_restarts(T0 + 5.2)
    assert second.said == []  # not ready yet
    second.ready.set()
    run._apply_restarts(T0 + 5.9)
    run._apply_restarts(T0 + 6.0)
    assert second.said == [f"start {T0:.6f}"]  # once, the run's own t0
    assert run.restarts[2]["started_at_s"] == 5.0 and run.restarts[2]["back_at_s"] == 5.9
    events = " | ".join(run.events)
    assert "replica 2 killed (SIGKILL) at t=3.0 s" in events and "ready at t=5.9 s" in events
