"""Zyzzyva is unsafe, and the simulator shows it: the counter-example of Abraham, Gueta,
Malkhi, Alvisi, Kotla, Martin, "Revisiting Fast Practical Byzantine Fault Tolerance" (2017,
§3 "Zyzzyva"), replayed as the ``stale_cc`` schedule (fabric/sim/faults.py). This test
EXPECTS the safety violation; it fails the day the simulator stops finding it.

The story of seed 2 (n = 4, f = 1, r0 Byzantine):
- view 0: r0 orders c5's request ts=1 at seq 1 for r1, r2 (not r3): 2f+1 speculative
  replies, a commit certificate; c5's COMMIT reaches only r0. Nothing else r0 orders gets
  through; the replicas suspect it.
- view 0 -> 1: r1's NEW-VIEW holds r1's, r3's and r0's VIEW-CHANGE, and r0 lies ("I ordered
  nothing"): ts=1 is in one of three, under f+1, so view 1 drops it. r1 orders ts=2 at
  seq 1 and every replica executes it: c5 accepts ts=2 at seq 1 on the fast path (3f+1
  matching replies).
- view 1 -> 2: r1's ORDER-REQs from seq 3 are lost, the replicas suspect it; r2's NEW-VIEW
  holds r0's VIEW-CHANGE, honest now: its certificate of view 0 for seq 1 is the highest
  one, so the published rule puts ts=1 back at seq 1. r2 rolls back the accepted ts=2:
  the simulator stops with ``rollback_accepted``.
"""

from __future__ import annotations

from fabric.sim.simulator import Simulator, run_seed
from protocols.common import Batch
from protocols.zyzzyva import Zyzzyva
from protocols.zyzzyva.messages import ViewChange
from protocols.zyzzyva.view_change import new_view_history

SEED = 2


def test_the_simulator_finds_the_known_safety_violation() -> None:
    r = run_seed("zyzzyva", 4, SEED, "stale_cc")
    assert r.outcome == "violation", r.report()
    assert r.violation is not None and r.violation.kind == "rollback_accepted"
    assert "rolled back seq 1, whose result client 5 accepted for timestamp 2" in r.violation.detail
    assert (
        r.replay
        == "python -m fabric sim --protocol zyzzyva --replicas 4 --seed 2 --faults stale_cc"
    )
    assert r.counters["max_view"] == 2
    assert r.counters["byzantine_amnesia"] >= 1  # the liar's first VIEW-CHANGE


def test_it_is_the_history_rule_a_view_aware_rule_survives_the_schedule() -> None:
    """Control: the same schedule and seed with a certificate that loses to a batch held
    in a later view at its seq (the fix's idea, Abraham et al. 2018 "Velma") is safe, so
    the violation above is the published rule's, not the schedule's or the checker's."""

    class ViewAwareZyzzyva(Zyzzyva):
        name = "zyzzyva-view-aware"

        def _new_view_history(self, vcs: tuple[ViewChange, ...]) -> tuple[int, list[Batch]]:
            later = {(o.seq, o.view) for vc in vcs for o in vc.history}
            kept = []
            for vc in vcs:
                cc = vc.cc
                if cc is not None and any(s == cc.seq and v > cc.view for s, v in later):
                    vc = ViewChange(
                        vc.new_view,
                        vc.replica,
                        vc.stable_seq,
                        vc.stable_proof,
                        None,
                        None,
                        vc.history,
                        vc.signature,
                    )
                kept.append(vc)
            return new_view_history(tuple(kept), self.f)

    r = Simulator(ViewAwareZyzzyva, 4, SEED, "stale_cc").run()
    assert r.outcome != "violation", r.report()


def test_stale_cc_seeds_that_violate_all_lose_an_accepted_result() -> None:
    """Over 20 seeds the schedule breaks Zyzzyva in some and never makes it raise or
    diverge any other way."""
    results = [run_seed("zyzzyva", 4, s, "stale_cc") for s in range(20)]
    found = {r.violation.kind for r in results if r.outcome == "violation" and r.violation}
    assert found == {"rollback_accepted"}
