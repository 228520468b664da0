"""PoE's view states (Gupta et al., EDBT'21 §4 view change, with this fabric's plan lock) as
one transition table.

A replica takes part in its view (ACTIVE); leaves it for a later one (VIEW_CHANGE: it sent
VC-REQUEST for ``view``, or jumped to a later view whose NV-PROPOSE it got, and waits for
the new view's plan); accepts the NV-PROPOSE and supports its plan (NV_PENDING: waiting for
the plan to lock, n−f NV-COMMITs); enters the view (ACTIVE_UNPROVEN) and is ACTIVE again
once it executes an entry of that view: only then did the view change succeed, so only then
does the doubling of the view-change timeout start again from the base. ``Poe.mode`` is the
coarse state clients of the class read (``active`` for both ACTIVE states).
protocols/poe/view_change.py moves through the table with ``Poe._move``; nothing else writes
the state.

Must not live here: what a transition does (poe/view_change.py, poe/new_view.py,
poe/normal.py), IO.
"""

from __future__ import annotations

from protocols.view_states import Transitions, check_table

ACTIVE = "active"  # in a view, taking part in its normal case
ACTIVE_UNPROVEN = "active_unproven"  # entered by a view change, nothing executed there since
VIEW_CHANGE = "view_change"  # left the view for ``view``, waiting for its NV-PROPOSE
NV_PENDING = "nv_pending"  # accepted NV-PROPOSE for ``view``, waiting for its plan to lock

#: stop taking part in the view: our VC-REQUEST (a timer, f+1 replicas in later views, an
#: NV-CERTIFY of a later view) or a valid NV-PROPOSE for a later view (a jump)
LEAVE_VIEW = "leave_view"
#: a valid NV-PROPOSE for our view (received, relayed and backed, or built by us)
ACCEPT_NV = "accept_nv"
#: n−f NV-COMMITs for the plan we support: it is locked
ENTER_VIEW = "enter_view"
#: an entry executed in the view we entered
EXECUTED = "executed"

TRANSITIONS: Transitions = {
    (ACTIVE, LEAVE_VIEW): VIEW_CHANGE,
    (ACTIVE_UNPROVEN, LEAVE_VIEW): VIEW_CHANGE,  # timeout doubles
    (ACTIVE_UNPROVEN, EXECUTED): ACTIVE,  # timeout back to the base
    (VIEW_CHANGE, LEAVE_VIEW): VIEW_CHANGE,  # a later view still (timeout doubles)
    (VIEW_CHANGE, ACCEPT_NV): NV_PENDING,
    (NV_PENDING, LEAVE_VIEW): VIEW_CHANGE,  # timeout doubles
    (NV_PENDING, ENTER_VIEW): ACTIVE_UNPROVEN,
}

STATES = frozenset({ACTIVE, ACTIVE_UNPROVEN, VIEW_CHANGE, NV_PENDING})
check_table(TRANSITIONS, STATES, ACTIVE)

#: the state -> ``Poe.mode`` (status, tests, RCC-style observers: active / view_change /
#: nv_pending)
MODE_OF = {
    ACTIVE: ACTIVE,
    ACTIVE_UNPROVEN: ACTIVE,
    VIEW_CHANGE: VIEW_CHANGE,
    NV_PENDING: NV_PENDING,
}

__all__ = [
    "ACCEPT_NV",
    "ACTIVE",
    "ACTIVE_UNPROVEN",
    "ENTER_VIEW",
    "EXECUTED",
    "LEAVE_VIEW",
    "MODE_OF",
    "NV_PENDING",
    "STATES",
    "TRANSITIONS",
    "VIEW_CHANGE",
]
