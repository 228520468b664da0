"""View states as one explicit transition table per protocol, and the one step that uses it.

Each protocol names its view states and the events that move between them in a dict
``(state, event) -> next state`` small enough to read on one screen (protocols/pbft/states.py,
protocols/poe/states.py). The replica holds its state in one field and changes it only
through ``step``, which looks the transition up and refuses one the table does not list
(an AssertionError naming state and event: a bug, never input from the network, since
handlers check their preconditions before they move).

Must not live here: any protocol's states or events, or what a transition does (the
handlers that call ``step`` do that), IO.
"""

from __future__ import annotations

from collections.abc import Mapping

Transitions = Mapping[tuple[str, str], str]


def step(table: Transitions, state: str, event: str) -> str:
    """The state ``event`` moves ``state`` to; AssertionError if the table has no such move."""
    nxt = table.get((state, event))
    if nxt is None:
        raise AssertionError(f"illegal view-state transition: {event!r} in state {state!r}")
    return nxt


def check_table(table: Transitions, states: frozenset[str], start: str) -> None:
    """Every state named in ``table`` is declared, and every declared state is reachable
    from ``start`` (ValueError otherwise): run once at import by each states module."""
    named = {s for s, _ in table} | set(table.values())
    if not named <= states or start not in states:
        raise ValueError(f"undeclared view states: {sorted(named - states)}")
    seen, todo = {start}, [start]
    while todo:
        cur = todo.pop()
        for (s, _), nxt in table.items():
            if s == cur and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    if seen != states:
        raise ValueError(f"unreachable view states: {sorted(states - seen)}")


__all__ = ["Transitions", "check_table", "step"]
