"""PBFT's view states (Castro & Liskov OSDI'99 §4.4, §4.5.2) as one transition table.

A replica works in its view (NORMAL), stops taking part in it to ask for the next one
(VIEW_CHANGE: it sent VIEW-CHANGE for ``view`` and waits for a valid NEW-VIEW), and, having
entered a view through a NEW-VIEW, is NEW_VIEW_UNPROVEN until it delivers a batch there:
only then did the view change succeed, so only then does the doubling of the view-change
timeout start again from the base (§4.5.2). A view change started before that (or during
another one) doubles the timeout. protocols/pbft/view_change.py moves through the table
with ``Pbft._move``; nothing else writes the state.

Must not live here: what a transition does (pbft/view_change.py, pbft/normal.py), IO.
"""

from __future__ import annotations

from protocols.view_states import Transitions, check_table

NORMAL = "normal"
VIEW_CHANGE = "view_change"
NEW_VIEW_UNPROVEN = "new_view_unproven"

#: a timer (request, progress, view change), RCC's suspicion or f+1 higher view-changes
#: (§4.5.2) make us send VIEW-CHANGE for a later view
START_VIEW_CHANGE = "start_view_change"
#: a valid NEW-VIEW (received, or built by us as the new primary) for a view >= ours
ENTER_VIEW = "enter_view"
#: a batch delivered in the view entered by NEW-VIEW
DELIVERED = "delivered"

TRANSITIONS: Transitions = {
    (NORMAL, START_VIEW_CHANGE): VIEW_CHANGE,
    (NORMAL, ENTER_VIEW): NEW_VIEW_UNPROVEN,  # peers moved on: a NEW-VIEW proves itself
    (VIEW_CHANGE, START_VIEW_CHANGE): VIEW_CHANGE,  # the next view (timeout doubles)
    (VIEW_CHANGE, ENTER_VIEW): NEW_VIEW_UNPROVEN,
    (NEW_VIEW_UNPROVEN, START_VIEW_CHANGE): VIEW_CHANGE,  # timeout doubles
    (NEW_VIEW_UNPROVEN, ENTER_VIEW): NEW_VIEW_UNPROVEN,
    (NEW_VIEW_UNPROVEN, DELIVERED): NORMAL,  # timeout back to the base
}

STATES = frozenset({NORMAL, VIEW_CHANGE, NEW_VIEW_UNPROVEN})
check_table(TRANSITIONS, STATES, NORMAL)

__all__ = [
    "DELIVERED",
    "ENTER_VIEW",
    "NEW_VIEW_UNPROVEN",
    "NORMAL",
    "START_VIEW_CHANGE",
    "STATES",
    "TRANSITIONS",
    "VIEW_CHANGE",
]
