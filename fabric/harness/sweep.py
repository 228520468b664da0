"""``python -m fabric sweep <spec.yaml>``: run a grid of experiments and tabulate them.

A sweep spec (config/experiments/*.yaml) has ``name``, ``description`` (the question it
answers), ``base`` (a partial config mapping, or a path to a config file), ``grid`` (knob ->
list of values; knob names as in ``--set``: dotted or a unique bare name) and/or ``cases``
(a list of knob -> value mappings, each one variant to compare, with an optional ``label``:
points that are not a product, such as PBFT, PoE with signatures and PoE with MACs),
``repetitions``, optional ``quick`` (knob -> value overrides, and optionally
``repetitions``, applied with ``--quick``) and optional ``label`` (prefixed to every run's
label).

How it works: ``plan_sweep`` expands the grid (cartesian product, times the cases) and builds
and validates every point's Config before anything runs, so a bad knob fails up front naming
the key. Grid values or cases of ``protocol.name`` that protocols.registry does not offer are
dropped with a note. Every point carries every knob a case sets (the base's value where its
case does not), so combined.csv has one column per swept knob.
``run_sweep`` calls the runner once per point and repetition (``fabric.harness.runner.run_experiment``,
or an injected function in tests), shows a progress bar on stderr, records a failed run (status
and reason) and goes on, rewrites ``combined.csv`` after every run, and on resume skips runs whose
folder holds a complete summary.json with status ok. Then it prints one line per run and draws
the sweep report.

Resume (``--resume FOLDER|latest``) continues the sweep *as it was planned*: the spec, ``--quick``
and ``--set`` stored in the folder's sweep.yaml. Options given again must agree with them (a spec
file whose points differ, ``--quick`` on a sweep run without it, other ``--set`` values): anything
else is refused with the difference named, never silently mixed into one combined.csv.
Must not live here: starting processes (fabric/harness/runner.py), drawing (fabric/analysis/report.py, plots.py),
folder names (fabric/harness/paths.py).
"""

from __future__ import annotations

import argparse
import copy
import csv
import difflib
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from fabric.analysis.report import (
    CASE_COLUMN,
    COMBINED_COLUMNS,
    FOLDER_COLUMN,
    MESSAGES_PREFIX,
    POINT_COLUMN,
)
from fabric.harness.config import (
    Config,
    ConfigError,
    config_from_mapping,
    config_to_dict,
    load_config,
)
from fabric.harness.paths import SweepPaths, sweep_folder_name
from protocols import registry

MAX_RUNS = 1000  # runs one sweep may plan (points x repetitions)
MAX_REPETITIONS = 100
PROTOCOL_KNOB = "protocol.name"
_SPEC_KEYS = ("name", "description", "base", "grid", "cases", "repetitions", "quick", "label")
CASE_LABEL = "label"  # the one key of a case that is not a knob
MAX_CASES = 100
_AS_RUN_KEYS = ("notes", "points", "runs")  # sweep.yaml adds these, quick_applied and set
_SHORT_NAMES = {  # label tokens for the knobs sweeps usually vary; others use their key name
    "batching.batch_size": "b",
    "cluster.replicas": "n",
    "cluster.clients": "c",
    "client.max_txn_in_flight": "inflight",
    "client.threads": "ct",
    "replica.worker_threads": "w",
    "replica.batch_threads": "bt",
    "replica.input_threads": "in",
    "replica.output_threads": "out",
    PROTOCOL_KNOB: "",  # the value alone: pbft, null
}


class SweepError(Exception):
    """A sweep spec or grid point that cannot run; the message names the key or file."""


class FinishedRun(Protocol):
    """What a run function returns (fabric.harness.runner.RunOutcome has these attributes)."""

    ok: bool
    folder: Path
    summary: dict[str, Any]
    reason: str


RunFunction = Callable[..., FinishedRun]  # runner(cfg, results_root, label=..., progress=...)


# --- the spec -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    base: Mapping[str, Any] | str  # a partial config mapping, or a path to a config file
    grid: dict[str, list[Any]]
    repetitions: int = 1
    quick: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    source: Path | None = None  # the spec file, for resolving a relative base path
    cases: list[dict[str, Any]] = field(default_factory=list)  # knob -> value (+ label)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "description": self.description,
            "base": self.base if isinstance(self.base, str) else dict(self.base),
            "grid": self.grid,
            "repetitions": self.repetitions,
            "quick": self.quick,
            "label": self.label,
        }
        if self.cases:
            out["cases"] = [dict(c) for c in self.cases]
        return out


def spec_from_mapping(data: Any, source: Path | None = None) -> SweepSpec:
    """A SweepSpec from parsed YAML; SweepError naming the key on anything malformed."""
    where = str(source) if source else "sweep spec"
    if not isinstance(data, Mapping):
        raise SweepError(
            f"{where}: the top level must be a mapping with keys {', '.join(_SPEC_KEYS)}"
        )
    unknown = [k for k in data if k not in _SPEC_KEYS]
    if unknown:
        raise SweepError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_SPEC_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(
            f"{where}: name must be a word of letters, digits, '_', '.', '-' (got {name!r})"
        )
    base = data.get("base") or {}
    if not isinstance(base, Mapping | str):
        raise SweepError(f"{where}: base must be a config mapping or a path to a config file")
    grid = data.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise SweepError(f"{where}: grid must map knob names to lists of values")
    for knob, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: grid.{knob} must be a non-empty list of values")
    cases = data.get("cases") or []
    if not isinstance(cases, list) or len(cases) > MAX_CASES:
        raise SweepError(f"{where}: cases must be a list of at most {MAX_CASES} knob mappings")
    for i, case in enumerate(cases, 1):
        if not isinstance(case, Mapping) or not [k for k in case if k != CASE_LABEL]:
            raise SweepError(
                f"{where}: cases[{i}] must map knob names to values (and may have a label)"
            )
        case_label = case.get(CASE_LABEL, "")
        if not isinstance(case_label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", case_label):
            raise SweepError(
                f"{where}: cases[{i}].label must be a word of letters, digits, '_', '.', '-'"
            )
    repetitions = data.get("repetitions", 1)
    quick = data.get("quick") or {}
    if not isinstance(quick, Mapping):
        raise SweepError(f"{where}: quick must map knob names to values")
    for key, reps in (
        ("repetitions", repetitions),
        ("quick.repetitions", quick.get("repetitions", 1)),
    ):
        if isinstance(reps, bool) or not isinstance(reps, int) or not 1 <= reps <= MAX_REPETITIONS:
            raise SweepError(
                f"{where}: {key} must be an integer 1..{MAX_REPETITIONS} (got {reps!r})"
            )
    label = data.get("label") or ""
    if not isinstance(label, str):
        raise SweepError(f"{where}: label must be a string")
    return SweepSpec(
        name=name,
        description=str(data.get("description") or ""),
        base=base if isinstance(base, str) else dict(base),
        grid={str(k): list(v) for k, v in grid.items()},
        repetitions=repetitions,
        quick=dict(quick),
        label=label,
        source=source,
        cases=[{str(k): v for k, v in case.items()} for case in cases],
    )


def load_spec(path: Path) -> SweepSpec:
    """Read a sweep spec YAML file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({exc})") from None
    return spec_from_mapping(data, source=path)


def load_spec_as_run(folder: Path) -> tuple[SweepSpec, bool, list[str]]:
    """The spec a sweep folder ran (its sweep.yaml), whether ``--quick`` was applied, its --set."""
    path = SweepPaths(folder).sweep_yaml
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SweepError(f"{path}: cannot read the sweep as run ({exc})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: not a sweep spec")
    applied = bool(data.pop("quick_applied", False))
    overrides = [str(text) for text in data.pop("set", None) or []]
    for extra in _AS_RUN_KEYS:
        data.pop(extra, None)
    return spec_from_mapping(data, source=path), applied, overrides


# --- planning: expand and validate every point up front -------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    label: str  # e.g. "b100_w2": names the point in combined.csv and in run labels
    knobs: dict[str, Any]  # canonical dotted knob -> value
    config: Config
    case: str = ""  # the case's label (or its value tokens), "" in a sweep without cases


@dataclass(frozen=True)
class PlannedRun:
    point: SweepPoint
    repetition: int  # 1-based

    @property
    def label(self) -> str:
        return f"{self.point.label}_r{self.repetition}"


@dataclass(frozen=True)
class SweepPlan:
    """Every point of a sweep, validated. ``grid``: canonical dotted knob -> the values run
    (protocols the registry does not offer dropped, with a note)."""

    spec: SweepSpec
    quick: bool
    overrides: list[str]  # --set KEY=VALUE, applied to every point
    grid: dict[str, list[Any]]
    points: list[SweepPoint]
    repetitions: int
    notes: list[str]
    case_knobs: list[str] = field(default_factory=list)  # knobs the cases set, in order

    @property
    def knobs(self) -> list[str]:
        return list(self.grid) + [k for k in self.case_knobs if k not in self.grid]

    @property
    def runs(self) -> list[PlannedRun]:
        return [PlannedRun(p, r) for p in self.points for r in range(1, self.repetitions + 1)]


def _base_config(spec: SweepSpec) -> Config:
    if isinstance(spec.base, str):
        path = Path(spec.base)
        if not path.is_absolute() and not path.exists() and spec.source is not None:
            path = spec.source.parent / path
        return load_config(path)
    return config_from_mapping(spec.base)


def canonical_knob(name: str, data: Mapping[str, Any]) -> str:
    """``batch_size`` -> ``batching.batch_size`` (unique bare names), dotted names checked.

    ``data`` is a whole config as plain data (config_to_dict). SweepError names the knob.
    """
    if "." in name:
        section, _, key = name.partition(".")
        if isinstance(data.get(section), Mapping) and key in data[section]:
            return name
    elif name in data and not isinstance(data[name], Mapping):
        return name  # a whole top-level value such as failures
    else:
        owners = [s for s, keys in data.items() if isinstance(keys, Mapping) and name in keys]
        if len(owners) == 1:
            return f"{owners[0]}.{name}"
        if owners:
            raise SweepError(
                f"grid knob {name!r} is ambiguous; write one of {', '.join(f'{s}.{name}' for s in owners)}"
            )
    every = [f"{s}.{k}" for s, keys in data.items() if isinstance(keys, Mapping) for k in keys]
    close = difflib.get_close_matches(name, every + [k.split(".")[1] for k in every], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SweepError(
        f"unknown knob {name!r}{hint} (knob names as in --set: section.key or a unique bare key)"
    )


def _set_knob(data: dict[str, Any], knob: str, value: Any) -> None:
    section, _, key = knob.partition(".")
    if key:
        data[section][key] = value
    else:
        data[section] = value


def _token(knob: str, value: Any, index: int) -> str:
    short = _SHORT_NAMES.get(knob, knob.rsplit(".", 1)[-1])
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        text = f"{short}{index}" if short else f"v{index}"  # lists, mappings: the value's position
    else:
        text = f"{short}{value}"
    return re.sub(r"[^A-Za-z0-9.]", "", text) or f"v{index}"


def _parse_set(text: str, data: Mapping[str, Any]) -> tuple[str, Any]:
    """``KEY=VALUE`` (VALUE in YAML, as with --set) -> (canonical knob, value)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise SweepError(f"--set {text!r}: allowed: KEY=VALUE, e.g. transport.base_port=23000")
    knob = canonical_knob(name.strip(), data)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SweepError(f"--set {name}: {raw!r} is not a YAML value ({exc})") from None
    section, _, key = knob.partition(".")
    if key and isinstance(data[section][key], str) and not isinstance(value, str):
        value = raw.strip()  # a string knob takes the text as written
    return knob, value


def _usable_protocols(names: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The protocols that really load (registry.get), and a note for each one skipped."""
    usable, notes = [], []
    offered = registry.available()
    for name in names:
        if name not in offered:
            hint = ' (a bare null in YAML is nothing: write "null")' if name is None else ""
            notes.append(
                f"skipped protocol {name}: not in protocols.registry.available() = "
                f"{', '.join(offered)}{hint}"
            )
            continue
        try:
            registry.get(name)
        except Exception as exc:  # a module that is there but does not load or register
            notes.append(f"skipped protocol {name}: it does not load ({type(exc).__name__}: {exc})")
            continue
        usable.append(name)
    return usable, notes


def plan_sweep(spec: SweepSpec, quick: bool = False, overrides: Sequence[str] = ()) -> SweepPlan:
    """Expand the grid and build every point's Config; SweepError naming the key on any error.

    ``quick`` applies the spec's quick overrides, then ``overrides`` (``--set KEY=VALUE``) apply
    to every point; the grid's values are set last (a --set on a swept knob is an error).
    """
    try:
        base = _base_config(spec)
    except ConfigError as exc:
        raise SweepError(f"base config: {exc}") from None
    data = config_to_dict(base)
    notes: list[str] = []
    fixed: dict[str, Any] = {}  # knob -> value at every point (quick, then --set)
    repetitions = spec.repetitions
    if quick:
        for name, value in spec.quick.items():
            if name == "repetitions":
                repetitions = int(value)
            else:
                fixed[canonical_knob(name, data)] = value
    set_knobs: set[str] = set()
    for text in overrides:
        knob, value = _parse_set(text, data)
        fixed[knob] = value
        set_knobs.add(knob)
    grid: dict[str, list[Any]] = {}
    for name, values in spec.grid.items():
        knob = canonical_knob(name, data)
        if knob in grid:
            raise SweepError(f"grid knob {name!r} repeats {knob!r}")
        if knob in set_knobs:
            raise SweepError(f"--set {knob} conflicts with the grid, which sweeps {knob}")
        if knob == PROTOCOL_KNOB:
            values, skipped = _usable_protocols(values)
            notes += skipped
            if not values:
                raise SweepError(f"grid {name!r}: none of the protocols is available ({skipped})")
        grid[knob] = values
    cases, case_knobs = _plan_cases(spec, data, grid, set_knobs, notes)
    combos = list(itertools.product(*(list(enumerate(v)) for v in grid.values())))
    if len(combos) * len(cases) * repetitions > MAX_RUNS:
        raise SweepError(
            f"{len(combos) * len(cases)} points x {repetitions} repetitions exceeds {MAX_RUNS} runs"
        )
    points: list[SweepPoint] = []
    labels: set[str] = set()
    for combo, (case_no, case_label, case) in itertools.product(combos, cases):
        knobs = {knob: value for knob, (_, value) in zip(grid, combo, strict=True)}
        tokens = [_token(knob, value, i) for knob, (i, value) in zip(grid, combo, strict=True)]
        if case_label:
            case_name = re.sub(r"[^A-Za-z0-9.-]", "", case_label)
            tokens.append(case_name)
        else:
            case_tokens = [_token(knob, value, case_no) for knob, value in case.items()]
            case_name = "_".join(t for t in case_tokens if t)
            tokens += case_tokens
        label = (
            "_".join(t for t in [re.sub(r"[^A-Za-z0-9.]", "", spec.label), *tokens] if t) or "base"
        )
        if label in labels:
            label = f"{label}_p{len(points) + 1}"
        labels.add(label)
        point_data = copy.deepcopy(data)
        for knob, value in itertools.chain(fixed.items(), knobs.items(), case.items()):
            _set_knob(point_data, knob, value)
        try:
            cfg = config_from_mapping(point_data)
        except ConfigError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in {**knobs, **case}.items()) or "the base"
            raise SweepError(f"grid point {where}: {exc}") from None
        resolved = config_to_dict(cfg)
        for knob in case_knobs:  # every point names every knob a case sets
            knobs[knob] = case[knob] if knob in case else _config_value(resolved, knob)
        points.append(SweepPoint(label, knobs, cfg, case_name if spec.cases else ""))
    return SweepPlan(spec, quick, list(overrides), grid, points, repetitions, notes, case_knobs)


def _config_value(data: Mapping[str, Any], knob: str) -> Any:
    section, _, key = knob.partition(".")
    return data[section][key] if key else data[section]


def _plan_cases(
    spec: SweepSpec,
    data: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    set_knobs: set[str],
    notes: list[str],
) -> tuple[list[tuple[int, str, dict[str, Any]]], list[str]]:
    """The spec's cases as (number, label, canonical knob -> value), unavailable protocols
    dropped with a note, and every knob they set; one empty case when there are none."""
    if not spec.cases:
        return [(0, "", {})], []
    cases: list[tuple[int, str, dict[str, Any]]] = []
    case_knobs: list[str] = []
    for number, case in enumerate(spec.cases, 1):
        knobs: dict[str, Any] = {}
        for name, value in case.items():
            if name == CASE_LABEL:
                continue
            knob = canonical_knob(name, data)
            if knob in grid:
                raise SweepError(f"cases[{number}] sets {knob!r}, which the grid sweeps")
            if knob in set_knobs:
                raise SweepError(f"--set {knob} conflicts with cases[{number}], which sets it")
            if knob in knobs:
                raise SweepError(f"cases[{number}] sets {knob!r} twice")
            knobs[knob] = value
        if PROTOCOL_KNOB in knobs:
            usable, skipped = _usable_protocols([knobs[PROTOCOL_KNOB]])
            if not usable:
                notes += [f"cases[{number}]: {note}" for note in skipped]
                continue
        case_knobs += [k for k in knobs if k not in case_knobs]
        cases.append((number, str(case.get(CASE_LABEL, "")), knobs))
    if not cases:
        raise SweepError(f"none of the cases can run ({'; '.join(notes)})")
    return cases, case_knobs


# --- progress on stderr --------------------------------------------------------------------


class SweepProgress:
    """``[#####-----] 3/10 now: b100_r1 ETA 1m20s`` on a terminal; one line per step otherwise."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.done, self.stream, self.enabled = total, 0, stream or sys.stderr, enabled
        self.tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.run_seconds: list[float] = []

    def _eta(self) -> str:
        if not self.run_seconds:
            return "ETA ?"
        left = sum(self.run_seconds) / len(self.run_seconds) * (self.total - self.done)
        minutes, seconds = divmod(int(left + 0.5), 60)
        return f"ETA {minutes}m{seconds:02d}s"

    def show(self, now: str) -> None:
        if not self.enabled:
            return
        filled = self.WIDTH * self.done // max(1, self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {self.done}/{self.total} now: {now} {self._eta()}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self, seconds: float | None) -> None:
        """One run finished (``seconds`` is None when it was skipped on resume)."""
        self.done += 1
        if seconds is not None:
            self.run_seconds.append(seconds)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- running ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    folder: Path
    rows: list[dict[str, Any]]
    ran: int  # runs the runner was called for (not skipped)
    skipped: int  # runs found finished on resume
    notes: list[str]

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row["status"] != "ok")


def finished_ok(folder: Path) -> dict[str, Any] | None:
    """The summary of a run folder that finished ok (complete summary.json), else None."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    run = summary.get("run") if isinstance(summary, dict) else None
    if not isinstance(run, dict) or run.get("status") != "ok":
        return None
    if not isinstance(summary.get("throughput_txn_s"), int | float):
        return None
    if not isinstance(summary.get("latency_ms"), dict):
        return None
    return summary


def _number(value: Any) -> float | str:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else ""


def combined_row(
    run: PlannedRun, status: str, reason: str, summary: Mapping[str, Any], folder: str
) -> dict[str, Any]:
    """One tidy combined.csv row: knobs, point, repetition, status, identity, figures, folder."""
    cfg = run.point.config
    latency = summary.get("latency_ms") if isinstance(summary.get("latency_ms"), Mapping) else {}
    audit = summary.get("audit") if isinstance(summary.get("audit"), Mapping) else {}
    row: dict[str, Any] = {k: _cell(v) for k, v in run.point.knobs.items()}
    row.update(
        {
            POINT_COLUMN: run.point.label,
            CASE_COLUMN: run.point.case,
            "repetition": run.repetition,
            "status": status,
            "reason": reason,
            "protocol": cfg.protocol.name,
            "replicas": cfg.cluster.replicas,
            "clients": cfg.cluster.clients,
            "batch_size": cfg.batching.batch_size,
            "throughput_txn_s": _number(summary.get("throughput_txn_s")),
            **{
                f"latency_ms_{k}": _number(latency.get(k))
                for k in ("avg", "p50", "p90", "p99", "max")
            },
            "audit_ok": audit.get("ok", "") if isinstance(audit.get("ok", ""), bool) else "",
        }
    )
    row["re_executions_per_txn"] = _re_executions_per_txn(summary)
    per_batch = summary.get("messages_per_batch")
    if isinstance(per_batch, Mapping):
        row.update({f"{MESSAGES_PREFIX}{kind}": _number(v) for kind, v in per_batch.items()})
    row[FOLDER_COLUMN] = folder
    return row


def _re_executions_per_txn(summary: Mapping[str, Any]) -> float | str:
    """Engine re-executions per transaction executed, over every replica ("" if none report)."""
    per_node = summary.get("per_node")
    if not isinstance(per_node, Mapping):
        return ""
    engines = [n.get("execution") for n in per_node.values() if isinstance(n, Mapping)]
    engines = [e for e in engines if isinstance(e, Mapping)]
    txns = sum(int(e.get("txns", 0) or 0) for e in engines)
    if not txns:
        return ""
    return round(sum(int(e.get("re_executions", 0) or 0) for e in engines) / txns, 5)


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else json.dumps(value, sort_keys=True)


def write_combined(path: Path, knobs: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write combined.csv atomically (a reader never sees half a table)."""
    kinds = sorted({k for row in rows for k in row if k.startswith(MESSAGES_PREFIX)})
    header = [*knobs, *COMBINED_COLUMNS, *kinds, FOLDER_COLUMN]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _previous_folders(paths: SweepPaths) -> dict[str, str]:
    """Run label -> folder name, from an earlier combined.csv in this sweep folder."""
    out: dict[str, str] = {}
    try:
        with paths.combined.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get(FOLDER_COLUMN) and row.get(POINT_COLUMN) and row.get("repetition"):
                    out[f"{row[POINT_COLUMN]}_r{row['repetition']}"] = row[FOLDER_COLUMN]
    except (OSError, csv.Error):
        return {}
    return out


def _finished_folder(
    root: Path, label: str, known: Mapping[str, str]
) -> tuple[Path, dict[str, Any]] | None:
    """A run folder for ``label`` inside ``root`` that finished ok, newest first."""
    candidates = [root / known[label]] if label in known else []
    candidates += sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.endswith(f"-{label}")), reverse=True
    )
    for folder in candidates:
        summary = finished_ok(folder)
        if summary is not None:
            return folder, summary
    return None


def default_runner() -> RunFunction:
    """``fabric.harness.runner.run_experiment``; SweepError if the runner is not there (yet)."""
    try:
        from fabric.harness.runner import run_experiment
    except ImportError as exc:
        raise SweepError(
            f"the runner (fabric.harness.runner.run_experiment) cannot be imported: {exc}"
        ) from None
    return run_experiment


def latest_sweep(results_root: Path, name: str | None) -> Path:
    """The newest sweep folder under ``results_root`` whose sweep.yaml is named ``name``
    (any name when ``name`` is None)."""
    if results_root.is_dir():
        for folder in sorted(
            (p for p in results_root.iterdir() if p.name.startswith("sweep-")), reverse=True
        ):
            try:
                data = yaml.safe_load(SweepPaths(folder).sweep_yaml.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and (name is None or data.get("name") == name):
                return folder
    if name is None:
        raise SweepError(f"no earlier sweep (sweep-*/sweep.yaml) under {results_root} to resume")
    raise SweepError(f"no earlier sweep named {name!r} under {results_root} to resume")


def _plan_signature(plan: SweepPlan) -> list[tuple[str, Config]]:
    return [(run.label, run.point.config) for run in plan.runs]


def resume_options(
    folder: Path, spec_path: Path | None, quick: bool, overrides: Sequence[str]
) -> tuple[SweepSpec, bool, list[str]]:
    """The spec, quick flag and --set of the sweep stored in ``folder``, checked against what
    the command line gives again; SweepError naming the difference when they disagree."""
    stored, stored_quick, stored_sets = load_spec_as_run(folder)
    where = SweepPaths(folder).sweep_yaml
    if quick and not stored_quick:
        raise SweepError(
            f"--quick differs from the sweep being resumed ({where}: run without --quick); "
            f"resume without --quick to continue it as planned, or start a new sweep"
        )
    if overrides and list(overrides) != stored_sets:
        raise SweepError(
            f"--set {' '.join(overrides)} differs from the sweep being resumed ({where}: --set "
            f"{' '.join(stored_sets) or '(none)'}); resume without --set to continue it as "
            f"planned, or start a new sweep"
        )
    if spec_path is not None:
        given = load_spec(spec_path)
        if given.name != stored.name:
            raise SweepError(
                f"{spec_path} is sweep {given.name!r}, but {folder} holds sweep {stored.name!r}"
            )
        mine = plan_sweep(given, quick=stored_quick, overrides=stored_sets)
        theirs = plan_sweep(stored, quick=stored_quick, overrides=stored_sets)
        if _plan_signature(mine) != _plan_signature(theirs):
            ours = {label: cfg for label, cfg in _plan_signature(mine)}
            kept = {label: cfg for label, cfg in _plan_signature(theirs)}
            diff = sorted(set(ours) ^ set(kept)) or [k for k in ours if ours[k] != kept.get(k)]
            raise SweepError(
                f"{spec_path} no longer plans the runs stored in {where} (they differ at "
                f"{', '.join(diff[:5])}); resume without the spec file to continue the stored "
                f"plan, or start a new sweep"
            )
    return stored, stored_quick, stored_sets


def _check_networks(plan: SweepPlan) -> None:
    """SweepError before anything runs if a point's emulated network cannot be built here
    (fabric.harness.network.check names what is missing)."""
    from fabric.harness.network import NetworkUnavailable, check

    for point in plan.points:
        if point.config.network.emulation != "none":
            try:
                check(point.config)
            except NetworkUnavailable as exc:
                raise SweepError(f"point {point.label}: {exc}") from None


def run_sweep(
    spec: SweepSpec,
    results_root: Path,
    *,
    runner: RunFunction | None = None,
    quick: bool = False,
    overrides: Sequence[str] = (),
    resume: Path | None = None,
    progress: bool = True,
    report: bool = True,
    stream: TextIO | None = None,
) -> SweepResult:
    """Plan (validating every point), then run each point x repetition and write combined.csv.

    ``resume``: an earlier sweep folder; runs whose folder finished ok are not run again. A run
    that fails (outcome not ok, or the runner raising) is recorded with its reason; the sweep
    goes on. ``report`` draws the sweep report at the end.
    """
    plan = plan_sweep(spec, quick=quick, overrides=overrides)
    if runner is None:
        _check_networks(plan)
    run_one = runner or default_runner()
    stream = stream or sys.stderr
    for note in plan.notes:
        print(f"note: {note}", file=stream)
    if resume is not None:
        if not resume.is_dir():
            raise SweepError(f"cannot resume {resume}: not a folder")
        paths = SweepPaths(resume)
    else:
        paths = SweepPaths(results_root / sweep_folder_name(spec.name))
        paths.root.mkdir(parents=True, exist_ok=False)
    as_run = {
        **spec.as_dict(),
        "grid": plan.grid,
        "quick_applied": quick,
        "set": plan.overrides,
        "notes": plan.notes,
        "points": len(plan.points),
        "runs": len(plan.runs),
    }
    if resume is None or not paths.sweep_yaml.is_file():  # a resumed sweep keeps its plan
        paths.sweep_yaml.write_text(yaml.safe_dump(as_run, sort_keys=False))
    known = _previous_folders(paths) if resume is not None else {}

    runs = plan.runs
    bar = SweepProgress(len(runs), stream, progress)
    rows: list[dict[str, Any]] = []
    ran = skipped = 0
    try:
        for run in runs:
            found = _finished_folder(paths.root, run.label, known) if resume is not None else None
            if found is not None:
                folder, summary = found
                rows.append(combined_row(run, "ok", "", summary, folder.name))
                skipped += 1
                bar.step(None)
                continue
            bar.show(run.label)
            started = time.monotonic()
            rows.append(_run_point(run_one, run, paths.root))
            ran += 1
            bar.step(time.monotonic() - started)
            write_combined(paths.combined, plan.knobs, rows)
        bar.show("done")
    finally:
        bar.close()
        write_combined(paths.combined, plan.knobs, rows)
    result = SweepResult(paths.root, rows, ran, skipped, plan.notes)
    if report:
        from fabric.analysis.report import report_sweep

        report_sweep(paths.root)
    return result


def _run_point(run_one: RunFunction, run: PlannedRun, root: Path) -> dict[str, Any]:
    try:
        outcome = run_one(run.point.config, root, label=run.label, progress=False)
    except Exception as exc:  # a crashing run is recorded, the sweep goes on
        return combined_row(run, "failed", f"runner raised {type(exc).__name__}: {exc}", {}, "")
    folder = Path(outcome.folder) if outcome.folder else None
    summary = outcome.summary if isinstance(outcome.summary, Mapping) else {}
    if not summary and folder is not None:
        summary = finished_ok(folder) or {}
    name = ""
    if folder is not None:
        name = folder.name if folder.parent.resolve() == root.resolve() else str(folder)
    if outcome.ok:
        return combined_row(run, "ok", "", summary, name)
    status = getattr(outcome, "status", "failed")  # degraded: finished, a replica behind
    return combined_row(
        run,
        status if status == "degraded" else "failed",
        outcome.reason or "the runner reported failure",
        summary,
        name,
    )


def result_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per run for the terminal: point, repetition, status, throughput, p50/p99."""

    def num(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) and value != "" else "-"

    width = max([len(str(row[POINT_COLUMN])) for row in rows] + [5])
    lines = [f"{'point':<{width}}  rep  status    txn/s       p50 ms   p99 ms  folder"]
    for row in rows:
        lines.append(
            f"{row[POINT_COLUMN]:<{width}}  {row['repetition']:>3}  {row['status']:<8} "
            f"{num(row.get('throughput_txn_s'), ',.0f'):>9}  "
            f"{num(row.get('latency_ms_p50'), '.1f'):>8} {num(row.get('latency_ms_p99'), '.1f'):>8}"
            f"  {row.get(FOLDER_COLUMN) or row.get('reason', '')}"
        )
    return lines


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fabric sweep",
        description="Run a grid of experiments from a sweep YAML, write combined.csv and the sweep report. "
        "Exit 0 when every run is ok, 1 when some failed (they are recorded), 2 on a bad spec.",
    )
    parser.add_argument(
        "spec",
        type=Path,
        nargs="?",
        help="config/experiments/<name>.yaml (optional with --resume FOLDER)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="apply the spec's quick overrides (short runs)"
    )
    parser.add_argument(
        "--resume",
        metavar="FOLDER|latest",
        help="continue an earlier sweep folder, skipping runs that finished ok",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where the sweep folder goes (default: the base config's run.results_dir)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the runs, run nothing"
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not draw the sweep report at the end"
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one knob at every point, as with run --set (repeatable; not a swept knob)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.spec is None and not args.resume:
        parser.error("a spec file is needed (or --resume FOLDER|latest)")
    try:
        resume: Path | None = None
        quick, overrides = args.quick, list(args.set)
        if args.resume:
            if args.resume == "latest":
                given = load_spec(args.spec) if args.spec is not None else None
                if args.results_dir is not None:
                    root = args.results_dir
                elif given is not None:
                    root = Path(_base_config(given).run.results_dir)
                else:
                    root = Path(load_config().run.results_dir)
                resume = latest_sweep(root, given.name if given is not None else None)
            else:
                resume = Path(args.resume)
                if not SweepPaths(resume).sweep_yaml.is_file():
                    raise SweepError(f"cannot resume {resume}: it holds no sweep.yaml")
            spec, quick, overrides = resume_options(resume, args.spec, args.quick, args.set)
        else:
            spec = load_spec(args.spec)
        plan = plan_sweep(spec, quick=quick, overrides=overrides)
        results_root = args.results_dir or Path(plan.points[0].config.run.results_dir)
        if args.dry_run:
            for note in plan.notes:
                print(f"note: {note}")
            if resume is not None:
                print(
                    f"resume {resume} as planned ({'--quick' if quick else 'without --quick'}"
                    + (f", --set {' '.join(overrides)}" if overrides else "")
                    + ")"
                )
            known = _previous_folders(SweepPaths(resume)) if resume is not None else {}
            skip = 0
            for run in plan.runs:
                knobs = ", ".join(f"{k}={v!r}" for k, v in run.point.knobs.items())
                found = _finished_folder(resume, run.label, known) if resume is not None else None
                if found is not None:
                    skip += 1
                    print(f"{run.label}: skip, finished ok in {found[0].name}")
                else:
                    print(f"{run.label}: {'run, ' if resume is not None else ''}{knobs}")
            print(
                f"{len(plan.runs)} runs ({len(plan.points)} points x {plan.repetitions} repetitions)"
                + (f": {skip} would be skipped, {len(plan.runs) - skip} run" if resume else "")
            )
            return 0
        result = run_sweep(
            spec,
            results_root,
            quick=quick,
            overrides=overrides,
            resume=resume,
            progress=not args.no_progress,
            report=not args.no_report,
        )
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are in combined.csv; continue with --resume latest",
            file=sys.stderr,
        )
        return 130
    ok = len(result.rows) - result.failed
    for line in result_table(result.rows):
        print(line)
    print(
        f"sweep {spec.name}: {ok}/{len(result.rows)} runs ok ({result.ran} run, {result.skipped} resumed)"
    )
    print(f"folder: {result.folder}")
    if not args.no_report:
        print(f"report: {SweepPaths(result.folder).report_html}")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
