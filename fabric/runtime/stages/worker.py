"""The worker stage: owns the protocol state machine (calls in, actions out), its timers
(a local heap, ``Timers``), and sends the actions on: frames to the output ring, Delivers
to the execute ring, feedback to the checkpoint ring. With ``execution.pipeline: inline``
(``inline=`` the replica's ExecuteStage, not started as a thread) the worker executes each
Deliver itself, through that stage's ``apply_items``, before it handles the next message,
and takes execute items (E_FIRST and above: stable checkpoints, lanes' Delivers) from its
own ring.

Must not live here: protocol logic (protocols/), multi-lane coordination (fabric.runtime.lanes).
"""

from __future__ import annotations

import heapq
import sys
import time
import traceback
from collections import deque
from collections.abc import Hashable
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    C_STABLE,
    E_DELIVER,
    E_FETCH_STATE,
    E_FIRST,
    E_ROLLBACK,
    MAX_LOGGED_ERRORS,
    MAX_PENDING_BATCHES,
    PARK_S,
    W_BATCH,
    W_EXECUTED,
    W_FRONTIER,
    W_MSG,
    W_STATE_INSTALLED,
    ReplicaShared,
    Stage,
    ToCoordinator,
)
from protocols import limits
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    FetchState,
    Rollback,
    Send,
    SetTimer,
    StableCheckpoint,
    ViewEntered,
)
from protocols.common import Batch


class Timers:
    """The worker's timers: a heap of deadlines; re-arming restarts, cancel forgets.

    Stale heap entries (re-armed or cancelled timers) are skipped when they
    surface and the heap is rebuilt when they outnumber live timers.
    """

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._live: dict[Hashable, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self.fired = 0

    def set(self, timer: Hashable, ticks: int, now: float) -> None:
        self._seq += 1
        deadline = now + ticks * self.tick_s
        self._live[timer] = (deadline, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, timer))
        if len(self._heap) > 4 * len(self._live) + 1024:
            self._heap = [(d, s, t) for t, (d, s) in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, timer: Hashable) -> None:
        self._live.pop(timer, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        live = self._live
        while heap:
            deadline, seq, timer = heap[0]
            cur = live.get(timer)
            if cur is not None and cur[1] == seq:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[Hashable]:
        out: list[Hashable] = []
        heap = self._heap
        live = self._live
        while heap and heap[0][0] <= now:
            _, seq, timer = heapq.heappop(heap)
            cur = live.get(timer)
            if cur is not None and cur[1] == seq:
                del live[timer]
                out.append(timer)
        self.fired += len(out)
        return out

    def __len__(self) -> int:
        return len(self._live)


class WorkerStage(Stage):
    """Own one protocol instance: feed it messages, batches, feedback and timer expiries."""

    role = "worker"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        protocol: Any,
        worker_ring: Ring,
        output_ring: Ring,
        execute_ring: Ring,
        checkpoint_ring: Ring,
        tick_s: float,
        max_pending: int = MAX_PENDING_BATCHES,
        index: int = 0,
        inline: Any = None,
    ) -> None:
        super().__init__(name, shared)
        self.inline = inline  # an ExecuteStage whose work this thread does (pipeline inline)
        self.index = index  # this worker's slot in shared.proposer_flags
        self.protocol = protocol
        self.worker_ring = worker_ring
        self.output_ring = output_ring
        self.execute_ring = execute_ring
        self.checkpoint_ring = checkpoint_ring
        self.timers = Timers(tick_s)
        self.max_pending = max_pending
        self.pending: deque[Batch] = deque()
        self.peers = tuple(i for i in range(shared.n) if i != shared.id)
        self.view = 0
        self.primary = 0
        self.view_changes: list[tuple[float, int, int]] = []  # (epoch, view, primary), bounded
        self.proposed = 0
        self.delivered = 0
        self.messages = 0
        self.forwarded = 0  # requests of ready batches handed to receive() (not the proposer)
        self.state_fetches = 0  # FetchState actions handed to the execute stage
        self.errors = 0
        self.errors_logged: set[tuple[str, str]] = set()  # (message type, exception type)
        # fetch answers are shed (counted) once the output ring holds this many items, so
        # catch-up traffic never makes protocol messages wait behind it
        self.shed_catch_up_at = max(1, int(output_ring.capacity * limits.FETCH_ANSWER_RING_SHARE))
        self._publish_proposer()

    def _publish_proposer(self) -> None:
        shared = self.shared
        shared.proposer_flags[self.index] = bool(self.protocol.is_proposer())
        shared.is_proposer = any(shared.proposer_flags)

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        protocol = self.protocol
        receive = protocol.receive
        ring = self.worker_ring
        timers = self.timers
        pending = self.pending
        out: list[Any] = []
        exe: list[Any] = []
        chk: list[Any] = []
        handle = self._handle
        while not stop.is_set():
            deadline = timers.next_deadline()
            if deadline is None:
                wait = PARK_S
            else:
                wait = min(PARK_S, max(0.0, deadline - time.monotonic()))
            items = self.pop(ring, wait)
            for item in items:
                tag = item[0]
                if tag == W_MSG:
                    self.messages += 1
                    try:
                        actions = receive(item[1], item[2])
                    except AssertionError:
                        raise  # a protocol invariant broke: stop the replica loudly
                    except Exception as exc:  # input the protocol could not handle: count it
                        self._protocol_error(item[1], item[2], exc)
                        continue
                elif tag == W_BATCH:
                    if len(pending) >= self.max_pending:
                        self.drops["proposal_overflow"] += 1
                    else:
                        pending.append(item[1])
                    continue
                elif tag == W_EXECUTED:
                    actions = protocol.executed(item[1], item[2])
                elif tag == W_FRONTIER:
                    actions = protocol.observe_frontier(item[1], item[2])
                elif tag == W_STATE_INSTALLED:  # a state image, or a restart's reloaded state
                    actions = protocol.state_installed(item[1], item[2], item[3])
                elif tag >= E_FIRST:  # pipeline inline: an execute item (this ring is both)
                    self._execute_inline([item])
                    continue
                else:
                    actions = protocol.checkpoint(item[1], item[2])
                if actions:
                    handle(actions, out, exe, chk)
            heap = timers._heap
            if heap and heap[0][0] <= time.monotonic():  # the earliest entry is due (or stale)
                for timer in timers.due(time.monotonic()):
                    actions = protocol.timeout(timer)
                    if actions:
                        handle(actions, out, exe, chk)
            if pending:
                if protocol.is_proposer():
                    room = protocol.proposal_room()
                    while pending and room > 0:
                        self.proposed += 1
                        actions = protocol.propose(pending.popleft())
                        if actions:
                            handle(actions, out, exe, chk)
                        room -= 1
                        if room == 0:
                            room = protocol.proposal_room()
                else:
                    # not the proposer (any more): hand the requests to the protocol as a
                    # backup would get them (PBFT forwards them to the primary)
                    while pending:
                        for req in pending.popleft().requests:
                            self.forwarded += 1
                            try:
                                actions = receive(req.client_id, req)
                            except AssertionError:
                                raise
                            except Exception as exc:
                                self._protocol_error(req.client_id, req, exc)
                                continue
                            if actions:
                                handle(actions, out, exe, chk)
            self._publish_proposer()
            if exe:
                self.push_all(self.execute_ring, exe)
                exe = []
            if chk:
                self.push_all(self.checkpoint_ring, chk)
                chk = []
            if out:
                self.push_all(self.output_ring, out)
                out = []

    def _execute_inline(self, items: list[Any]) -> None:
        """Pipeline inline: execute on this thread (the execute stage's own code), then hand
        the replies to the output ring and the executed feedback to the checkpoint ring."""
        replies, feedback = self.inline.apply_items(items)
        if replies:
            self.push_all(self.output_ring, replies)
        if feedback:
            self.push_all(self.checkpoint_ring, feedback)
        if self.inline.persist_ring is not None:
            self.push_all(self.inline.persist_ring, self.inline.take_persist())

    def _protocol_error(self, sender: int, msg: Any, exc: Exception) -> None:
        """A message made the protocol raise: count it by exception type and drop it; the
        traceback is logged once per (message type, exception type), at most
        MAX_LOGGED_ERRORS kinds, so a flood of one hostile message costs one log entry.

        The decision (issue 19): ``receive`` of one message raising is that message's
        failure, not the replica's (the protocol checked nothing it had not got yet); the
        replica goes on and the count shows in the run's drops. An AssertionError (a
        protocol invariant broke), or any exception from ``timeout``/``executed``/
        ``propose`` (the replica's own state, not a peer's input), stops the replica loudly
        instead (Stage.run: shared.fail), and the runner reports it failed."""
        self.drops[f"protocol_error:{type(exc).__name__}"] += 1
        self.errors += 1
        key = (type(msg).__name__, type(exc).__name__)
        if key not in self.errors_logged and len(self.errors_logged) < MAX_LOGGED_ERRORS:
            self.errors_logged.add(key)
            text = "".join(traceback.format_exception(exc)).rstrip()
            print(
                f"replica {self.shared.id}: {type(msg).__name__} from {sender} raised "
                f"in the protocol (counted, dropped):\n{text}",
                file=sys.stderr,
                flush=True,
            )

    def _handle(self, actions: list[Any], out: list[Any], exe: list[Any], chk: list[Any]) -> None:
        for a in actions:
            tp = type(a)
            if tp is Broadcast:  # the most common action (votes, proposals): tested first
                out.append((self.peers, a.msg))
            elif tp is Send:
                if a.to == self.shared.id:
                    self.drops["send_to_self"] += 1
                elif (
                    getattr(a.msg, "CATCH_UP", False)
                    and len(out) + len(self.output_ring) >= self.shed_catch_up_at
                ):
                    self.drops["fetch_answer_shed"] += 1
                else:
                    out.append((a.to, a.msg))
            elif tp is Deliver:
                self.delivered += 1
                item = (E_DELIVER, a.seq, a.view, a.batch, a.speculative)
                if a.history:  # Zyzzyva: its replies carry h_seq and the replica's signature
                    item = (*item, a.history, a.signature)
                if self.inline is not None:
                    self._execute_inline([item])  # before the next action and message
                else:
                    exe.append(item)
            elif tp is SetTimer:
                self.timers.set(a.timer, a.ticks, time.monotonic())
            elif tp is CancelTimer:
                self.timers.cancel(a.timer)
            elif tp is StableCheckpoint:
                # the certificate (2f+1 signed votes), when the protocol's action carries one
                chk.append((C_STABLE, a.seq, a.digest, a.proof))
            elif tp is Rollback:
                if self.inline is not None:
                    self._execute_inline([(E_ROLLBACK, a.to_seq)])
                else:
                    exe.append((E_ROLLBACK, a.to_seq))
            elif tp is FetchState:
                self.state_fetches += 1
                item = (E_FETCH_STATE, a.seq, a.digest, a.proof)
                if self.inline is not None:
                    self._execute_inline([item])
                else:
                    exe.append(item)
            elif tp is ViewEntered:
                self.view = a.view
                self.primary = a.primary
                if len(self.view_changes) < 1000:
                    self.view_changes.append((time.time(), a.view, a.primary))
            elif tp is ToCoordinator:
                chk.append(a.item)
            else:
                self.drops[f"unknown_action:{tp.__name__}"] += 1
