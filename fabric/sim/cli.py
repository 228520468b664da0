"""``python -m fabric sim``: run a protocol in the deterministic simulator over many seeds.

Examples:
    python -m fabric sim --protocol pbft --replicas 4 --seeds 1000
    python -m fabric sim --protocol pbft --replicas 4 --seed 1234 --faults byzantine --verbose

Seed s runs fault mix ``faults[s % len(faults)]``, so a failing seed is replayed with
``--seed s --faults <its mix>`` (the printed replay command). Prints a summary (runs,
violations, liveness failures, wall time, committed batches, messages per committed batch
by kind) and exits 1 if any run failed, after printing each failure's replay command.

Must not live here: simulation logic (fabric.sim.simulator).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from fabric.harness.config import ConfigError, config_to_dict, load_config
from fabric.sim.faults import ALL_MIXES, MIXES
from fabric.sim.simulator import (
    DEFAULT_OPTIONS,
    SimOptions,
    SimResult,
    SimSummary,
    mix_for_seed,
    run_many,
    run_seed,
)
from protocols import registry

PROGRESS_EVERY_S = 2.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fabric sim", description=__doc__.split("\n")[0])
    p.add_argument(
        "--protocol",
        default="pbft",
        help=f"registered protocol name (default pbft): {registry.describe()}; the simulator "
        "runs unsafe ones too (that is how it shows them unsafe)",
    )
    p.add_argument("--replicas", type=int, default=4, help="replicas n >= 4 (default 4)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 (default 100)")
    which.add_argument("--seed", type=int, default=None, help="run this one seed")
    p.add_argument(
        "--faults",
        default="all",
        help=(
            f"fault mix or comma list, or 'all' ({','.join(MIXES)}); targeted schedules, "
            f"not in 'all': {','.join(ALL_MIXES[len(MIXES) :])}; seed s runs mix s %% count"
        ),
    )
    p.add_argument("--clients", type=int, default=DEFAULT_OPTIONS.clients)
    p.add_argument("--requests", type=int, default=DEFAULT_OPTIONS.requests, help="per client")
    p.add_argument("--in-flight", type=int, default=DEFAULT_OPTIONS.in_flight, help="per client")
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_OPTIONS.batch_size, help="requests per proposal"
    )
    p.add_argument(
        "--worker-threads",
        type=int,
        default=DEFAULT_OPTIONS.worker_threads,
        help="a protocol with lanes (rcc) runs its instances on this many workers, as the "
        "runtime does with replica.worker_threads (default 1)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="protocol parameter, repeatable (e.g. poe_certificate=macs); VALUE is YAML",
    )
    p.add_argument("--verbose", action="store_true", help="trace every event of one seed")
    p.add_argument("--max-failures", type=int, default=20, help="failures kept and printed")
    args = p.parse_args(argv)
    if args.replicas < 4:
        p.error("--replicas must be >= 4")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    mixes = list(MIXES) if args.faults == "all" else [m for m in args.faults.split(",") if m]
    bad = [m for m in mixes if m not in ALL_MIXES]
    if bad or not mixes:
        p.error(f"unknown fault mix {bad}; choose from {', '.join(ALL_MIXES)} or all")
    args.mixes = mixes
    offered = registry.available()
    if args.protocol not in offered:
        _refuse(f"--protocol {args.protocol}: unknown protocol; allowed: {', '.join(offered)}")
    args.params = _params(args.param)
    for name in ("clients", "requests", "in_flight", "batch_size", "worker_threads"):
        if getattr(args, name) < (0 if name == "requests" else 1):
            p.error(f"--{name.replace('_', '-')} too small")
    return args


def _refuse(message: str) -> None:
    """One line on stderr naming what is allowed (as config errors do), exit 2; no usage dump."""
    print(f"python -m fabric sim: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _params(items: list[str]) -> dict[str, Any]:
    """``--param KEY=VALUE`` items, each checked as config/default.yaml's protocol.KEY would be
    (the same keys and allowed values as the runtime); a bad one is refused in one line."""
    defaults = load_config()
    section = config_to_dict(defaults)["protocol"]
    allowed = sorted(k for k in defaults.protocol_config(0).params if k in section)
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key.startswith("protocol."):
            key = key[len("protocol.") :]
        if not sep or not key:
            _refuse(f"--param {item!r}: expected KEY=VALUE; allowed keys: {', '.join(allowed)}")
        if key not in allowed:
            _refuse(f"--param {key}: unknown protocol parameter; allowed: {', '.join(allowed)}")
        try:
            cfg = load_config(None, [f"protocol.{key}={raw}"])
        except ConfigError as exc:
            _refuse(f"--param {key}: {exc}")
        params[key] = cfg.protocol_config(0).params[key]
    return params


def _options(args: argparse.Namespace, trace: bool) -> SimOptions:
    return SimOptions(
        clients=args.clients,
        requests=args.requests,
        in_flight=args.in_flight,
        batch_size=args.batch_size,
        worker_threads=args.worker_threads,
        params=args.params,
        trace=trace,
    )


def print_summary(summary: SimSummary, mixes: list[str], out: TextIO) -> None:
    per_seed_ms = 1000 * summary.wall_s / max(1, summary.runs)
    print(f"protocol {summary.protocol}  replicas {summary.n}  mixes {','.join(mixes)}", file=out)
    print(
        f"runs {summary.runs}  ok {summary.outcomes['ok']}  violations {summary.violations}  "
        f"liveness failures {summary.liveness_failures}  bound exceeded {summary.outcomes['bound']}",
        file=out,
    )
    print(
        f"wall time {summary.wall_s:.1f} s ({per_seed_ms:.1f} ms/seed, {summary.steps} events)",
        file=out,
    )
    print(
        f"committed batches {summary.committed}  accepted requests {summary.requests_accepted}",
        file=out,
    )
    for mix in mixes:
        counts = summary.by_mix.get(mix)
        if counts:
            print(
                f"  {mix:<10} " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=out
            )
    per_batch = summary.messages_per_batch()
    if per_batch:
        print("messages per committed batch, by kind:", file=out)
        for kind, value in per_batch.items():
            print(f"  {kind:<22} {value:8.2f}", file=out)
        print(f"  {'total':<22} {sum(per_batch.values()):8.2f}", file=out)
    interesting = {k: v for k, v in summary.counters.items() if v and k != "max_view"}
    if interesting:
        print("fault and stage counters (all runs):", file=out)
        print("  " + "  ".join(f"{k}={v}" for k, v in interesting.items()), file=out)


def print_failures(failures: list[SimResult], out: TextIO) -> None:
    for result in failures:
        print(result.report(), file=out)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = sys.stdout
    if args.verbose or args.seed is not None:
        seed = args.seed if args.seed is not None else 0
        mix = mix_for_seed(seed, args.mixes)
        result = run_seed(args.protocol, args.replicas, seed, mix, _options(args, args.verbose))
        for line in result.trace:
            print(line, file=out)
        print(result.report(), file=out)
        print(f"trace digest {result.trace_digest}", file=out)
        print(f"messages sent by kind: {result.sent_by_kind}", file=out)
        print(f"counters: {result.counters}", file=out)
        print(f"wall time {result.wall_s:.3f} s", file=out)
        if not result.ok:
            print(f"FAILED: {result.outcome}\nreplay: {result.replay}", file=out)
            return 1
        return 0

    seeds = args.seeds if args.seeds is not None else 100
    last = [time.perf_counter()]

    def progress(summary: SimSummary, result: SimResult) -> None:
        if not result.ok:
            print(
                f"FAIL seed {result.seed} [{result.faults}] {result.outcome}: {result.replay}",
                file=sys.stderr,
                flush=True,
            )
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            failed = summary.runs - summary.outcomes["ok"]
            print(
                f"  {summary.runs}/{seeds} seeds, {failed} failed, {summary.wall_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    summary = run_many(
        args.protocol,
        args.replicas,
        range(seeds),
        args.mixes,
        _options(args, False),
        progress=progress,
        keep_failures=args.max_failures,
    )
    print_summary(summary, args.mixes, out)
    if not summary.ok:
        print(f"\n{summary.runs - summary.outcomes['ok']} run(s) FAILED:", file=out)
        print_failures(summary.failures, out)
        return 1
    return 0
