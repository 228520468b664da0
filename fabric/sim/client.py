"""A simulated client: the runtime's ``ClientCore`` plus the simulator's workload and deadlines.

Acceptance (the protocol's ``reply_rule``: quorum, matched fields, speculative replies),
the in-flight window, re-send timing and view learning are ``fabric.runtime.client.ClientCore``'s,
driven in virtual ticks (a tick stands for a second of the core's clock). What lives here
is only what the simulator adds: how many requests a client issues, the liveness deadline of
each (re-sends never give up before it: ``max_retries`` is derived from it), and the
acceptances the checkers compare against the ledgers.

Must not live here: acceptance logic of its own, the network, timers (simulator.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fabric.runtime.client import ClientCore
from fabric.runtime.client import Outstanding as CoreOutstanding
from protocols.base import ReplyRule
from protocols.common import Reply, Request


@dataclass(frozen=True, slots=True)
class Accepted:
    client: int
    timestamp: int
    seq: int
    view: int
    result: bytes
    submitted: float
    accepted: float
    retries: int


@dataclass(slots=True)
class Pending:
    request: Request
    submitted: float
    deadline: float  # virtual tick by which liveness demands acceptance


class SimClient:
    """One client: ``total`` requests, at most ``in_flight`` outstanding, ``ClientCore`` inside."""

    def __init__(
        self,
        client_id: int,
        n: int,
        f: int,
        rule: ReplyRule,
        total: int,
        in_flight: int,
        request_timeout_ticks: float,
        horizon_ticks: float,
        commit_wait_ticks: float = 0.0,
        make_commit: Callable[[int, int, tuple[Reply, ...]], Any] | None = None,
    ) -> None:
        if total < 0 or in_flight < 1:
            raise ValueError("client needs total >= 0, in_flight >= 1")
        self.id = client_id
        self.total = total
        self.in_flight = in_flight
        self.core = ClientCore(
            client_id=client_id,
            n=n,
            f=f,
            rule=rule,
            max_in_flight_txn=in_flight,  # one transaction per simulated request
            request_timeout_s=request_timeout_ticks,
            # never give up inside the run: the liveness deadline decides, not the core
            max_retries=math.ceil(horizon_ticks / request_timeout_ticks) + 1,
            commit_wait_s=commit_wait_ticks,  # the slow path (Zyzzyva), in ticks
            make_commit=make_commit,
        )
        self.issued = 0
        self.scheduled = 0  # submit events scheduled but not yet run
        self.pending: dict[int, Pending] = {}
        self.accepted: list[Accepted] = []

    @property
    def view(self) -> int:
        return self.core.view

    @property
    def outstanding(self) -> dict[int, CoreOutstanding]:
        return self.core.outstanding

    @property
    def done(self) -> bool:
        return self.issued >= self.total and not self.core.outstanding

    def can_submit(self) -> bool:
        return self.issued < self.total and self.core.window_open(1)

    def next_timestamp(self) -> int:
        return self.core.last_timestamp + 1

    def submit(self, request: Request, now: float, deadline: float) -> Pending:
        if not self.can_submit():
            raise RuntimeError(f"client {self.id}: no room to submit")
        if request.timestamp != self.core.next_timestamp():
            raise ValueError(f"client {self.id}: timestamp {request.timestamp} out of order")
        self.issued += 1
        self.core.record_sent(request.timestamp, request, 1, now)
        pending = Pending(request=request, submitted=now, deadline=deadline)
        self.pending[request.timestamp] = pending
        return pending

    def due_resends(self, now: float) -> list[Request]:
        """Requests whose re-send timeout passed (the core re-arms them)."""
        due = self.core.due_retransmits(now)
        given_up = self.core.counters["requests_given_up"]
        if given_up:
            raise RuntimeError(f"client {self.id}: the core gave up {given_up} request(s)")
        return [entry.payload for entry in due]

    def retries(self, timestamp: int) -> int:
        entry = self.core.outstanding.get(timestamp)
        return entry.retries if entry is not None else 0

    def on_reply(self, sender: int, reply: Reply, now: float) -> Accepted | None:
        """Count ``reply`` from authenticated ``sender``; the acceptance it completes, if any."""
        entry = self.core.outstanding.get(reply.timestamp)
        retries = entry.retries if entry is not None else 0
        acc = self.core.on_reply(sender, reply, now)
        if acc is None:
            return None
        pending = self.pending.pop(acc.timestamp)
        accepted = Accepted(
            client=self.id,
            timestamp=acc.timestamp,
            seq=acc.seq,
            view=acc.view,
            result=acc.result,
            submitted=pending.submitted,
            accepted=now,
            retries=retries,
        )
        self.accepted.append(accepted)
        return accepted
