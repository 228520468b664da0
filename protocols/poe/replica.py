"""PoE (Gupta, Hellings, Rahnama, Sadoghi, EDBT'21) as a sans-IO state machine.

``Poe`` is composed of one mixin per paper section, each in its own module that opens with
the section it implements:
- protocols/poe/normal.py: requests and the normal case (§3: propose, support, certify,
  view-commit, speculative execution, rollback);
- protocols/poe/checkpoints.py: checkpoints and finality (as PBFT §4.3; the vote counting is
  shared with PBFT in protocols/checkpoints.py);
- protocols/poe/catch_up.py: FETCH of final and certified entries, stable proofs;
- protocols/poe/view_change.py: VC-REQUEST, the plan, NV-PROPOSE (§4), moving through the
  view-state table of protocols/poe/states.py (ACTIVE / ACTIVE_UNPROVEN / VIEW_CHANGE /
  NV_PENDING);
- protocols/poe/new_view.py: the plan lock beyond the paper (NV-SUPPORT / NV-CERTIFY /
  NV-COMMIT), entering the view and reconciling executed entries with the plan;
- protocols/poe/mac_view_change.py: the view change with MACs (``poe_certificate: macs``),
  claims decided by protocols/claims.py.

Clients accept n−f identical INFORMs: same view, seq and result (``reply_rule``, as in the
paper). The machinery PBFT runs the same way (held messages, request waiting and proposal
queue, checkpoint votes and stabilisation, dispatch) lives in protocols/replica_core.py; the
mixins fill its hooks.

Lives here: the state of one replica (every mixin reads and writes it), its quorum sizes,
who proposes, the client's reply rule, ``status``. Must not live here: any step of the
protocol (the mixins), sockets, threads, clocks, randomness, message encoding (wire).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.base import (
    ProtocolConfig,
    ReplyRule,
    Verifier,
)
from protocols.checkpoints import Checkpoint
from protocols.common import Batch, Request
from protocols.limits import (
    FETCH_SPAN_WINDOWS,
    FETCH_TICKS_DIVISOR,
    HISTORY_WINDOWS,
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
)
from protocols.poe.catch_up import PoeCatchUp
from protocols.poe.checkpoints import CHECKPOINT_INSTANCE, PoeCheckpoints
from protocols.poe.mac_view_change import PoeMacViewChange
from protocols.poe.messages import (
    Certify,
    Committed,
    Fetch,
    FetchReply,
    NvCertify,
    NvCommit,
    NvPropose,
    NvSupport,
    Propose,
    StableProof,
    Support,
    VcRequest,
)
from protocols.poe.new_view import PoeNewView
from protocols.poe.normal import PoeNormalCase, _Slot
from protocols.poe.params import CERTIFICATE_MODES, PoeParams
from protocols.poe.states import ACTIVE, NV_PENDING, VIEW_CHANGE
from protocols.poe.view_change import Plan, PoeViewChange
from protocols.replica_core import ReplicaCore


class Poe(
    PoeNormalCase,
    PoeCheckpoints,
    PoeCatchUp,
    PoeViewChange,
    PoeNewView,
    PoeMacViewChange,
    ReplicaCore[_Slot],
):
    """One PoE replica."""

    name = "poe"
    speculative_replies = True
    proposal_messages = (Propose,)
    vote_messages = (Support, Certify)
    checkpoint_revotes = True  # a replica re-executing after a rollback votes again
    checkpoints_from_self = False  # so one in our own name could replace our vote: refused

    def __init__(self, config: ProtocolConfig, verifier: Verifier) -> None:
        super().__init__(config, verifier, _Slot)
        n, f = self.n, self.f
        self.params = PoeParams.from_params(config.params)
        self.macs = self.params.certificate == "macs"
        self.checkpoint_instance = CHECKPOINT_INSTANCE
        # Quorum sizes: every check below reads these (a test may break them on purpose).
        self.quorum = n - f  # supports per certificate; VC-REQUESTs per NV; NV-COMMITs
        self.checkpoint_quorum = 2 * f + 1
        self.fetch_quorum = f + 1  # matching final fetch replies that make a batch trusted
        self.join_quorum = f + 1  # replicas in later views that make us join

        # bounds (protocols/limits.py), relative to the watermark window and the timeout
        self.max_queued = QUEUED_BATCHES_PER_WINDOW * self.window
        self.max_waiting = max(1, config.max_buffered)
        self.history_len = HISTORY_WINDOWS * self.window
        self.fetch_span = max(1, FETCH_SPAN_WINDOWS * self.window)
        self.fetch_ticks = max(1, self.base_ticks // FETCH_TICKS_DIVISOR)
        self.replay_window = REPLAY_WINDOW_PER_CLIENT

        self.t_request = ("poe", "request")
        self.t_view_change = ("poe", "view_change")
        self.t_fetch = ("poe", "fetch")
        # armed while executed entries wait to become final: a replica cut off while the
        # others moved on (a later view, a stable checkpoint it never heard of) must not
        # hold a speculative suffix forever once the traffic that would tell it has passed
        self.t_final = ("poe", "final")
        self._final_probe_exp = 0
        self._final_probe_mark = (0, 0)  # (final_mark, last_executed) when it was armed

        # view state (view, backoff_exp: ReplicaCore)
        self.view_state = ACTIVE  # protocols/poe/states.py; written by _move alone
        self.peer_view: dict[int, int] = {}  # replica -> highest view it spoke from
        self.vc_latest: dict[int, VcRequest] = {}  # replica -> its highest valid VC-REQUEST
        self.nv: NvPropose | None = None  # the NV-PROPOSE of the current view
        self.plan: Plan | None = None
        self.nv_shares: dict[int, tuple[bytes, ...]] = {}  # new primary: replica -> shares
        self.nv_certify: NvCertify | None = None  # the current view's certified plan
        self.own_nv_support: NvSupport | None = None
        self.own_nv_commit: NvCommit | None = None
        self.nv_commits: dict[int, dict[bytes, set[int]]] = {}  # view -> plan digest -> replicas
        self.certify_seen: dict[int, NvCertify] = {}  # verified, for a view not yet entered
        self.pending_nv: NvPropose | None = None  # relayed by a non-primary, awaiting NV-CERTIFY
        self.nv_retries = 0
        # MACs: view -> plan digest -> replicas that sent NV-SUPPORT for it (bounded like
        # nv_commits); n−f for our plan prepare it here, as NV-CERTIFY does with signatures.
        self.nv_supports: dict[int, dict[bytes, set[int]]] = {}
        self.plan_prepared = False  # we hold n−f supports (NV-CERTIFY, or MACs) for the plan

        # log (watermarks, stable proof, slots, checkpoint votes: ReplicaCore)
        self.final_mark = 0  # highest stable seq our own state was checked against
        self.verified_to = 0  # entries 1..verified_to equal the final ones
        self._diverged = False  # our state at the stable checkpoint differs from it
        self.plan_end = 0  # fresh proposals only above this (the current view's plan)
        self.pending_plan: Plan | None = None  # entered view, plan not yet reconciled
        self.reconciled = True  # executed entries agree with the current view's plan
        self.evidence: dict[int, Committed] = {}  # seq -> highest-view certificate held
        # MACs: seq -> digest -> latest view we supported it in (bounded per seq)
        self.supported: dict[int, dict[bytes, int]] = {}
        self.ready: dict[int, tuple[int, Batch]] = {}  # view-committed, not yet delivered
        self.log: dict[int, tuple[int, Batch]] = {}  # executed: last history_len seqs
        self.last_executed = 0
        self.own_digest: dict[int, bytes] = {}  # checkpoint seq -> our state digest there

        # requests (queue, in-flight, waiting: ReplicaCore)
        self.executed_ts: dict[int, dict[int, int]] = {}  # client -> recent executed ts -> seq
        # Executed but not final, and the client keeps re-sending it: it lacks n−f matching
        # replies (some replicas are out of step). key -> re-sends seen; bounded by max_waiting.
        self.resent: dict[tuple[int, int], int] = {}
        self.stuck: set[tuple[int, int]] = set()  # re-sent again during this request period
        self.ts_floor: dict[int, int] = {}  # client -> highest timestamp evicted
        self._probed_at = -1  # last_executed when the request timer last fetched instead

        # catch-up
        self.fetch_votes: dict[int, dict[int, FetchReply]] = {}  # seq -> replica -> final reply
        # MACs: seq -> replica -> "view-committed in our current view" reply (f+1 matching
        # mean an honest replica holds n−f supports for it: we view-commit it too)
        self.commit_votes: dict[int, dict[int, FetchReply]] = {}
        self.finals: dict[int, tuple[int, Batch]] = {}  # trusted final entries, not yet applied
        self._fetch_mark = (-1, -1)
        self._fetch_requested_to = 0

        # counters (view changes; the shared ones: ReplicaCore)
        self.rolled_back = 0
        self.rollbacks = 0
        self.reexecuted = 0  # entries rolled back on entering a view only to re-execute in it
        self.final_probes = 0  # Fetches sent because executed entries stayed unfinal
        # state transfer: a stable checkpoint further than this beyond our execution is
        # fetched as state (FetchState), once per checkpoint seq
        self.state_fetch_gap = self.history_len // 2
        self._state_fetched_for = 0
        self.state_fetches = 0
        self.states_installed = 0

        self._handlers = {
            Propose: self._on_propose,
            Support: self._on_support,
            Certify: self._on_certify,
            Checkpoint: self._on_checkpoint,
            VcRequest: self._on_vc_request,
            NvPropose: self._on_nv_propose,
            NvSupport: self._on_nv_support,
            NvCertify: self._on_nv_certify,
            NvCommit: self._on_nv_commit,
            Request: self._on_request,
            Fetch: self._on_fetch,
            FetchReply: self._on_fetch_reply,
            StableProof: self._on_stable_proof,
        }
        self._timers = (
            (self.t_request, self._on_request_timer),
            (self.t_view_change, self._on_view_change_timer),
            (self.t_fetch, self._on_fetch_timer),
            (self.t_final, self._on_final_timer),
        )

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return n - f

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """PoE (Gupta et al., EDBT 2021), the client: n-f identical INFORM(v, k, r) replies.

        Identical means the same view v, sequence number k and result r: n-f replicas that
        speculatively executed the request at k in view v are what makes it survive any
        view change. Speculative replies count (that is the point of PoE).
        """
        return ReplyRule(n - f, ("view", "seq", "result"), speculative=True)

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return view % n

    def is_proposer(self) -> bool:
        return self.mode == ACTIVE and self.view % self.n == self.id

    def proposal_room(self) -> int:
        if not self.is_proposer():
            return 0
        return max(0, self.high - self.last_assigned) + (self.max_queued - len(self.queue))

    def status(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "primary": self.primary,
            "mode": self.mode,
            "in_view_change": self.mode != ACTIVE,
            "reconciled": self.reconciled,
            "last_executed": self.last_executed,
            "last_delivered": self.last_executed,
            "stable_seq": self.low,
            "final_seq": self.final_mark,
            "low_watermark": self.low,
            "high_watermark": self.high,
            "plan_end": self.plan_end,
            "last_assigned": self.last_assigned,
            "buffered": len(self.held),
            "dropped": self.dropped,
            "queued": len(self.queue),
            "waiting": len(self.waiting),
            "proposals_dropped": self.proposals_dropped,
            "view_changes_started": self.view_changes_started,
            "rollbacks": self.rollbacks,
            "rolled_back": self.rolled_back,
            "reexecuted": self.reexecuted,
            "final_probes": self.final_probes,
            "state_fetches": self.state_fetches,
            "states_installed": self.states_installed,
            "backoff_exp": self.backoff_exp,
            "certificate": "macs" if self.macs else "signatures",
            "ignored": dict(self.ignored),
        }

    def _changing_view(self) -> bool:
        return self.mode != ACTIVE


__all__ = ["ACTIVE", "CERTIFICATE_MODES", "NV_PENDING", "VIEW_CHANGE", "Plan", "Poe"]
