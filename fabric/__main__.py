"""``python -m fabric <command>``: one entry point, each command in its own module.

Each command module exposes ``main(argv: list[str]) -> int`` and is imported only
when asked for, so a heavy import (pandas, matplotlib) never slows the others.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("fabric.harness.cli", "run an experiment: start replicas and clients, report, audit"),
    "config": ("fabric.harness.config", "load, validate and print the resolved config"),
    "sim": ("fabric.sim.cli", "run a protocol in the deterministic simulator over many seeds"),
    "sweep": ("fabric.harness.sweep", "run a grid of experiments from a sweep YAML"),
    "fuzz": (
        "fabric.harness.fuzz",
        "run a cluster while hostile frames flood one replica; check every frame is counted",
    ),
    "network": (
        "fabric.harness.network",
        "which network.emulation modes this machine can run; --cleanup stale namespaces",
    ),
    "report": (
        "fabric.analysis.report",
        "redraw tables, plots and report.html from a results folder",
    ),
    "replica": ("fabric.runtime.replica", "one replica process (started by the runner)"),
    "client": ("fabric.runtime.client", "one client process (started by the runner)"),
}


def usage() -> str:
    lines = ["usage: python -m fabric <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n'python -m fabric <command> --help' for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
