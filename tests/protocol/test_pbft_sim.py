"""PBFT in the deterministic simulator (fabric/sim): safety and liveness under every fault mix,
and the simulator's checkers catching a PBFT whose quorums are broken on purpose.

The big sweeps are run by hand (figures in the PBFT report), e.g.
    python -m fabric sim --protocol pbft --seeds 3000 --faults all
"""

from __future__ import annotations

from typing import Any

import pytest

from fabric.sim import MIXES, run_many
from fabric.sim.simulator import SimOptions
from protocols.base import ProtocolConfig, Verifier
from protocols.pbft import Pbft

#: after the clients are done, run this long, then demand every honest replica caught up
SETTLE = SimOptions(settle_ticks=2000)


def _failures(summary: Any) -> str:
    return "\n".join(r.report() for r in summary.failures)


@pytest.mark.parametrize(("n", "seeds"), [(4, 70), (7, 21)])
def test_pbft_is_safe_and_live_under_every_fault_mix(n: int, seeds: int) -> None:
    """Castro & Liskov §4 end to end: drops, duplicates, reordering, partitions, crashes and
    up to f Byzantine replicas; honest ledgers agree, every request is answered after healing,
    and EVERY honest replica that did not crash reaches the longest final prefix (settle: a
    replica cut off by a partition or a lossy link catches up even once the cluster is idle,
    by its idle probe, protocols/pbft/checkpoints.py)."""
    summary = run_many("pbft", n, range(seeds), MIXES, options=SETTLE, keep_failures=5)
    assert summary.ok, _failures(summary)
    assert set(summary.by_mix) == set(MIXES)
    assert summary.counters["view_changes"] > 0  # the runs did exercise view changes


class WeakQuorumPbft(Pbft):
    """PBFT with f-sized prepare and f+1-sized commit quorums: unsafe by design."""

    def __init__(self, config: ProtocolConfig, verifier: Verifier, *, instance: int = 0) -> None:
        super().__init__(config, verifier, instance=instance)
        self.prepare_quorum = self.f
        self.commit_quorum = self.f + 1


def test_simulator_catches_pbft_with_broken_quorums() -> None:
    """§4.2 quorum intersection is what makes PBFT safe: with prepare quorum f an equivocating
    primary gets two batches committed at one seq, and the simulator's agreement check says so.
    The same seeds with the real quorums stay safe."""
    seeds = range(60)
    broken = run_many(WeakQuorumPbft, 4, seeds, "byzantine", stop_after_failures=1)
    assert broken.violations >= 1, "an unsafe PBFT went unnoticed"
    assert broken.failures[0].violation is not None
    assert broken.failures[0].violation.kind == "agreement"
    failing_seed = broken.failures[0].seed
    real = run_many("pbft", 4, range(failing_seed + 1), "byzantine")
    assert real.ok, _failures(real)
