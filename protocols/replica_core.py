"""ReplicaCore: the replica machinery PBFT and PoE run the same way (sans-IO, like them).

Lives here, shared by Pbft and Poe (protocols/pbft/, protocols/poe/: one mixin per section):
- dispatch: ``receive`` through the subclass's handler table, ``timeout`` through its
  table of timers, counters of ignored input per reason;
- held messages (a later view, or beyond the high watermark): a buffer bounded in total
  and per sender, in count and in encoded bytes (protocols.limits.MAX_HELD_BYTES), re-run (bounded rounds) once the view or the watermarks move;
- client requests: filtering replays out of a proposal, the primary's proposal queue
  and in-flight set, a backup's waiting requests and its request timer (PBFT §4.4), and
  handing both over when a new view starts;
- checkpoint votes (PBFT §4.3, PoE reuses them): protocols/checkpoints.py's
  ``CheckpointVotes``, mixed in here (this class holds their state);
- small helpers: signature checks that honour ``sign_votes``, the per-seq slot table,
  the doubling view-change timeout, counting fetch replies, picking the view-changes a
  new primary puts into its new view.

Where the two protocols really differ the subclass says so through a hook or a flag:
``_send_proposal`` (PRE-PREPARE / PROPOSE), ``_request_done`` (delivered / executed),
``_changing_view``, ``_make_stable`` (what a stable
checkpoint triggers), ``checkpoint_instance``, ``checkpoint_revotes`` and
``checkpoints_from_self``.

Must not live here: any protocol's messages, quorum rules, normal case, view-change
rules or execution (those stay in pbft/ and poe/), and, as everywhere in protocols/,
IO, clocks or randomness.
"""

from __future__ import annotations

import struct
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from protocols.base import (
    Action,
    CancelTimer,
    Protocol,
    ProtocolConfig,
    Send,
    SetTimer,
    Verifier,
)
from protocols.checkpoints import Checkpoint, CheckpointVotes
from protocols.codec import encode_body
from protocols.common import Batch, Request, make_batch
from protocols.limits import MAX_BACKOFF_EXP, MAX_HELD_BYTES, MAX_REPLAY_ROUNDS

SlotT = TypeVar("SlotT")
Handler = Callable[[int, Any, list[Action]], None]
TimerHandler = Callable[[list[Action]], None]


class ReplicaCore(CheckpointVotes, Protocol, Generic[SlotT]):
    """Base of the Pbft and Poe replicas: the state and steps they share (see module doc)."""

    #: ``_verify`` checks signatures (else accepts every one); Pbft reads pbft_signed_votes
    sign_votes: bool = True

    # Set by the subclass (their parameter names and bounds differ).
    primary: int  # the primary of the current view (a property of the subclass)
    checkpoint_quorum: int
    fetch_quorum: int  # matching fetch replies that make a batch trusted
    checkpoint_instance: int  # the ``instance`` field of our Checkpoint messages
    max_queued: int  # primary: batches queued while the window is full
    max_waiting: int  # backup: requests waiting to be executed
    t_request: Hashable  # the request timer (a backup waiting for a forwarded request)
    vc_latest: dict[int, Any]  # replica -> its highest valid view-change message

    def __init__(
        self, config: ProtocolConfig, verifier: Verifier, slot_type: Callable[[], SlotT]
    ) -> None:
        super().__init__(config, verifier)
        self._new_slot = slot_type
        self.period = config.checkpoint_period
        self.window = config.watermark_window
        self.base_ticks = max(1, int(config.view_change_ticks))
        self.ckpt_per_replica = self.window // self.period + 2
        self.max_held = max(1, config.max_buffered)
        self.max_held_per_sender = max(1, self.max_held // self.n)
        self.max_held_bytes = MAX_HELD_BYTES
        self.max_held_bytes_per_sender = max(1, MAX_HELD_BYTES // self.n)

        self.view = 0
        self.backoff_exp = 0  # consecutive failed view changes

        # log
        self.low = 0  # stable checkpoint seq = low watermark
        self.high = self.window
        self.stable_digest = b""
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.slots: dict[int, SlotT] = {}  # normal-case state per seq, this view
        self.last_assigned = 0  # primary: highest seq given out

        # checkpoints: seq -> digest -> replica -> message, at most ckpt_per_replica per replica
        self.ckpt_votes: dict[int, dict[bytes, dict[int, Checkpoint]]] = {}
        self.ckpt_of: dict[int, dict[int, bytes]] = {}  # replica -> seq -> digest

        # requests
        self.queue: deque[Batch] = deque()  # primary: batches waiting for window room
        self.in_flight: dict[tuple[int, int], int] = {}  # primary: (client, ts) proposed
        self.waiting: dict[tuple[int, int], Request] = {}  # requests we wait to see executed

        # held messages (later view, or beyond the high watermark), bounded per sender
        self.held: list[tuple[int, Any]] = []
        self._held_by_sender: dict[int, int] = {}
        self.held_bytes = 0
        self._held_bytes_by_sender: dict[int, int] = {}
        self._replaying = False
        self._replay_again = False

        # counters (abnormal paths and view changes)
        self.ignored: dict[str, int] = {}
        self.dropped = 0  # held messages dropped because the buffer was full
        self.proposals_dropped = 0
        self.view_changes_started = 0

        # the timers armed now, as the SetTimer / CancelTimer actions we returned and the
        # timeouts delivered to us say (one mirror, kept by _set_timer, _cancel_timer and
        # timeout(); nothing else writes it)
        self.armed: set[Hashable] = set()

        # the subclass fills these: message type -> handler, (timer, handler) in order
        self._handlers: dict[type, Handler] = {}
        self._timers: tuple[tuple[Hashable, TimerHandler], ...] = ()

    # --- hooks: where PBFT and PoE differ ---------------------------------------------

    def primary_of(self, view: int) -> int:
        """The primary of ``view``: round robin over the replicas (Castro & Liskov §4.1);
        a protocol that rotates otherwise (PBFT's RCC instances) overrides it and ``primary``."""
        return view % self.n

    @property
    def primary(self) -> int:
        """The primary of the current view."""
        return self.view % self.n

    @abstractmethod
    def _send_proposal(self, batch: Batch, out: list[Action]) -> None:
        """Primary: give ``batch`` the next seq and send it out (the caller checked room)."""

    @abstractmethod
    def _request_done(self, client_id: int, timestamp: int) -> bool:
        """True if (client, timestamp) was ordered here already (or is below the window)."""

    @abstractmethod
    def _changing_view(self) -> bool:
        """True while this replica is not taking part in a view's normal case."""

    @abstractmethod
    def _make_stable(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        """Checkpoint ``seq`` is stable (``proof`` holds quorum matching votes)."""

    # --- calls in --------------------------------------------------------------------

    def propose(self, batch: Batch) -> list[Action]:
        out: list[Action] = []
        if not self.is_proposer():
            self.proposals_dropped += 1
            self._ignore("not_proposer")
            return out
        fresh = self._without_replays(batch)
        if fresh is not None:
            self._propose_batch(fresh, out)
        return out

    def receive(self, sender: int, msg: Any) -> list[Action]:
        out: list[Action] = []
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._ignore("unknown_message")
        else:
            handler(sender, msg, out)
        return out

    def timeout(self, timer: Hashable) -> list[Action]:
        out: list[Action] = []
        for known, handler in self._timers:
            if timer == known:
                self.armed.discard(known)  # it fired: no longer armed
                handler(out)
                break
        else:
            self._ignore("unknown_timer")
        return out

    # --- small helpers ---------------------------------------------------------------

    def _set_timer(self, timer: Hashable, ticks: int, out: list[Action]) -> None:
        """Arm (or re-arm) ``timer`` for ``ticks``: a SetTimer action, mirrored in ``armed``."""
        self.armed.add(timer)
        out.append(SetTimer(timer, ticks))

    def _cancel_timer(self, timer: Hashable, out: list[Action]) -> None:
        """A CancelTimer action for ``timer``, mirrored in ``armed``."""
        self.armed.discard(timer)
        out.append(CancelTimer(timer))

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def _hold(self, sender: int, msg: Any) -> None:
        count = self._held_by_sender.get(sender, 0)
        if count >= self.max_held_per_sender or len(self.held) >= self.max_held:
            self.dropped += 1
            return
        # its encoded size (held messages are rare: re-encoding one is cheap next to the
        # memory a hostile peer could otherwise pin with large fields)
        size = len(encode_body(msg))
        mine = self._held_bytes_by_sender.get(sender, 0)
        if (
            mine + size > self.max_held_bytes_per_sender
            or self.held_bytes + size > self.max_held_bytes
        ):
            self.dropped += 1
            self._ignore("held_bytes_full")
            return
        self._held_by_sender[sender] = count + 1
        self._held_bytes_by_sender[sender] = mine + size
        self.held_bytes += size
        self.held.append((sender, msg))

    def _replay_held(self, out: list[Action]) -> None:
        """Re-run held messages (after the view or the watermarks moved)."""
        if self._replaying:
            self._replay_again = True
            return
        self._replaying = True
        try:
            for _ in range(MAX_REPLAY_ROUNDS):
                self._replay_again = False
                if not self.held:
                    break
                held, self.held = self.held, []
                self._held_by_sender = {}
                self._held_bytes_by_sender = {}
                self.held_bytes = 0
                for sender, msg in held:
                    self._handlers[type(msg)](sender, msg, out)
                if not self._replay_again:
                    break
        finally:
            self._replaying = False

    def _slot(self, seq: int) -> SlotT:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = self._new_slot()
        return slot

    def _timeout_ticks(self) -> int:
        return self.base_ticks << self.backoff_exp

    def _verify(self, signer: int, payload_fn: Any, *args: Any, signature: bytes) -> bool:
        if not self.sign_votes:
            return True
        try:
            payload = payload_fn(*args)
        except (struct.error, OverflowError, TypeError):  # absurd ints cannot be signed
            return False
        return bool(self.verifier.verify(signer, payload, signature))

    def _count_fetch_reply(
        self, votes: dict[int, Any], sender: int, reply: Any
    ) -> list[Any] | None:
        """Add ``sender``'s reply to one seq's ``votes``: the replies agreeing with it once
        ``fetch_quorum`` of them do, else None."""
        if sender in votes:
            self._ignore("duplicate")
            return None
        votes[sender] = reply
        d = reply.batch.digest
        matching = [r for r in votes.values() if r.batch.digest == d]
        if len(matching) < self.fetch_quorum:
            return None
        return matching

    def _new_view_set(self, quorum: int) -> tuple[Any, ...] | None:
        """New primary: our view-change for the view we change to and the ``quorum`` - 1
        others for it with the lowest replica ids; None while fewer than ``quorum``."""
        w = self.view
        mine = self.vc_latest.get(self.id)
        if mine is None or mine.new_view != w:
            return None
        others = sorted(
            (vc for r, vc in self.vc_latest.items() if r != self.id and vc.new_view == w),
            key=lambda vc: vc.replica,
        )
        if 1 + len(others) < quorum:
            return None
        return (mine, *others[: quorum - 1])

    # --- requests and proposals ------------------------------------------------------

    def _without_replays(self, batch: Batch) -> Batch | None:
        """The batch minus requests already ordered, in flight, or repeated inside it (None
        if nothing is left; ``batch`` itself if nothing goes)."""
        done = self._request_done
        in_flight = self.in_flight
        kept = []
        seen: set[tuple[int, int]] = set()
        for req in batch.requests:
            key = (req.client_id, req.timestamp)
            if key in in_flight or key in seen or done(req.client_id, req.timestamp):
                self._ignore("replayed_request")
                continue
            seen.add(key)
            kept.append(req)
        if len(kept) == len(batch.requests):
            return batch
        return make_batch(tuple(kept)) if kept else None

    def _propose_batch(self, batch: Batch, out: list[Action]) -> None:
        if self.last_assigned < self.high and not self.queue:
            self._send_proposal(batch, out)
        elif len(self.queue) < self.max_queued:
            self.queue.append(batch)
            for req in batch.requests:
                self.in_flight[(req.client_id, req.timestamp)] = 0
        else:
            self.proposals_dropped += 1
            self._ignore("proposal_queue_full")

    def _drain_queue(self, out: list[Action]) -> None:
        while self.queue and self.last_assigned < self.high and self.is_proposer():
            self._send_proposal(self.queue.popleft(), out)

    def _request_pending(self, key: tuple[int, int]) -> bool:
        """True (and counted) if request ``key`` is proposed already or waited for."""
        if key in self.in_flight:
            self._ignore("request_in_flight")
            return True
        if key in self.waiting:
            self._ignore("request_already_waiting")
            return True
        return False

    def _take_request(
        self, sender: int, key: tuple[int, int], req: Request, out: list[Action]
    ) -> None:
        """A new, validly signed request: propose it (primary), or wait for it to be
        executed, forwarding it to the primary when it came from the client (backup)."""
        if self.is_proposer():
            self._propose_batch(make_batch((req,)), out)
            return
        if len(self.waiting) >= self.max_waiting:
            self._purge_waiting()
            if len(self.waiting) >= self.max_waiting:
                self._ignore("waiting_full")
                return
        self.waiting[key] = req
        if self._changing_view():
            return  # the view-change timer runs; the request moves on with the new view
        if not 0 <= sender < self.n:  # from a client: pass it to the primary
            out.append(Send(self.primary, req))
        if self.t_request not in self.armed:
            self._arm_request_timer(out)

    def _purge_waiting(self) -> None:
        done = self._request_done
        for key in [k for k in self.waiting if done(k[0], k[1])]:
            del self.waiting[key]

    def _arm_request_timer(self, out: list[Action]) -> None:
        self._set_timer(self.t_request, self._timeout_ticks(), out)

    def _cancel_request_timer(self, out: list[Action]) -> None:
        if self.t_request in self.armed:
            self._cancel_timer(self.t_request, out)

    def _waiting_done(self, batch: Batch, out: list[Action]) -> None:
        """``batch`` was ordered: stop waiting for its requests (PBFT §4.4: stop the timer
        when no request waits, restart it when others still do)."""
        hit = False
        for req in batch.requests:
            if self.waiting.pop((req.client_id, req.timestamp), None) is not None:
                hit = True
        if not hit or self._changing_view():
            return
        if self.waiting:
            self._arm_request_timer(out)
        else:
            self._cancel_request_timer(out)

    def _resume_requests(self, view: int, out: list[Action]) -> None:
        """We entered ``view``: as its primary, propose the requests we waited for; as a
        backup, send our queued batches' and waiting requests to the primary (bounded by
        max_queued and max_waiting) and time them."""
        self._purge_waiting()
        primary = self.primary_of(view)
        if primary == self.id:
            waiting = list(self.waiting.values())
            self.waiting.clear()
            for req in waiting:
                if (req.client_id, req.timestamp) not in self.in_flight:
                    self._propose_batch(make_batch((req,)), out)
            self._drain_queue(out)
            return
        for batch in self.queue:
            for req in batch.requests:
                out.append(Send(primary, req))
        self.queue.clear()
        for req in self.waiting.values():
            out.append(Send(primary, req))
        if self.waiting:
            self._arm_request_timer(out)


__all__ = ["MAX_BACKOFF_EXP", "MAX_REPLAY_ROUNDS", "ReplicaCore"]
