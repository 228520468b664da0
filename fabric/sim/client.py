"""A simulated client: bounded requests, a few in flight, accept on a matching reply quorum.

The simulator drives it (submits, timeouts, replies) and owns its timers and randomness.
A request is accepted when ``quorum`` distinct replicas sent replies that match on
(seq, result) for its (client, timestamp); speculative replies count only when the
protocol says its clients accept them (PoE), final replies always count. A replica's
later reply replaces its earlier one (it may have rolled back and re-executed).

Must not live here: the network, timers, retries policy (simulator.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from protocols.common import Reply, Request


@dataclass(slots=True)
class Outstanding:
    request: Request
    submitted: float
    deadline: float  # virtual tick by which liveness demands acceptance
    retries: int = 0
    timer_gen: int = 0
    replies: dict[int, tuple[int, bytes, int]] = field(
        default_factory=dict
    )  # replica: seq, result, view


@dataclass(frozen=True, slots=True)
class Accepted:
    client: int
    timestamp: int
    seq: int
    result: bytes
    submitted: float
    accepted: float
    retries: int


class SimClient:
    """One client's state: ``total`` requests, at most ``in_flight`` outstanding."""

    def __init__(
        self, client_id: int, total: int, in_flight: int, quorum: int, speculative_ok: bool
    ) -> None:
        if total < 0 or in_flight < 1 or quorum < 1:
            raise ValueError("client needs total >= 0, in_flight >= 1, quorum >= 1")
        self.id = client_id
        self.total = total
        self.in_flight = in_flight
        self.quorum = quorum
        self.speculative_ok = speculative_ok
        self.view = 0
        self.issued = 0
        self.scheduled = 0  # submit events scheduled but not yet run
        self.outstanding: dict[int, Outstanding] = {}
        self.accepted: list[Accepted] = []
        self.ignored: Counter[str] = Counter()

    @property
    def done(self) -> bool:
        return self.issued >= self.total and not self.outstanding

    def can_submit(self) -> bool:
        return self.issued < self.total and len(self.outstanding) < self.in_flight

    def next_timestamp(self) -> int:
        return self.issued + 1

    def submit(self, request: Request, now: float, deadline: float) -> Outstanding:
        if not self.can_submit():
            raise RuntimeError(f"client {self.id}: no room to submit")
        self.issued += 1
        pending = Outstanding(request=request, submitted=now, deadline=deadline)
        self.outstanding[request.timestamp] = pending
        return pending

    def on_reply(self, sender: int, reply: Reply, now: float) -> Accepted | None:
        """Count ``reply`` from authenticated ``sender``; the acceptance it completes, if any."""
        if reply.replica != sender or reply.client_id != self.id:
            self.ignored["misaddressed"] += 1
            return None
        pending = self.outstanding.get(reply.timestamp)
        if pending is None:
            self.ignored["not_outstanding"] += 1
            return None
        if reply.speculative and not self.speculative_ok:
            self.ignored["speculative"] += 1
            return None
        pending.replies[sender] = (reply.seq, reply.result, reply.view)
        key = (reply.seq, reply.result)
        matching = [v for s, r, v in pending.replies.values() if (s, r) == key]
        if len(matching) < self.quorum:
            return None
        del self.outstanding[reply.timestamp]
        # at least one of the matching repliers is honest and was in at least the lowest view
        self.view = max(self.view, min(matching))
        accepted = Accepted(
            client=self.id,
            timestamp=reply.timestamp,
            seq=reply.seq,
            result=reply.result,
            submitted=pending.submitted,
            accepted=now,
            retries=pending.retries,
        )
        self.accepted.append(accepted)
        return accepted
