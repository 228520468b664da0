"""The deterministic fault simulator: any registered protocol, seeded virtual network, checkers.

Entry points: ``run_seed`` (one seed, one fault mix) and ``run_many`` (many seeds), both
returning plain results; ``python -m fabric sim`` is the command line (fabric.sim.cli).

Must not live here: real sockets, threads or wall-clock time (the runtime's business).
"""

from fabric.sim.faults import BEHAVIOURS, MIXES, FaultPlan, make_plan
from fabric.sim.simulator import (
    DEFAULT_OPTIONS,
    SimOptions,
    SimResult,
    SimSummary,
    Simulator,
    Violation,
    mix_for_seed,
    replay_command,
    run_many,
    run_seed,
)
from fabric.sim.verifier import FakeVerifier, SimKeys, signed_request

__all__ = [
    "BEHAVIOURS",
    "DEFAULT_OPTIONS",
    "MIXES",
    "FakeVerifier",
    "FaultPlan",
    "SimKeys",
    "SimOptions",
    "SimResult",
    "SimSummary",
    "Simulator",
    "Violation",
    "make_plan",
    "mix_for_seed",
    "replay_command",
    "run_many",
    "run_seed",
    "signed_request",
]
