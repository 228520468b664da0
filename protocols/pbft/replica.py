"""PBFT (Castro & Liskov, OSDI'99 / TOCS'02) as a sans-IO state machine: calls in, actions out.

How it works, in the paper's terms:
- Normal case (§4.2): the primary of view v, ``(instance + v) % n``, assigns seq in
  (low, high] and broadcasts PRE-PREPARE; a backup accepts one pre-prepare per
  (view, seq), broadcasts PREPARE; *prepared* = pre-prepare + ``prepare_quorum``
  (2f) matching prepares from distinct backups; then COMMIT; *committed-local* =
  prepared + ``commit_quorum`` (2f+1) matching commits. Many seqs are in flight at
  once; committed batches are delivered strictly in seq order.
- Checkpoints (§4.3): on ``executed`` at a multiple of checkpoint_period, broadcast
  CHECKPOINT; ``checkpoint_quorum`` (2f+1) matching make it stable: the log below is
  discarded and the watermarks move (low = stable seq, high = low + window).
- View change (§4.4): a replica waiting too long for a request sends VIEW-CHANGE for
  v+1 (stable checkpoint proof + prepared certificates). "Waiting" covers a client's
  re-sent request (timer ``request``) and the requests inside accepted pre-prepares
  that stop being delivered (timer ``progress``, the primary included). The new
  primary, with ``view_change_quorum`` (2f+1) valid view-changes, sends NEW-VIEW with
  a pre-prepare for every seq between the highest stable checkpoint (min-s) and the
  highest prepared seq (max-s): the certificate's batch with the highest view, else
  the null batch. Replicas recompute that set before entering the view. Timeouts
  double on consecutive failed view changes; ``join_quorum`` (f+1) view-changes for
  higher views make a replica join the smallest of them (§4.5.2).
- Additions a runnable system needs over lossy links (all bounded): view-change
  retransmission while fewer than 2f+1 replicas change; a replica that sees its peers
  already working in the view it waits for asks them for the NEW-VIEW (a signed
  NEW-VIEW proves itself, any replica may hand it over); and catch-up (FETCH): a
  replica behind a stable checkpoint, or with a gap it cannot fill, asks for
  delivered batches and accepts one when ``fetch_quorum`` (f+1) replicas agree on it.
- Replay suppression: per client, the last ``pbft_replay_window`` delivered
  timestamps and a floor below them (clients keep several requests in flight).

Transferable proofs (pre-prepares and prepares in certificates, checkpoints in proofs,
view-changes in a NEW-VIEW) are signed through the injected Verifier: params
``pbft_signed_votes`` (default True). With it off the votes are not signed (the links'
MACs authenticate them, as in Castro & Liskov's PBFT) and nothing about them is
transferable, so the view change follows their MAC variant (TOCS'02 §4.5): a
view-change (still signed, as are checkpoints: both are rare) *claims* what its sender
prepared and pre-prepared, and the new primary decides each seq by counting claims
(protocols/claims.py), waiting for more view-changes while a seq is undecided; a
NEW-VIEW then counts only from the new primary, which every replica re-checks by
recomputation. Byzantine replicas may sign any lie; the simulator makes them.

The machinery PoE runs the same way (held messages, request waiting and proposal queue,
checkpoint votes and stabilisation, dispatch) lives in protocols/replica_core.py; Pbft fills
its hooks. Must not live here: sockets, threads, clocks, randomness, message encoding (wire).
"""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from collections.abc import Mapping
from typing import Any

from protocols import base
from protocols.base import (
    Action,
    Broadcast,
    Deliver,
    ProtocolConfig,
    ReplyRule,
    Send,
    StableCheckpoint,
    Verifier,
)
from protocols.checkpoints import Checkpoint, checkpoint_payload
from protocols.claims import decide, note_pre_prepared, well_formed
from protocols.common import NULL_BATCH, Batch, Request
from protocols.common import batch_is_valid as _batch_is_valid
from protocols.limits import (
    ASKED_NEW_VIEW_PER_REPLICA,
    FETCH_SPAN_WINDOWS,
    FETCH_TICKS_DIVISOR,
    HISTORY_WINDOWS,
    MAX_BACKOFF_EXP,
    MAX_NEW_VIEW_RESENDS,
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
)
from protocols.pbft.messages import (
    Commit,
    Fetch,
    FetchReply,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    PrePrepared,
    ViewChange,
    pre_prepare_payload,
    prepare_payload,
    view_change_payload,
)
from protocols.pbft.params import PbftParams
from protocols.replica_core import ReplicaCore


class _Slot:
    """Normal-case state of one seq in the current view (dropped on a view change)."""

    __slots__ = (
        "pre_prepare",
        "digest",
        "prepares",
        "prepare_counts",
        "commits",
        "commit_counts",
        "prepared",
        "committed",
    )

    def __init__(self) -> None:
        self.pre_prepare: PrePrepare | None = None
        self.digest: bytes | None = None
        self.prepares: dict[int, Prepare] = {}  # replica -> its (first) prepare
        self.prepare_counts: dict[bytes, int] = {}  # digest -> distinct backups
        self.commits: dict[int, bytes] = {}  # replica -> digest of its (first) commit
        self.commit_counts: dict[bytes, int] = {}
        self.prepared = False
        self.committed = False


def batch_is_valid(batch: Batch) -> bool:
    """protocols.common.batch_is_valid that answers False (never raises) for a batch holding a
    request whose client id or timestamp does not fit the signed header (hostile input)."""
    try:
        return _batch_is_valid(batch)
    except (struct.error, OverflowError):
        return False


class _ClientReplay:
    """One client's delivered timestamps: the last ``replay_window`` of them, and a floor at
    or below which every timestamp counts as delivered (bounded memory per client)."""

    __slots__ = ("floor", "recent", "order")

    def __init__(self) -> None:
        self.floor = -1  # highest timestamp evicted from ``recent``
        self.recent: set[int] = set()
        self.order: deque[int] = deque()  # ``recent`` in delivery order (eviction order)


class Pbft(ReplicaCore[_Slot]):
    """One PBFT replica (or one PBFT instance of RCC when ``instance`` > 0)."""

    name = "pbft"

    def __init__(self, config: ProtocolConfig, verifier: Verifier, *, instance: int = 0) -> None:
        super().__init__(config, verifier, _Slot)
        self.instance = instance
        self.checkpoint_instance = instance
        f = self.f
        # Quorum sizes: every check below reads these (a test may break them on purpose).
        self.prepare_quorum = 2 * f  # matching prepares from distinct backups
        self.commit_quorum = 2 * f + 1  # matching commits from distinct replicas
        self.checkpoint_quorum = 2 * f + 1
        self.view_change_quorum = 2 * f + 1
        self.join_quorum = f + 1  # view-changes for higher views that make us join
        self.fetch_quorum = f + 1  # matching fetch replies that make a batch trusted

        self.params = PbftParams.from_params(config.params)
        self.sign_votes = self.params.signed_votes
        # bounds (protocols/limits.py), relative to the watermark window and the timeout
        self.max_queued = QUEUED_BATCHES_PER_WINDOW * self.window
        self.max_waiting = config.max_buffered
        self.history_len = HISTORY_WINDOWS * self.window
        self.fetch_span = max(1, FETCH_SPAN_WINDOWS * self.window)
        self.fetch_ticks = max(1, self.base_ticks // FETCH_TICKS_DIVISOR)

        self.t_request = ("pbft", instance, "request")
        self.t_progress = ("pbft", instance, "progress")
        self.t_view_change = ("pbft", instance, "view_change")
        self.t_fetch = ("pbft", instance, "fetch")

        # view state (view, backoff_exp: ReplicaCore)
        self.in_view_change = False
        self._view_unproven = False  # entered a view by view change, nothing delivered since
        self.vc_latest: dict[int, ViewChange] = {}  # replica -> its highest valid view-change
        self.new_view_msg: NewView | None = None  # how we entered the current view
        self._new_view_resent: dict[int, int] = {}  # replica -> NEW-VIEW copies sent, this view
        self._asked_new_view: set[tuple[int, int]] = set()  # (replica, view) asked, this change
        self._reasked = False  # asked again on a view-change timeout (once per view change)

        # log (watermarks, stable proof, slots, checkpoint votes: ReplicaCore)
        self._stable_unannounced = False
        self.certs: dict[int, PreparedCert] = {}  # seq -> highest-view prepared certificate
        # unsigned votes: seq -> digest -> latest view we accepted a pre-prepare of it in
        # (the Q-set our view-changes claim; bounded per seq, protocols/claims.py)
        self.pre_prepared: dict[int, dict[bytes, int]] = {}
        self.committed: dict[int, tuple[int, Batch]] = {}  # committed, not yet delivered
        self.last_delivered = 0
        self.history: dict[int, tuple[int, Batch]] = {}  # last history_len delivered

        # requests (queue, in-flight, waiting: ReplicaCore)
        # Replay suppression, bounded per client (a client keeps several requests in flight,
        # so timestamps are delivered out of order): the last ``replay_window`` delivered
        # timestamps, and a floor at or below which every timestamp counts as delivered.
        self.replay_window = REPLAY_WINDOW_PER_CLIENT
        self.clients: dict[int, _ClientReplay] = {}
        # progress: a replica holding accepted pre-prepares that stop being delivered for a
        # whole timeout suspects the primary too (the paper's "waiting for a request" covers
        # the requests inside an accepted pre-prepare; one timer, checked when it fires)
        self._max_accepted = 0  # highest seq with an accepted pre-prepare, this view
        self._progress_mark = 0

        # catch-up
        self.fetch_votes: dict[int, dict[int, FetchReply]] = {}  # seq -> replica -> reply
        self._fetch_mark = -1
        self._fetch_requested_to = 0

        # counters (abnormal paths only; the shared ones: ReplicaCore)
        self.checkpoint_mismatches = 0

        self._handlers = {
            PrePrepare: self._on_pre_prepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
            Request: self._on_request,
            Fetch: self._on_fetch,
            FetchReply: self._on_fetch_reply,
        }
        self._timers = (
            (self.t_request, self._on_request_timer),
            (self.t_progress, self._on_progress_timer),
            (self.t_view_change, self._on_view_change_timer),
            (self.t_fetch, self._on_fetch_timer),
        )

    # --- who proposes ----------------------------------------------------------------

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return f + 1

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """Castro & Liskov 4.1: f+1 replies from different replicas "with the same t and r".

        The client counts replies per timestamp t; beyond the paper it also asks them to
        agree on the sequence number, which honest replicas always do (they commit a request
        at one position) and which makes the accepted position certain. Not on the view:
        replicas may commit the same batch at the same seq in different views.
        """
        return ReplyRule(f + 1, ("seq", "result"), speculative=False)

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return view % n  # plain PBFT is instance 0

    def primary_of(self, view: int) -> int:
        return (self.instance + view) % self.n

    @property
    def primary(self) -> int:
        return (self.instance + self.view) % self.n

    def is_proposer(self) -> bool:
        return not self.in_view_change and (self.instance + self.view) % self.n == self.id

    def proposal_room(self) -> int:
        if not self.is_proposer():
            return 0
        return (self.high - self.last_assigned) + (self.max_queued - len(self.queue))

    # --- calls in (propose, receive, timeout: ReplicaCore) ------------------------------

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        if seq % self.period or seq <= self.low or seq > self.last_delivered:
            return out
        sig = self.verifier.sign(checkpoint_payload(self.instance, seq, self.id, state_digest))
        cp = Checkpoint(self.instance, seq, state_digest, self.id, sig)
        out.append(Broadcast(cp))
        self._add_checkpoint(cp, out)
        return out

    def suspect_primary(self) -> list[Action]:
        """Start a view change to the next view now (RCC: this instance lags the others).

        Nothing while a view change is already under way (its own timer escalates it).
        """
        out: list[Action] = []
        if not self.in_view_change:
            self._start_view_change(self.view + 1, out)
        return out

    def status(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "view": self.view,
            "primary": self.primary,
            "in_view_change": self.in_view_change,
            "last_delivered": self.last_delivered,
            "stable_seq": self.low,
            "low_watermark": self.low,
            "high_watermark": self.high,
            "last_assigned": self.last_assigned,
            "buffered": len(self.held),
            "dropped": self.dropped,
            "queued": len(self.queue),
            "waiting": len(self.waiting),
            "proposals_dropped": self.proposals_dropped,
            "view_changes_started": self.view_changes_started,
            "backoff_exp": self.backoff_exp,
            "checkpoint_mismatches": self.checkpoint_mismatches,
            "fetching": self.last_delivered < self._fetch_target(),
            "ignored": dict(self.ignored),
        }

    # --- small helpers (ignore, hold and replay, slots, _verify: ReplicaCore) ---------

    def _changing_view(self) -> bool:
        return self.in_view_change

    def _valid_pre_prepare_signature(self, pp: PrePrepare) -> bool:
        return self._verify(
            self.primary_of(pp.view),
            pre_prepare_payload,
            pp.instance,
            pp.view,
            pp.seq,
            pp.batch.digest,
            signature=pp.signature,
        )

    def _valid_prepare_signature(self, p: Prepare) -> bool:
        return self._verify(
            p.replica,
            prepare_payload,
            p.instance,
            p.view,
            p.seq,
            p.replica,
            p.digest,
            signature=p.signature,
        )

    def _make_pre_prepare(self, view: int, seq: int, batch: Batch) -> PrePrepare:
        sig = b""
        if self.sign_votes:
            sig = self.verifier.sign(pre_prepare_payload(self.instance, view, seq, batch.digest))
        return PrePrepare(self.instance, view, seq, batch, sig)

    # --- requests and proposals (§4.1, §4.2) -------------------------------------------

    def was_delivered(self, client_id: int, timestamp: int) -> bool:
        """True if (client, timestamp) was delivered (or is older than the replay window)."""
        rec = self.clients.get(client_id)
        return rec is not None and (timestamp <= rec.floor or timestamp in rec.recent)

    def _request_done(self, client_id: int, timestamp: int) -> bool:
        return self.was_delivered(client_id, timestamp)

    def _without_replays(self, batch: Batch) -> Batch | None:
        """ReplicaCore's filter, but a batch with nothing delivered or in flight passes as
        it is, even when it repeats a request (the execute stage answers it again)."""
        was_delivered = self.was_delivered
        in_flight = self.in_flight
        for req in batch.requests:
            if (req.client_id, req.timestamp) in in_flight or was_delivered(
                req.client_id, req.timestamp
            ):
                return super()._without_replays(batch)
        return batch

    def _send_proposal(self, batch: Batch, out: list[Action]) -> None:
        """Primary: assign the next seq to ``batch`` and broadcast its PRE-PREPARE (§4.2)."""
        seq = self.last_assigned + 1
        assert self.low < seq <= self.high, "primary assigns seqs within the watermarks"
        self.last_assigned = seq
        pp = self._make_pre_prepare(self.view, seq, batch)
        for req in batch.requests:
            self.in_flight[(req.client_id, req.timestamp)] = seq
        slot = self._slot(seq)
        assert slot.pre_prepare is None, "the primary assigns each seq once per view"
        slot.pre_prepare = pp
        slot.digest = batch.digest
        if not self.sign_votes:
            note_pre_prepared(self.pre_prepared, seq, batch.digest, self.view)
        out.append(Broadcast(pp))
        if seq > self._max_accepted:
            self._max_accepted = seq
        if self.t_progress not in self.armed:
            self._arm_progress(out)
        self._check_prepared(seq, slot, out)

    def _on_request(self, sender: int, req: Request, out: list[Action]) -> None:
        """A client's request (or one forwarded by a replica)."""
        if self.was_delivered(req.client_id, req.timestamp):
            self._ignore("request_already_delivered")
            return
        key = (req.client_id, req.timestamp)
        if self._request_pending(key):
            return
        try:
            signed = self.verifier.verify_request(req)
        except (struct.error, OverflowError):  # ids that do not fit the signed header
            signed = False
        if not signed:
            self._ignore("bad_client_signature")
            return
        self._take_request(sender, key, req, out)  # proposed, or waited for and forwarded

    def _on_request_timer(self, out: list[Action]) -> None:
        if self.in_view_change:
            return
        self._purge_waiting()
        if self.waiting:
            self._start_view_change(self.view + 1, out)

    def _arm_progress(self, out: list[Action]) -> None:
        self._progress_mark = self.last_delivered
        self._set_timer(self.t_progress, self._timeout_ticks(), out)

    def _on_progress_timer(self, out: list[Action]) -> None:
        if self.in_view_change:
            return
        if self._max_accepted <= self.last_delivered and not self.committed:
            return  # nothing accepted is waiting: idle, not stuck
        if self.last_delivered > self._progress_mark:
            self._arm_progress(out)  # slow but moving
            return
        self._start_view_change(self.view + 1, out)

    # --- normal case (§4.2) ------------------------------------------------------------

    def _normal_case_gate(
        self, view: int, seq: int, sender: int, msg: Any, out: list[Action]
    ) -> bool:
        """True when a normal-case message may be processed now; holds or drops it otherwise."""
        if view < self.view:
            self._ignore("old_view")
            return False
        if view > self.view or self.in_view_change:
            self._hold(sender, msg)
            if self.in_view_change:
                self._ask_for_new_view(sender, view, out)
            return False
        if seq <= self.low:
            self._ignore("below_low_watermark")
            return False
        if seq > self.high:
            self._hold(sender, msg)
            return False
        return True

    def _on_pre_prepare(self, sender: int, pp: PrePrepare, out: list[Action]) -> None:
        if pp.instance != self.instance:
            self._ignore("wrong_instance")
            return
        if sender != (self.instance + pp.view) % self.n or sender == self.id:
            self._ignore("pre_prepare_not_from_primary")
            return
        if not self._normal_case_gate(pp.view, pp.seq, sender, pp, out):
            return
        slot = self.slots.get(pp.seq)
        if slot is not None and slot.pre_prepare is not None:
            if slot.digest == pp.batch.digest:
                self._ignore("duplicate")
            else:
                self._ignore("conflicting_pre_prepare")  # evidence of a faulty primary
            return
        if not self._valid_pre_prepare_signature(pp):
            self._ignore("bad_signature")
            return
        batch = pp.batch
        if not batch_is_valid(batch):
            self._ignore("bad_batch_digest")
            return
        verify_request = self.verifier.verify_request
        for req in batch.requests:  # batch_is_valid passed: ids fit the signed header
            if not verify_request(req):
                self._ignore("bad_client_signature")
                return
        self._accept_pre_prepare(pp, slot if slot is not None else self._slot(pp.seq), out)

    def _accept_pre_prepare(self, pp: PrePrepare, slot: _Slot, out: list[Action]) -> None:
        seq = pp.seq
        assert self.low < seq <= self.high, "accepted seqs lie within the watermarks"
        assert pp.view == self.view and not self.in_view_change
        if seq > self._max_accepted:
            self._max_accepted = seq
            if self.t_progress not in self.armed and seq > self.last_delivered:
                self._arm_progress(out)
        slot.pre_prepare = pp
        d = slot.digest = pp.batch.digest
        if not self.sign_votes:
            note_pre_prepared(self.pre_prepared, seq, d, pp.view)
        if self.id == self.primary:  # only from a NEW-VIEW: the primary does not prepare
            for req in pp.batch.requests:
                self.in_flight[(req.client_id, req.timestamp)] = seq
        else:
            sig = b""
            if self.sign_votes:
                sig = self.verifier.sign(prepare_payload(self.instance, self.view, seq, self.id, d))
            prepare = Prepare(self.instance, self.view, seq, d, self.id, sig)
            slot.prepares[self.id] = prepare
            slot.prepare_counts[d] = slot.prepare_counts.get(d, 0) + 1
            out.append(Broadcast(prepare))
        self._check_prepared(seq, slot, out)

    def _from_member(self, sender: int, msg: Any, others_only: bool = False) -> bool:
        """A vote-like message is for this instance and its ``replica`` field is its
        authenticated sender, a replica (not this one, with ``others_only``); else ignored."""
        if msg.instance != self.instance:
            self._ignore("wrong_instance")
            return False
        if sender != msg.replica or not 0 <= sender < self.n or (others_only and sender == self.id):
            self._ignore("wrong_replica_field")
            return False
        return True

    def _on_prepare(self, sender: int, p: Prepare, out: list[Action]) -> None:
        # our own vote is recorded where we cast it; one "from us" is forged (it would count
        # twice: found by fuzzing)
        if not self._from_member(sender, p, others_only=True):
            return
        if sender == (self.instance + p.view) % self.n:
            self._ignore("prepare_from_primary")
            return
        if not self._normal_case_gate(p.view, p.seq, sender, p, out):
            return
        slot = self._slot(p.seq)
        if sender in slot.prepares:
            self._ignore("duplicate")
            return
        if self.sign_votes and not self._valid_prepare_signature(p):
            self._ignore("bad_signature")
            return
        slot.prepares[sender] = p
        d = p.digest
        slot.prepare_counts[d] = slot.prepare_counts.get(d, 0) + 1
        if d == slot.digest and not slot.prepared:
            self._check_prepared(p.seq, slot, out)

    def _ask_for_new_view(self, sender: int, view: int, out: list[Action]) -> None:
        """``sender`` already works in ``view`` >= ours while we wait for its NEW-VIEW: we
        probably lost it, so send our VIEW-CHANGE to ``sender``, which answers with its
        NEW-VIEW (once per sender and view, bounded)."""
        own = self.vc_latest.get(self.id)
        key = (sender, view)
        if own is None or key in self._asked_new_view or len(self._asked_new_view) >= ASKED_NEW_VIEW_PER_REPLICA * self.n:
            return
        self._asked_new_view.add(key)
        out.append(Send(sender, own))

    def _check_prepared(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        pp = slot.pre_prepare
        if slot.prepared or pp is None:
            return
        d = slot.digest
        assert d is not None
        if slot.prepare_counts.get(d, 0) < self.prepare_quorum:
            return
        primary = self.primary_of(pp.view)
        prepares = tuple(p for p in slot.prepares.values() if p.digest == d)
        assert len({p.replica for p in prepares}) == len(prepares) >= self.prepare_quorum
        assert primary not in {p.replica for p in prepares}, "prepares come from backups"
        slot.prepared = True
        self.certs[seq] = PreparedCert(pp, prepares[: self.prepare_quorum])
        commit = Commit(self.instance, self.view, seq, d, self.id)
        if self.id not in slot.commits:
            slot.commits[self.id] = d
            slot.commit_counts[d] = slot.commit_counts.get(d, 0) + 1
        out.append(Broadcast(commit))
        self._check_committed(seq, slot, out)

    def _on_commit(self, sender: int, c: Commit, out: list[Action]) -> None:
        if not self._from_member(sender, c, others_only=True):
            return
        if not self._normal_case_gate(c.view, c.seq, sender, c, out):
            return
        slot = self._slot(c.seq)
        if sender in slot.commits:
            self._ignore("duplicate")
            return
        d = c.digest
        slot.commits[sender] = d
        slot.commit_counts[d] = slot.commit_counts.get(d, 0) + 1
        if slot.prepared and d == slot.digest:
            self._check_committed(c.seq, slot, out)

    def _check_committed(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        if slot.committed or not slot.prepared:
            return
        d = slot.digest
        if slot.commit_counts.get(d, 0) < self.commit_quorum:
            return
        assert sum(1 for x in slot.commits.values() if x == d) >= self.commit_quorum
        slot.committed = True
        pp = slot.pre_prepare
        assert pp is not None
        self._commit(seq, pp.view, pp.batch, out)

    def _commit(self, seq: int, view: int, batch: Batch, out: list[Action]) -> None:
        """``batch`` is committed at ``seq``: deliver it (in order) unless already done."""
        if seq <= self.last_delivered:
            old = self.history.get(seq)
            assert old is None or old[1].digest == batch.digest, (
                f"seq {seq} committed as a batch different from the one delivered (safety)"
            )
            return
        old = self.committed.get(seq)
        if old is not None:
            assert old[1].digest == batch.digest, f"seq {seq} committed twice differently"
            return
        self.committed[seq] = (view, batch)
        if seq == self.last_delivered + 1:
            self._deliver_ready(out)
        elif self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _deliver_ready(self, out: list[Action]) -> None:
        committed = self.committed
        history = self.history
        clients = self.clients
        window = self.replay_window
        while True:
            seq = self.last_delivered + 1
            entry = committed.pop(seq, None)
            if entry is None:
                break
            view, batch = entry
            assert seq == self.last_delivered + 1, "deliver in order, no gaps"
            self.last_delivered = seq
            out.append(Deliver(seq, view, batch))
            history[seq] = entry
            history.pop(seq - self.history_len, None)
            for req in batch.requests:
                rec = clients.get(req.client_id)
                if rec is None:
                    rec = clients[req.client_id] = _ClientReplay()
                ts = req.timestamp
                if ts <= rec.floor or ts in rec.recent:
                    continue  # a replay inside a batch: the execute stage answers it again
                rec.recent.add(ts)
                order = rec.order
                order.append(ts)
                if len(order) > window:  # bounded: older timestamps fall below the floor
                    oldest = order.popleft()
                    rec.recent.discard(oldest)
                    if oldest > rec.floor:
                        rec.floor = oldest
            if self.in_flight:
                for req in batch.requests:
                    self.in_flight.pop((req.client_id, req.timestamp), None)
            if self.waiting:
                self._waiting_done(batch, out)
            if self.fetch_votes:
                self.fetch_votes.pop(seq, None)
            if self._view_unproven:
                self._view_unproven = False
                self.backoff_exp = 0  # the view change succeeded: reset the doubling
        if self._stable_unannounced and self.last_delivered >= self.low:
            self._stable_unannounced = False
            out.append(StableCheckpoint(self.low, self.stable_digest))

    # --- checkpoints and garbage collection (§4.3) -------------------------------------

    # _on_checkpoint, _add_checkpoint, _valid_checkpoint_proof: ReplicaCore

    def _make_stable(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        own = self.ckpt_of.get(self.id, {}).get(seq)
        if own is not None and own != digest:
            self.checkpoint_mismatches += 1  # our execution diverged from 2f+1 others
        self._move_watermarks(seq, digest, proof, (self.slots, self.certs, self.pre_prepared))
        if self.last_delivered >= seq:
            self._stable_unannounced = False
            out.append(StableCheckpoint(seq, digest))
        else:
            self._stable_unannounced = True  # announced once delivery catches up
        if replay:
            if self.last_delivered < seq:
                self._fetch_now(out)
            self._replay_held(out)
            self._drain_queue(out)

    # --- catch-up (state transfer by replaying delivered batches) ----------------------

    def _fetch_target(self) -> int:
        """Highest seq we know to be committed somewhere (stable, or committed here)."""
        target = self.low
        if self.committed:
            target = max(target, max(self.committed))
        return target

    def _arm_fetch_timer(self, out: list[Action]) -> None:
        self._fetch_mark = self.last_delivered
        self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _fetch_now(self, out: list[Action]) -> None:
        target = self._fetch_target()
        if self.last_delivered >= target:
            return
        first = self.last_delivered + 1
        last = min(target, self.last_delivered + self.fetch_span)
        self._fetch_requested_to = last
        out.append(Broadcast(Fetch(self.instance, first, last, self.id)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch_timer(self, out: list[Action]) -> None:
        if self.last_delivered >= self._fetch_target():
            return
        if self.last_delivered == self._fetch_mark:  # no progress for a whole period
            self._fetch_now(out)
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch(self, sender: int, m: Fetch, out: list[Action]) -> None:
        if not self._from_member(sender, m, others_only=True):
            return
        first = max(m.first_seq, self.last_delivered - self.history_len + 1, 1)
        last = min(m.last_seq, first + self.fetch_span - 1, self.last_delivered)
        for seq in range(first, last + 1):
            entry = self.history.get(seq)
            if entry is not None:
                out.append(
                    Send(sender, FetchReply(self.instance, seq, entry[0], entry[1], self.id))
                )

    def _on_fetch_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        if not self._from_member(sender, m, others_only=True):
            return
        seq = m.seq
        if (
            seq <= self.last_delivered
            or seq > self.last_delivered + self.fetch_span
            or seq in self.committed
        ):
            self._ignore("unneeded_fetch_reply")
            return
        matching = self._count_fetch_reply(self.fetch_votes.setdefault(seq, {}), sender, m)
        if matching is None:
            return
        batch = next((r.batch for r in matching if batch_is_valid(r.batch)), None)
        if batch is None:
            self._ignore("bad_batch_digest")
            return
        del self.fetch_votes[seq]
        self._commit(seq, max(r.view for r in matching), batch, out)
        # The requested range is done but we are still behind: ask for the next one now.
        if self.last_delivered >= self._fetch_requested_to:
            self._fetch_now(out)

    # --- view change (§4.4, §4.5.2) -----------------------------------------------------

    def _start_view_change(self, new_view: int, out: list[Action]) -> None:
        assert new_view > self.view, "views only move forward"
        if self.in_view_change or self._view_unproven:
            self.backoff_exp = min(self.backoff_exp + 1, MAX_BACKOFF_EXP)
        self.view_changes_started += 1
        self.view = new_view
        self.in_view_change = True
        self._view_unproven = False
        self._asked_new_view = set()
        self._reasked = False
        self._cancel_request_timer(out)
        if self.t_progress in self.armed:
            self._cancel_timer(self.t_progress, out)
        self._max_accepted = 0
        self.slots.clear()  # stop taking part in the old view
        self.in_flight = {(r.client_id, r.timestamp): 0 for b in self.queue for r in b.requests}
        vc = self._make_view_change(new_view)
        self.vc_latest[self.id] = vc
        out.append(Broadcast(vc))
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.primary_of(new_view) == self.id:
            self._try_new_view(out)

    def _make_view_change(self, new_view: int) -> ViewChange:
        """Our view-change, always signed: with signed votes it carries certificates; with
        unsigned ones claims (a certificate's prepares would prove nothing) and what we
        pre-prepared (protocols/claims.py weighs them)."""
        low = self.low
        prepared = tuple(self.certs[s] for s in sorted(self.certs) if s > low)
        claims: tuple[PrePrepared, ...] = ()
        if not self.sign_votes:
            prepared = tuple(PreparedCert(c.pre_prepare, ()) for c in prepared)
            table = self.pre_prepared
            claims = tuple(
                PrePrepared(s, v, d)
                for s in sorted(table)
                if low < s <= low + self.window
                for d, v in sorted(table[s].items())
            )
        vc = ViewChange(
            self.instance, new_view, self.id, low, self.stable_proof, prepared, b"", claims
        )
        return dataclasses.replace(vc, signature=self.verifier.sign(view_change_payload(vc)))

    def _on_view_change_timer(self, out: list[Action]) -> None:
        if not self.in_view_change:
            return
        w = self.view
        have = sum(1 for vc in self.vc_latest.values() if vc.new_view >= w)
        if have >= self.view_change_quorum:
            own = self.vc_latest.get(self.id)
            working = sorted({s for s, m in self.held if m.view == w})
            if not self._reasked and own is not None and working:
                # Peers already work in view w: our NEW-VIEW was probably lost. Ask them once
                # more (bounded: once per view change) before giving up on this view.
                self._reasked = True
                for peer in working[: self.f + 1]:
                    out.append(Send(peer, own))
                self._set_timer(self.t_view_change, self._timeout_ticks(), out)
                return
            # 2f+1 moved to w (or beyond) but no valid NEW-VIEW came in time: next primary.
            self._start_view_change(w + 1, out)
        else:
            # Not enough replicas are changing yet: retransmit ours (messages may be lost).
            own = self.vc_latest.get(self.id)
            if own is not None and own.new_view == w:
                out.append(Broadcast(own))
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)

    def _on_view_change(self, sender: int, vc: ViewChange, out: list[Action]) -> None:
        if not self._from_member(sender, vc, others_only=True):
            return
        w = vc.new_view
        if w < self.view or (w == self.view and not self.in_view_change):
            # The sender is behind: it missed the NEW-VIEW of our view. A NEW-VIEW proves
            # itself, so hand ours over (at most MAX_NEW_VIEW_RESENDS per sender and view).
            nv = self.new_view_msg
            sent = self._new_view_resent.get(sender, 0)
            if not self.in_view_change and nv is not None and sent < MAX_NEW_VIEW_RESENDS:
                self._new_view_resent[sender] = sent + 1
                out.append(Send(sender, nv))
            else:
                self._ignore("old_view")
            return
        prev = self.vc_latest.get(sender)
        if prev is not None and prev.new_view >= w:
            self._ignore("duplicate")
            return
        if not self._valid_view_change(vc):
            self._ignore("invalid_view_change")
            return
        self.vc_latest[sender] = vc
        # §4.5.2: f+1 replicas ask for views above ours: join the smallest of them.
        higher = [
            x.new_view for r, x in self.vc_latest.items() if r != self.id and x.new_view > self.view
        ]
        if len(higher) >= self.join_quorum:
            self._start_view_change(min(higher), out)
            return
        if w == self.view and self.in_view_change and self.primary_of(w) == self.id:
            self._try_new_view(out)

    def _valid_cert(self, cert: PreparedCert) -> bool:
        pp = cert.pre_prepare
        d = pp.batch.digest
        primary = self.primary_of(pp.view)
        if not self._valid_pre_prepare_signature(pp) or not batch_is_valid(pp.batch):
            return False
        seen: set[int] = set()
        for p in cert.prepares:
            if (
                p.instance != self.instance
                or p.view != pp.view
                or p.seq != pp.seq
                or p.digest != d
                or p.replica == primary
                or not 0 <= p.replica < self.n
                or p.replica in seen
                or not self._valid_prepare_signature(p)
            ):
                return False
            seen.add(p.replica)
        return len(seen) >= self.prepare_quorum

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """Shape, proofs and signature of a view-change (§4.4)."""
        if vc.instance != self.instance or not 0 <= vc.replica < self.n or vc.new_view < 1:
            return False
        stable = vc.stable_seq
        if not self._valid_stable_claim(stable, vc.checkpoint_proof):
            return False
        seqs: set[int] = set()
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if (
                pp.instance != self.instance
                or not stable < pp.seq <= stable + self.window
                or pp.seq in seqs
                or not 0 <= pp.view < vc.new_view
            ):
                return False
            if self.sign_votes and not self._valid_cert(cert):
                return False
            if not self.sign_votes and (cert.prepares or not batch_is_valid(pp.batch)):
                return False  # a claim: the batch, no (meaningless unsigned) prepares
            seqs.add(pp.seq)
        if vc.pre_prepared and (
            self.sign_votes or not well_formed(vc.pre_prepared, stable, self.window, vc.new_view)
        ):
            return False
        try:
            payload = view_change_payload(vc)
        except Exception:  # an unencodable value cannot carry a valid signature
            return False
        return bool(self.verifier.verify(vc.replica, payload, vc.signature))

    def _new_view_plan(
        self, view_changes: tuple[ViewChange, ...]
    ) -> tuple[ViewChange, list[tuple[int, Batch]]] | None:
        """(the view-change holding min-s, [(seq, batch) for min-s < seq <= max-s]) (§4.4);
        with unsigned votes decided from claims, None while a seq is undecided."""
        stable_vc = max(view_changes, key=lambda vc: (vc.stable_seq, -vc.replica))
        min_s = stable_vc.stable_seq
        if not self.sign_votes:
            decided = self._plan_from_claims(view_changes, min_s)
            return None if decided is None else (stable_vc, decided)
        best: dict[int, PrePrepare] = {}
        for vc in view_changes:
            for cert in vc.prepared:
                pp = cert.pre_prepare
                if pp.seq <= min_s:
                    continue
                cur = best.get(pp.seq)
                if cur is None or (pp.view, pp.batch.digest) > (cur.view, cur.batch.digest):
                    best[pp.seq] = pp
        max_s = max(best, default=min_s)
        assert max_s - min_s <= self.window, "re-proposals stay within one window"
        plan = [
            (s, best[s].batch if s in best else NULL_BATCH) for s in range(min_s + 1, max_s + 1)
        ]
        return stable_vc, plan

    def _plan_from_claims(
        self, view_changes: tuple[ViewChange, ...], min_s: int
    ) -> list[tuple[int, Batch]] | None:
        """Unsigned votes: Castro & Liskov's MAC view change (protocols.claims.choose) for
        each seq from min-s+1 to the highest one anybody claims prepared."""
        prepared = [
            {
                c.pre_prepare.seq: (
                    c.pre_prepare.view,
                    c.pre_prepare.batch.digest,
                    c.pre_prepare.batch,
                )
                for c in vc.prepared
            }
            for vc in view_changes
        ]
        max_s = max((s for p in prepared for s in p), default=min_s)
        seqs = range(min_s + 1, max_s + 1)
        decided = decide(
            prepared,
            [vc.pre_prepared for vc in view_changes],
            seqs,
            self.view_change_quorum,
            self.f,
        )
        if decided is None:
            return None
        return [(s, NULL_BATCH if b is None else b) for s, b in zip(seqs, decided, strict=True)]

    def _try_new_view(self, out: list[Action]) -> None:
        w = self.view
        size = self.view_change_quorum
        if not self.sign_votes:  # every view-change we hold for w: each seq must be decided
            size = max(size, sum(1 for vc in self.vc_latest.values() if vc.new_view == w))
        chosen = self._new_view_set(size)
        if chosen is None:
            return
        planned = self._new_view_plan(chosen)
        if planned is None:
            return  # unsigned votes: a seq is undecided; the next view-change may decide it
        stable_vc, plan = planned
        pps = tuple(self._make_pre_prepare(w, s, batch) for s, batch in plan)
        nv = NewView(self.instance, w, chosen, pps)
        out.append(Broadcast(nv))
        self._enter_view(nv, stable_vc, out)

    def _on_new_view(self, sender: int, nv: NewView, out: list[Action]) -> None:
        if nv.instance != self.instance:
            self._ignore("wrong_instance")
            return
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        w = nv.view
        if w < self.view or (w == self.view and not self.in_view_change) or w < 1:
            self._ignore("old_view")
            return
        # A signed NEW-VIEW proves itself, so any replica may relay it; unsigned only the primary.
        if not self.sign_votes and sender != self.primary_of(w):
            self._ignore("new_view_not_from_primary")
            return
        stable_vc = self._validate_new_view(nv)
        if stable_vc is None:
            self._ignore("invalid_new_view")
            return
        self._enter_view(nv, stable_vc, out)

    def _validate_new_view(self, nv: NewView) -> ViewChange | None:
        """Recompute the NEW-VIEW's pre-prepares from its view-changes; None if it differs."""
        w = nv.view
        seen: set[int] = set()
        for vc in nv.view_changes:
            if vc.new_view != w or vc.replica in seen:
                return None
            if self.vc_latest.get(vc.replica) != vc and not self._valid_view_change(vc):
                return None
            seen.add(vc.replica)
        if len(seen) < self.view_change_quorum:
            return None
        planned = self._new_view_plan(nv.view_changes)
        if planned is None:
            return None
        stable_vc, plan = planned
        if len(plan) != len(nv.pre_prepares):
            return None
        primary = self.primary_of(w)
        for pp, (seq, batch) in zip(nv.pre_prepares, plan, strict=True):
            if pp.instance != self.instance or pp.view != w or pp.seq != seq or pp.batch != batch:
                return None
            if self.sign_votes and not self._verify(
                primary,
                pre_prepare_payload,
                pp.instance,
                w,
                seq,
                batch.digest,
                signature=pp.signature,
            ):
                return None
        return stable_vc

    def _enter_view(self, nv: NewView, stable_vc: ViewChange, out: list[Action]) -> None:
        w = nv.view
        was_changing = self.in_view_change
        self.view = w
        self.in_view_change = False
        self._view_unproven = True
        self.new_view_msg = nv
        self._new_view_resent = {}
        self._cancel_timer(self.t_view_change, out)
        for r in [r for r, vc in self.vc_latest.items() if vc.new_view <= w]:
            del self.vc_latest[r]
        if not was_changing:
            self._cancel_request_timer(out)
        if self.t_progress in self.armed:
            self._cancel_timer(self.t_progress, out)
        self._max_accepted = 0
        self.slots = {}
        if stable_vc.stable_seq > self.low:
            cp = stable_vc.checkpoint_proof
            self._make_stable(stable_vc.stable_seq, cp[0].state_digest, cp, out, replay=False)
        max_s = nv.pre_prepares[-1].seq if nv.pre_prepares else stable_vc.stable_seq
        self.last_assigned = max(max_s, self.low)
        is_primary = self.primary_of(w) == self.id
        if not is_primary:
            self.in_flight = {}
        for pp in nv.pre_prepares:
            if self.low < pp.seq <= self.high:
                self._accept_pre_prepare(pp, self._slot(pp.seq), out)
        out.append(base.ViewEntered(w, self.primary_of(w)))
        self._resume_requests(w, out)  # waiting requests: proposed, or sent to the primary
        self._replay_held(out)
        if self.last_delivered < self._fetch_target():
            self._fetch_now(out)


__all__ = ["Pbft"]
