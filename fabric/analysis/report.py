"""``python -m fabric report <folder>``: redraw figures and report.html from a results folder alone.

A run folder (summary.json and the tidy CSVs of results/README.md) gets the throughput timeline,
the latency CDF, the idleness bars, messages by kind, drops and memory; a sweep folder
(combined.csv) gets the comparison figures its swept knobs allow. Each folder gets one
self-contained report.html (figures embedded as base64, so a copied folder still shows them).
Optional files that are missing or empty skip their figure, and the HTML says why.
Nothing here reruns anything or writes outside the folder it is given.
Must not live here: drawing (fabric/analysis/plots.py), running sweeps (fabric/harness/sweep.py), res.out (runner).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fabric.analysis import plots
from fabric.harness.paths import RunPaths, SweepPaths

# combined.csv (written by fabric/harness/sweep.py): swept knobs first (canonical dotted names), then these.
POINT_COLUMN = "point"
CASE_COLUMN = "case"  # the case's label in a sweep of cases, empty otherwise
COMBINED_COLUMNS = (
    POINT_COLUMN,
    CASE_COLUMN,
    "repetition",
    "status",
    "reason",
    "protocol",
    "replicas",
    "clients",
    "batch_size",
    "throughput_txn_s",
    "latency_ms_avg",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_max",
    "audit_ok",
    "re_executions_per_txn",  # execution engines: incarnations > 0 per transaction, all replicas
)
MESSAGES_PREFIX = "messages_per_batch."  # then one column per message kind
FOLDER_COLUMN = "folder"  # last: the run folder, relative to the sweep folder
_MEASURES = (
    "throughput_txn_s",
    "latency_ms_avg",
    "latency_ms_p50",
    "latency_ms_p99",
    "re_executions_per_txn",
)

# Figure file names (without .png); a figure that is not drawn this time has its stale file removed.
CATEGORY_FIGURES = ("throughput_by_case", "throughput_by_protocol", "throughput_by_point")
RUN_FIGURES = ("throughput", "latency_cdf", "idleness", "messages", "drops", "memory")

_KNOB_LABELS = {  # axis labels with units for the knobs sweeps usually vary
    "batch_size": "batch size (txn per batch)",
    "replicas": "replicas n",
    "clients": "client processes",
    "max_txn_in_flight": "transactions in flight per client",
    "worker_threads": "worker threads per replica",
    "batch_threads": "batch threads per replica",
    "input_threads": "input threads per replica",
    "output_threads": "output threads per replica",
    "threads": "client threads per client process",
    "rate_txn_s": "offered load per client (txn/s)",
    "batch_timeout_ms": "batch timeout (ms)",
    "duration_s": "run duration (s)",
    "value_size": "value size (bytes)",
    "zipf_theta": "zipfian theta",
    "rcc_instances": "RCC instances",
}


class NotAResultsFolder(Exception):
    """The folder holds neither a run (summary.json) nor a sweep (combined.csv)."""


@dataclass
class FigureOutcome:
    name: str
    title: str
    path: Path | None = None  # drawn
    caption: str = ""
    skipped: str = ""  # why it was not drawn


@dataclass
class Report:
    html_path: Path
    figures: list[FigureOutcome] = field(default_factory=list)

    @property
    def drawn(self) -> list[FigureOutcome]:
        return [f for f in self.figures if f.path is not None]

    @property
    def skipped(self) -> list[FigureOutcome]:
        return [f for f in self.figures if f.path is None]


# --- reading ----------------------------------------------------------------------------


def read_table(path: Path, columns: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    """The CSV at ``path`` if it exists, parses, has ``columns`` and rows; else (None, why not)."""
    if not path.is_file():
        return None, f"{path.name} is absent"
    try:
        # only an empty cell is missing: "null" (a protocol) or "NA" (a node name) are values
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return None, f"{path.name} is empty"
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        return None, f"{path.name} could not be read ({exc})"
    missing = [c for c in columns if c not in table.columns]
    if missing:
        return None, f"{path.name} lacks column(s) {', '.join(missing)}"
    if table.empty:
        return None, f"{path.name} has no rows"
    return table, ""


def _numeric(table: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    table = table.copy()
    for column in columns:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.dropna(subset=list(columns))


def _read_json(path: Path) -> tuple[dict[str, Any], str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, f"{path.name} is absent"
    except (OSError, ValueError) as exc:
        return {}, f"{path.name} could not be read ({exc})"
    if not isinstance(data, dict):
        return {}, f"{path.name} is not a JSON object"
    return data, ""


def _read_yaml(path: Path) -> tuple[dict[str, Any], str, str]:
    """(mapping, raw text, problem) of a YAML file; an unreadable file is a problem, not a crash."""
    try:
        text = path.read_text()
    except OSError:
        return {}, "", f"{path.name} is absent"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return {}, text, f"{path.name} could not be parsed ({exc})"
    return (data if isinstance(data, dict) else {}), text, ""


def folder_kind(folder: Path) -> str:
    """``"run"`` or ``"sweep"``; raises NotAResultsFolder with a clear message otherwise."""
    if not folder.is_dir():
        raise NotAResultsFolder(f"{folder} is not a folder")
    if SweepPaths(folder).combined.is_file():
        return "sweep"
    run = RunPaths(folder)
    if run.summary.is_file() or (run.config.is_file() and run.throughput.is_file()):
        return "run"
    raise NotAResultsFolder(
        f"{folder} is not a results folder: expected summary.json (a run folder) "
        f"or combined.csv (a sweep folder)"
    )


# --- figures ----------------------------------------------------------------------------


def _draw(
    outcome: FigureOutcome, path: Path, build: Callable[[], plots.Figure], caption: str = ""
) -> FigureOutcome:
    fig = build()
    plots.save(fig, path)
    outcome.path, outcome.caption = path, caption
    return outcome


def _skip(outcome: FigureOutcome, path: Path, why: str) -> FigureOutcome:
    outcome.skipped = why
    path.unlink(missing_ok=True)  # a figure from an earlier report would contradict this one
    return outcome


def _run_figures(
    paths: RunPaths, protocol: str, warmup_s: float, config: dict[str, Any]
) -> list[FigureOutcome]:
    out: list[FigureOutcome] = []

    fig = FigureOutcome("throughput", "Throughput per second per node")
    table, why = read_table(paths.throughput, ["time_s", "node", "role", "txn"])
    if table is not None:
        table = _numeric(table, ["time_s", "txn"])
        duration_s = (config.get("run") or {}).get("duration_s")
        if isinstance(duration_s, int | float) and duration_s > 0:
            # the second that starts at duration_s is the stop's partial tail: not a dip
            table = table[table["time_s"] < float(duration_s)]
        events = _fault_events(config)
        crashed = _crash_times(paths)
        down = _down_intervals(paths)
        lying = _byzantine_states(paths)
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.throughput_timeline(
                    table, protocol, warmup_s, events, crashed, down, lying
                ),
                "Replicas: transactions executed per second; clients: transactions accepted "
                "per second. Shaded: warm-up (grey), a restarted replica's down time (its "
                "colour). Dotted lines: injected faults. Dash-dotted: a Byzantine replica.",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), why))

    fig = FigureOutcome("latency_cdf", "Latency CDF")
    table, why = read_table(paths.latency, ["client", "time_s", "latency_ms"])
    if table is not None and not (table := _numeric(table, ["latency_ms"])).empty:
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.latency_cdf(table, protocol),
                "Accepted transactions' latencies (a bounded sample), client send to reply quorum.",
            )
        )
    else:
        out.append(
            _skip(fig, paths.figure(fig.name), why or "latency.csv has no numeric latencies")
        )

    fig = FigureOutcome("idleness", "Idleness per node and thread")
    table, why = read_table(paths.threads, ["node", "thread", "role", "busy_s", "idle_s"])
    if table is not None:
        table = _numeric(table, ["busy_s", "idle_s"])
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.idleness(table, protocol),
                "Busy vs idle seconds of every thread (idle = waiting on an empty ring).",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), why))

    fig = FigureOutcome("messages", "Messages by kind")
    table, why = read_table(paths.messages, ["node", "kind", "direction", "count"])
    if table is not None:
        table = _numeric(table, ["count"])
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.messages_by_kind(table, protocol),
                "Messages sent and received, summed over all nodes (log scale).",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), why))

    fig = FigureOutcome("drops", "Drops by where and reason")
    table, why = read_table(paths.drops, ["node", "reason", "count"])
    if table is not None and (table := _numeric(table, ["count"]))["count"].sum() > 0:
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.drops_by_reason(table),
                "Dropped frames and messages per node: input (a received frame refused), "
                "pipeline (a full ring or backlog between stages), send (on the way out).",
            )
        )
    else:
        out.append(
            _skip(
                fig,
                paths.figure(fig.name),
                f"no drops recorded ({why})" if why else "no frames were dropped",
            )
        )

    fig = FigureOutcome("memory", "Memory and CPU per process")
    table, why = read_table(paths.memory, ["node", "role", "peak_rss_mb", "cpu_s"])
    if table is not None:
        table = _numeric(table, ["peak_rss_mb", "cpu_s"])
        table["state"] = _node_states(paths, table)
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.memory_cpu(table, protocol),
                "Peak resident set size and CPU seconds of each process.",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), why))
    return out


def _crash_times(paths: RunPaths) -> dict[str, float]:
    """Replica node -> the time (s) it crashed, from nodes.csv (empty when absent)."""
    nodes, _ = read_table(paths.nodes, ["node", "role", "state", "failure_at_s"])
    out: dict[str, float] = {}
    for row in nodes.to_dict("records") if nodes is not None else []:
        at = pd.to_numeric(row["failure_at_s"], errors="coerce")
        if row["role"] == "replica" and row["state"] == "crashed" and pd.notna(at):
            out[str(row["node"])] = float(at)
    return out


def _down_intervals(paths: RunPaths) -> dict[str, tuple[float, float | None]]:
    """Restarted replica node -> (killed s, back s or None), from summary.json's per-node
    failure records (empty when absent)."""
    summary, _ = _read_json(paths.summary)
    out: dict[str, tuple[float, float | None]] = {}
    for node, row in _mapping(summary, "per_node").items():
        fail = row.get("failure") if isinstance(row, Mapping) else None
        if isinstance(fail, Mapping) and fail.get("kind") == "restart":
            at, back = fail.get("at_s"), fail.get("back_at_s")
            if isinstance(at, int | float):
                out[str(node)] = (float(at), float(back) if isinstance(back, int | float) else None)
    return out


#: nodes.csv states of a replica whose output lies (fabric/runtime/byzantine.py)
BYZANTINE_STATES = ("equivocate", "bad_mac", "wrong_digest", "throttle", "slow")


def _byzantine_states(paths: RunPaths) -> dict[str, str]:
    """Replica node -> "<kind> from <t> s" for every Byzantine replica in nodes.csv."""
    nodes, _ = read_table(paths.nodes, ["node", "role", "state", "failure_at_s"])
    out: dict[str, str] = {}
    for row in nodes.to_dict("records") if nodes is not None else []:
        if row["role"] == "replica" and row["state"] in BYZANTINE_STATES:
            at = pd.to_numeric(row["failure_at_s"], errors="coerce")
            out[str(row["node"])] = row["state"] + (f" from {at:.1f} s" if pd.notna(at) else "")
    return out


def _node_states(paths: RunPaths, table: pd.DataFrame) -> list[str]:
    """``crashed at 10.0 s`` (etc.) per row of ``table`` from nodes.csv, "" where all is well."""
    nodes, _ = read_table(paths.nodes, ["node", "role", "state", "failure_at_s"])
    states: dict[tuple[str, str], str] = {}
    for row in nodes.to_dict("records") if nodes is not None else []:
        if str(row["state"]) not in ("ok", "nan"):
            at = row["failure_at_s"]
            when = f" at {float(at):.1f} s" if isinstance(at, int | float) and at == at else ""
            states[(str(row["node"]), str(row["role"]))] = f"{row['state']}{when}"
    return [
        states.get((str(n), str(r)), "") for n, r in zip(table["node"], table["role"], strict=True)
    ]


def _delay_label(fault: dict[str, Any]) -> str:
    """`` 50 ms`` for a throttle/slow failure's delay, "" for none."""
    delay = fault.get("delay_ms")
    return f" {delay:g} ms" if isinstance(delay, int | float) and delay > 0 else ""


def _fault_events(config: dict[str, Any]) -> list[tuple[float, str]]:
    events = []
    failures = config.get("failures")
    for fault in failures if isinstance(failures, list) else []:
        if isinstance(fault, dict) and isinstance(fault.get("at_s"), int | float):
            events.append(
                (
                    float(fault["at_s"]),
                    f"{fault.get('kind', 'fault')}{_delay_label(fault)} replica "
                    f"{fault.get('replica', '?')}",
                )
            )
    return events


# --- HTML -------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.failed { color: #b00; font-weight: bold; } .ok { color: #070; font-weight: bold; }
.degraded { color: #b60; font-weight: bold; }
.note { color: #666; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: int = 1) -> str:
    head = "".join(
        f'<th class="text">{_esc(h)}</th>' if i < text_columns else f"<th>{_esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{cell}</td>' if i < text_columns else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figures_html(figures: Sequence[FigureOutcome]) -> str:
    parts = []
    for fig in figures:
        if fig.path is None:
            continue
        data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
        parts.append(
            f'<figure id="fig-{_esc(fig.name)}"><img alt="{_esc(fig.title)}" '
            f'data-file="{_esc(fig.path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(fig.title)}: {_esc(fig.caption)} ({_esc(fig.path.name)})</figcaption></figure>"
        )
    skipped = [f for f in figures if f.path is None]
    if skipped:
        items = "".join(f"<li>{_esc(f.title)}: {_esc(f.skipped)}</li>" for f in skipped)
        parts.append(f'<h3>Figures not drawn</h3><ul class="note">{items}</ul>')
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>{_esc(title)}</h1>\n{body}\n"
        f'<p class="note">Drawn by <code>python -m fabric report</code> from the files in this folder.</p>'
        f"</body></html>\n"
    )


def _status_html(status: str, failure: str) -> str:
    css = status if status in ("ok", "degraded") else "failed"
    text = f'<span class="{css}">{_esc(status or "unknown")}</span>'
    return text + (f" — {_esc(failure)}" if failure else "")


# --- one run ----------------------------------------------------------------------------


def report_run(folder: Path) -> Report:
    """Draw every figure a run folder allows and write its report.html."""
    folder_kind(folder)
    paths = RunPaths(folder)
    summary, summary_problem = _read_json(paths.summary)
    config, config_text, config_problem = _read_yaml(paths.config)
    run = summary.get("run") if isinstance(summary.get("run"), dict) else {}
    protocol = str(run.get("protocol") or (config.get("protocol") or {}).get("name") or "unknown")
    warmup_s = _as_float(run.get("warmup_s", (config.get("run") or {}).get("warmup_s", 0)))
    figures = _run_figures(paths, protocol, warmup_s, config)

    notes = [p for p in (summary_problem, config_problem) if p]
    body = [
        "<p>Status: "
        + _status_html(
            str(run.get("status", "")), str(run.get("failure") or run.get("degraded") or "")
        )
        + "</p>"
    ]
    body += [f'<p class="note">{_esc(n)}</p>' for n in notes]
    body.append("<h2>Summary</h2>" + _run_summary_html(summary, run, protocol))
    body.append("<h2>Figures</h2>" + _figures_html(figures))
    rings, _ = read_table(paths.rings, ["node", "ring"])
    if rings is not None:
        body.append(
            "<h2>Rings</h2>"
            + _table(list(rings.columns), rings.head(500).itertuples(index=False), 2)
        )
    body.append(f"<h2>Config (config.yaml)</h2><pre>{_esc(config_text or config_problem)}</pre>")
    if paths.res_out.is_file():
        body.append(
            f"<details><summary>res.out</summary><pre>{_esc(paths.res_out.read_text(errors='replace'))}</pre></details>"
        )
    paths.report_html.write_text(_page(f"Run {run.get('name') or folder.name}", "\n".join(body)))
    return Report(paths.report_html, figures)


def _as_float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _when(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value)


def _run_summary_html(summary: dict[str, Any], run: Mapping[str, Any], protocol: str) -> str:
    latency = _mapping(summary, "latency_ms")
    rows: list[tuple[str, Any]] = [("protocol", protocol)]
    for key in (
        "replicas",
        "clients",
        "batch_size",
        "crypto",
        "duration_s",
        "warmup_s",
        "measured_s",
    ):
        if key in run:
            rows.append((key, run[key]))
    if "started_at" in run:
        rows.append(("started at", _when(run["started_at"])))
    rows.append(("throughput (txn/s)", _fmt(summary.get("throughput_txn_s"))))
    rows += [(f"latency {k} (ms)", _fmt(latency[k])) for k in LATENCY_KEYS if k in latency]
    if "committed_batches" in summary:
        rows.append(("committed batches", summary["committed_batches"]))
    final_seq = _mapping(summary, "final_seq")
    if final_seq:
        rows.append(
            (
                "final seq (honest replicas)",
                ", ".join(f"replica {node}: {seq}" for node, seq in final_seq.items()),
            )
        )
    audit = _mapping(summary, "audit")
    if audit:
        rows.append(("safety audit", "ok" if audit.get("ok") else "FAILED"))
        rows += [(f"audit {k}", audit[k]) for k in ("common_prefix", "message") if k in audit]
    for event in run.get("events") or []:
        rows.append(("event", event))
    parts = [_table(("measure", "value"), ((_esc(k), _esc(v)) for k, v in rows), 2)]
    for title, key, columns in (
        ("Per replica", "per_node", _PER_NODE_COLUMNS),
        ("Per client", "per_client", _PER_CLIENT_COLUMNS),
    ):
        nodes = {k: v for k, v in _mapping(summary, key).items() if isinstance(v, Mapping)}
        if nodes:
            header = ("node", *(label for _, label in columns))
            cells = (
                (_esc(node), *(_esc(_fmt(_dig(v, field))) for field, _ in columns))
                for node, v in nodes.items()
            )
            parts.append(f"<h3>{title}</h3>" + _table(header, cells))
    per_batch = _mapping(summary, "messages_per_batch")
    if per_batch:
        cells = ((_esc(k), _esc(_fmt(v))) for k, v in per_batch.items())
        parts.append(
            "<h3>Messages per committed batch</h3>" + _table(("kind", "messages per batch"), cells)
        )
    return "\n".join(parts)


LATENCY_KEYS = ("avg", "p50", "p90", "p99", "max")
_PER_NODE_COLUMNS = (
    ("throughput_txn_s", "throughput (txn/s)"),
    ("executed_seq", "executed seq"),
    ("view", "view"),
    ("failure.kind", "failure"),
    ("failure.at_s", "failed at (s)"),
    ("stats_source", "stats from"),
    ("cpu_s", "CPU (s)"),
    ("peak_rss_mb", "peak RSS (MB)"),
)
_PER_CLIENT_COLUMNS = (
    ("throughput_txn_s", "accepted (txn/s)"),
    ("latency_ms.p50", "p50 (ms)"),
    ("latency_ms.p99", "p99 (ms)"),
    ("retransmissions", "re-sent"),
    ("requests_given_up", "given up"),
    ("cpu_s", "CPU (s)"),
    ("peak_rss_mb", "peak RSS (MB)"),
)


def _dig(data: Mapping[str, Any], dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; "–" where any step is missing."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return "–"
        value = value[part]
    return value


# --- a sweep ----------------------------------------------------------------------------


def _knob_columns(combined: pd.DataFrame) -> list[str]:
    columns = list(combined.columns)
    return columns[: columns.index(POINT_COLUMN)] if POINT_COLUMN in columns else []


def point_stats(ok: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """One row per grid point: knob values, identity columns and mean/std/min/max of each measure."""
    keys = [POINT_COLUMN, CASE_COLUMN, *knobs, "protocol", "replicas", "clients", "batch_size"]
    keys = list(dict.fromkeys(k for k in keys if k in ok.columns))
    grouped = ok.groupby(keys, sort=False, dropna=False)
    stats = grouped.size().rename("runs_ok").to_frame()
    for measure in _MEASURES:
        agg = grouped[measure].agg(["mean", "std", "min", "max"])
        agg.columns = [f"{measure}_{c}" for c in agg.columns]
        stats = stats.join(agg)
    return stats.reset_index()


def report_sweep(folder: Path, runs: bool = False) -> Report:
    """Draw the comparison figures a sweep's combined.csv allows and write its report.html.

    With ``runs``, each run folder inside the sweep gets its own report too.
    """
    paths = SweepPaths(folder)
    combined, why = read_table(paths.combined, [POINT_COLUMN, "repetition", "status", "protocol"])
    if combined is None:
        raise NotAResultsFolder(f"{folder}: {why}")
    knobs = _knob_columns(combined)
    if CASE_COLUMN not in combined.columns:  # a combined.csv from before cases had labels
        combined[CASE_COLUMN] = ""
    combined[CASE_COLUMN] = combined[CASE_COLUMN].astype(object).fillna("").astype(str)
    for column in (*_MEASURES, "replicas", "clients", "batch_size"):
        if column in combined.columns:
            combined[column] = pd.to_numeric(combined[column], errors="coerce")
        else:
            combined[column] = float("nan")
    # a degraded run finished and measured (a replica ended behind): it counts, and is marked
    finished = combined["status"].isin(["ok", "degraded"])
    ok = combined[finished & combined["throughput_txn_s"].notna()]
    stats = point_stats(ok, knobs) if not ok.empty else pd.DataFrame()
    figures = _sweep_figures(paths, combined, ok, stats, knobs)

    run_reports: dict[str, str] = {}
    if runs:
        for name in combined.get(FOLDER_COLUMN, pd.Series(dtype=str)).dropna().astype(str):
            run_folder = folder / name
            try:
                report_run(run_folder)
                run_reports[name] = f"{name}/report.html"
            except NotAResultsFolder:
                continue
    spec, spec_text, spec_problem = _read_yaml(paths.sweep_yaml)
    title = f"Sweep {spec.get('name') or folder.name}"
    body = []
    if spec.get("description"):
        body.append(f"<p>{_esc(spec['description'])}</p>")
    failed = combined[combined["status"] != "ok"]
    degraded = int((combined["status"] == "degraded").sum())
    body.append(
        f"<p>{len(combined) - len(failed)} of {len(combined)} runs ok"
        + (f', <span class="failed">{len(failed)} not ok</span>' if len(failed) else "")
        + (
            f" ({degraded} degraded: finished, an honest replica ended behind; they count in "
            f"the figures)"
            if degraded
            else ""
        )
        + ".</p>"
    )
    body.append("<h2>Summary (per grid point)</h2>" + _sweep_summary_html(combined, stats, knobs))
    body.append("<h2>Figures</h2>" + _figures_html(figures))
    body.append("<h2>Every run</h2>" + _runs_html(combined, knobs, folder, run_reports))
    body.append(f"<h2>Sweep spec (sweep.yaml)</h2><pre>{_esc(spec_text or spec_problem)}</pre>")
    paths.report_html.write_text(_page(title, "\n".join(body)))
    return Report(paths.report_html, figures)


def _knob_label(knob: str) -> str:
    leaf = knob.rsplit(".", 1)[-1]
    return _KNOB_LABELS.get(leaf, leaf.replace("_", " "))


def _figure_name(knob: str) -> str:
    return "throughput_vs_" + knob.rsplit(".", 1)[-1]


def _has_cases(stats: pd.DataFrame) -> bool:
    return CASE_COLUMN in stats.columns and stats[CASE_COLUMN].astype(str).str.len().gt(0).any()


def is_numeric_knob(values: pd.Series) -> bool:
    """A knob that can sit on a numeric axis: numbers, not booleans or words."""
    present = values.dropna()
    if present.empty or pd.api.types.is_bool_dtype(present):
        return False
    if present.astype(str).str.lower().isin(["true", "false"]).any():
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def _axis_knobs(stats: pd.DataFrame, varying: Sequence[str]) -> list[str]:
    """Varying numeric knobs that can be an x axis: with cases, only knobs that vary inside a
    case (a knob only the cases set is a category, even when its values are numbers)."""
    out = []
    for knob in varying:
        if not is_numeric_knob(stats[knob]):
            continue
        if _has_cases(stats):
            inside = stats.groupby(CASE_COLUMN, sort=False)[knob].nunique(dropna=True)
            if not (inside > 1).any():
                continue
        out.append(knob)
    return out


def _category_labels(stats: pd.DataFrame, varying: Sequence[str]) -> pd.Series:
    """What names each point as a category: its case label (plus the grid's other knobs), or
    the values of the varying knobs (``poe_certificate=macs``), or the point label."""
    if _has_cases(stats):
        grid = [k for k in varying if _axis_knobs(stats, [k])]
        if not grid:
            return stats[CASE_COLUMN].astype(str)
        return stats.apply(
            lambda r: (
                f"{r[CASE_COLUMN]} " + " ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in grid)
            ),
            axis=1,
        )
    named = [k for k in varying if not k.endswith("protocol.name")]
    if named:
        return stats.apply(
            lambda r: ", ".join(
                ([str(r["protocol"])] if stats["protocol"].nunique() > 1 else [])
                + [f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in named]
            ),
            axis=1,
        )
    return (
        stats["protocol"].astype(str)
        if stats["protocol"].nunique() == len(stats)
        else stats[POINT_COLUMN].astype(str)
    )


def _sweep_figures(
    paths: SweepPaths,
    combined: pd.DataFrame,
    ok: pd.DataFrame,
    stats: pd.DataFrame,
    knobs: Sequence[str],
) -> list[FigureOutcome]:
    out: list[FigureOutcome] = []
    if stats.empty:
        why = "no run finished ok, nothing to compare"
        return [_skip(FigureOutcome("load_curve", "Load curve"), paths.figure("load_curve"), why)]
    varying = [k for k in knobs if stats[k].nunique(dropna=True) > 1]
    numeric = _axis_knobs(stats, varying)
    cases = _has_cases(stats)
    reps = _reps_note(stats)
    bars = int(stats["runs_ok"].max()) > 1
    stats = stats.assign(category=_category_labels(stats, varying))
    for knob in numeric:
        if cases:
            others = [k for k in numeric if k != knob]
            series = [CASE_COLUMN, *others]
        else:
            others = [k for k in varying if k != knob and not k.endswith("protocol.name")]
            series = (["protocol"] if stats["protocol"].nunique() > 1 else []) + others
            series = series or ["protocol"]
        fig = FigureOutcome(_figure_name(knob), f"Throughput and latency vs {_knob_label(knob)}")
        table = stats.copy()
        table[knob] = pd.to_numeric(table[knob])
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda t=table, k=knob, s=series: plots.measure_vs_knob(
                    t, k, _knob_label(k), s, error_bars=bars
                ),
                "One line per "
                + ("case" if cases else "protocol (colour) and per value of the other swept knobs")
                + f" (line style), joining its points along {_knob_label(knob)}; {reps}.",
            )
        )
    # execution engines: re-executions against contention (issue 11), only where engines vary
    # or re-executed: a serial-only sweep would draw a line of zeros
    engines_vary = any(k.startswith("execution.") for k in varying) or bool(cases)
    re_executed = bool((stats["re_executions_per_txn_mean"].fillna(0) > 0).any())
    for knob in numeric:
        if stats["re_executions_per_txn_mean"].notna().any() and (engines_vary or re_executed):
            series = [CASE_COLUMN] if cases else [k for k in varying if k != knob] or ["protocol"]
            fig = FigureOutcome(
                "re_executions_vs_" + knob.rsplit(".", 1)[-1],
                f"Re-executions per transaction vs {_knob_label(knob)}",
            )
            table = stats.copy()
            table[knob] = pd.to_numeric(table[knob])
            out.append(
                _draw(
                    fig,
                    paths.figure(fig.name),
                    lambda t=table, k=knob, s=series: plots.measure_vs_knob_one(
                        t,
                        k,
                        _knob_label(k),
                        s,
                        "re_executions_per_txn",
                        "re-executions per transaction",
                        error_bars=bars,
                    ),  # fmt: skip
                    "Block-STM incarnations after the first, per transaction executed, over all "
                    f"replicas (0 for serial and conflict-DAG); one line per series; {reps}.",
                )
            )
    if not numeric:
        why = (
            "no numeric knob varies in this sweep"
            if not varying or not cases
            else "the knobs vary only between cases: compared as categories"
        )
        out.append(
            _skip(
                FigureOutcome("throughput_vs_knob", "Throughput vs a swept knob"),
                paths.figure("throughput_vs_knob"),
                why,
            )
        )

    several = stats["protocol"].nunique() > 1
    if cases:
        name, title, unit = "throughput_by_case", "Throughput and latency by case", "case"
    elif several or not (varying and not numeric):  # drawn with 2+ protocols, else skipped
        name, title, unit = "throughput_by_protocol", "Throughput by protocol", "grid point"
    else:
        name, title, unit = "throughput_by_point", "Throughput and latency by point", "grid point"
    for other in CATEGORY_FIGURES:
        if other != name:
            paths.figure(other).unlink(missing_ok=True)
    fig = FigureOutcome(name, title)
    if cases or several or (varying and not numeric):
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.by_category(stats, "category", title, error_bars=bars),
                f"One bar per {unit}, in its protocol's colour; latency p50 (solid) and p99 "
                f"(hatched) below; {reps}.",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), "only one protocol in this sweep"))

    fig = FigureOutcome("load_curve", "Load curve (latency vs throughput)")
    if len(stats) > 1:
        load_axis = max(numeric, key=lambda k: stats[k].nunique()) if numeric else None
        if cases:
            series = [CASE_COLUMN, *[k for k in numeric if k != load_axis]]
        else:
            others = [k for k in varying if k != load_axis and not k.endswith("protocol.name")]
            series = (["protocol"] if stats["protocol"].nunique() > 1 else []) + others
            series = series or ["protocol"]
        note = (
            f"lines join the points of one series in order of {_knob_label(load_axis)}"
            if load_axis
            else "no numeric knob varies, so each marker stands alone (no lines)"
        )
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.load_curve(stats, series, order_by=load_axis, error_bars=bars),
                f"Each marker is one grid point; {note}; {reps}.",
            )
        )
    else:
        out.append(_skip(fig, paths.figure(fig.name), "fewer than two grid points finished ok"))

    fig = FigureOutcome("messages_per_batch", "Messages per committed batch by kind")
    kinds = [c for c in ok.columns if c.startswith(MESSAGES_PREFIX)]
    per_point = ok.assign(**{c: pd.to_numeric(ok[c], errors="coerce") for c in kinds})
    per_point = (
        per_point.groupby(POINT_COLUMN, sort=False)[kinds].mean() if kinds else pd.DataFrame()
    )
    per_point = per_point.dropna(axis=1, how="all")
    if not per_point.empty and len(per_point.columns):
        per_point.columns = [c[len(MESSAGES_PREFIX) :] for c in per_point.columns]
        names = dict(zip(stats[POINT_COLUMN], stats["category"], strict=True))
        per_point.index = [names.get(p, p) for p in per_point.index]
        out.append(
            _draw(
                fig,
                paths.figure(fig.name),
                lambda: plots.messages_per_batch(per_point),
                "Mean over repetitions of each run's messages per committed batch.",
            )
        )
    else:
        out.append(
            _skip(fig, paths.figure(fig.name), "combined.csv has no messages-per-batch figures")
        )
    return out


def _reps_note(stats: pd.DataFrame) -> str:
    most = int(stats["runs_ok"].max())
    if most <= 1:
        return "one repetition per point, so no error bars"
    return f"error bars span min..max of up to {most} repetitions"


def _shown_knobs(combined: pd.DataFrame, knobs: Sequence[str]) -> list[str]:
    """The knobs some point varied (a knob every point shares tells the reader nothing)."""
    return [k for k in knobs if combined[k].astype(str).nunique(dropna=False) > 1]


def _sweep_summary_html(combined: pd.DataFrame, stats: pd.DataFrame, knobs: Sequence[str]) -> str:
    totals = combined.groupby(POINT_COLUMN, sort=False).size()
    cases = _has_cases(combined)
    knobs = _shown_knobs(combined, knobs)
    lead = [CASE_COLUMN] if cases else []
    header = [
        *lead,
        *knobs,
        "protocol",
        "runs ok",
        "throughput (txn/s) mean ± std",
        "min..max",
        "latency p50 (ms)",
        "latency p99 (ms)",
    ]
    rows = []
    by_point = (
        {row[POINT_COLUMN]: row for row in stats.to_dict("records")} if not stats.empty else {}
    )
    for point, total in totals.items():
        row = by_point.get(point)
        first = combined[combined[POINT_COLUMN] == point].iloc[0]
        cells = [_esc(first[k]) for k in [*lead, *knobs]] + [_esc(first["protocol"])]
        if row is None:
            cells += [f'<span class="failed">0 / {total}</span>', "–", "–", "–", "–"]
        else:
            std = row["throughput_txn_s_std"]
            cells += [
                f"{row['runs_ok']} / {total}",
                _esc(
                    _fmt(row["throughput_txn_s_mean"]) + ("" if pd.isna(std) else f" ± {_fmt(std)}")
                ),
                _esc(f"{_fmt(row['throughput_txn_s_min'])}..{_fmt(row['throughput_txn_s_max'])}"),
                _esc(_fmt(row["latency_ms_p50_mean"])),
                _esc(_fmt(row["latency_ms_p99_mean"])),
            ]
        rows.append(cells)
    return _table(header, rows, len(lead) + len(knobs) + 1)


def _runs_html(
    combined: pd.DataFrame, knobs: Sequence[str], folder: Path, run_reports: dict[str, str]
) -> str:
    lead = [CASE_COLUMN] if _has_cases(combined) else []
    knobs = [*lead, *_shown_knobs(combined, knobs)]
    header = [*knobs, "rep", "status", "throughput (txn/s)", "p50 (ms)", "p99 (ms)", "folder"]
    rows = []
    for row in combined.to_dict("records"):
        name = str(row.get(FOLDER_COLUMN, "") if not pd.isna(row.get(FOLDER_COLUMN, "")) else "")
        link = run_reports.get(name) or (
            f"{name}/report.html" if name and (folder / name / "report.html").is_file() else ""
        )
        folder_cell = f'<a href="{_esc(link)}">{_esc(name)}</a>' if link else _esc(name)
        reason = "" if pd.isna(row.get("reason")) else str(row.get("reason", ""))
        rows.append(
            [
                *(_esc(row[k]) for k in knobs),
                _esc(row["repetition"]),
                _status_html(str(row["status"]), reason),
                _esc(_fmt(row["throughput_txn_s"])),
                _esc(_fmt(row.get("latency_ms_p50", float("nan")))),
                _esc(_fmt(row.get("latency_ms_p99", float("nan")))),
                folder_cell,
            ]
        )
    return _table(header, rows, len(knobs) + 2)


# --- entry point ------------------------------------------------------------------------


def report_folder(folder: Path, runs: bool = False) -> Report:
    """Redraw a run or a sweep folder, whichever ``folder`` is; NotAResultsFolder otherwise."""
    if folder_kind(folder) == "sweep":
        return report_sweep(folder, runs=runs)
    return report_run(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fabric report",
        description="Redraw figures and report.html of a run folder or a sweep folder from its files alone.",
    )
    parser.add_argument(
        "folder", type=Path, help="a run folder (summary.json) or a sweep folder (combined.csv)"
    )
    parser.add_argument(
        "--runs", action="store_true", help="in a sweep folder, also redraw every run's report"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = report_folder(args.folder, runs=args.runs)
    except NotAResultsFolder as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for fig in report.drawn:
        print(f"drew {fig.path}")
    for fig in report.skipped:
        print(f"skipped {fig.name}: {fig.skipped}")
    print(f"report: {report.html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
