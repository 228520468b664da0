"""Cluster benchmark: the default PBFT cluster against the null-protocol baseline.

Both runs use the same pipeline (replica threads, rings, ZeroMQ, crypto on,
YCSB client); the null protocol replaces consensus by immediate delivery at
replica 0, so the ratio PBFT / null is the share of the pipeline's capacity
that agreement leaves. Each run writes a normal results folder (results/ by
default). Figures are printed, never asserted.

Environment: BENCH_CLUSTER_DURATION_S (default 20) and BENCH_CLUSTER_WARMUP_S
(default 4) set each run's length.

Must not live here: anything the runner does (it is called through
fabric.harness.runner.run_experiment, like a sweep would).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fabric.harness.ports import free_port_block


def _line(name: str, outcome: Any) -> str:
    s = outcome.summary
    lat = s["latency_ms"]
    rss = max((n["peak_rss_mb"] or 0) for n in s["per_node"].values()) if s["per_node"] else 0
    cpu = sum((n["cpu_s"] or 0) for n in s["per_node"].values())
    status = "ok" if outcome.ok else f"FAILED ({outcome.reason})"
    return (
        f"   {name:<5} {s['throughput_txn_s']:>10,.0f} txn/s   latency p50 {lat['p50'] or 0:7.1f} ms  "
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
    outcomes = {}
    for name in ("pbft", "null"):
        cfg = base.with_overrides(
            [f"protocol.name={name}", f"transport.base_port={free_port_block(200)}"]
        )
        outcome = run_experiment(cfg, results, label="bench")
        outcomes[name] = outcome
        print(_line(name, outcome), flush=True)
        print(f"         {outcome.folder}", flush=True)
    pbft = outcomes["pbft"].summary["throughput_txn_s"]
    null = outcomes["null"].summary["throughput_txn_s"]
    if null > 0:
        print(f"   pbft / null throughput: {pbft / null:.2f}")
