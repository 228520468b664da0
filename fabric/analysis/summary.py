"""From the processes' raw stats to summary.json, the tidy CSV tables and res.out.

Pure functions (no processes, no sockets): the runner hands in the stats
dicts every replica and client wrote (stats/*.json), the run's time zero and
what it observed (problems, events, the audit); out come the summary dict,
the rows of each CSV table and the classic ResilientDB-style text report.
Unit tests drive these with fake stats.

The measured window is [t0 + warmup_s, t0 + duration_s), cut short at ``stopped_at`` when
the run was interrupted (res.out then says what was measured). Per-second counts
are bucketed by whole epoch second; a bucket that straddles a window edge
counts with the fraction of the second inside the window.

A run's status is ``ok``, ``degraded`` (no problem, but an honest replica ended more than
``degraded_lag_seq`` sequence numbers behind the most advanced honest one: it is named) or
``failed``. Honest = not configured to crash, go silent or lie (a Byzantine kind but
``slow``); a stalled, restarted or slow replica is honest. A replica that crashed as
configured has no stats of its own: the runner hands in what it sampled while the replica
ran (``stats_source: runner``), shown as crashed at t everywhere.
A restarted replica's stats are both lives merged by the runner (fabric.harness.runner
``merge_restart``): its ``failure`` says when it was killed and back (``restart_note``).

Must not live here: starting or stopping processes (fabric.harness.runner), plots
(fabric.analysis.report), anything that needs the run to be live.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.analysis.metrics import latency_summary

SUMMARY_VERSION = 1
#: the execution engine's counters (fabric.runtime.engines: every engine reports each of them)
ENGINE_COUNTERS = (
    "blocks",
    "txns",
    "executions",
    "re_executions",
    "validations",
    "validation_failures",
    "dependency_waits",
    "dag_width_max",
    "dag_levels_max",
)


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
    degraded_lag_seq: int = 0  # > 0: an honest replica further behind makes the run degraded
    stopped_at: float | None = None  # epoch s the run was cut short (interrupted), else None


#: failure kinds that make a replica not honest: crash, silent and the Byzantine kinds whose
#: messages lie or never authenticate (fabric.runtime.byzantine). A stalled replica and a
#: ``slow`` one (every frame late, none false) are slow, not faulty: audited as honest.
FAULTY_KINDS = ("crash", "silent", "equivocate", "bad_mac", "wrong_digest", "throttle")
#: failure kinds played by the replica's Byzantine output (their counters: ``byzantine``)
BYZANTINE_KINDS = ("equivocate", "bad_mac", "wrong_digest", "throttle", "slow")


def faulty_replicas(failures: Iterable[Mapping[str, Any]]) -> set[int]:
    """Replicas a configured failure makes faulty (crash, silent, Byzantine but slow); stalls
    and slow replicas stay honest."""
    return {int(f["replica"]) for f in failures if f.get("kind", "crash") in FAULTY_KINDS}


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
    nodes: list[tuple[Any, ...]] = field(default_factory=list)
    execution: list[tuple[Any, ...]] = field(default_factory=list)


HEADERS: dict[str, tuple[str, ...]] = {
    "throughput": ("time_s", "node", "role", "txn"),
    "latency": ("client", "time_s", "latency_ms"),
    "threads": ("node", "thread", "role", "busy_s", "idle_s", "cpu_s"),
    "rings": (
        "node",
        "ring",
        "capacity",
        "pushes",
        "pops",
        "max_depth",
        "full_waits",
        "consumer_parks",
    ),
    "messages": ("node", "kind", "direction", "count"),
    "drops": ("node", "where", "reason", "count"),
    "memory": ("node", "role", "peak_rss_mb", "cpu_s"),
    "nodes": (
        "node",
        "role",
        "state",
        "failure_at_s",
        "executed_seq",
        "view",
        "behind_seq",
        "stats_source",
    ),
    "execution": (
        "node",
        "engine",
        "threads",
        "txn_cost_us",
        *ENGINE_COUNTERS,
    ),
}


#: drop reasons counted on the send side (a full ZeroMQ send queue, a silent replica's sends,
#: catch-up answers shed to keep protocol messages flowing); see results/README.md
SEND_DROPS = frozenset(
    {
        "send_full",
        "send_full_to_client",
        "silent_send",
        "send_to_self",
        "fetch_answer_shed",
        "send_to_unknown_node",
    }
)
#: drop reasons inside the replica's pipeline (a full ring or backlog between its stages, a
#: protocol that raised or returned what the runtime cannot do)
PIPELINE_DROPS = frozenset(
    {
        "batch_ring_full",
        "output_ring_full",
        "checkpoint_backlog_full",
        "proposal_overflow",
        "no_instance",
    }
)
PIPELINE_DROP_PREFIXES = ("protocol_error:", "unknown_action:")


def drop_where(reason: str) -> str:
    """Where a drop happened: ``send`` (on the way out), ``pipeline`` (between the replica's
    stages) or ``input`` (a received frame refused: decode, MAC, role, rate, signature...)."""
    if reason in SEND_DROPS:
        return "send"
    if reason in PIPELINE_DROPS or reason.startswith(PIPELINE_DROP_PREFIXES):
        return "pipeline"
    return "input"


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
    if info.stopped_at is not None:
        hi = max(lo, min(hi, info.stopped_at))
    measured_s = max(hi - lo, 1e-9)
    tables = Tables()

    # throughput ------------------------------------------------------------------------
    per_node: dict[str, dict[str, Any]] = {}
    for node, st in sorted(replica_stats.items()):
        per_s = st.get("executed_per_s", [])
        for sec, count in per_s:
            tables.throughput.append((int(sec - math.floor(t0)), node, "replica", count))
        eng = _engine_counters(st)
        if eng:
            tables.execution.append(
                (
                    node,
                    eng["engine"],
                    eng["threads"],
                    eng["txn_cost_us"],
                    *(eng[name] for name in ENGINE_COUNTERS),
                )
            )
        res = st.get("resources", {})
        per_node[str(node)] = {
            "throughput_txn_s": round(window_count(per_s, lo, hi) / measured_s, 1),
            "cpu_s": res.get("cpu_s"),
            "peak_rss_mb": res.get("peak_rss_mb"),
            "executed_seq": st.get("executed_seq", 0),
            "executed_txns": st.get("executed_txns", 0),
            "view": st.get("view", 0),
            "failure": st.get("failure"),
            "cpus": st.get("cpus"),  # the CPUs it could run on (one: pinned, run.cpu_affinity)
            "stats_source": st.get("stats_source", "process"),
            "execution": _engine_counters(st),
            **({"restart": st["restart"]} if st.get("restart") else {}),  # both lives' figures
        }
        if st.get("byzantine"):
            per_node[str(node)]["byzantine"] = dict(st["byzantine"])
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
            "cpus": st.get("cpus"),
        }
    latency = {k: _round(v) for k, v in latency_summary(all_latencies).items()}

    # threads, rings, messages, drops, memory -------------------------------------------
    for role, stats in (("replica", replica_stats), ("client", client_stats)):
        for node, st in sorted(stats.items()):
            for th in st.get("threads", []):
                tables.threads.append(
                    (
                        node,
                        th["thread"],
                        th.get("role", ""),
                        th["busy_s"],
                        th["idle_s"],
                        th.get("cpu_s", ""),
                    )
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
                        ring.get("consumer_parks", ""),  # absent in older runs' stats
                    )
                )
            msgs = st.get("messages", {})
            for direction in ("sent", "received"):
                for kind, count in sorted(msgs.get(direction, {}).items()):
                    tables.messages.append((node, kind, direction, count))
            for reason, count in sorted(st.get("drops", {}).items()):
                tables.drops.append((node, drop_where(reason), reason, count))
            res = st.get("resources", {})
            tables.memory.append((node, role, res.get("peak_rss_mb"), res.get("cpu_s")))

    # messages per committed batch (every replica's sends, whole run) --------------------
    failed = faulty_replicas(info.failures)
    honest_seq = {
        node: int(st.get("executed_seq", 0) or 0)
        for node, st in sorted(replica_stats.items())
        if node not in failed
    }
    committed = max(honest_seq.values(), default=0)
    behind = {
        node: committed - seq
        for node, seq in honest_seq.items()
        if info.degraded_lag_seq > 0 and committed - seq > info.degraded_lag_seq
    }
    for node, st in sorted(replica_stats.items()):
        fail = st.get("failure") or {}
        state = str(fail.get("kind", "")) or ("no_stats" if not st else "ok")
        # a Byzantine kind is its own state (equivocate, bad_mac, wrong_digest, throttle, slow)
        state = {
            "crash": "crashed",
            "silent": "silent",
            "stall": "stalled",
            "restart": "restarted",
        }.get(state, state)
        at_s = fail.get("at_s")
        tables.nodes.append(
            (
                node,
                "replica",
                state,
                "" if at_s is None else round(float(at_s), 3),
                st.get("executed_seq", 0),
                st.get("view", 0),
                committed - honest_seq[node] if node in honest_seq else "",
                st.get("stats_source", "process"),
            )
        )
    for node in sorted(client_stats):
        tables.nodes.append((node, "client", "ok", "", "", "", "", "process"))
    sent_by_kind: dict[str, int] = {}
    for st in replica_stats.values():
        for kind, count in st.get("messages", {}).get("sent", {}).items():
            sent_by_kind[kind] = sent_by_kind.get(kind, 0) + count
    messages_per_batch = (
        {k: round(v / committed, 4) for k, v in sorted(sent_by_kind.items())} if committed else {}
    )

    events = [*events, *_view_change_events(replica_stats, t0)]
    degraded = ""
    if behind:
        lead = max(honest_seq, key=lambda n: (honest_seq[n], -n))
        degraded = (
            "; ".join(
                f"replica {node} ended at seq {honest_seq[node]}, {gap} behind replica {lead} "
                f"({committed})"
                for node, gap in behind.items()
            )
            + f" (allowed: {info.degraded_lag_seq}, run.degraded_lag_seq)"
        )
    status = "failed" if problems else ("degraded" if degraded else "ok")
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
            "degraded": degraded or None,
            "interrupted_at_s": (
                None if info.stopped_at is None else round(info.stopped_at - t0, 3)
            ),
            "events": list(events),
        },
        "throughput_txn_s": round(accepted_total / measured_s, 1),
        "throughput_txn_s_per_client": (
            round(accepted_total / measured_s / len(client_stats), 1) if client_stats else None
        ),
        "final_seq": {str(node): seq for node, seq in honest_seq.items()},
        "degraded_lag_seq": info.degraded_lag_seq,
        "latency_ms": latency,
        "per_node": per_node,
        "per_client": per_client,
        "committed_batches": committed,
        "audit": dict(audit) if audit is not None else None,
        "messages_per_batch": messages_per_batch,
        "cpu_ledger": cpu_ledger(replica_stats, client_stats, failed),
        # the policy the processes reported running under (run.scheduler; None: older runs)
        "scheduler": ", ".join(
            sorted(
                {
                    str(st["scheduler"])
                    for stats in (replica_stats, client_stats)
                    for st in stats.values()
                    if st.get("scheduler")
                }
            )
        )
        or None,
        "byzantine": byzantine_effects(info.failures, replica_stats, failed),
    }
    return summary, tables


def byzantine_effects(
    failures: Iterable[Mapping[str, Any]],
    replica_stats: Mapping[int, Mapping[str, Any]],
    failed: Iterable[int] = (),
) -> dict[str, Any] | None:
    """Per Byzantine replica: its kind, when, its delay, what its output did (counters), and
    what the honest replicas saw (MAC drops of its frames, view changes); None without one."""
    out: dict[str, Any] = {}
    failed = set(failed)
    honest = {n: st for n, st in replica_stats.items() if n not in failed}
    for fault in failures:
        if fault.get("kind") not in BYZANTINE_KINDS:
            continue
        node = int(fault["replica"])
        st = replica_stats.get(node, {})
        out[str(node)] = {
            "kind": fault["kind"],
            "at_s": fault.get("at_s"),
            "delay_ms": fault.get("delay_ms", 0.0),
            "active": bool(st.get("failure")),
            "output": dict(st.get("byzantine") or {}),
            "honest_mac_drops": sum(int(h.get("drops", {}).get("mac", 0)) for h in honest.values()),
            "honest_view_changes": max(
                (len(h.get("view_changes", [])) for h in honest.values()), default=0
            ),
        }
    return out or None


#: the ledger's name for a process's CPU its stage clocks do not cover (ZeroMQ's I/O threads,
#: the main thread's start-up and shutdown, the garbage collector run from any thread)
OTHER_CPU = "other"


def cpu_ledger(
    replica_stats: Mapping[int, Mapping[str, Any]],
    client_stats: Mapping[int, Mapping[str, Any]],
    failed: Iterable[int] = (),
) -> dict[str, Any] | None:
    """CPU microseconds per committed transaction over the whole run (warm-up included: thread
    CPU clocks are read once, when each thread stops): cluster-wide, per process, and per
    thread kind summed over every process (``other`` = a process's CPU outside its threads'
    clocks: ZeroMQ's I/O threads, shutdown). A process's start-up (``startup_cpu_s``:
    interpreter, imports, keys, sockets, recovery; about 0.3 s each) is a fixed cost, not a
    per-transaction one: it is left out of every figure and reported apart
    (``startup_cpu_s``, and ``cluster_us_per_txn_with_startup`` for comparison with ledgers
    made before it was). Committed = the most transactions an honest replica executed. None
    when nothing was committed or a process wrote no figures."""
    failed = set(failed)
    committed = max(
        (
            int(st.get("executed_txns", 0) or 0)
            for node, st in replica_stats.items()
            if node not in failed
        ),
        default=0,
    )
    if committed <= 0:
        return None
    per_process: dict[str, float] = {}
    per_kind: dict[str, float] = {}
    total_s = 0.0
    startup_s = 0.0
    for role, stats in (("replica", replica_stats), ("client", client_stats)):
        for node, st in sorted(stats.items()):
            resources = st.get("resources") or {}
            cpu = resources.get("cpu_s")
            if cpu is None:
                return None
            startup = min(float(resources.get("startup_cpu_s", 0.0) or 0.0), float(cpu))
            startup_s += startup
            cpu = float(cpu) - startup
            threads_s = 0.0
            for th in st.get("threads", []):
                kind = th.get("role") or "stage"
                seconds = float(th.get("cpu_s", 0.0) or 0.0)
                threads_s += seconds
                per_kind[kind] = per_kind.get(kind, 0.0) + seconds
            other = max(0.0, float(cpu) - threads_s)
            key = f"{role}-other" if role == "client" else OTHER_CPU
            per_kind[key] = per_kind.get(key, 0.0) + other
            per_process[f"{role} {node}"] = float(cpu)
            total_s += float(cpu)
    us = 1e6 / committed
    return {
        "committed_txns": committed,
        "cpu_s": round(total_s, 3),
        "cluster_us_per_txn": round(total_s * us, 2),
        "startup_cpu_s": round(startup_s, 3),
        "cluster_us_per_txn_with_startup": round((total_s + startup_s) * us, 2),
        "per_process_us_per_txn": {k: round(v * us, 2) for k, v in per_process.items()},
        "per_kind_us_per_txn": {
            k: round(v * us, 2) for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])
        },
    }


def cpu_placement(summary: Mapping[str, Any]) -> str:
    """``replica 0 cpu 0, ..., client 4 cpu 0`` when every process was pinned to one CPU,
    ``not pinned (cpus 0-1)`` when none was, "" for runs that did not say."""
    rows = [
        (role, node, row.get("cpus"))
        for role, key in (("replica", "per_node"), ("client", "per_client"))
        for node, row in (summary.get(key) or {}).items()
    ]
    if not rows or any(not cpus for _, _, cpus in rows):
        return ""
    if all(len(cpus) == 1 for _, _, cpus in rows):
        return ", ".join(f"{role} {node} cpu {cpus[0]}" for role, node, cpus in rows)
    sets = sorted({",".join(map(str, cpus)) for _, _, cpus in rows})
    return "not pinned (cpus " + "; ".join(sets) + ")"


def format_cpu_ledger(ledger: Mapping[str, Any] | None, indent: str = "  ") -> list[str]:
    """The ledger as report lines (empty when there is none)."""
    if not ledger:
        return []
    lines = [
        f"{indent}cluster: {ledger['cluster_us_per_txn']:.1f} us/txn "
        f"({ledger['cpu_s']:.1f} CPU-s over {ledger['committed_txns']:,} committed txns; "
        f"start-up left out: {ledger.get('startup_cpu_s', 0.0):.1f} CPU-s, with it "
        f"{ledger.get('cluster_us_per_txn_with_startup', ledger['cluster_us_per_txn']):.1f} us/txn)",
        f"{indent}per process: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ledger["per_process_us_per_txn"].items()),
        f"{indent}per thread kind: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ledger["per_kind_us_per_txn"].items()),
    ]
    return lines


def restart_note(fail: Mapping[str, Any], never_back: bool = False) -> str:
    """``killed at 5.0 s, down 3 s, back at 9.4 s (seq 812 before; state from a snapshot at
    seq 800)``: a restarted replica's two lives in one line (res.out, report.html)."""
    text = f"killed at {float(fail.get('at_s', 0)):.1f} s, down {float(fail.get('down_s', 0)):g} s"
    if never_back or fail.get("back_at_s") is None:
        text += ", never back: figures until the kill sampled by the runner"
        return text
    text += f", back at {float(fail['back_at_s']):.1f} s (seq {fail.get('seq_before', 0)} before"
    installed = int(fail.get("installed_seq", 0) or 0)
    if installed > 0:
        text += f"; state from a snapshot at seq {installed}"
    return text + "; figures until the kill sampled by the runner)"


def _engine_counters(st: Mapping[str, Any]) -> dict[str, Any] | None:
    """The engine block of a replica's executor stats (None from an older or failed replica)."""
    eng = (st.get("executor") or {}).get("engine")
    if not isinstance(eng, Mapping):
        return None
    out = {
        "engine": eng.get("engine", ""),
        "threads": eng.get("threads", 1),
        "txn_cost_us": eng.get("txn_cost_us", 0),
    }
    for name in ENGINE_COUNTERS:
        out[name] = eng.get(name, 0)
    return out


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
    """Write every table as CSV at the paths a fabric.harness.paths.RunPaths names."""
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
    interrupted = run.get("interrupted_at_s")
    if interrupted is None:
        window = f"measured {run['measured_s']:.1f} s after {run['warmup_s']:g} s warm-up"
    elif interrupted <= run["warmup_s"]:
        window = (
            f"interrupted at t={interrupted:.1f} s, inside the {run['warmup_s']:g} s warm-up: "
            f"nothing measured"
        )
    else:
        planned = run["duration_s"] - run["warmup_s"]
        window = (
            f"interrupted at t={interrupted:.1f} s: measured {run['measured_s']:.1f} s of the "
            f"planned {planned:g} s, after {run['warmup_s']:g} s warm-up"
        )
    add(
        f"protocol {run['protocol']}, {run['replicas']} replicas, {run['clients']} client(s), "
        f"batch {run['batch_size']}, crypto {run['crypto'] or '-'}; {window}"
    )
    add("")
    add("Throughput (txn/s in the measured window; replicas: executed, clients: accepted)")
    final_seq = summary.get("final_seq") or {}
    lead = max(final_seq.values(), default=0)
    for node, row in summary["per_node"].items():
        note = ""
        fail = row.get("failure")
        if fail and fail.get("kind") == "restart":
            note = f"   [{restart_note(fail, row.get('stats_source') == 'runner')}]"
        elif fail:
            kind = {"crash": "crashed", "stall": "stalled"}.get(fail["kind"], fail["kind"])
            note = f"   [{kind} at {fail['at_s']:.1f} s"
            if fail.get("duration_s"):
                note += f" for {fail['duration_s']:g} s"
            if fail.get("delay_ms"):
                note += f", delay {fail['delay_ms']:g} ms"
            if row.get("byzantine"):
                did = ", ".join(f"{k} {v}" for k, v in sorted(row["byzantine"].items()))
                note += f"; did: {did}"
            if row.get("stats_source") == "runner":
                note += "; figures until then sampled by the runner"
            note += "]"
        if node in final_seq and lead - final_seq[node] > (summary.get("degraded_lag_seq") or 0):
            if summary.get("degraded_lag_seq"):
                note += f"   BEHIND by {lead - final_seq[node]}"
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
    if tables.execution:
        add("Execution (engine, threads, txn cost; counters over the whole run)")
        for row in tables.execution:
            c = dict(zip(HEADERS["execution"], row, strict=True))
            txns = c["txns"] or 0
            per_txn = c["re_executions"] / txns if txns else 0.0
            add(
                f"  replica {c['node']:>3}: {c['engine']} x{c['threads']}, cost "
                f"{c['txn_cost_us']:g} us: {txns} txns, {c['re_executions']} re-executions "
                f"({per_txn:.3f}/txn), {c['validation_failures']} validation failures, "
                f"{c['dependency_waits']} dependency waits, DAG width max {c['dag_width_max']}"
            )
        add("")
    add("Idleness (share of each thread's lifetime parked waiting for input)")
    by_node: dict[Any, list[tuple[Any, ...]]] = {}
    for row in tables.threads:
        by_node.setdefault(row[0], []).append(row)
    for node, rows in by_node.items():
        parts = []
        for _, thread, _, busy, idle, *_cpu in rows:
            total = busy + idle
            parts.append(f"{thread} {100.0 * idle / total if total > 0 else 0.0:.0f}%")
        add(f"  node {node:>3}: " + ", ".join(parts))
    add("")
    add("Memory (peak RSS) and CPU")
    sampled = {
        int(node)
        for node, row in summary["per_node"].items()
        if row.get("stats_source") == "runner"
    }
    restarted = {
        int(node)
        for node, row in summary["per_node"].items()
        if (row.get("failure") or {}).get("kind") == "restart"
    }
    for node, role, rss, cpu in tables.memory:
        note = ""
        if role == "replica" and node in sampled:
            note = "   (until its crash: the runner's last sample)"
        elif role == "replica" and node in restarted:
            note = "   (both lives: CPU added, the larger peak)"
        add(f"  {role:<7} {node:>3}: {_fmt(rss)} MB, {_fmt(cpu, ',.2f')} CPU-s{note}")
    add("")
    ledger = format_cpu_ledger(summary.get("cpu_ledger"))
    if ledger:
        add("CPU ledger (microseconds per committed transaction, whole run)")
        lines.extend(ledger)
        if summary.get("scheduler"):
            add(f"  scheduling policy of the processes (run.scheduler): {summary['scheduler']}")
        placed = cpu_placement(summary)
        if placed:
            add(f"  CPUs of the processes (run.cpu_affinity): {placed}")
        add("")
    mpb = summary.get("messages_per_batch") or {}
    if mpb:
        add(
            f"Messages sent per committed batch (all replicas, {summary['committed_batches']} batches): "
            + ", ".join(f"{k} {v:.3g}" for k, v in mpb.items())
        )
    drops: dict[str, dict[str, int]] = {}
    for _, where, reason, count in tables.drops:
        drops.setdefault(where, {})[reason] = drops.setdefault(where, {}).get(reason, 0) + count
    parts = [
        f"{where} " + ", ".join(f"{r} {c}" for r, c in sorted(drops[where].items()))
        for where in ("input", "pipeline", "send")
        if drops.get(where)
    ]
    add("Drops: " + ("; ".join(parts) if parts else "none"))
    for node, byz in (summary.get("byzantine") or {}).items():
        delay = f" {byz['delay_ms']:g} ms" if byz.get("delay_ms") else ""
        did = ", ".join(f"{k} {v}" for k, v in sorted(byz["output"].items())) or "nothing"
        add(
            f"Byzantine: replica {node} {byz['kind']}{delay} from {byz['at_s']:g} s "
            f"({'active' if byz['active'] else 'never active'}): did {did}; honest replicas "
            f"dropped {byz['honest_mac_drops']} frames for a bad MAC, saw "
            f"{byz['honest_view_changes']} view change(s)"
        )
    audit = summary.get("audit")
    if audit is None:
        add("Audit: not run")
    else:
        add(f"Audit: {'ok' if audit['ok'] else 'FAILED'}: {audit['message']}")
    for event in run["events"]:
        add(f"Event: {event}")
    if final_seq:
        add(
            "Final seq (honest replicas): "
            + ", ".join(f"replica {node} {seq}" for node, seq in final_seq.items())
            + (
                f" (a replica more than {summary['degraded_lag_seq']} behind makes the run "
                f"DEGRADED)"
                if summary.get("degraded_lag_seq")
                else ""
            )
        )
    add("")
    lat = summary["latency_ms"]
    clients = len(summary["per_client"])
    per_client = summary.get("throughput_txn_s_per_client")
    add(
        f"Total throughput:   {_fmt(summary['throughput_txn_s'])} txn/s accepted"
        + (
            f" ({clients} clients, {_fmt(per_client)} txn/s per client)"
            if clients > 1 and per_client is not None
            else ""
        )
    )
    add(
        f"Average latency:    {_fmt(lat['avg'])} ms (p50 {_fmt(lat['p50'])}, "
        f"p90 {_fmt(lat['p90'])}, p99 {_fmt(lat['p99'])})"
    )
    if run["status"] == "ok":
        add("Status: OK")
    elif run["status"] == "degraded":
        add(f"Status: DEGRADED: {run.get('degraded')}")
    else:
        add(f"Status: FAILED: {run['failure']}")
    return "\n".join(lines) + "\n"
