"""PBFT (Castro & Liskov, OSDI'99 / TOCS'02) as a sans-IO state machine: calls in, actions out.

``Pbft`` is composed of one mixin per paper section, each in its own module that opens with
the section it implements:
- protocols/pbft/normal.py: requests and the normal case (§4.1, §4.2);
- protocols/pbft/checkpoints.py: checkpoints and garbage collection (§4.3; the vote
  counting is shared with PoE in protocols/checkpoints.py);
- protocols/pbft/catch_up.py: state transfer by replaying delivered batches (FETCH);
- protocols/pbft/view_change.py: view change and liveness (§4.4, §4.5.2), moving through the
  view-state table of protocols/pbft/states.py (NORMAL / VIEW_CHANGE / NEW_VIEW_UNPROVEN);
- protocols/pbft/mac_view_change.py: the view change with MACs (TOCS'02 §4.5), used with
  ``pbft_signed_votes: false``: claims instead of certificates, decided by protocols/claims.py.

Transferable proofs (pre-prepares and prepares in certificates, checkpoints in proofs,
view-changes in a NEW-VIEW) are signed through the injected Verifier: params
``pbft_signed_votes`` (default True). Byzantine replicas may sign any lie; the simulator
makes them. The machinery PoE runs the same way (held messages, request waiting and
proposal queue, checkpoint votes and stabilisation, dispatch) lives in
protocols/replica_core.py; the mixins fill its hooks.

Lives here: the state of one replica (every mixin reads and writes it), its quorum sizes,
who proposes, the client's reply rule, ``status``. Must not live here: any step of the
protocol (the mixins), sockets, threads, clocks, randomness, message encoding (wire).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.base import ProtocolConfig, ReplyRule, Verifier
from protocols.checkpoints import Checkpoint
from protocols.common import Batch, Request
from protocols.limits import (
    FETCH_SPAN_WINDOWS,
    FETCH_TICKS_DIVISOR,
    HISTORY_WINDOWS,
    MAX_STATE_PROBES,
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
)
from protocols.pbft.catch_up import PbftCatchUp
from protocols.pbft.checkpoints import PbftCheckpoints
from protocols.pbft.mac_view_change import PbftMacViewChange
from protocols.pbft.messages import (
    Commit,
    Fetch,
    FetchReply,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ViewChange,
)
from protocols.pbft.normal import PbftNormalCase, _ClientReplay, _Slot, batch_is_valid
from protocols.pbft.params import PbftParams
from protocols.pbft.states import NORMAL, VIEW_CHANGE
from protocols.pbft.view_change import PbftViewChange
from protocols.replica_core import ReplicaCore


class Pbft(
    PbftNormalCase,
    PbftCheckpoints,
    PbftCatchUp,
    PbftViewChange,
    PbftMacViewChange,
    ReplicaCore[_Slot],
):
    """One PBFT replica (or one PBFT instance of RCC when ``instance`` > 0)."""

    name = "pbft"
    proposal_messages = (PrePrepare,)
    vote_messages = (Prepare, Commit)

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
        # a stable checkpoint further than this beyond last_delivered is fetched as state
        self.state_fetch_gap = self.history_len // 2
        # False inside RCC (its instances count rounds, and its lanes fetch the state their
        # own way: protocols/rcc/lane.py): no FetchState, no probes answering a FETCH
        self.fetches_state = True
        # the idle watch (pbft/checkpoints.py): after a quiet period, ask what follows
        self.watches_idle = True
        # answer a FETCH from at or below our stable checkpoint with our signed vote for it
        # (kept inside RCC: a lane far behind fetches the state on 2f+1 of them)
        self.serves_stable_vote = True
        self.fetch_span = max(1, FETCH_SPAN_WINDOWS * self.window)
        self.fetch_ticks = max(1, self.base_ticks // FETCH_TICKS_DIVISOR)

        self.t_request = ("pbft", instance, "request")
        self.t_progress = ("pbft", instance, "progress")
        self.t_view_change = ("pbft", instance, "view_change")
        self.t_fetch = ("pbft", instance, "fetch")
        self.t_idle = ("pbft", instance, "idle")

        # view state (view, backoff_exp: ReplicaCore)
        self.view_state = NORMAL  # protocols/pbft/states.py; written by _move alone
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
        self.stable_vote: Checkpoint | None = None  # our own vote for the stable checkpoint
        self.max_probes = MAX_STATE_PROBES
        self._probes_left = 0  # probes (FETCH after a restart) still to repeat
        self._idle_rounds = 0  # idle periods in a row (nothing delivered), see _on_idle_timer
        self._idle_mark = -1
        self._probe_mark = -1

        # counters (abnormal paths only; the shared ones: ReplicaCore)
        self.checkpoint_mismatches = 0
        self.state_fetches = 0  # FetchState actions emitted
        self.states_installed = 0

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
            (self.t_idle, self._on_idle_timer),
        )

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
        # in_view_change, read without the property call (once per worker loop)
        return self.view_state != VIEW_CHANGE and (self.instance + self.view) % self.n == self.id

    def proposal_room(self) -> int:
        if not self.is_proposer():
            return 0
        return (self.high - self.last_assigned) + (self.max_queued - len(self.queue))

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
            "state_fetches": self.state_fetches,
            "states_installed": self.states_installed,
            "fetching": self.last_delivered < self._fetch_target(),
            "ignored": dict(self.ignored),
        }

    def _changing_view(self) -> bool:
        return self.in_view_change


__all__ = ["Pbft", "batch_is_valid"]
