"""Cluster benchmark: PBFT (signed votes, the default; MAC-only votes) against the
null-protocol baseline, each with its CPU ledger.

Every run uses the same pipeline (replica threads, rings, ZeroMQ, crypto on,
YCSB client); the null protocol replaces consensus by immediate delivery at
replica 0, so the ratio PBFT / null is the share of the pipeline's capacity
that agreement leaves. Each run writes a normal results folder (results/ by
default). Figures are printed, never asserted. The CPU ledger (summary.json
``cpu_ledger``, fabric.analysis.summary.cpu_ledger) is the CPU microseconds per
committed transaction: cluster-wide, per process, and per thread kind from the
threads' own CPU clocks, so a change to the hot path is measured, not guessed.

Environment: BENCH_CLUSTER_DURATION_S (default 20) and BENCH_CLUSTER_WARMUP_S
(default 4) set each run's length; BENCH_CLUSTER_RUNS (default
``pbft,pbft-mac,null``) picks the runs, by the names in ``RUNS``; BENCH_CLUSTER_SET adds
config overrides to every run, comma-separated (``run.scheduler=normal,run.cpu_affinity=none``
measures the kernel's default placement beside this session's default).

Must not live here: anything the runner does (it is called through
fabric.harness.runner.run_experiment, like a sweep would).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fabric.analysis.summary import format_cpu_ledger
from fabric.harness.ports import free_port_block

#: the runs this benchmark knows: name -> config overrides
RUNS: dict[str, tuple[str, ...]] = {
    "pbft": ("protocol.name=pbft", "protocol.pbft_signed_votes=true"),
    "pbft-mac": ("protocol.name=pbft", "protocol.pbft_signed_votes=false"),
    "null": ("protocol.name=null",),
}


def _line(name: str, outcome: Any) -> str:
    s = outcome.summary
    lat = s["latency_ms"]
    rss = max((n["peak_rss_mb"] or 0) for n in s["per_node"].values()) if s["per_node"] else 0
    cpu = sum((n["cpu_s"] or 0) for n in s["per_node"].values())
    status = "ok" if outcome.ok else f"FAILED ({outcome.reason})"
    return (
        f"   {name:<8} {s['throughput_txn_s']:>10,.0f} txn/s   latency p50 {lat['p50'] or 0:7.1f} ms  "
        f"p99 {lat['p99'] or 0:7.1f} ms   max RSS/replica {rss:6.1f} MB   "
        f"replica CPU {cpu:6.1f} s   {status}"
    )


def main() -> None:
    from fabric.harness.config import load_config
    from fabric.harness.runner import run_experiment

    duration = float(os.environ.get("BENCH_CLUSTER_DURATION_S", "20"))
    warmup = float(os.environ.get("BENCH_CLUSTER_WARMUP_S", "4"))
    base = load_config(None, [f"run.duration_s={duration}", f"run.warmup_s={warmup}"])
    results = Path(base.run.results_dir)
    print(
        f"   {base.cluster.replicas} replicas, {base.cluster.clients} client(s), batch "
        f"{base.batching.batch_size}, {base.client.max_txn_in_flight} txn in flight, crypto "
        f"{base.crypto.effective_client_signature} + {base.crypto.effective_link_mac}, "
        f"{duration:g} s runs ({warmup:g} s warm-up)",
        flush=True,
    )
    names = [n.strip() for n in os.environ.get("BENCH_CLUSTER_RUNS", ",".join(RUNS)).split(",")]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"BENCH_CLUSTER_RUNS: unknown run(s) {unknown}; known: {list(RUNS)}")
    extra = [o.strip() for o in os.environ.get("BENCH_CLUSTER_SET", "").split(",") if o.strip()]
    if extra:
        base = base.with_overrides(extra)  # a bad one is a ConfigError naming the key
        print(f"   every run also with: {', '.join(extra)}", flush=True)
    print(
        f"   scheduling: run.scheduler {base.run.scheduler}, run.cpu_affinity "
        f"{base.run.cpu_affinity} (res.out of each run names the CPUs)",
        flush=True,
    )
    outcomes = {}
    for name in names:
        cfg = base.with_overrides([*RUNS[name], f"transport.base_port={free_port_block(200)}"])
        outcome = run_experiment(cfg, results, label=f"bench-{name}")
        outcomes[name] = outcome
        print(_line(name, outcome), flush=True)
        print(f"            {outcome.folder}", flush=True)
        for line in format_cpu_ledger(outcome.summary.get("cpu_ledger"), indent="            "):
            print(line, flush=True)
    null = outcomes["null"].summary["throughput_txn_s"] if "null" in outcomes else 0
    for name in names:
        if name != "null" and null > 0:
            ratio = outcomes[name].summary["throughput_txn_s"] / null
            print(f"   {name} / null throughput: {ratio:.2f}")
