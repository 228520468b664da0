"""Figures of a results folder: one function per figure, tidy DataFrames in, a matplotlib Figure out.

Only drawing lives here: the fixed protocol palette, the single-run figures (throughput timeline,
latency CDF, idleness, messages, drops, memory) and the sweep figures (a measure against a swept
knob, the load curve, messages per batch, throughput by protocol). Figures are built with
``matplotlib.figure.Figure`` on the Agg canvas (never pyplot: no global state, no display).
Must not live here: reading files, deciding which figures a folder allows, HTML (fabric/analysis/report.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402  (matplotlib's backend must be chosen first)
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# --- colours: one per protocol, the same in every figure --------------------------------

PROTOCOL_COLOURS: dict[str, str] = {
    "pbft": "#1f77b4",  # blue
    "poe": "#d62728",  # red
    "rcc": "#2ca02c",  # green
    "null": "#7f7f7f",  # grey
}
_OTHER_COLOURS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_IDLE_COLOUR = "#d9d9d9"
_MAX_FIGURE_WIDTH_IN = 24.0  # wide bar charts grow with their bars up to this bound
_MAX_BARS = 400  # bars beyond this are not drawn one by one (a figure nobody can read)
_MAX_CDF_POINTS = 20_000
_MAX_TIMELINE_S = 86_400  # seconds of timeline filled in (a day; runs are bounded by the config)  # latency samples drawn per CDF line (evenly thinned beyond)


def protocol_colour(name: str) -> str:
    """The fixed colour of protocol ``name``; other protocols get a stable colour by name hash."""
    key = str(name).lower()
    if key in PROTOCOL_COLOURS:
        return PROTOCOL_COLOURS[key]
    return _OTHER_COLOURS[zlib.crc32(key.encode()) % len(_OTHER_COLOURS)]


def _shades(colour: str, count: int) -> list[tuple[float, float, float]]:
    """``count`` shades of ``colour`` from dark to light (one per node in a single-run figure)."""
    r, g, b = to_rgb(colour)
    if count <= 1:
        return [(r, g, b)]
    out = []
    for i in range(count):
        t = -0.45 + 1.05 * i / (count - 1)  # -0.45 (darker) .. 0.6 (lighter)
        if t < 0:
            out.append((r * (1 + t), g * (1 + t), b * (1 + t)))
        else:
            out.append((r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t))
    return out


def _new_figure(width_in: float = 8.0, height_in: float = 4.5) -> Figure:
    return Figure(figsize=(min(width_in, _MAX_FIGURE_WIDTH_IN), height_in), layout="constrained")


# --- single run -------------------------------------------------------------------------


def throughput_timeline(
    throughput: pd.DataFrame,
    protocol: str,
    warmup_s: float = 0.0,
    events: Sequence[tuple[float, str]] = (),
    crashed: dict[str, float] | None = None,
    down: dict[str, tuple[float, float | None]] | None = None,
    byzantine: dict[str, str] | None = None,
) -> Figure:
    """Transactions per second per node over time (``time_s,node,role,txn``).

    ``crashed`` (replica node -> crash time s): that replica's line ends at its crash with an
    ``x`` and its legend says so, instead of running on at zero as if it were alive.
    ``down`` (replica node -> (killed s, back s or None)): a restarted replica; its line breaks
    over the interval it was down (shaded in its colour, its legend names it) and goes on after.
    ``byzantine`` (replica node -> e.g. "throttle from 1.0 s"): a Byzantine replica; its line is
    dash-dotted and its legend says what it played (its own executions are not the honest
    replicas' figures).

    Replicas (executed) are solid lines in shades of the protocol's colour, clients (accepted)
    dashed black; the warm-up is shaded and injected faults (``events``: time, text) marked, so a
    view change shows as a dip and its recovery.
    """
    fig = _new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    nodes = throughput[["node", "role"]].drop_duplicates().sort_values(["role", "node"])
    replicas = [str(n) for n, r in nodes.itertuples(index=False) if r != "client"]
    shades = dict(zip(replicas, _shades(protocol_colour(protocol), len(replicas)), strict=True))
    seconds = _every_second(throughput["time_s"])
    for node, role in nodes.itertuples(index=False):
        rows = throughput[(throughput["node"] == node) & (throughput["role"] == role)]
        per_s = rows.groupby("time_s")["txn"].sum()
        # a second without a row had no transactions: draw it as 0, or a stall would not show
        rows = per_s.reindex(seconds.union(per_s.index), fill_value=0).rename_axis("time_s")
        rows = rows.reset_index().sort_values("time_s")
        name = node_name(node, role)
        died = (crashed or {}).get(str(node)) if role != "client" else None
        if died is not None:
            rows = rows[rows["time_s"] <= died]
            name = f"{name} (crashed at {died:.1f} s)"
        gap = (down or {}).get(str(node)) if role != "client" else None
        if gap is not None:
            killed, back = gap
            end = back if back is not None else float("inf")
            # the seconds it was down (after the kill's partial second) are no zeros: a break
            rows = rows.astype({"txn": float})
            rows.loc[(rows["time_s"] > killed) & (rows["time_s"] + 1 < end), "txn"] = float("nan")
            ax.axvspan(
                killed,
                end if back is not None else rows["time_s"].max(),
                color=shades.get(str(node), "grey"),
                alpha=0.15,
                lw=0,
            )
            back_text = f"back at {back:.1f} s" if back is not None else "never back"
            name = f"{name} (down at {killed:.1f} s, {back_text})"
        if role == "client":
            ax.plot(
                rows["time_s"],
                rows["txn"],
                "--",
                color="black",
                lw=1.2,
                zorder=3,
                label=f"{name} (accepted)",
            )
        else:
            lied = (byzantine or {}).get(str(node))
            label = f"{name} (executed)" if died is None and gap is None else name
            ax.plot(
                rows["time_s"],
                rows["txn"],
                "-." if lied else "-",
                color=shades[str(node)],
                lw=1.6,
                label=f"{label[:-1]}; {lied})" if lied else label,
            )
            if died is not None and len(rows):
                ax.plot(
                    rows["time_s"].iloc[-1:],
                    rows["txn"].iloc[-1:],
                    "x",
                    ms=9,
                    color=shades[str(node)],
                )
    if warmup_s > 0:
        ax.axvspan(0, warmup_s, color=_IDLE_COLOUR, alpha=0.5, lw=0, label="warm-up")
    for at_s, text in events:
        ax.axvline(at_s, color="black", lw=0.8, ls=":")
        ax.annotate(
            text,
            (at_s, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
        )
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("throughput (txn/s)")
    ax.set_title(f"Throughput per second per node ({protocol})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=max(1, len(nodes) // 8 + 1), loc="best")
    return fig


def _every_second(times: pd.Series) -> pd.Index:
    """Every whole second from the first to the last bin (bins are whole seconds), bounded."""
    values = pd.to_numeric(times, errors="coerce").dropna()
    if values.empty or not (values == values.round()).all():
        return pd.Index(values.unique())
    first, last = int(values.min()), int(values.max())
    return pd.Index(range(first, min(last, first + _MAX_TIMELINE_S) + 1))


def latency_cdf(latency: pd.DataFrame, protocol: str) -> Figure:
    """The CDF of accepted transactions' latencies (``client,time_s,latency_ms``), p50/p99 marked."""
    fig = _new_figure()
    ax = fig.add_subplot()
    colour = protocol_colour(protocol)
    clients = sorted(latency["client"].astype(str).unique())
    if 1 < len(clients) <= 8:
        for client in clients:
            values = latency.loc[latency["client"].astype(str) == client, "latency_ms"]
            _cdf_line(
                ax, values.to_numpy(), color=colour, lw=0.8, alpha=0.45, label=f"client {client}"
            )
    values = latency["latency_ms"].to_numpy(dtype=float)
    _cdf_line(ax, values, color=colour, lw=2.0, label="all clients")
    for q, style in ((50, "--"), (99, ":")):
        x = float(np.percentile(values, q))
        ax.axvline(x, color="black", ls=style, lw=0.8, label=f"p{q} = {x:.1f} ms")
    positive = values[values > 0]
    if positive.size and positive.max() / max(positive.min(), 1e-9) > 50:
        ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of transactions")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"Latency CDF ({protocol}, {values.size} samples)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _cdf_line(ax, values: np.ndarray, **style) -> None:  # type: ignore[no-untyped-def]
    values = np.sort(values.astype(float))
    if values.size > _MAX_CDF_POINTS:
        values = values[np.linspace(0, values.size - 1, _MAX_CDF_POINTS).astype(int)]
    y = np.arange(1, values.size + 1) / values.size
    ax.step(values, y, where="post", **style)


def _is_client(role: object) -> bool:
    return str(role).startswith("client")  # client, client-io, client-generator


def node_name(node: object, role: object) -> str:
    """``replica 0`` / ``client 4`` for numeric node ids; a node already named keeps its name."""
    text = str(node)
    if not text.lstrip("-").isdigit():
        return text
    return f"client {text}" if _is_client(role) else f"replica {text}"


def _replicas_first(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows of replicas before those of clients, each sorted by ``by``."""
    order = table["role"].map(_is_client).astype(int).rename("_client")
    return (
        table.assign(_client=order)
        .sort_values(["_client", *by], kind="stable")
        .drop(columns="_client")
    )


def idleness(threads: pd.DataFrame, protocol: str) -> Figure:
    """Busy vs idle seconds per thread per node as stacked bars (``node,thread,role,busy_s,idle_s``).

    The ResilientDB idleness report drawn: bars grouped by node, busy at the bottom in the
    protocol's colour, idle (waiting on an empty ring) stacked on top in grey.
    """
    rows = _replicas_first(threads, ["node", "thread"]).head(_MAX_BARS)
    xs: list[float] = []
    labels: list[str] = []
    group_centres: list[tuple[float, str]] = []
    x = 0.0
    for node, group in rows.groupby(["node"], sort=False):
        start = x
        for thread in group["thread"]:
            xs.append(x)
            labels.append(str(thread))
            x += 1.0
        group_centres.append(((start + x - 1) / 2, node_name(node[0], group["role"].iloc[0])))
        x += 0.8  # gap between nodes
    fig = _new_figure(max(8.0, 0.28 * len(xs) + 2), 5.0)
    ax = fig.add_subplot()
    busy = rows["busy_s"].to_numpy(dtype=float)
    idle = rows["idle_s"].to_numpy(dtype=float)
    ax.bar(xs, busy, width=0.8, color=protocol_colour(protocol), label="busy")
    ax.bar(xs, idle, width=0.8, bottom=busy, color=_IDLE_COLOUR, label="idle (waiting on a ring)")
    ax.set_xticks(xs, labels, rotation=90, fontsize=7)
    for centre, node in group_centres:
        ax.annotate(
            node,
            (centre, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
        )
    ax.set_ylabel("thread time (s)")
    ax.set_title(f"Idleness per node and thread ({protocol})", pad=18)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def messages_by_kind(messages: pd.DataFrame, protocol: str) -> Figure:
    """Messages sent and received by kind, summed over nodes (``node,kind,direction,count``)."""
    table = messages.pivot_table(
        index="kind", columns="direction", values="count", aggfunc="sum", fill_value=0
    )
    for direction in ("sent", "received"):
        if direction not in table.columns:
            table[direction] = 0
    table = table.sort_values("sent", ascending=False).head(_MAX_BARS // 2)
    colour = protocol_colour(protocol)
    x = np.arange(len(table))
    fig = _new_figure(max(7.0, 0.6 * len(table) + 2), 4.5)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, table["sent"], width=0.4, color=colour, label="sent")
    ax.bar(x + 0.2, table["received"], width=0.4, color=_shades(colour, 3)[2], label="received")
    ax.set_xticks(x, [str(k) for k in table.index], rotation=30, ha="right", fontsize=8)
    if table[["sent", "received"]].to_numpy().max() > 0:
        ax.set_yscale("log")
    ax.set_ylabel("messages (count, all nodes)")
    ax.set_title(f"Messages by kind ({protocol})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def drops_by_reason(drops: pd.DataFrame) -> Figure:
    """Drops per node, stacked by where and reason (``node,where,reason,count``; ``where`` is
    input, pipeline or send, see fabric.analysis.summary.drop_where; older tables without it: input)."""
    drops = drops.copy()
    where = drops["where"] if "where" in drops.columns else pd.Series("input", index=drops.index)
    drops["label"] = where.astype(str) + ": " + drops["reason"].astype(str)
    table = drops.pivot_table(
        index="node", columns="label", values="count", aggfunc="sum", fill_value=0
    ).head(_MAX_BARS)
    x = np.arange(len(table))
    fig = _new_figure(max(6.0, 0.5 * len(table) + 2), 4.0)
    ax = fig.add_subplot()
    bottom = np.zeros(len(table))
    palette = matplotlib.colormaps["tab10"]
    for i, reason in enumerate(table.columns):
        values = table[reason].to_numpy(dtype=float)
        ax.bar(x, values, bottom=bottom, color=palette(i % 10), label=str(reason))
        bottom += values
    ax.set_xticks(x, [str(n) for n in table.index], fontsize=8)
    ax.set_xlabel("node")
    ax.set_ylabel("frames or messages dropped (count)")
    ax.set_title("Drops by where they happen (input, pipeline, send) and reason")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def memory_cpu(memory: pd.DataFrame, protocol: str) -> Figure:
    """Peak resident memory and CPU time per process (``node,role,peak_rss_mb,cpu_s``)."""
    rows = _replicas_first(memory, ["node"]).head(_MAX_BARS)
    x = np.arange(len(rows))
    colours = ["black" if _is_client(role) else protocol_colour(protocol) for role in rows["role"]]
    states = rows["state"] if "state" in rows.columns else pd.Series("", index=rows.index)
    fig = _new_figure(max(7.0, 0.5 * len(rows) + 3), 4.0)
    ax_mem, ax_cpu = fig.subplots(1, 2)
    ax_mem.bar(x, rows["peak_rss_mb"], color=colours)
    ax_mem.set_ylabel("peak RSS (MB)")
    ax_cpu.bar(x, rows["cpu_s"], color=colours)
    ax_cpu.set_ylabel("CPU time (s)")
    for ax in (ax_mem, ax_cpu):
        names = [
            node_name(n, r) + (f"\n({s})" if isinstance(s, str) and s else "")
            for n, r, s in zip(rows["node"], rows["role"], states, strict=True)
        ]
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Memory and CPU per process ({protocol}; clients in black)")
    return fig


# --- sweep ------------------------------------------------------------------------------

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _series_style(index: int) -> dict[str, str]:
    return {"ls": _LINESTYLES[index % len(_LINESTYLES)], "marker": _MARKERS[index % len(_MARKERS)]}


def _errors(stats: pd.DataFrame, measure: str, shown: bool = True) -> np.ndarray | None:
    """Asymmetric error bars (mean - min, max - mean) of ``measure`` over repetitions; None
    (no bars drawn) when ``shown`` is false (one repetition per point)."""
    if not shown:
        return None
    mean, low, high = stats[f"{measure}_mean"], stats[f"{measure}_min"], stats[f"{measure}_max"]
    return np.vstack([(mean - low).to_numpy(dtype=float), (high - mean).to_numpy(dtype=float)])


def _bars_note(error_bars: bool) -> str:
    return (
        "error bars: min..max of repetitions" if error_bars else "one run per point: no error bars"
    )


def _series_name(series: Sequence[str], key: tuple, protocol: str) -> str:
    """A legend entry: the case label if the series has one, else the protocol, then the other
    series knobs by their short name (``pbft-macs``, ``pbft (worker_threads=2)``)."""
    named = dict(zip(series, key, strict=True))
    head = str(named.pop("case")) if named.get("case") else protocol
    named.pop("protocol", None)
    extra = ", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in named.items())
    return head + (f" ({extra})" if extra else "")


def measure_vs_knob(
    stats: pd.DataFrame,
    knob: str,
    knob_label: str,
    series: Sequence[str],
    error_bars: bool = True,
) -> Figure:
    """Throughput (top) and latency p50/p99 (bottom) against a numeric swept ``knob``.

    ``stats`` holds one row per grid point with ``<measure>_mean/_min/_max`` columns; one line
    per protocol (its colour) and per combination of the other ``series`` knobs (its line style).
    Error bars span min..max over repetitions.
    """
    fig = _new_figure(8.0, 7.0)
    ax_tp, ax_lat = fig.subplots(2, 1, sharex=True)
    groups = list(stats.groupby(list(series), sort=True)) if series else [((), stats)]
    for index, (key, rows) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        rows = rows.sort_values(knob)
        protocol = str(rows["protocol"].iloc[0])
        colour = protocol_colour(protocol)
        name = _series_name(series, key, protocol)
        style = _series_style(index)
        ax_tp.errorbar(
            rows[knob],
            rows["throughput_txn_s_mean"],
            yerr=_errors(rows, "throughput_txn_s", error_bars),
            color=colour,
            capsize=3,
            label=name,
            **style,
        )
        ax_lat.errorbar(
            rows[knob],
            rows["latency_ms_p50_mean"],
            yerr=_errors(rows, "latency_ms_p50", error_bars),
            color=colour,
            capsize=3,
            label=f"{name} p50",
            **style,
        )
        ax_lat.errorbar(
            rows[knob],
            rows["latency_ms_p99_mean"],
            yerr=_errors(rows, "latency_ms_p99", error_bars),
            color=colour,
            capsize=3,
            alpha=0.55,
            label=f"{name} p99",
            ls=style["ls"],
            marker="x",
        )
    values = pd.to_numeric(stats[knob], errors="coerce").dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() >= 20:
        ax_tp.set_xscale("log")
        ticks = sorted(values.unique())
        if len(ticks) <= 12:  # label the swept values themselves, not powers of ten
            ax_lat.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax_lat.minorticks_off()
            ax_tp.minorticks_off()
    ax_tp.set_ylabel("throughput (txn/s)")
    ax_tp.set_ylim(bottom=0)
    ax_tp.set_title(f"Throughput and latency vs {knob_label}\n({_bars_note(error_bars)})")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_ylim(bottom=0)
    ax_lat.set_xlabel(knob_label)
    for ax in (ax_tp, ax_lat):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def measure_vs_knob_one(
    stats: pd.DataFrame,
    knob: str,
    knob_label: str,
    series: Sequence[str],
    measure: str,
    measure_label: str,
    error_bars: bool = True,
) -> Figure:
    """One ``measure`` (``<measure>_mean/_min/_max`` columns) against a numeric ``knob``, one
    line per combination of the ``series`` columns (e.g. re-executions vs contention per engine)."""
    fig = _new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    groups = list(stats.groupby(list(series), sort=True)) if series else [((), stats)]
    for index, (key, rows) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        rows = rows.sort_values(knob)
        protocol = str(rows["protocol"].iloc[0])
        ax.errorbar(
            rows[knob],
            rows[f"{measure}_mean"],
            yerr=_errors(rows, measure, error_bars),
            capsize=3,
            label=_series_name(series, key, protocol),
            **_series_style(index),
        )
    ax.set_ylabel(measure_label)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(knob_label)
    ax.set_title(f"{measure_label} vs {knob_label}\n({_bars_note(error_bars)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def load_curve(
    stats: pd.DataFrame,
    series: Sequence[str],
    order_by: str | None = None,
    error_bars: bool = True,
) -> Figure:
    """Latency (p50 filled, p99 hollow) against throughput, one series per protocol or case.

    Lines join the points of one series in order of the numeric knob ``order_by``; without one
    (a sweep of categories) every point is a marker of its own and nothing is joined."""
    fig = _new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    groups = list(stats.groupby(list(series), sort=True)) if series else [((), stats)]
    for index, (key, rows) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        if order_by is not None:
            rows = rows.assign(_order=pd.to_numeric(rows[order_by])).sort_values("_order")
        protocol = str(rows["protocol"].iloc[0])
        colour = protocol_colour(protocol)
        name = _series_name(series, key, protocol)
        style = _series_style(index)
        if order_by is None:
            style["ls"] = "none"
        ax.errorbar(
            rows["throughput_txn_s_mean"],
            rows["latency_ms_p50_mean"],
            xerr=_errors(rows, "throughput_txn_s", error_bars),
            yerr=_errors(rows, "latency_ms_p50", error_bars),
            color=colour,
            capsize=3,
            label=f"{name} p50",
            **style,
        )
        ax.plot(
            rows["throughput_txn_s_mean"],
            rows["latency_ms_p99_mean"],
            color=colour,
            alpha=0.6,
            ls=style["ls"],
            marker=style["marker"],
            mfc="none",  # p99: the series' marker, hollow
            label=f"{name} p99",
        )
    if order_by is not None:
        ax.annotate(
            f"lines: in order of {order_by.rsplit('.', 1)[-1]}",
            (0.01, 0.99),
            xycoords="axes fraction",
            va="top",
            fontsize=7,
            color="#555",
        )
    ax.set_xlabel("throughput (txn/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(f"Load curve: latency vs throughput\n({_bars_note(error_bars)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def messages_per_batch(per_point: pd.DataFrame) -> Figure:
    """Messages per committed batch, stacked by kind, one bar per grid point.

    ``per_point``: index = point label, columns = message kinds, values = mean over repetitions.
    """
    per_point = per_point.head(_MAX_BARS)
    x = np.arange(len(per_point))
    fig = _new_figure(max(7.0, 0.6 * len(per_point) + 3), 5.0)
    ax = fig.add_subplot()
    bottom = np.zeros(len(per_point))
    palette = matplotlib.colormaps["tab20"]
    for i, kind in enumerate(per_point.columns):
        values = per_point[kind].fillna(0).to_numpy(dtype=float)
        ax.bar(x, values, bottom=bottom, color=palette(i % 20), label=str(kind))
        bottom += values
    ax.set_xticks(x, [str(p) for p in per_point.index], rotation=45, ha="right", fontsize=8)
    for xi, total in zip(x, bottom, strict=True):
        ax.annotate(f"{total:.3g}", (xi, total), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 1.0, 1e-9) * 1.18)  # headroom
    ax.set_ylabel("messages per committed batch")
    ax.set_title("Messages per committed batch by kind (mean of repetitions)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def by_category(
    stats: pd.DataFrame, label_column: str, title: str, error_bars: bool = True
) -> Figure:
    """Throughput (top) and latency p50/p99 (bottom) as bars, one per category (a case or a
    grid point named by ``label_column``), in the protocol's colour; nothing is joined by a
    line, since categories have no order."""
    rows = stats.reset_index(drop=True)
    x = np.arange(len(rows))
    colours = [protocol_colour(p) for p in rows["protocol"]]
    fig = _new_figure(max(7.0, 1.0 * len(rows) + 3), 7.0)
    ax_tp, ax_lat = fig.subplots(2, 1, sharex=True)
    ax_tp.bar(
        x,
        rows["throughput_txn_s_mean"],
        yerr=_errors(rows, "throughput_txn_s", error_bars),
        capsize=4,
        color=colours,
    )
    top = float(rows["throughput_txn_s_max" if error_bars else "throughput_txn_s_mean"].max())
    for xi, value in zip(x, rows["throughput_txn_s_mean"], strict=True):
        ax_tp.annotate(
            f"{value:,.0f}",
            (xi, value),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax_tp.set_ylim(0, max(top, 1e-9) * 1.15)
    ax_tp.set_ylabel("throughput (txn/s)")
    ax_tp.set_title(f"{title}\n({_bars_note(error_bars)})")
    ax_tp.grid(axis="y", alpha=0.3)
    width = 0.38
    ax_lat.bar(
        x - width / 2,
        rows["latency_ms_p50_mean"],
        width=width,
        yerr=_errors(rows, "latency_ms_p50", error_bars),
        capsize=3,
        color=colours,
        label="p50",
    )
    ax_lat.bar(
        x + width / 2,
        rows["latency_ms_p99_mean"],
        width=width,
        yerr=_errors(rows, "latency_ms_p99", error_bars),
        capsize=3,
        color=colours,
        alpha=0.45,
        hatch="//",
        label="p99",
    )
    ax_lat.set_ylim(0, max(float(rows["latency_ms_p99_mean"].max()), 1e-9) * 1.2)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.grid(axis="y", alpha=0.3)
    ax_lat.legend(fontsize=8, loc="upper left")
    ax_lat.set_xticks(x, [str(v) for v in rows[label_column]], rotation=30, ha="right", fontsize=8)
    return fig


def throughput_by_protocol(stats: pd.DataFrame) -> Figure:
    """Throughput per protocol as bars (protocol colours), error bars min..max of repetitions."""
    rows = stats.sort_values("protocol", kind="stable")
    x = np.arange(len(rows))
    fig = _new_figure(max(6.0, 0.9 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    ax.bar(
        x,
        rows["throughput_txn_s_mean"],
        yerr=_errors(rows, "throughput_txn_s"),
        capsize=4,
        color=[protocol_colour(p) for p in rows["protocol"]],
    )
    ax.set_xticks(x, [str(p) for p in rows["point"]], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("throughput (txn/s)")
    ax.set_title("Throughput by protocol\n(error bars: min..max of repetitions)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def fuzz_timeline(
    fuzzed: Sequence[tuple[float, int]],
    baseline: Sequence[tuple[float, int]],
    window_s: tuple[float, float],
    title: str,
) -> Figure:
    """The fuzzed replica's executed transactions per second (t from its run's t0) in the
    fuzz run and the undisturbed baseline, with the seconds the fuzzer sent shaded
    (``python -m fabric fuzz``)."""
    fig = _new_figure(8.0, 4.0)
    ax = fig.add_subplot()
    ax.axvspan(*window_s, color="#d62728", alpha=0.08, label="fuzzer sending")
    if baseline:
        t, txn = zip(*baseline, strict=True)
        ax.plot(t, txn, color="#7f7f7f", lw=1.2, label="undisturbed baseline")
    if fuzzed:
        t, txn = zip(*fuzzed, strict=True)
        ax.plot(t, txn, color="#d62728", lw=1.4, label="under fuzzing")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("executed txn/s (fuzzed replica)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path``."""
    fig.savefig(path, format="png", dpi=110)
