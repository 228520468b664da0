"""SSH launcher benchmark (issue 18): the same PBFT run on this machine (loopback), across
three namespace hosts running Debian's sshd (fabric.harness.remote, on the test suite's hosts:
fabric.harness.ssh_lab), and across the same hosts as two regions 25 ms apart
(network.emulation transport, delays in each sender), one after the other in one session.

Printed per run: throughput, latency p50/p99, the audit, and for SSH runs the launcher's
preparation (login, check, ship: seconds until the first process starts), the tree shipped
and each host's measured clock offset. Figures are printed, never asserted. Needs root,
iproute2, sshd and paramiko (the test's skip reasons otherwise).

Environment: BENCH_SSH_DURATION_S (default 10), BENCH_SSH_WARMUP_S (default 2).

Must not live here: anything the runner does (runs go through run_experiment).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from fabric.harness import runner
from fabric.harness.config import load_config
from fabric.harness.ssh_lab import SshHosts as Hosts
from fabric.harness.ssh_lab import skip_reason as _skip_reason

GEO = [
    "network.emulation=transport",
    'network.regions=["east", "west"]',
    "network.region_delay_ms={east: {west: 25}}",
]


def _run(name: str, overrides: list[str], results: Path) -> dict[str, float | str]:
    cfg = load_config(None, overrides)
    began = time.time()
    prepared: list[float] = []
    original = runner.Runner.start_all

    def timed_start(self: runner.Runner) -> None:  # the launcher is done when starts begin
        prepared.append(time.time() - began)
        original(self)

    runner.Runner.start_all = timed_start  # type: ignore[method-assign]
    try:
        out = runner.run_experiment(cfg, results, label=name, report=False)
    finally:
        runner.Runner.start_all = original  # type: ignore[method-assign]
    lat = out.summary["latency_ms"]
    row: dict[str, float | str] = {
        "run": name,
        "status": out.status,
        "txn_s": out.summary["throughput_txn_s"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "audit": "ok" if (out.summary.get("audit") or {}).get("ok") else "FAILED",
        "until_start_s": round(prepared[0], 2) if prepared else -1,
    }
    hosts = out.folder / "hosts.json"
    if hosts.exists():
        record = json.loads(hosts.read_text())
        row["tree_kb"] = round(record["tree_bytes"] / 1024)
        row["clock_offsets_ms"] = " ".join(
            f"{h['clock_offset_s'] * 1000:+.3f}" for h in record["hosts"]
        )
    return row


def main() -> None:
    reason = _skip_reason()
    if reason:
        print(f"ssh_hosts: skipped: {reason}")
        return
    duration = float(os.environ.get("BENCH_SSH_DURATION_S", "10"))
    warmup = float(os.environ.get("BENCH_SSH_WARMUP_S", "2"))
    tmp = Path(tempfile.mkdtemp(prefix="bft-ssh-bench-"))
    hosts = Hosts(tmp)
    try:
        hosts.up()
        common = [f"run.duration_s={duration}", f"run.warmup_s={warmup}"]
        ssh = [
            f"cluster.hosts_file={hosts.hosts_file([f'root@{a}' for a in hosts.addresses])}",
            f"ssh.known_hosts_file={hosts.known_hosts}",
        ]
        rows = [
            _run("loopback", common, tmp / "results"),
            _run("ssh-3-hosts", common + ssh, tmp / "results"),
            _run("ssh-geo-25ms", common + ssh + GEO, tmp / "results"),
        ]
    finally:
        hosts.down()
        shutil.rmtree(tmp, ignore_errors=True)
    base = float(rows[0]["txn_s"]) or 1.0
    print(
        f"PBFT n=4, 1 client, batch 100, {duration:g} s ({warmup:g} s warm-up); load {os.getloadavg()}"
    )
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ("run", "txn_s", "p50_ms", "p99_ms")}
        print(
            f"  {row['run']:<13} {float(row['txn_s']):>9,.0f} txn/s ({float(row['txn_s']) / base:4.2f}x)"
            f"  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  {extra}"
        )


if __name__ == "__main__":
    main()
