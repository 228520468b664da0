"""Start-up and shut-down shared by the two child processes the runner starts: a replica
(fabric.runtime.replica) and a client (fabric.runtime.client).

Both take the same command line (``--config`` the run's resolved YAML, ``--id``, ``--run-dir``,
``--ignore-stdin``; a replica also ``--restart``), refuse a bad config or an address in use with one line and exit 2,
stop on SIGTERM/SIGINT and on the runner's stop line (``ChildControl``), write their stats
as JSON atomically, and leave with ``os._exit`` when a thread did not stop (a stuck thread
may hold a socket, and interpreter teardown would wait for it).

Must not live here: what a replica or a client does while it runs (their own modules).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parse_args(
    prog: str, description: str, id_help: str, argv: list[str] | None, restart: bool = False
) -> argparse.Namespace:
    """The child command line: --config, --id, --run-dir, --ignore-stdin (and, with
    ``restart``, the replica's --restart)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="the resolved config of the run (YAML)")
    parser.add_argument("--id", type=int, required=True, help=id_help)
    parser.add_argument("--run-dir", required=True, help="the run's results folder")
    parser.add_argument(
        "--slot",
        type=int,
        default=None,
        help="this node's index among the nodes on its machine (run.cpu_affinity picks its "
        "CPU by it; default: --id)",
    )
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="start at once and ignore stdin (started by hand; stop it with SIGTERM)",
    )
    if restart:
        parser.add_argument(
            "--restart",
            action="store_true",
            help="started again after a kill (failure kind restart): reload the durable "
            "state in the run folder and rejoin",
        )
    return parser.parse_args(argv)


def build(
    what: str, args: argparse.Namespace, make: Callable[[Any, int], T]
) -> tuple[Any, T] | None:
    """Load the run's config and build the process object with ``make(cfg, id)``; on a
    config error, a bad value or a socket that cannot bind, say so in one line and return
    None (the process then exits 2)."""
    import zmq

    from fabric.analysis.metrics import mark_startup_done
    from fabric.harness.config import ConfigError, load_config
    from fabric.runtime import sched

    try:
        cfg = load_config(args.config)
        sched.apply(cfg.run.scheduler)  # before any thread starts: they inherit it
        if sched.pinning(cfg.run.cpu_affinity, cfg.execution.threads):
            sched.pin(args.id if args.slot is None else args.slot)
        built = make(cfg, args.id)
        mark_startup_done()  # what came before is start-up, not per-transaction work
        return cfg, built
    except (ConfigError, ValueError, OSError, zmq.ZMQError) as exc:
        print(f"{what} {args.id}: cannot start: {exc}", file=sys.stderr)
        return None


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the main loop then shuts the process down)."""

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def jsonable(value: Any) -> Any:
    """``value`` with bytes as hex, tuples as lists, keys as strings, the unknown as repr."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def leave(what: str, code: int, stuck: list[str], context_closed: bool) -> int:
    """The exit code; when a thread is stuck or the ZeroMQ context did not close, exit at
    once instead (interpreter teardown would wait for the stuck thread's socket)."""
    if stuck or not context_closed:
        print(f"{what}: threads did not stop: {stuck}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code or 1)
    return code
