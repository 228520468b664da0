"""From the processes' raw stats to summary.json, the tidy CSV tables and res.out.

Pure functions (no processes, no sockets): the runner hands in the stats
dicts every replica and client wrote (stats/*.json), the run's time zero and
what it observed (problems, events, the audit); out come the summary dict,
the rows of each CSV table and the classic ResilientDB-style text report.
Unit tests drive these with fake stats.

The measured window is [t0 + warmup_s, t0 + duration_s). Per-second counts
are bucketed by whole epoch second; a bucket that straddles a window edge
counts with the fraction of the second inside the window.

Must not live here: starting or stopping processes (fabric.runner), plots
(fabric.report), anything that needs the run to be live.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.metrics import latency_summary

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    """What the runner knows about a run before any stats come back."""

    name: str
    protocol: str
    replicas: int
    clients: int
    batch_size: int
    duration_s: float
    warmup_s: float
    started_at: float  # t0, epoch seconds: clients were told to start
    failures: tuple[Mapping[str, Any], ...] = ()  # configured: {replica, at_s, kind}
    crypto: str = ""  # e.g. "ed25519 + cmac-aes" or "off"
    f: int = 1


@dataclass
class Tables:
    """Rows of every CSV table (header first in ``HEADERS``)."""

    throughput: list[tuple[Any, ...]] = field(default_factory=list)
    latency: list[tuple[Any, ...]] = field(default_factory=list)
    threads: list[tuple[Any, ...]] = field(default_factory=list)
    rings: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    drops: list[tuple[Any, ...]] = field(default_factory=list)
    memory: list[tuple[Any, ...]] = field(default_factory=list)


HEADERS: dict[str, tuple[str, ...]] = {
    "throughput": ("time_s", "node", "role", "txn"),
    "latency": ("client", "time_s", "latency_ms"),
    "threads": ("node", "thread", "role", "busy_s", "idle_s"),
    "rings": ("node", "ring", "capacity", "pushes", "pops", "max_depth", "full_waits"),
    "messages": ("node", "kind", "direction", "count"),
    "drops": ("node", "reason", "count"),
    "memory": ("node", "role", "peak_rss_mb", "cpu_s"),
}


def window_count(per_s: Iterable[Sequence[float]], lo: float, hi: float) -> float:
    """Sum of per-second counts inside [lo, hi), a straddling second weighted by its overlap."""
    total = 0.0
    for sec, count in per_s:
        overlap = min(hi, sec + 1) - max(lo, sec)
        if overlap > 0:
            total += count * min(1.0, overlap)
    return total


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def build_summary(
    info: RunInfo,
    replica_stats: Mapping[int, Mapping[str, Any]],
    client_stats: Mapping[int, Mapping[str, Any]],
    audit: Mapping[str, Any] | None,
    problems: Sequence[str],
    events: Sequence[str],
) -> tuple[dict[str, Any], Tables]:
    """The summary dict (summary.json) and the table rows, from the stats the processes wrote."""
    t0 = info.started_at
    lo, hi = t0 + info.warmup_s, t0 + info.duration_s
    measured_s = max(hi - lo, 1e-9)
    tables = Tables()

    # throughput ------------------------------------------------------------------------
    per_node: dict[str, dict[str, Any]] = {}
    for node, st in sorted(replica_stats.items()):
        per_s = st.get("executed_per_s", [])
        for sec, count in per_s:
            tables.throughput.append((int(sec - math.floor(t0)), node, "replica", count))
        res = st.get("resources", {})
        per_node[str(node)] = {
            "throughput_txn_s": round(window_count(per_s, lo, hi) / measured_s, 1),
            "cpu_s": res.get("cpu_s"),
            "peak_rss_mb": res.get("peak_rss_mb"),
            "executed_seq": st.get("executed_seq", 0),
            "executed_txns": st.get("executed_txns", 0),
            "view": st.get("view", 0),
            "failure": st.get("failure"),
        }
    per_client: dict[str, dict[str, Any]] = {}
    accepted_total = 0.0
    all_latencies: list[float] = []
    for node, st in sorted(client_stats.items()):
        per_s = st.get("accepted_per_s", [])
        for sec, count in per_s:
            tables.throughput.append((int(sec - math.floor(t0)), node, "client", count))
        accepted = window_count(per_s, lo, hi)
        accepted_total += accepted
        lats = [lat for when, lat in st.get("latency", []) if lo <= when < hi]
        for when, lat in st.get("latency", []):
            if lo <= when < hi:
                tables.latency.append((node, round(when - t0, 3), lat))
        all_latencies.extend(lats)
        counters = st.get("counters", {})
        res = st.get("resources", {})
        per_client[str(node)] = {
            "throughput_txn_s": round(accepted / measured_s, 1),
            "latency_ms": {k: _round(v) for k, v in latency_summary(lats).items()},
            "requests_accepted": counters.get("requests_accepted", 0),
            "retransmissions": counters.get("retransmissions", 0),
            "requests_given_up": counters.get("requests_given_up", 0),
            "cpu_s": res.get("cpu_s"),
            "peak_rss_mb": res.get("peak_rss_mb"),
        }
    latency = {k: _round(v) for k, v in latency_summary(all_latencies).items()}

    # threads, rings, messages, drops, memory -------------------------------------------
    for role, stats in (("replica", replica_stats), ("client", client_stats)):
        for node, st in sorted(stats.items()):
            for th in st.get("threads", []):
                tables.threads.append(
                    (node, th["thread"], th.get("role", ""), th["busy_s"], th["idle_s"])
                )
            for ring in st.get("rings", []):
                tables.rings.append(
                    (
                        node,
                        ring["name"],
                        ring["capacity"],
                        ring["pushes"],
                        ring["pops"],
                        ring["max_depth"],
                        ring["full_waits"],
                    )
                )
            msgs = st.get("messages", {})
            for direction in ("sent", "received"):
                for kind, count in sorted(msgs.get(direction, {}).items()):
                    tables.messages.append((node, kind, direction, count))
            for reason, count in sorted(st.get("drops", {}).items()):
                tables.drops.append((node, reason, count))
            res = st.get("resources", {})
            tables.memory.append((node, role, res.get("peak_rss_mb"), res.get("cpu_s")))

    # messages per committed batch (every replica's sends, whole run) --------------------
    failed = {int(f["replica"]) for f in info.failures}
    honest_seqs = [
        st.get("executed_seq", 0) for node, st in replica_stats.items() if node not in failed
    ]
    committed = max(honest_seqs or [0])
    sent_by_kind: dict[str, int] = {}
    for st in replica_stats.values():
        for kind, count in st.get("messages", {}).get("sent", {}).items():
            sent_by_kind[kind] = sent_by_kind.get(kind, 0) + count
    messages_per_batch = (
        {k: round(v / committed, 4) for k, v in sorted(sent_by_kind.items())} if committed else {}
    )

    events = [*events, *_view_change_events(replica_stats, t0)]
    status = "ok" if not problems else "failed"
    summary = {
        "version": SUMMARY_VERSION,
        "run": {
            "name": info.name,
            "protocol": info.protocol,
            "replicas": info.replicas,
            "clients": info.clients,
            "batch_size": info.batch_size,
            "duration_s": info.duration_s,
            "warmup_s": info.warmup_s,
            "measured_s": round(measured_s, 3),
            "started_at": t0,
            "crypto": info.crypto,
            "failures_injected": [dict(f) for f in info.failures],
            "status": status,
            "failure": "; ".join(problems) if problems else None,
            "events": list(events),
        },
        "throughput_txn_s": round(accepted_total / measured_s, 1),
        "latency_ms": latency,
        "per_node": per_node,
        "per_client": per_client,
        "committed_batches": committed,
        "audit": dict(audit) if audit is not None else None,
        "messages_per_batch": messages_per_batch,
    }
    return summary, tables


def _view_change_events(replica_stats: Mapping[int, Mapping[str, Any]], t0: float) -> list[str]:
    """One line per view the replicas entered: when the first did, and who followed."""
    entered: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for node, st in replica_stats.items():
        for when, view, primary in st.get("view_changes", []):
            entered.setdefault((view, primary), []).append((when, node))
    lines = []
    for (view, primary), who in sorted(entered.items()):
        first = min(when for when, _ in who)
        nodes = ",".join(str(node) for _, node in sorted(who, key=lambda x: x[1]))
        lines.append(
            f"view {view} (primary {primary}) entered by replicas {nodes} from t={first - t0:.1f} s"
        )
    return lines


def _round(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    return value


def write_tables(tables: Tables, paths: Any) -> None:
    """Write every table as CSV at the paths a fabric.paths.RunPaths names."""
    for name, header in HEADERS.items():
        path: Path = getattr(paths, name)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(getattr(tables, name))


# --- the classic text report ---------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_report(summary: Mapping[str, Any], tables: Tables) -> str:
    """The ResilientDB-style report: throughput per node, latency, idleness, memory, averages."""
    run = summary["run"]
    lines: list[str] = []
    add = lines.append
    add(f"== {run['name']} ==")
    add(
        f"protocol {run['protocol']}, {run['replicas']} replicas, {run['clients']} client(s), "
        f"batch {run['batch_size']}, crypto {run['crypto'] or '-'}; "
        f"measured {run['measured_s']:.1f} s after {run['warmup_s']:g} s warm-up"
    )
    add("")
    add("Throughput (txn/s in the measured window; replicas: executed, clients: accepted)")
    for node, row in summary["per_node"].items():
        note = (
            f"   [{row['failure']['kind']} at {row['failure']['at_s']:.1f} s]"
            if row.get("failure")
            else ""
        )
        add(
            f"  replica {node:>3}: {_fmt(row['throughput_txn_s']):>12}   seq {row['executed_seq']}{note}"
        )
    for node, row in summary["per_client"].items():
        add(f"  client  {node:>3}: {_fmt(row['throughput_txn_s']):>12}")
    add("")
    add("Latency (ms, client-accepted transactions in the measured window)")
    for node, row in summary["per_client"].items():
        lat = row["latency_ms"]
        add(
            f"  client  {node:>3}: avg {_fmt(lat['avg'])}  p50 {_fmt(lat['p50'])}  "
            f"p90 {_fmt(lat['p90'])}  p99 {_fmt(lat['p99'])}  max {_fmt(lat['max'])}  "
            f"({lat['count']} requests; {row['retransmissions']} re-sent, "
            f"{row['requests_given_up']} given up)"
        )
    add("")
    add("Idleness (share of each thread's lifetime parked waiting for input)")
    by_node: dict[Any, list[tuple[Any, ...]]] = {}
    for row in tables.threads:
        by_node.setdefault(row[0], []).append(row)
    for node, rows in by_node.items():
        parts = []
        for _, thread, _, busy, idle in rows:
            total = busy + idle
            parts.append(f"{thread} {100.0 * idle / total if total > 0 else 0.0:.0f}%")
        add(f"  node {node:>3}: " + ", ".join(parts))
    add("")
    add("Memory (peak RSS) and CPU")
    for node, role, rss, cpu in tables.memory:
        add(f"  {role:<7} {node:>3}: {_fmt(rss)} MB, {_fmt(cpu, ',.2f')} CPU-s")
    add("")
    mpb = summary.get("messages_per_batch") or {}
    if mpb:
        add(
            f"Messages sent per committed batch (all replicas, {summary['committed_batches']} batches): "
            + ", ".join(f"{k} {v:.3g}" for k, v in mpb.items())
        )
    drops: dict[str, int] = {}
    for _, reason, count in tables.drops:
        drops[reason] = drops.get(reason, 0) + count
    add("Drops: " + (", ".join(f"{r} {c}" for r, c in sorted(drops.items())) if drops else "none"))
    audit = summary.get("audit")
    if audit is None:
        add("Audit: not run")
    else:
        add(f"Audit: {'ok' if audit['ok'] else 'FAILED'}: {audit['message']}")
    for event in run["events"]:
        add(f"Event: {event}")
    add("")
    lat = summary["latency_ms"]
    add(f"Average throughput: {_fmt(summary['throughput_txn_s'])} txn/s")
    add(
        f"Average latency:    {_fmt(lat['avg'])} ms (p50 {_fmt(lat['p50'])}, "
        f"p90 {_fmt(lat['p90'])}, p99 {_fmt(lat['p99'])})"
    )
    if run["status"] == "ok":
        add("Status: OK")
    else:
        add(f"Status: FAILED: {run['failure']}")
    return "\n".join(lines) + "\n"
