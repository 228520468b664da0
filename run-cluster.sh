#!/usr/bin/env bash
# The main job: bootstrap .venv if it is missing, then run one experiment
# (python -m fabric run) and print its report. All options are the runner's:
#   ./run-cluster.sh --help
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f .venv/.installed ]; then
    echo "run-cluster: bootstrapping .venv (first run only)..." >&2
    make --no-print-directory venv >&2
fi
exec .venv/bin/python -m fabric run "$@"
