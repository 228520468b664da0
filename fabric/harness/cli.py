"""``python -m fabric run`` (what run-cluster.sh calls): one experiment, or ``--sweep FILE``.

The run command's options are the runner's (``fabric.harness.runner.parser``); this module
only decides where they go: to the runner for one run, or, with ``--sweep``, translated to
the sweep command (fabric.harness.sweep). It is the one module that imports both, so the
runner and the sweep never import each other (the sweep calls ``run_experiment``).

Must not live here: running anything (fabric.harness.runner), sweep logic (fabric.harness.sweep).
"""

from __future__ import annotations

import argparse
import sys

from fabric.harness import runner


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = runner.parser()
    args, rest = parser.parse_known_args(argv)
    if args.sweep:
        return delegate_sweep(parser, args, rest)
    return runner.run_from_args(parser, args, rest)


def delegate_sweep(
    parser: argparse.ArgumentParser, args: argparse.Namespace, rest: list[str]
) -> int:
    """``--sweep FILE``: hand over to fabric.harness.sweep, translating this command's options."""
    from fabric.harness import sweep
    from fabric.harness.config import ConfigError, load_config

    if args.config:
        parser.error("--config does not apply to --sweep: the sweep YAML names its base config")
    forwarded = [args.sweep, *rest]
    try:
        sets = [*(args.set or []), *runner.overrides(args, load_config())]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for item in sets:
        forwarded += ["--set", item]
    if args.results_dir:
        forwarded += ["--results-dir", args.results_dir]
    if args.quiet:
        forwarded.append("--no-progress")
    if args.label:
        parser.error("--label does not apply to --sweep: the sweep YAML names its label")
    return int(sweep.main(forwarded) or 0)
