"""Real clusters on 127.0.0.1: replica and client processes started by the runner.

Each test runs a few seconds on free loopback ports (tests/conftest.py) and
checks behaviour, never speed: the run commits, the audit passes, the result
files exist and parse, an injected crash is reported as expected while the
others keep committing, and an unexpected death fails the run loudly. Every
process the runner starts is gone when a test ends, pass or fail.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from fabric.analysis.summary import HEADERS
from fabric.harness import runner
from fabric.harness.config import load_config
from fabric.harness.paths import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _config(base_port: int, *extra: str):
    return load_config(
        None,
        [
            f"transport.base_port={base_port}",
            "run.duration_s=5",
            "run.warmup_s=1",
            *extra,
        ],
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_default_pbft_cluster_commits_audits_and_writes_every_file(base_port, tmp_path, spawned):
    cfg = _config(base_port)
    assert cfg.protocol.name == "pbft" and cfg.cluster.replicas == 4
    outcome = runner.run_experiment(cfg, tmp_path, label="it")
    assert outcome.ok, outcome.reason
    paths = RunPaths(outcome.folder)
    summary = json.loads(paths.summary.read_text())
    assert summary == outcome.summary
    assert summary["run"]["status"] == "ok"
    assert summary["throughput_txn_s"] > 0
    assert summary["audit"]["ok"] and summary["audit"]["common_prefix"] > 0
    assert summary["latency_ms"]["p50"] > 0
    for node in ("0", "1", "2", "3"):
        assert summary["per_node"][node]["executed_seq"] > 0
        assert summary["per_node"][node]["peak_rss_mb"] > 0
    assert summary["messages_per_batch"]["PrePrepare"] > 0
    # run.scheduler's and run.cpu_affinity's defaults, as each process read them back from
    # the kernel: SCHED_BATCH, each process on one CPU, round-robin by node id
    assert summary["scheduler"] == "batch"
    allowed = sorted(os.sched_getaffinity(0))
    for node in range(4):
        assert summary["per_node"][str(node)]["cpus"] == [allowed[node % len(allowed)]]
    assert summary["per_client"]["4"]["cpus"] == [allowed[4 % len(allowed)]]
    # the config written is the config used, and rerunnable
    assert yaml.safe_load(paths.config.read_text())["transport"]["base_port"] == base_port
    assert load_config(paths.config) == cfg
    # every documented table exists with its header and plausible rows
    for name, header in HEADERS.items():
        rows = _read_csv(getattr(paths, name))
        assert rows or name == "drops", f"{name}.csv is empty"
        if rows:
            assert tuple(rows[0].keys()) == header
    threads = _read_csv(paths.threads)
    assert {r["thread"] for r in threads if r["node"] == "0"} >= {
        "input-0",
        "batch-0",
        "worker-0",
        "execute",
        "checkpoint",
        "output-0",
    }
    assert all(float(r["busy_s"]) >= 0 and float(r["idle_s"]) >= 0 for r in threads)
    latencies = _read_csv(paths.latency)
    assert all(float(r["latency_ms"]) > 0 for r in latencies)
    report = paths.res_out.read_text()
    assert "Status: OK" in report and "Total throughput" in report and "Idleness" in report
    # the run drew its own figures and report.html (fabric report only redraws)
    assert paths.report_html.is_file() and paths.figure("throughput").is_file()
    for i in range(4):
        assert paths.replica_log(i).exists()
    assert paths.client_log(4).exists()
    assert all(c.proc.returncode == 0 for c in spawned)


def test_backup_crash_is_expected_and_the_rest_keep_committing(base_port, tmp_path, spawned):
    cfg = _config(
        base_port,
        "run.duration_s=7",
        "failures=[{replica: 2, at_s: 2.0, kind: crash}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="crash")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    events = summary["run"]["events"]
    assert any("replica 2 crashed as configured" in e for e in events), events
    # a crash writes no stats: the replica keeps what the runner sampled until it died
    crashed_row = summary["per_node"]["2"]
    assert crashed_row["stats_source"] == "runner" and crashed_row["executed_seq"] > 0
    assert crashed_row["failure"]["kind"] == "crash" and crashed_row["peak_rss_mb"] > 0
    nodes = {r["node"]: r for r in _read_csv(RunPaths(outcome.folder).nodes)}
    assert nodes["2"]["state"] == "crashed" and float(nodes["2"]["failure_at_s"]) >= 2.0
    assert any(
        r["node"] == "2" and r["role"] == "replica"
        for r in _read_csv(RunPaths(outcome.folder).memory)
    )
    audit = summary["audit"]
    assert audit["ok"] and audit["honest"] == [0, 1, 3]
    # the three survivors kept committing after the crash (t >= 2 s)
    rows = _read_csv(RunPaths(outcome.folder).throughput)
    for node in ("0", "1", "3"):
        late = sum(
            int(r["txn"])
            for r in rows
            if r["node"] == node and r["role"] == "replica" and int(r["time_s"]) >= 4
        )
        assert late > 0, f"replica {node} stopped committing after the crash"
    crashed = next(c for c in spawned if c.label == "replica 2")
    assert crashed.proc.returncode == 86
    assert "replica   2:" in RunPaths(outcome.folder).res_out.read_text()
    assert "[crashed at" in RunPaths(outcome.folder).res_out.read_text()


def test_a_replica_stalled_past_the_view_change_timeout_catches_up_or_degrades_the_run(
    base_port, tmp_path, spawned
):
    """Issue 19, finding 6: SIGSTOP a backup for 3 s (view-change timeout 2 s), then SIGCONT.

    Either it catches up (within one checkpoint interval of the others at the end) and the run
    is ok, or the run is DEGRADED naming it; never OK with the replica far behind."""
    cfg = _config(
        base_port,
        "run.duration_s=7",
        "failures=[{replica: 3, at_s: 1.5, kind: stall, duration_s: 3}]",
    )
    assert cfg.protocol.view_change_timeout_ms < 3000
    outcome = runner.run_experiment(cfg, tmp_path, label="stall", report=False)
    summary = outcome.summary
    assert outcome.status in ("ok", "degraded"), outcome.reason
    assert any("replica 3 stalled (SIGSTOP)" in e for e in summary["run"]["events"])
    assert summary["per_node"]["3"]["failure"]["kind"] == "stall"
    assert summary["audit"]["ok"] and 3 in summary["audit"]["honest"]  # stalled is honest
    final = summary["final_seq"]
    assert set(final) == {"0", "1", "2", "3"}
    lag = max(final.values()) - final["3"]
    report = RunPaths(outcome.folder).res_out.read_text()
    if lag > cfg.degraded_lag_seq:
        assert outcome.status == "degraded" and not outcome.ok
        assert "replica 3 ended at seq" in summary["run"]["degraded"]
        assert "Status: DEGRADED: replica 3" in report
    else:
        assert outcome.status == "ok" and "Status: OK" in report
    assert all(c.proc.returncode == 0 for c in spawned)  # SIGCONT before stop: a clean exit


def test_a_replica_still_behind_at_the_end_makes_the_run_degraded_not_ok(
    base_port, tmp_path, spawned, monkeypatch
):
    """The DEGRADED path on real processes: replica 3 is stalled until the clients stop and
    gets no drain time, so it really ends behind; the run must say DEGRADED and name it."""
    monkeypatch.setattr(runner.Runner, "drain", lambda self, lag_seq, max_s=0.0: None)
    cfg = _config(
        base_port,
        "run.duration_s=6",
        "failures=[{replica: 3, at_s: 1.0, kind: stall, duration_s: 4.9}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="behind", report=False)
    summary = outcome.summary
    final = summary["final_seq"]
    assert max(final.values()) - final["3"] > cfg.degraded_lag_seq, final
    assert outcome.status == "degraded" and not outcome.ok, outcome.reason
    assert summary["run"]["status"] == "degraded" and summary["audit"]["ok"]
    assert "replica 3 ended at seq" in outcome.reason
    report = RunPaths(outcome.folder).res_out.read_text()
    assert "Status: DEGRADED: replica 3 ended at seq" in report and "Status: OK" not in report
    nodes = {
        r["node"]: r for r in _read_csv(RunPaths(outcome.folder).nodes) if r["role"] == "replica"
    }
    assert nodes["3"]["state"] == "stalled" and int(nodes["3"]["behind_seq"]) > 0


def test_unexpected_replica_death_fails_the_run_loudly(base_port, tmp_path, spawned, monkeypatch):
    original = runner.Runner.monitor

    def monitor_then_kill(self, until):
        time.sleep(1.5)
        victim = next(c for c in self.children if c.label == "replica 1")
        os.kill(victim.proc.pid, signal.SIGKILL)
        original(self, until)

    monkeypatch.setattr(runner.Runner, "monitor", monitor_then_kill)
    started = time.monotonic()
    outcome = runner.run_experiment(_config(base_port, "run.duration_s=20"), tmp_path)
    assert not outcome.ok
    assert "replica 1 exited unexpectedly with code -9" in outcome.reason
    assert time.monotonic() - started < 20, "the runner should stop the run at the death"
    summary = json.loads(RunPaths(outcome.folder).summary.read_text())
    assert summary["run"]["status"] == "failed"
    report = RunPaths(outcome.folder).res_out.read_text()
    assert "Status: FAILED" in report
    assert "Log tails" in report and "replica 1" in report


def test_interrupt_stops_every_process(base_port, tmp_path, spawned, monkeypatch):
    def monitor_interrupted(self, until):
        time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Runner, "monitor", monitor_interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(_config(base_port), tmp_path)
    assert spawned and all(c.proc.poll() is not None for c in spawned)
    folder = next(tmp_path.iterdir())
    assert json.loads(RunPaths(folder).summary.read_text())["run"]["status"] == "failed"


def test_null_baseline_runs_through_the_same_pipeline(base_port, tmp_path, spawned):
    outcome = runner.run_experiment(
        _config(
            base_port,
            "protocol.name=null",
            "crypto.enabled=false",
            "run.scheduler=normal",
            "run.cpu_affinity=none",
        ),
        tmp_path,
    )
    assert outcome.ok, outcome.reason
    assert outcome.summary["scheduler"] == "normal"  # the knobs reach every process
    allowed = sorted(os.sched_getaffinity(0))
    assert all(row["cpus"] == allowed for row in outcome.summary["per_node"].values())
    assert outcome.summary["per_node"]["0"]["executed_seq"] > 0
    assert outcome.summary["per_node"]["1"]["executed_seq"] == 0  # null: only replica 0 executes


@pytest.mark.parametrize("signed_votes", [True, False])
def test_silent_primary_triggers_a_view_change_and_the_cluster_recovers(
    base_port, tmp_path, spawned, signed_votes
):
    # unsigned: MAC-only votes, the view change decided from signed claims (protocols/claims.py)
    cfg = _config(
        base_port,
        f"protocol.pbft_signed_votes={str(signed_votes).lower()}",
        "run.duration_s=12",
        "client.request_timeout_ms=1000",
        "protocol.view_change_timeout_ms=1000",
        "failures=[{replica: 0, at_s: 2.0, kind: silent}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="silent")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["per_node"]["0"]["failure"]["kind"] == "silent"
    for node in ("1", "2", "3"):
        assert summary["per_node"][node]["view"] >= 1, "the backups moved to a new view"
    assert summary["per_client"]["4"]["retransmissions"] > 0
    assert summary["audit"]["ok"] and summary["audit"]["honest"] == [1, 2, 3]
    rows = _read_csv(RunPaths(outcome.folder).throughput)
    late = sum(int(r["txn"]) for r in rows if r["role"] == "client" and int(r["time_s"]) >= 7)
    assert late > 0, "no transaction accepted after the view change"


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:  # fields: state, ppid, ...
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _start_runner(base_port: int, tmp_path: Path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fabric",
            "run",
            "--duration",
            "60",
            "--quiet",
            "--results-dir",
            str(tmp_path),
            "--set",
            f"transport.base_port={base_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline and len(kids) < 5:
        kids = _children_of(proc.pid)
        time.sleep(0.1)
    return proc, kids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_orphans_when_the_runner_is_terminated_or_killed(base_port, tmp_path, sig):
    proc, kids = _start_runner(base_port, tmp_path)
    try:
        assert len(kids) == 5, "the runner did not start 4 replicas and 1 client"
        time.sleep(2.0)  # let them get going
        proc.send_signal(sig)
        rc = proc.wait(60)
        assert rc == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
        # SIGTERM: the runner stops its process groups; SIGKILL: the children see stdin EOF
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "processes outlived the runner"
    finally:
        for pid in [proc.pid, *kids]:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if proc.poll() is None:
            proc.wait(10)


def test_malformed_frames_are_counted_and_dropped_while_the_run_goes_on(
    base_port, tmp_path, spawned, monkeypatch
):
    import socket

    from fabric.harness.config import config_to_dict
    from transport import wire
    from transport.zmq_io import Addressing

    cfg = _config(base_port)
    target = Addressing.from_config(config_to_dict(cfg)).address(1, 0)
    host, port = target.removeprefix("tcp://").rsplit(":", 1)
    good_header = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 4, 10) + b"x" * 10
    garbage = [b"", b"\x00" * 5, b"junk" * 50, good_header, good_header + b"\x00" * 16]
    original = runner.Runner.monitor

    def monitor_with_garbage(self, until):
        time.sleep(1.0)
        # raw TCP, one connection per frame: a refused header cuts its connection
        for frame in garbage * 20:
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(frame)
        original(self, until)

    monkeypatch.setattr(runner.Runner, "monitor", monitor_with_garbage)
    outcome = runner.run_experiment(cfg, tmp_path)
    assert outcome.ok, outcome.reason
    drops = {
        r["reason"]: int(r["count"])
        for r in _read_csv(RunPaths(outcome.folder).drops)
        if r["node"] == "1"
    }
    # nothing sent: nothing counted; 5 zero bytes or junk: no magic, cut; a header without
    # its body, then closed: partial_frame; a whole frame with a zero tag: mac
    assert drops == {"magic": 40, "partial_frame": 20, "mac": 20}, drops
    assert outcome.summary["per_node"]["1"]["executed_seq"] > 0


@pytest.mark.parametrize("certificate", ["signatures", "macs"])
def test_poe_speculative_cluster_commits_and_survives_a_silent_primary(
    base_port, tmp_path, spawned, certificate
):
    cfg = _config(
        base_port,
        "protocol.name=poe",
        f"protocol.poe_certificate={certificate}",
        "run.duration_s=11",
        "client.request_timeout_ms=1000",
        "protocol.view_change_timeout_ms=1000",
        "failures=[{replica: 0, at_s: 2.0, kind: silent}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="poe")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["audit"]["ok"] and summary["audit"]["honest"] == [1, 2, 3]
    assert all(summary["per_node"][n]["view"] >= 1 for n in ("1", "2", "3"))
    rows = _read_csv(RunPaths(outcome.folder).throughput)
    late = sum(int(r["txn"]) for r in rows if r["role"] == "client" and int(r["time_s"]) >= 6)
    assert late > 0, "no transaction accepted after PoE's view change"
    client = json.loads(RunPaths(outcome.folder).client_stats(4).read_text())
    assert client["reply_quorum"] == 3  # PoE: n - f speculative replies
    kinds = {r["kind"] for r in _read_csv(RunPaths(outcome.folder).messages)}
    assert ("Certify" in kinds) == (certificate == "signatures")  # MACs: no CERTIFY round


@pytest.mark.parametrize("workers", [1, 4])
def test_rcc_runs_its_instances_through_the_runtime(base_port, tmp_path, spawned, workers):
    cfg = _config(
        base_port,
        "protocol.name=rcc",
        "cluster.clients=4",
        "client.max_txn_in_flight=500",
        f"replica.worker_threads={workers}",  # 4: one worker per instance (fabric.runtime.lanes)
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="rcc")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["audit"]["ok"] and summary["audit"]["common_prefix"] > 0
    # one client per instance: every instance's primary proposed real batches
    for client in ("4", "5", "6", "7"):
        assert summary["per_client"][client]["requests_accepted"] > 0, client
    threads = {r["thread"] for r in _read_csv(RunPaths(outcome.folder).threads) if r["node"] == "0"}
    assert {f"worker-{k}" for k in range(workers)} <= threads
    assert f"worker-{workers}" not in threads


def test_rcc_survives_an_instance_primary_crash_and_recovers(base_port, tmp_path, spawned):
    """RCC §recovery: replica 1 (primary of instance 1) dies; its instance changes primary,
    its missing rounds are filled, and every instance delivers again; the audit passes."""
    cfg = _config(
        base_port,
        "protocol.name=rcc",
        "cluster.clients=4",
        "client.max_txn_in_flight=400",
        "client.request_timeout_ms=1000",
        "protocol.view_change_timeout_ms=1000",
        "run.duration_s=10",
        "failures=[{replica: 1, at_s: 2.0, kind: crash}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="rcc-crash")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert any("replica 1 crashed as configured" in e for e in summary["run"]["events"])
    audit = summary["audit"]
    assert audit["ok"] and audit["honest"] == [0, 2, 3] and audit["common_prefix"] > 0
    rows = _read_csv(RunPaths(outcome.folder).throughput)
    # throughput recovers: every client (one per instance, the crashed primary's included)
    # gets transactions accepted in the last seconds of the run
    for client in ("4", "5", "6", "7"):
        late = sum(
            int(r["txn"])
            for r in rows
            if r["node"] == client and r["role"] == "client" and int(r["time_s"]) >= 7
        )
        assert late > 0, f"client {client} got nothing accepted after the recovery"


def test_mixed_engine_cluster_agrees_on_real_traffic(base_port, tmp_path, spawned):
    """Issue 11: one engine per replica; the cluster's own ledger audit proves they agree.

    PoE applies speculatively (undo logs kept by every engine); SmallBank on a hot set makes
    the transactions conflict, and the cost knob releases the GIL so engine threads overlap.
    """
    engines = ["serial", "block-stm", "conflict-dag", "block-stm"]
    cfg = _config(
        base_port,
        "protocol.name=poe",
        f"execution.engine=[{','.join(engines)}]",
        "execution.threads=2",
        "execution.txn_cost_us=5",
        "workload.kind=smallbank",
        "workload.smallbank_accounts=1000",
        "workload.smallbank_hot_accounts=10",
        "workload.smallbank_hotspot=0.9",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label="engines", report=False)
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["audit"]["ok"] and summary["audit"]["common_prefix"] > 0
    per_node = summary["per_node"]
    assert [per_node[str(i)]["execution"]["engine"] for i in range(4)] == engines
    assert all(per_node[str(i)]["execution"]["txns"] > 0 for i in range(4))
    threads = _read_csv(RunPaths(outcome.folder).threads)
    engine_threads = {(r["node"], r["thread"]) for r in threads if r["role"] == "execute-engine"}
    assert engine_threads == {("1", "stm-1"), ("2", "dag-1"), ("3", "stm-1")}


@pytest.mark.parametrize(
    "extra", [["protocol.name=pbft"], ["protocol.name=rcc", "replica.worker_threads=4"]]
)
def test_small_client_requests_are_batched_by_the_proposer(base_port, tmp_path, spawned, extra):
    # issue 13 item 8: 3-txn requests, proposals of up to 10 txns (3 requests) cut by the
    # primary's batch thread, partial ones after batch_timeout_ms; RCC routes each batch to
    # the worker owning its instance (4 clients, 4 instances over 4 workers)
    cfg = _config(
        base_port,
        *extra,
        "cluster.clients=4",
        "batching.batch_size=10",
        "batching.batch_timeout_ms=2",
        "client.txns_per_request=3",
        "client.max_txn_in_flight=120",
    )
    assert cfg.txns_per_request == 3
    outcome = runner.run_experiment(cfg, tmp_path, label="small-requests")
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["throughput_txn_s"] > 0
    assert summary["audit"]["ok"] and summary["audit"]["common_prefix"] > 0
    batched = {"batches": 0, "requests": 0, "txns": 0}
    for node in range(cfg.cluster.replicas):
        stats = json.loads(RunPaths(outcome.folder).replica_stats(node).read_text())
        for key in batched:
            batched[key] += stats["batched"][key]
    assert batched["txns"] == 3 * batched["requests"]
    assert batched["txns"] <= 10 * batched["batches"]  # never over batch_size txns
    assert batched["requests"] >= 2 * batched["batches"]  # several requests per proposal
    accepted = sum(c["requests_accepted"] for c in summary["per_client"].values())
    assert accepted > summary["committed_batches"]
