"""RCC round assembly and checkpoint merging (protocols/rcc/rounds.py), without PBFT.

Gupta, Hellings, Sadoghi (ICDE 2021) §III: every instance decides one batch per round; a
round is executed once every instance decided it, in a deterministic order that no primary
can predict when it picks its batch; a stable checkpoint covers a round of every instance.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.base import Deliver, StableCheckpoint
from protocols.common import NULL_BATCH, Batch, Request, make_batch
from protocols.rcc import (
    RoundAssembler,
    RoundOrderError,
    RoundOverflow,
    StableMerger,
    global_seq,
    round_of,
    round_order,
)


def _batch(instance: int, round_: int, m: int, client_base: int = 100) -> Batch:
    """A batch of one request by a client that belongs to ``instance`` (client % m == instance)."""
    client = client_base * m + instance
    return make_batch((Request(client, round_, b"i%d-r%d" % (instance, round_), b""),))


def _feed(asm: RoundAssembler, events: list[tuple[int, int]], m: int) -> list[Deliver]:
    out: list[Deliver] = []
    for instance, round_ in events:
        out += asm.add(instance, round_, 0, _batch(instance, round_, m))
    return out


def _interleaving(m: int, rounds: int, rng: random.Random) -> list[tuple[int, int]]:
    """Every instance decides rounds 1..rounds in order; instances interleave at random."""
    nxt = [1] * m
    events = []
    while any(r <= rounds for r in nxt):
        i = rng.choice([i for i in range(m) if nxt[i] <= rounds])
        events.append((i, nxt[i]))
        nxt[i] += 1
    return events


def test_global_seq_and_round_of_are_inverse() -> None:
    for m in (1, 3, 4, 7):
        seqs = [global_seq(r, p, m) for r in range(1, 6) for p in range(m)]
        assert seqs == list(range(1, 5 * m + 1))  # rounds tile the global sequence, no gaps
        assert [round_of(s, m) for s in seqs] == [(r, p) for r in range(1, 6) for p in range(m)]


def test_a_round_is_held_until_every_instance_decided_it() -> None:
    """§III: round r is executed only after all m instances decided their round-r batch."""
    m = 4
    asm = RoundAssembler(m, permute=False)
    assert asm.add(0, 1, 0, _batch(0, 1, m)) == []
    assert asm.add(0, 2, 0, _batch(0, 2, m)) == []  # instance 0 runs ahead
    assert asm.add(2, 1, 0, _batch(2, 1, m)) == []
    assert asm.add(1, 1, 0, _batch(1, 1, m)) == []
    assert asm.frontier == 2 and asm.pending_rounds == 2
    out = asm.add(3, 1, 5, _batch(3, 1, m))
    assert [d.seq for d in out] == [1, 2, 3, 4]
    assert [d.batch for d in out] == [_batch(i, 1, m) for i in range(m)]  # fixed order 0..m-1
    assert [d.view for d in out] == [0, 0, 0, 5]  # each batch keeps its instance's view
    assert asm.next_round == 2 and asm.rounds_delivered == 1


def test_completing_an_old_round_releases_every_round_ready_behind_it() -> None:
    m = 3
    asm = RoundAssembler(m, permute=True)
    out = _feed(asm, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2)], m)
    assert [d.seq for d in out] == list(range(1, 7))  # rounds 1 and 2 at once
    out = _feed(asm, [(2, 3)], m)
    assert [d.seq for d in out] == [7, 8, 9]


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 7), rounds=st.integers(1, 8), seed=st.integers(0, 2**32))
def test_every_batch_is_delivered_once_in_gapless_global_order(
    m: int, rounds: int, seed: int
) -> None:
    """Any interleaving of the instances' decisions yields seqs 1..rounds*m, each batch once,
    and the same Deliver list (order is a function of the decisions, not of arrival)."""
    a = RoundAssembler(m, permute=True)
    b = RoundAssembler(m, permute=True)
    rng = random.Random(seed)
    out_a = _feed(a, _interleaving(m, rounds, rng), m)
    out_b = _feed(b, _interleaving(m, rounds, rng), m)
    assert [d.seq for d in out_a] == list(range(1, rounds * m + 1))
    assert out_a == out_b
    digests = [d.batch.digest for d in out_a]
    expected = {_batch(i, r, m).digest for i in range(m) for r in range(1, rounds + 1)}
    assert len(digests) == len(set(digests)) and set(digests) == expected
    for r in range(1, rounds + 1):  # a round's batches stay within the round's m seqs
        in_round = {d.batch.digest for d in out_a[(r - 1) * m : r * m]}
        assert in_round == {_batch(i, r, m).digest for i in range(m)}


def test_round_order_is_a_deterministic_permutation_that_varies() -> None:
    """The order is a permutation of the instances, the same on every replica, and depends on
    the batches of the round and of the round before (so it is not fixed per round number)."""
    m = 7
    orders = set()
    for r in range(1, 40):
        prev = b"".join(_batch(i, r - 1, m).digest for i in range(m)) if r > 1 else b""
        cur = b"".join(_batch(i, r, m).digest for i in range(m))
        order = round_order(r, prev, cur, m)
        assert sorted(order) == list(range(m))
        assert order == round_order(r, prev, cur, m)
        orders.add(tuple(order))
    assert len(orders) > 30  # 39 rounds, 5040 permutations: nearly all distinct
    prev = b"p" * 32 * m
    cur = b"c" * 32 * m
    other_cur = b"d" * 32 * m
    other_prev = b"q" * 32 * m
    base = round_order(5, prev, cur, m)
    assert round_order(5, prev, other_cur, m) != base
    assert round_order(5, other_prev, cur, m) != base


def test_the_assembler_uses_the_round_order_when_permuting() -> None:
    m = 4
    asm = RoundAssembler(m, permute=True)
    out = _feed(asm, [(i, r) for r in (1, 2) for i in range(m)], m)
    d1 = b"".join(_batch(i, 1, m).digest for i in range(m))
    d2 = b"".join(_batch(i, 2, m).digest for i in range(m))
    want = [_batch(i, 1, m) for i in round_order(1, b"", d1, m)]
    want += [_batch(i, 2, m) for i in round_order(2, d1, d2, m)]
    assert [d.batch for d in out] == want
    fixed = _feed(RoundAssembler(m, permute=False), [(i, 1) for i in range(m)], m)
    assert [d.batch for d in fixed] == [_batch(i, 1, m) for i in range(m)]


def test_the_order_chain_restarts_after_a_checkpoint_round() -> None:
    """Round r+1 after checkpoint round r is seeded by its own digests only, so a replica
    that installed the state after round r orders it as one that assembled round r."""
    m, period = 4, 2
    asm = RoundAssembler(m, permute=True, chain_period=period)
    out = _feed(asm, [(i, r) for r in (1, 2, 3) for i in range(m)], m)
    d = {r: b"".join(_batch(i, r, m).digest for i in range(m)) for r in (1, 2, 3)}
    assert [x.batch for x in out[m : 2 * m]] == [
        _batch(i, 2, m) for i in round_order(2, d[1], d[2], m)
    ]
    assert [x.batch for x in out[2 * m :]] == [
        _batch(i, 3, m) for i in round_order(3, b"", d[3], m)
    ]
    # installed after round 2: it never saw rounds 1-2, yet round 3 is the same
    fresh = RoundAssembler(m, permute=True, chain_period=period)
    assert fresh.install(2) == []
    late = _feed(fresh, [(i, 3) for i in range(m)], m)
    assert late == out[2 * m :]
    assert [x.seq for x in late] == [global_seq(3, p, m) for p in range(m)]


def test_install_drops_rounds_it_covers_and_releases_the_ones_already_complete() -> None:
    m = 3
    asm = RoundAssembler(m, permute=False, chain_period=2)
    _feed(asm, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)], m)  # instance 2 lags
    assert asm.pending_rounds == 3
    # the state after round 2 arrives: round 3 only waits for instance 2 now
    assert asm.install(2) == []
    assert asm.next_round == 3 and asm.pending_rounds == 1
    assert _feed(asm, [(2, 1), (2, 2)], m) == []  # an instance not yet installed: stale
    assert asm.stale_rounds == 2
    done = _feed(asm, [(2, 3)], m)
    assert [x.seq for x in done] == [7, 8, 9]
    assert asm.install(2) == [] and asm.next_round == 4  # an older install changes nothing
    with pytest.raises(RoundOrderError):
        asm.install(5)  # not a checkpoint round


def test_null_batches_are_delivered_in_their_slot() -> None:
    """A no-op keeps its round slot (the global sequence has no gaps) and is counted."""
    m = 3
    asm = RoundAssembler(m, permute=False)
    out = asm.add(0, 1, 0, _batch(0, 1, m))
    out += asm.add(1, 1, 0, NULL_BATCH)
    out += asm.add(2, 1, 0, NULL_BATCH)
    assert [d.batch for d in out] == [_batch(0, 1, m), NULL_BATCH, NULL_BATCH]
    assert asm.null_batches == 2


def test_requests_of_another_instances_clients_are_dropped_at_assembly() -> None:
    """Client assignment (§III-C): only instance c % m may order client c's requests, so a
    primary that copies another instance's request cannot get it executed twice."""
    m = 4
    own = Request(8, 1, b"own", b"")  # 8 % 4 == 0
    foreign = Request(9, 1, b"foreign", b"")  # belongs to instance 1
    asm = RoundAssembler(m, permute=False)
    asm.add(0, 1, 0, make_batch((own, foreign)))
    asm.add(1, 1, 0, make_batch((foreign,)))
    asm.add(2, 1, 0, make_batch((foreign,)))  # all foreign: becomes the null batch
    out = asm.add(3, 1, 0, NULL_BATCH)
    assert [d.batch for d in out] == [
        make_batch((own,)),
        make_batch((foreign,)),
        NULL_BATCH,
        NULL_BATCH,
    ]
    assert asm.foreign_requests == 2
    single = RoundAssembler(1)
    assert single.add(0, 1, 0, make_batch((foreign,)))[0].batch == make_batch((foreign,))


def test_out_of_order_decisions_and_overflow_are_broken_invariants() -> None:
    asm = RoundAssembler(2, permute=False, max_pending_rounds=3)
    with pytest.raises(RoundOrderError):
        asm.add(0, 2, 0, NULL_BATCH)  # round 1 first
    asm.add(0, 1, 0, NULL_BATCH)
    with pytest.raises(RoundOrderError):
        asm.add(0, 1, 0, NULL_BATCH)  # twice
    with pytest.raises(RoundOrderError):
        asm.add(2, 1, 0, NULL_BATCH)  # no such instance
    asm.add(0, 2, 0, NULL_BATCH)
    asm.add(0, 3, 0, NULL_BATCH)
    with pytest.raises(RoundOverflow):
        asm.add(0, 4, 0, NULL_BATCH)  # a fourth undelivered round
    assert issubclass(RoundOverflow, AssertionError)  # the runtime stops loudly on it
    with pytest.raises(ValueError):
        RoundAssembler(0)


def test_stable_checkpoint_needs_every_instance() -> None:
    """A round is globally stable once every instance's PBFT is stable at it; announced at the
    round's last global seq, with the state digest after the round."""
    m = 3
    sm = StableMerger(m)
    assert sm.add(0, 5, b"d5") is None
    assert sm.add(1, 10, b"d10") is None
    assert sm.add(1, 10, b"d10") is None  # repeat
    # stable at 10 covers 5: once the last instance is stable, the lowest round is announced
    assert sm.add(2, 10, b"d10") == StableCheckpoint(5 * m, b"d5")
    assert sm.add(0, 10, b"d10") == StableCheckpoint(10 * m, b"d10")
    assert sm.add(0, 15, b"d15") is None
    assert sm.add(1, 15, b"d15") is None
    assert sm.add(2, 20, b"d20") == StableCheckpoint(15 * m, b"d15")
    assert sm.add(1, 20, b"d20") is None
    assert sm.add(0, 20, b"d20") == StableCheckpoint(20 * m, b"d20")
    assert sm.announced == 20


def test_stable_checkpoint_takes_the_lowest_instance_and_its_digest() -> None:
    m = 2
    sm = StableMerger(m)
    assert sm.add(0, 20, b"d20") is None
    assert sm.add(1, 10, b"d10") == StableCheckpoint(10 * m, b"d10")
    assert sm.add(1, 20, b"other") == StableCheckpoint(20 * m, b"d20")
    assert sm.digest_mismatches == 1  # cannot happen with honest replicas; counted
    assert sm.add(5, 30, b"x") is None  # no such instance
    assert StableMerger(1).add(0, 5, b"d") == StableCheckpoint(5, b"d")
