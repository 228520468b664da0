"""The view states as one transition table per protocol (protocols/view_states.py): the table
is what the replica obeys (``_move`` refuses a move it does not list), and a view change walks
the states the table names."""

from __future__ import annotations

import pytest

from protocols.pbft import states as pbft_states
from protocols.poe import Poe
from protocols.poe import states as poe_states
from protocols.view_states import check_table, step
from tests.protocol.poe_cluster import small_cluster
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


def test_poe_refuses_an_illegal_move() -> None:
    p = small_cluster().poe[1]
    assert p.view_state == poe_states.ACTIVE and p.mode == "active"
    with pytest.raises(AssertionError):
        p._move(poe_states.ENTER_VIEW)  # no plan accepted: nothing to enter
    assert p.view_state == poe_states.ACTIVE


def test_poe_view_change_walks_the_table() -> None:
    """ACTIVE -> VIEW_CHANGE (VC-REQUEST) -> NV_PENDING (NV-PROPOSE) -> ACTIVE_UNPROVEN (n−f
    NV-COMMITs) -> ACTIVE (an entry executed in the new view); ``mode`` follows coarsely."""
    c = small_cluster()
    c.propose(0, c.batch("b1"))
    c.run()
    c.crash(0)
    for r in (1, 2, 3):
        c.client_request(r, c.batch("b2").requests[0])
    c.run()
    walked: dict[int, list[tuple[str, str]]] = {}
    for r in (1, 2, 3):  # record every move (entering the view executes in the same step)
        p = c.poe[r]
        walked[r] = [(p.view_state, p.mode)]

        def spy(event: str, p: Poe = p, log: list[tuple[str, str]] = walked[r]) -> None:
            Poe._move(p, event)
            log.append((p.view_state, p.mode))

        p._move = spy  # type: ignore[method-assign]
    for _ in range(2):  # request timers: first a catch-up probe, then VC-REQUEST
        for r in (1, 2, 3):
            assert c.fire(r, "request")
        c.run()
    s = poe_states
    assert walked == {
        r: [
            (s.ACTIVE, "active"),
            (s.VIEW_CHANGE, "view_change"),
            (s.NV_PENDING, "nv_pending"),
            (s.ACTIVE_UNPROVEN, "active"),
            (s.ACTIVE, "active"),
        ]
        for r in (1, 2, 3)
    }
    assert all(c.poe[r].view == 1 and c.poe[r].backoff_exp == 0 for r in (1, 2, 3))
