"""The simulator itself (fabric.sim), driven by toy protocols defined here.

Toys: ``ToySequencer`` (replica 0 orders, backups deliver in sequence order: correct while
nobody lies), ``ToyCareless`` (backups deliver in arrival order: breaks agreement under
reordering), ``ToyMute`` (never delivers: breaks liveness), and small ones that break one
rule each (gap, codec, exception, rollback). Each checker must catch its toy; each fault
kind must show up in the counters; a seed must replay exactly.

Must not live here: PBFT runs (test_sim_pbft.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fabric.runtime.execute import Executor
from fabric.sim import MIXES, SimOptions, make_plan, run_many, run_seed
from fabric.sim import cli as sim_cli
from fabric.sim.faults import ByzantineMutator, FaultPlan, rewrite
from fabric.sim.ledger import SIM_RECORDS, SIM_VALUE_BYTES, LedgerError, SimExecution, sim_txns
from fabric.sim.simulator import Simulator, replay_command
from fabric.sim.verifier import FakeVerifier, SimKeys, signed_request
from protocols import registry
from protocols.base import (
    Action,
    Broadcast,
    Deliver,
    Protocol,
    Rollback,
    Send,
    SetTimer,
)
from protocols.codec import message
from protocols.common import Batch, Request, make_batch

REPO = Path(__file__).resolve().parents[2]

# --- toy protocols -------------------------------------------------------------------------


@message(190)
@dataclass(frozen=True, slots=True)
class ToyOrder:
    seq: int
    batch: Batch


@message(191)
@dataclass(frozen=True, slots=True)
class ToyAck:
    seq: int
    digest: bytes


@message(192)
@dataclass(frozen=True, slots=True)
class ToyNested:
    """Only for the rewrite test: digests at depth, in a tuple, and a batch inside a tuple."""

    acks: tuple[ToyAck, ...]
    order_digests: tuple[bytes, ...]
    orders: tuple[ToyOrder, ...]
    note: bytes


@dataclass(frozen=True, slots=True)
class NotOnTheWire:
    seq: int


class ToySequencer(Protocol):
    """Replica 0 numbers batches and broadcasts them; everyone delivers in sequence order."""

    name = "toy-sequencer"

    def __init__(self, config, verifier) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, verifier)
        self.next_seq = 1
        self.delivered = 0
        self.buffer: dict[int, Batch] = {}

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return f + 1

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return 0

    def is_proposer(self) -> bool:
        return self.id == 0

    def proposal_room(self) -> int:
        return 1000 if self.id == 0 else 0

    def propose(self, batch: Batch) -> list[Action]:
        seq = self.next_seq
        self.next_seq += 1
        self.delivered = seq
        return [Broadcast(ToyOrder(seq, batch)), Deliver(seq=seq, view=0, batch=batch)]

    def receive(self, sender: int, msg: Any) -> list[Action]:
        if not isinstance(msg, ToyOrder) or sender != 0:
            return []
        if msg.seq <= self.delivered or msg.seq in self.buffer:
            return []
        self.buffer[msg.seq] = msg.batch
        out: list[Action] = [Send(0, ToyAck(msg.seq, msg.batch.digest))]
        while self.delivered + 1 in self.buffer:
            self.delivered += 1
            out.append(Deliver(self.delivered, 0, self.buffer.pop(self.delivered)))
        return out

    def timeout(self, timer: Hashable) -> list[Action]:
        return []

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        return []


class ToyCareless(ToySequencer):
    """Backups deliver orders as they arrive, at their own next number: reordering splits them."""

    name = "toy-careless"

    def receive(self, sender: int, msg: Any) -> list[Action]:
        if not isinstance(msg, ToyOrder) or sender != 0:
            return []
        self.delivered += 1
        return [Deliver(self.delivered, 0, msg.batch)]


class ToyMute(ToySequencer):
    """Accepts everything, orders nothing."""

    name = "toy-mute"

    def propose(self, batch: Batch) -> list[Action]:
        return []


class ToyGap(ToySequencer):
    """The primary skips sequence number 1."""

    name = "toy-gap"

    def propose(self, batch: Batch) -> list[Action]:
        self.next_seq += 1
        return super().propose(batch)


class ToyUnencodable(ToySequencer):
    name = "toy-unencodable"

    def propose(self, batch: Batch) -> list[Action]:
        return [Broadcast(NotOnTheWire(1))] + super().propose(batch)


class ToyCrashing(ToySequencer):
    name = "toy-crashing"

    def receive(self, sender: int, msg: Any) -> list[Action]:
        raise RuntimeError("toy bug")


class ToyRollsBackAccepted(ToySequencer):
    """Speculative delivery everywhere, then a rollback of everything once clients accepted."""

    name = "toy-rollback"
    speculative_replies = True

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return n - f

    def propose(self, batch: Batch) -> list[Action]:
        return [
            Broadcast(ToyOrder(self.next_seq, batch)),
            *self._deliver_spec(self.next_seq, batch),
        ]

    def receive(self, sender: int, msg: Any) -> list[Action]:
        if isinstance(msg, ToyOrder) and sender == 0 and msg.seq == self.delivered + 1:
            return self._deliver_spec(msg.seq, msg.batch)
        return []

    def _deliver_spec(self, seq: int, batch: Batch) -> list[Action]:
        self.delivered = seq
        self.next_seq = seq + 1
        return [Deliver(seq, 0, batch, speculative=True), SetTimer("undo", 60)]

    def timeout(self, timer: Hashable) -> list[Action]:
        self.delivered = 0
        self.next_seq = 1
        return [Rollback(0)]


class ToyRollsBackCommitted(ToySequencer):
    name = "toy-rollback-committed"

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        return [Rollback(0)]


SMALL = SimOptions(clients=2, requests=3)


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("mix", MIXES)
def test_same_seed_same_trace(mix: str) -> None:
    a = run_seed(ToySequencer, 4, 11, mix, SMALL)
    b = run_seed(ToySequencer, 4, 11, mix, SMALL)
    assert a.trace_digest == b.trace_digest
    assert (a.steps, a.counters, a.sent_by_kind, a.plan) == (
        b.steps,
        b.counters,
        b.sent_by_kind,
        b.plan,
    )


def test_different_seeds_differ() -> None:
    digests = {run_seed(ToySequencer, 4, seed, "lossy", SMALL).trace_digest for seed in range(8)}
    assert len(digests) == 8


def test_trace_is_deterministic_across_hash_seeds() -> None:
    """Two processes with different PYTHONHASHSEED print the same trace digest."""
    digests = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fabric",
                "sim",
                "--protocol",
                "null",
                "--seed",
                "5",
                "--faults",
                "lossy",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        digests.append([line for line in out.splitlines() if line.startswith("trace digest")])
    assert digests[0] and digests[0] == digests[1]


def test_run_many_seed_replays_alone() -> None:
    mixes = ["reorder", "lossy"]
    summary = run_many(ToySequencer, 4, range(4), mixes, SMALL)
    assert summary.runs == 4
    assert set(summary.by_mix) == set(mixes)
    lone = run_seed(ToySequencer, 4, 3, "lossy", SMALL)
    again = run_many(ToySequencer, 4, [3], mixes, SMALL)
    assert again.committed == lone.committed
    assert again.sent_by_kind == Counter(lone.sent_by_kind)


# --- a correct toy passes, fault kinds happen --------------------------------------------------


@pytest.mark.parametrize("mix", ["none", "reorder"])
def test_correct_toy_passes_without_loss(mix: str) -> None:
    summary = run_many(ToySequencer, 4, range(20), mix, SMALL)
    assert summary.ok, [r.report() for r in summary.failures]
    assert summary.requests_accepted == 20 * 2 * 3
    assert summary.committed > 0


def _counters(mix: str, seeds: int = 12, protocol: type[Protocol] = ToySequencer) -> Counter[str]:
    total: Counter[str] = Counter()
    for seed in range(seeds):
        total.update(run_seed(protocol, 4, seed, mix, SMALL).counters)
    return total


def test_lossy_drops_and_duplicates() -> None:
    c = _counters("lossy")
    assert c["dropped"] > 0 and c["duplicated"] > 0 and c["client_resends"] > 0


def test_reorder_reorders() -> None:
    assert _counters("reorder")["reordered"] > 0


def test_partition_cuts_links() -> None:
    c = _counters("partition")
    assert c["partition_dropped"] > 0


def test_crash_stops_replicas() -> None:
    c = _counters("crash")
    assert c["crashes"] > 0 and c["crash_dropped"] > 0


def test_every_byzantine_behaviour_happens() -> None:
    c = _counters("byzantine", seeds=40)
    for how in ("equivocate", "conflicting_votes", "bad_digest", "silence"):
        assert c[f"byzantine_{how}"] > 0, how


def test_plans_respect_f() -> None:
    import random

    for n in (4, 7, 10):
        f = (n - 1) // 3
        for mix in MIXES:
            for seed in range(30):
                plan = make_plan(mix, random.Random(seed), n, f, 0, 400.0)
                assert len(plan.faulty()) <= f
                assert len(plan.faulty()) == len(plan.crashes) + len(plan.byzantine)
                for p in plan.partitions:
                    assert p.heal <= plan.fault_end
                    assert sorted(r for g in p.groups for r in g) == list(range(n))
                if plan.byzantine:
                    assert plan.byz_group_b
                    assert not set(plan.byz_group_b) & plan.faulty()


# --- the checkers catch broken protocols --------------------------------------------------------


def test_safety_checker_catches_divergent_delivery() -> None:
    summary = run_many(ToyCareless, 4, range(30), "reorder", SMALL)
    kinds = {r.violation.kind for r in summary.failures if r.violation}
    assert summary.violations > 0
    assert kinds <= {"agreement", "prefix"}, kinds
    failure = summary.failures[0]
    assert failure.replay.startswith(
        f"python -m fabric sim --protocol toy-careless --replicas 4 --seed {failure.seed} --faults reorder"
    )
    assert failure.violation is not None and failure.violation.step > 0


def test_safety_checker_catches_equivocating_primary() -> None:
    """A non-BFT protocol under an equivocating primary: backups in group B deliver batch B."""
    found = []
    for seed in range(200):
        result = run_seed(ToySequencer, 4, seed, "byzantine", SMALL)
        if "byzantine(r0:equivocate)" in result.plan:
            found.append(result)
        if len(found) >= 3:
            break
    assert found
    for result in found:
        assert result.outcome == "violation", result.report()
        assert result.violation is not None and result.violation.kind in ("agreement", "prefix")


def test_liveness_checker_catches_a_protocol_that_never_delivers() -> None:
    result = run_seed(ToyMute, 4, 1, "none", SMALL)
    assert result.outcome == "liveness"
    assert result.violation is not None and result.violation.kind == "liveness"
    assert result.requests_accepted == 0
    assert result.virtual_ticks >= SMALL.liveness_ticks


@pytest.mark.parametrize(
    ("toy", "kind"),
    [
        (ToyGap, "gap"),
        (ToyUnencodable, "codec"),
        (ToyCrashing, "exception"),
        (ToyRollsBackAccepted, "rollback_accepted"),
        (ToyRollsBackCommitted, "rollback_committed"),
    ],
)
def test_rule_breakers_are_caught(toy: type[Protocol], kind: str) -> None:
    result = run_seed(toy, 4, 2, "none", SMALL)
    assert result.outcome == "violation", result.report()
    assert result.violation is not None and result.violation.kind == kind, result.report()


def test_bounds_stop_a_run() -> None:
    events = run_seed(ToySequencer, 4, 1, "none", SimOptions(max_events=50))
    assert events.outcome == "bound" and events.violation is not None
    assert events.violation.kind == "max_events" and events.steps == 50
    flight = run_seed(ToySequencer, 4, 1, "none", SimOptions(max_in_flight=2))
    assert flight.outcome == "bound" and flight.violation is not None
    assert flight.violation.kind == "max_in_flight"


def test_codec_fraction_zero_skips_the_wire() -> None:
    result = run_seed(ToySequencer, 4, 1, "none", SimOptions(codec_fraction=0.0))
    assert result.ok and result.counters.get("codec_roundtrips", 0) == 0
    assert run_seed(ToyUnencodable, 4, 1, "none", SimOptions(codec_fraction=0.0)).ok


# --- parts ---------------------------------------------------------------------------------------


def test_fake_signatures_are_unforgeable_across_nodes() -> None:
    keys = SimKeys(7)
    v0, v1 = FakeVerifier(0, keys), FakeVerifier(1, keys)
    sig = v0.sign(b"payload")
    assert v1.verify(0, b"payload", sig)
    assert not v1.verify(1, b"payload", sig)
    assert not v1.verify(0, b"other", sig)
    assert not v1.verify(-1, b"payload", sig)
    req = signed_request(keys, 5, 1, b"txn")
    assert v1.verify_request(req)
    assert not v1.verify_request(Request(5, 2, req.txns, req.signature))
    assert SimKeys(8).signature(0, b"payload") != sig


def test_ledger_chains_and_rolls_back_only_speculative_entries() -> None:
    """The sim's execute stage is the runtime's Executor: same heads and results."""
    keys = SimKeys(1)
    b1 = make_batch((signed_request(keys, 4, 1, sim_txns(4, 1)),))
    b2 = make_batch((signed_request(keys, 4, 2, sim_txns(4, 2)),))
    stage = SimExecution(0, n=4)
    entry, replies = stage.deliver(Deliver(1, 0, b1))
    runtime = Executor(SIM_RECORDS, SIM_VALUE_BYTES)
    [(_, result)] = runtime.apply(1, b1)
    assert entry.head == runtime.state_digest() and entry.results == (result,)
    assert replies[0].result == result
    assert [(r.client_id, r.timestamp, r.seq) for r in replies] == [(4, 1, 1)]
    with pytest.raises(LedgerError) as gap:
        stage.deliver(Deliver(3, 0, b2))
    assert gap.value.kind == "gap"
    with pytest.raises(LedgerError) as forged:
        stage.deliver(Deliver(2, 0, Batch(b2.requests, b1.digest)))
    assert forged.value.kind == "invalid_batch"
    stage.deliver(Deliver(2, 0, b2, speculative=True))
    assert stage.cached_reply(4, 2) is not None
    assert [e.seq for e in stage.rollback(1)] == [2]
    assert stage.cached_reply(4, 2) is None and stage.last_seq == 1
    with pytest.raises(LedgerError) as committed:
        stage.rollback(0)
    assert committed.value.kind == "rollback_committed"


def test_rewrite_reaches_nested_batches_and_digests() -> None:
    keys = SimKeys(1)
    batch = make_batch((signed_request(keys, 4, 1, b"a"), signed_request(keys, 4, 2, b"b")))
    msg = ToyNested(
        acks=(ToyAck(1, b"d1"),),
        order_digests=(b"d2", b"d3"),
        orders=(ToyOrder(1, batch),),
        note=b"keep",
    )
    out = rewrite(msg, lambda b: make_batch(tuple(reversed(b.requests))), lambda d: d + b"!")
    assert out.acks[0].digest == b"d1!"
    assert out.order_digests == (b"d2!", b"d3!")
    assert out.orders[0].batch.requests == tuple(reversed(batch.requests))
    assert out.note == b"keep"
    assert rewrite(msg, lambda b: b, lambda d: d) is msg


def test_equivocation_is_consistent_per_group() -> None:
    import random

    keys = SimKeys(1)
    batch = make_batch((signed_request(keys, 4, 1, b"a"), signed_request(keys, 4, 2, b"b")))
    plan = FaultPlan("byzantine", 400.0, byzantine=((0, "equivocate"),), byz_group_b=(2, 3))
    mutator = ByzantineMutator(plan, random.Random(0))
    to_a = mutator.outgoing(0, 1, ToyOrder(1, batch))
    to_b = mutator.outgoing(0, 2, ToyOrder(1, batch))
    assert to_a.batch == batch
    assert to_b.batch != batch and to_b.batch.digest != batch.digest
    vote_b = mutator.outgoing(0, 3, ToyAck(1, batch.digest))
    assert vote_b.digest == to_b.batch.digest  # votes follow the equivocated batch
    assert mutator.outgoing(0, 1, ToyAck(1, batch.digest)).digest == batch.digest


# --- command line ----------------------------------------------------------------------------


def test_cli_summary_and_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sim_cli.main(["--protocol", "null", "--seeds", "6", "--faults", "none,lossy"]) == 0
    out = capsys.readouterr().out
    assert "runs 6  ok 6  violations 0  liveness failures 0" in out
    assert "messages per committed batch, by kind:" in out and "Reply" in out

    monkeypatch.setitem(registry._REGISTRY, ToyCareless.name, ToyCareless)
    code = sim_cli.main(["--protocol", "toy-careless", "--seeds", "10", "--faults", "reorder"])
    out = capsys.readouterr().out
    assert code == 1
    replay = next(line for line in out.splitlines() if "replay: python -m fabric sim" in line)
    argv = replay.split("python -m fabric sim ", 1)[1].split()
    assert sim_cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAILED: violation" in out and ("agreement at step" in out or "prefix at step" in out)
    again = sim_cli.main(argv + ["--verbose"])
    out = capsys.readouterr().out
    assert again == 1 and "DELIVER" in out and "FAILED: violation" in out


def test_cli_rejects_unknown_mix() -> None:
    with pytest.raises(SystemExit):
        sim_cli.main(["--protocol", "null", "--faults", "earthquake"])


def test_cli_protocol_params_reach_the_replicas_and_the_replay_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = sim_cli.parse_args(["--protocol", "poe", "--param", "poe_certificate=macs"])
    options = sim_cli._options(args, trace=False)
    assert dict(options.params) == {"poe_certificate": "macs"}
    sim = Simulator("poe", 4, 3, "none", options)
    assert sim.run().ok and all(r.macs for r in sim.replicas)
    cmd = replay_command("poe", 4, 3, "none", options)
    assert cmd.endswith("--faults none --param poe_certificate=macs")
    with pytest.raises(SystemExit):
        sim_cli.parse_args(["--param", "no-equals-sign"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
