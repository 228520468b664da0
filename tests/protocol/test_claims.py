"""protocols/claims.py: Castro & Liskov's MAC view-change rule (TOCS'02 §4.5) on its own.

n=4, f=1: quorum 3, f+1 = 2. Each test is one sequence number and the claims of the
view-change messages in hand: prepared (view, digest, batch) or None, and pre-prepared
digest -> latest view. PoE (test_poe_macs.py) and PBFT (test_pbft_view_change.py) test it
through their own messages; the simulator with signed lies covers the rest.

Must not live here: message formats, whole view changes.
"""

from __future__ import annotations

from protocols.claims import MAX_CLAIMED_PER_SEQ, choose, note_pre_prepared

A, B = b"A" * 32, b"B" * 32


def decide(prepared: list, pre_prepared: list) -> tuple[bool, object]:
    return choose(prepared, pre_prepared, quorum=3, f=1)


def test_a_committed_batch_wins_once_n_minus_f_messages_do_not_contradict_it() -> None:
    honest = [(0, A, "a"), (0, A, "a"), None]
    supports = [{A: 0}, {A: 0}, {}]
    assert decide(honest, supports) == (True, "a")


def test_a_lie_from_a_later_view_needs_f_plus_1_pre_prepare_claims() -> None:
    liar, liar_q = (5, B, "b"), {B: 5}
    # with one honest holder of A in hand, neither A (A1) nor B (A2) nor null can be chosen
    assert decide([liar, (0, A, "a"), None], [liar_q, {A: 0}, {}]) == (False, None)
    # the next honest message decides for A
    got = decide([liar, (0, A, "a"), None, (0, A, "a")], [liar_q, {A: 0}, {}, {A: 0}])
    assert got == (True, "a")
    # an honest replica that pre-prepared B in view 5 makes B legitimate (A2): B wins
    got = decide([liar, (0, A, "a"), None], [liar_q, {A: 0, B: 5}, {}])
    assert got == (True, "b")


def test_null_needs_n_minus_f_messages_without_a_prepared_claim() -> None:
    assert decide([None, None, None], [{}, {}, {}]) == (True, None)
    assert decide([(1, A, "a"), None, None], [{}, {}, {}]) == (False, None)
    assert decide([(1, A, "a"), None, None, None], [{}, {}, {}, {}]) == (True, None)


def test_the_highest_qualifying_claim_wins_deterministically() -> None:
    prepared = [(2, B, "b"), (1, A, "a"), None]
    supports = [{B: 2}, {A: 1, B: 2}, {}]
    assert decide(prepared, supports) == decide(prepared[::-1], supports[::-1]) == (True, "b")


def test_pre_prepare_claims_are_bounded_per_seq_keeping_the_latest_views() -> None:
    table: dict[int, dict[bytes, int]] = {}
    for view in range(10):
        note_pre_prepared(table, 7, bytes([view]) * 32, view)
    note_pre_prepared(table, 7, bytes([9]) * 32, 3)  # an older view never lowers a claim
    assert len(table[7]) == MAX_CLAIMED_PER_SEQ
    assert sorted(table[7].values()) == [6, 7, 8, 9]
