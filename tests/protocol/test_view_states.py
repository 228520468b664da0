"""The view states as one transition table per protocol (protocols/view_states.py): the table
is what the replica obeys (``_move`` refuses a move it does not list), and a view change walks
the states the table names."""

from __future__ import annotations

import pytest

from protocols.pbft import states as pbft_states
from protocols.view_states import check_table, step
from tests.protocol.scenario import Cluster


def test_step_follows_the_table_and_refuses_anything_else() -> None:
    t = pbft_states.TRANSITIONS
    assert step(t, pbft_states.NORMAL, pbft_states.START_VIEW_CHANGE) == pbft_states.VIEW_CHANGE
    with pytest.raises(AssertionError, match="'delivered' in state 'view_change'"):
        step(t, pbft_states.VIEW_CHANGE, pbft_states.DELIVERED)


def test_check_table_finds_undeclared_and_unreachable_states() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        check_table({("a", "e"): "b"}, frozenset({"a"}), "a")
    with pytest.raises(ValueError, match="unreachable"):
        check_table({("a", "e"): "a", ("c", "e"): "a"}, frozenset({"a", "c"}), "a")


def test_pbft_refuses_an_illegal_move() -> None:
    r = Cluster(4, view_change_ticks=10).replicas[1]
    assert r.view_state == pbft_states.NORMAL
    with pytest.raises(AssertionError):
        r._move(pbft_states.DELIVERED)  # nothing to prove in a view we did not enter by NEW-VIEW
    assert r.view_state == pbft_states.NORMAL


def test_pbft_view_change_walks_the_table() -> None:
    """NORMAL -> VIEW_CHANGE (timeout) -> NEW_VIEW_UNPROVEN (NEW-VIEW) -> NORMAL (a delivery
    in the new view, which also resets the timeout doubling)."""
    c = Cluster(4, view_change_ticks=10)
    c.crash(0)
    req = c.batch("b1").requests[0]
    for r in range(c.n):
        c.client_request(r, req)
    c.run()
    walked: dict[int, list[str]] = {r: [c.replicas[r].view_state] for r in (1, 2, 3)}

    def note() -> None:
        for r in (1, 2, 3):
            if walked[r][-1] != c.replicas[r].view_state:
                walked[r].append(c.replicas[r].view_state)

    for r in (1, 2, 3):
        assert c.fire(r, "request")
        note()
    while c.step():
        note()
    normal, vc, unproven = (
        pbft_states.NORMAL,
        pbft_states.VIEW_CHANGE,
        pbft_states.NEW_VIEW_UNPROVEN,
    )
    assert walked == {r: [normal, vc, unproven, normal] for r in (1, 2, 3)}
    assert all(c.replicas[r].view == 1 and c.replicas[r].backoff_exp == 0 for r in (1, 2, 3))
    assert all(c.ledger(r) == [(1, "b1")] for r in (1, 2, 3))
