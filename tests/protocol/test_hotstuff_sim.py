"""Chained HotStuff (protocols/hotstuff) in the deterministic simulator (fabric/sim): safety on
every seed of every fault mix (drops, duplicates, reordering, partitions that heal, crashed
leaders, Byzantine senders: equivocation, conflicting votes, bad digests, silence), and
liveness after the faults end (Yin et al. PODC'19 §4.4 safety, §6 liveness after GST).
Twins runs are in test_twins.py.

Seed counts stay modest (make test); larger sweeps by hand, e.g.
    python -m fabric sim --protocol hotstuff --replicas 4 --seeds 1400 --faults all
A failure prints each seed's replay command, e.g.
    python -m fabric sim --protocol hotstuff --replicas 4 --seed 12 --faults byzantine --verbose
"""

from __future__ import annotations

from typing import Any

import pytest

from fabric.sim import MIXES, run_many


def _failures(summary: Any) -> str:
    return "\n".join(r.report() for r in summary.failures)


@pytest.mark.parametrize(("n", "seeds"), [(4, 84), (7, 21)])
def test_hotstuff_is_safe_and_live_under_every_fault_mix(n: int, seeds: int) -> None:
    """§4.4/§6 end to end: honest ledgers agree at every seq, every accepted result is in
    them, and every request is accepted once the network heals (crashed leaders stay down:
    their views time out and the QC they were to collect comes back in NEW-VIEWs)."""
    summary = run_many("hotstuff", n, range(seeds), MIXES, keep_failures=5)
    assert summary.violations == 0, _failures(summary)
    assert summary.ok, _failures(summary)
    assert set(summary.by_mix) == set(MIXES)
    assert summary.counters["view_changes"] > 0  # view timeouts were exercised
    per_batch = summary.messages_per_batch()
    print(f"\nHotStuff n={n}: {summary.runs} seeds, messages per committed seq {per_batch}")
