"""PoE (Gupta, Hellings, Rahnama, Sadoghi, EDBT'21) as a sans-IO state machine.

How it works, in the paper's terms:
- Normal case (§3): the primary of view v (``v % n``) assigns seq in the watermark
  window and broadcasts PROPOSE(v, k, batch) carrying its own support share. A backup
  that accepts it signs SUPPORT, a share over (v, k, digest), and sends it to the
  primary; with n−f shares the primary forms a ``Certificate`` and broadcasts CERTIFY.
  A replica holding a valid certificate and the batch *view-commits* it and executes
  it speculatively, in seq order: ``Deliver(seq, view, batch, speculative=True)``; the
  execute stage INFORMs the client (a speculative ``Reply``), which accepts on n−f
  matching ones. With ``poe_certificate: macs`` nothing is signed in the normal case:
  SUPPORT goes to every replica (the links' MACs authenticate it) and each replica
  view-commits on n−f matching supports itself (no CERTIFY). Many seqs are in flight
  at once (out-of-order processing).
- Checkpoints (as PBFT §4.3, the shared signed ``Checkpoint`` of protocols/checkpoints.py): every
  ``checkpoint_period`` seqs replicas sign their state digest; 2f+1 matching make it
  stable: the log below is discarded, the watermarks move, and once this replica's own
  state there matches, the batches up to it are final: ``StableCheckpoint``.
- View change (§4): a backup whose forwarded request is not executed in time sends
  VC-REQUEST(v+1) with its stable checkpoint proof and, per seq above it, the
  highest-view certificate it holds. The new primary, with n−f of them, sends
  NV-PROPOSE. Every replica recomputes the new view's *plan* from it: the highest
  stable checkpoint h, then for each seq in (h, h + window] the batch with the
  highest-view certificate in the set, else the null batch.

  Clients accept n−f identical INFORMs: same view, seq and result (``reply_rule``, as in
  the paper). Beyond the paper, for safety: a reply may be rolled back after it is counted,
  and executing the plan straight from NV-PROPOSE could make a batch a client accepted
  lose to a certificate a Byzantine replica hid. So the plan is certified and locked
  before anyone executes it: replicas send NV-SUPPORT (one share per plan entry) to the
  new primary, which combines them into NV-CERTIFY (a view-v certificate per entry); a
  replica holding it broadcasts NV-COMMIT and enters the view on n−f of them. Then at
  least f+1 honest replicas hold view-v certificates for the whole plan, and every later
  view change ranks them first. Fresh proposals start above the plan (h + window), where
  no older certificate can exist. Entering the view, a replica rolls back (``Rollback``)
  every executed entry above its final mark and executes the plan from there in view v,
  the batches it keeps included: so every replica INFORMs the client from view v and the
  client's n−f identical replies can form (keeping an old-view execution left replicas
  split between INFORMs of two views, and the request never accepted).
- View change with MACs (``poe_certificate: macs``): nothing is transferable, so a
  VC-REQUEST (still signed: view changes are rare) carries *claims*: per seq the
  highest-view view-commit (with its batch) and the digests it supported, each with the
  latest view (Castro & Liskov's P- and Q-sets, TOCS'02 §4.5, view-commit in the role of
  "prepared"). The plan takes, per seq, a claimed (view v, batch d) when n−f requests
  claim nothing newer or conflicting (A1) and f+1 claim to have supported d in a view
  ≥ v (A2), else the null batch when n−f claim nothing; otherwise the new primary waits
  for more VC-REQUESTs (NV-PROPOSE carries every one it used; those of all honest
  replicas decide every seq). NV-SUPPORT goes to every replica without shares; n−f of
  them prepare the plan as NV-CERTIFY does, then NV-COMMIT as above.
  ``_decide_from_claims`` gives the safety argument.
- A lagging replica catches up by FETCH: a batch counts when f+1 replicas report it
  final (at or below their verified stable checkpoint) or when it comes with a valid
  certificate of the current view (MACs: when f+1 replicas claim they view-committed it
  in the current view; one is honest, so n−f supported it). A replica answering the
  FETCH of one with an older stable checkpoint sends its proof (2f+1 signed checkpoints,
  transferable), and f+1 checkpoint votes above our execution make us fetch: checkpoint
  votes are sent once, and a replica that lost them must not wait forever. Messages for
  later views or beyond the high watermark are held (bounded); f+1 replicas speaking from
  a later view make a replica join it.

The machinery PBFT runs the same way (held messages, request waiting and proposal queue,
checkpoint votes and stabilisation, dispatch) lives in protocols/replica_core.py; Poe fills
its hooks. Must not live here: sockets, threads, clocks, randomness, message encoding (wire).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols import base
from protocols.base import (
    Action,
    Broadcast,
    Deliver,
    ProtocolConfig,
    ReplyRule,
    Rollback,
    Send,
    StableCheckpoint,
    Verifier,
)
from protocols.checkpoints import Checkpoint, checkpoint_payload
from protocols.claims import decide, note_pre_prepared, well_formed
from protocols.common import NULL_BATCH, Batch, Request, batch_is_valid
from protocols.limits import (
    FETCH_SPAN_WINDOWS,
    FETCH_TICKS_DIVISOR,
    HISTORY_WINDOWS,
    MAX_BACKOFF_EXP,
    MAX_FINAL_PROBE_DOUBLINGS,
    MAX_NV_RETRIES,
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
)
from protocols.poe.certificate import Certificate, combine
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
    Supported,
    VcRequest,
    plan_digest,
    support_payload,
    vc_request_payload,
)
from protocols.poe.params import CERTIFICATE_MODES, PoeParams
from protocols.replica_core import ReplicaCore

ACTIVE = "active"  # in a view, taking part in its normal case
VIEW_CHANGE = "view_change"  # sent VC-REQUEST for ``view``, waiting for NV-PROPOSE
NV_PENDING = "nv_pending"  # accepted NV-PROPOSE for ``view``, waiting for its plan to lock

CHECKPOINT_INSTANCE = 0  # PoE's Checkpoint messages (protocols/checkpoints.py) carry instance 0


@dataclass(frozen=True, slots=True)
class Plan:
    """The new view's plan, recomputed by every replica from the NV-PROPOSE."""

    view: int
    base: int  # highest stable checkpoint among the VC-REQUESTs
    base_digest: bytes
    proof: tuple[Checkpoint, ...]
    batches: tuple[Batch, ...]  # seqs base+1 .. base+len
    digest: bytes  # plan_digest(view, base, digests)

    @property
    def end(self) -> int:
        return self.base + len(self.batches)


class _Slot:
    """Normal-case state of one seq in the current view (dropped on a view change)."""

    __slots__ = ("batch", "digest", "shares", "counts", "cert", "cert_digest", "committed")

    def __init__(self) -> None:
        self.batch: Batch | None = None  # the accepted proposal
        self.digest: bytes | None = None
        self.shares: dict[int, tuple[bytes, bytes]] = {}  # replica -> (digest, verified share)
        self.counts: dict[bytes, int] = {}  # digest -> distinct supporters
        self.cert: Certificate | None = None  # a verified certificate, maybe before the batch
        self.cert_digest: bytes | None = None
        self.committed = False


class Poe(ReplicaCore[_Slot]):
    """One PoE replica."""

    name = "poe"
    speculative_replies = True
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
        self.mode = ACTIVE
        self._view_unproven = False  # entered by a view change, nothing executed since
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

    # --- who proposes ----------------------------------------------------------------

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

    def primary_of(self, view: int) -> int:
        return view % self.n

    @property
    def primary(self) -> int:
        return self.view % self.n

    def is_proposer(self) -> bool:
        return self.mode == ACTIVE and self.view % self.n == self.id

    def proposal_room(self) -> int:
        if not self.is_proposer():
            return 0
        return max(0, self.high - self.last_assigned) + (self.max_queued - len(self.queue))

    # --- calls in (propose, receive, timeout: ReplicaCore) ------------------------------

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        if seq < 1 or seq > self.last_executed or seq % self.period:
            return out  # stale feedback (rolled back since) or not a checkpoint seq
        self.own_digest[seq] = state_digest
        if seq > self.low:
            sig = self.verifier.sign(
                checkpoint_payload(CHECKPOINT_INSTANCE, seq, self.id, state_digest)
            )
            cp = Checkpoint(CHECKPOINT_INSTANCE, seq, state_digest, self.id, sig)
            out.append(Broadcast(cp))
            self._add_checkpoint(cp, out)
        self._check_final(out)
        return out

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
            "backoff_exp": self.backoff_exp,
            "certificate": "macs" if self.macs else "signatures",
            "ignored": dict(self.ignored),
        }

    # --- small helpers (ignore, hold and replay, slots, _verify: ReplicaCore) ---------

    def _changing_view(self) -> bool:
        return self.mode != ACTIVE

    def _verify_share(self, signer: int, view: int, seq: int, digest: bytes, share: bytes) -> bool:
        try:
            payload = support_payload(view, seq, digest)
        except Exception:  # struct.error on absurd ints: cannot carry a valid share
            return False
        return bool(self.verifier.verify(signer, payload, share))

    def _valid_cert(self, view: int, seq: int, digest: bytes, cert: Certificate) -> bool:
        try:
            payload = support_payload(view, seq, digest)
        except Exception:
            return False
        return cert.verify(self.verifier, payload, self.quorum, self.n)

    def _sign_share(self, view: int, seq: int, digest: bytes) -> bytes:
        """Our share for (view, seq, digest); with MACs nothing is signed (b"") and the
        support is remembered for the view change instead (the Q-set)."""
        if self.macs:
            self._note_supported(view, seq, digest)
            return b""
        return self.verifier.sign(support_payload(view, seq, digest))

    def _note_supported(self, view: int, seq: int, digest: bytes) -> None:
        if seq > self.low:
            note_pre_prepared(self.supported, seq, digest, view)

    def _note_view(self, sender: int, view: int, out: list[Action]) -> None:
        """Remember the view ``sender`` speaks from; join when f+1 replicas are ahead."""
        if not 0 <= sender < self.n or sender == self.id:
            return
        if view <= self.peer_view.get(sender, 0):
            return
        self.peer_view[sender] = view
        if view <= self.view:
            return
        ahead = sorted((v for v in self.peer_view.values() if v > self.view), reverse=True)
        if len(ahead) >= self.join_quorum:
            self._start_view_change(ahead[self.join_quorum - 1], out)

    # --- requests and proposals --------------------------------------------------------

    def was_executed(self, client_id: int, timestamp: int) -> bool:
        """True if (client, timestamp) is executed here (or older than the replay window)."""
        if timestamp <= self.ts_floor.get(client_id, -1):
            return True
        recent = self.executed_ts.get(client_id)
        return recent is not None and timestamp in recent

    def _request_done(self, client_id: int, timestamp: int) -> bool:
        return self.was_executed(client_id, timestamp)

    def _send_proposal(self, batch: Batch, out: list[Action]) -> None:
        """Primary: assign the next seq above the view's plan to ``batch``, PROPOSE it (§3)."""
        seq = max(self.last_assigned, self.plan_end, self.low) + 1
        # A slot of this view can hold a batch the primary never assigned: a certified entry
        # learnt from a FETCH answer, carrying a replayed share of its own key (run keys derive
        # from the cluster secret). Never propose over it: skip to the next free seq, and
        # queue the batch again when that leaves the window (tests/protocol/test_poe_own_seq).
        while seq <= self.high and (taken := self.slots.get(seq)) is not None and taken.batch is not None:
            self._ignore("proposal_seq_taken")
            seq += 1
        if seq > self.high:
            self.last_assigned = self.high
            self.queue.appendleft(batch)
            for req in batch.requests:
                self.in_flight[(req.client_id, req.timestamp)] = 0
            return
        assert self.low < seq <= self.high, "the primary assigns seqs within the watermarks"
        assert seq > self.plan_end, "fresh proposals stay above the view's plan"
        self.last_assigned = seq
        d = batch.digest
        share = self._sign_share(self.view, seq, d)
        for req in batch.requests:
            self.in_flight[(req.client_id, req.timestamp)] = seq
        slot = self._slot(seq)
        assert slot.batch is None, "the primary assigns each seq once per view"
        slot.batch, slot.digest = batch, d
        slot.shares[self.id] = (d, share)
        slot.counts[d] = slot.counts.get(d, 0) + 1
        out.append(Broadcast(Propose(self.view, seq, batch, share)))
        self._check_slot(seq, slot, out)

    def _on_request(self, sender: int, req: Request, out: list[Action]) -> None:
        """A client's request (re-sent to every replica after a timeout), or one forwarded."""
        key = (req.client_id, req.timestamp)
        if self.was_executed(*key):
            self._ignore("request_already_executed")
            if not 0 <= sender < self.n:
                self._client_still_waits(key, out)
            return
        if self._request_pending(key):
            return
        if not self.verifier.verify_request(req):
            self._ignore("bad_client_signature")
            return
        self._take_request(sender, key, req, out)  # proposed, or waited for and forwarded

    def _client_still_waits(self, key: tuple[int, int], out: list[Action]) -> None:
        """The client re-sent a request we executed (our reply was re-sent to it): it still
        lacks n−f matching replies. Once is a lost reply; again means replicas are out of
        step (a primary can starve one replica while f others lie): suspect the primary if
        the entry does not become final within a request timeout."""
        recent = self.executed_ts.get(key[0])
        seq = recent.get(key[1]) if recent is not None else None
        if seq is None or seq <= self.final_mark or self.mode != ACTIVE:
            return
        count = self.resent.get(key, 0) + 1
        if key not in self.resent and len(self.resent) >= self.max_waiting:
            self.resent.pop(next(iter(self.resent)))
        self.resent[key] = count
        if count < 2:
            return
        self.stuck.add(key)
        if self.t_request not in self.armed:
            self._arm_request_timer(out)

    def _still_stuck(self) -> bool:
        """True if a client re-sent an executed, not yet final request during this period."""
        stuck = False
        for key in self.stuck:
            recent = self.executed_ts.get(key[0])
            seq = recent.get(key[1]) if recent is not None else None
            if seq is not None and seq > self.final_mark:
                stuck = True
        self.stuck.clear()
        for key in [k for k in self.resent if not self._executed_unfinal(k)]:
            del self.resent[key]
        return stuck

    def _executed_unfinal(self, key: tuple[int, int]) -> bool:
        recent = self.executed_ts.get(key[0])
        seq = recent.get(key[1]) if recent is not None else None
        return seq is not None and seq > self.final_mark

    def _on_request_timer(self, out: list[Action]) -> None:
        if self.mode != ACTIVE:
            return
        self._purge_waiting()
        stuck = self._still_stuck()
        if not self.waiting and not stuck:
            return
        if self._probed_at != self.last_executed:
            # Before suspecting the primary, ask the others for certified entries we lack:
            # a primary may starve one replica of CERTIFY while the rest move on, and with
            # n−f replies needed the client then waits for us (bounded: once per progress).
            self._probed_at = self.last_executed
            first = self._trusted_to() + 1
            out.append(Broadcast(Fetch(first, first + self.fetch_span - 1, self.id, self.low)))
            self._arm_request_timer(out)
            return
        self._start_view_change(self.view + 1, out)

    # --- normal case (§3) --------------------------------------------------------------

    def _gate(self, view: int, seq: int, sender: int, msg: Any) -> bool:
        """True when a normal-case message may be processed now; holds or drops it otherwise."""
        if view < self.view:
            self._ignore("old_view")
            return False
        if view > self.view or self.mode != ACTIVE:
            self._hold(sender, msg)
            return False
        if seq <= self.low or seq <= self.plan_end:
            self._ignore("below_window_or_plan")
            return False
        if seq > self.high:
            self._hold(sender, msg)
            return False
        return True

    def _on_propose(self, sender: int, m: Propose, out: list[Action]) -> None:
        if sender != self.primary_of(m.view) or sender == self.id:
            self._ignore("propose_not_from_primary")
            return
        self._note_view(sender, m.view, out)
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if slot.batch is not None:
            self._ignore("duplicate" if slot.digest == m.batch.digest else "conflicting_propose")
            return
        batch = m.batch
        if not batch_is_valid(batch):
            self._ignore("bad_batch_digest")
            return
        verify_request = self.verifier.verify_request
        for req in batch.requests:
            if not verify_request(req):
                self._ignore("bad_client_signature")
                return
        d = batch.digest
        if self.macs and sender not in slot.shares:
            # The proposal is the primary's support (its MAC-authenticated sender says so).
            slot.shares[sender] = (d, b"")
            slot.counts[d] = slot.counts.get(d, 0) + 1
        slot.batch, slot.digest = batch, d
        share = self._sign_share(self.view, m.seq, d)
        support = Support(self.view, m.seq, d, self.id, share)
        if self.macs:
            slot.shares[self.id] = (d, share)
            slot.counts[d] = slot.counts.get(d, 0) + 1
            out.append(Broadcast(support))
        else:
            out.append(Send(sender, support))
        self._check_slot(m.seq, slot, out)

    def _on_support(self, sender: int, m: Support, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        self._note_view(sender, m.view, out)
        if not self.macs and self.primary_of(m.view) != self.id:
            self._ignore("support_not_for_primary")
            return
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if sender in slot.shares:
            self._ignore("duplicate")
            return
        if slot.committed:
            return  # late support: the seq is already view-committed here
        if self.macs:
            share = b""  # the link's MAC authenticated it; nothing transferable to keep
        elif not self._verify_share(sender, m.view, m.seq, m.digest, m.share):
            self._ignore("bad_share")
            return
        else:
            share = m.share
        slot.shares[sender] = (m.digest, share)
        slot.counts[m.digest] = slot.counts.get(m.digest, 0) + 1
        self._check_slot(m.seq, slot, out)

    def _on_certify(self, sender: int, m: Certify, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        if self.macs:
            self._ignore("certify_with_macs")  # nobody signs shares: it cannot be valid
            return
        self._note_view(sender, m.view, out)
        if not self._gate(m.view, m.seq, sender, m):
            return
        slot = self._slot(m.seq)
        if slot.committed or slot.cert is not None:
            self._ignore("duplicate")
            return
        if not self._valid_cert(m.view, m.seq, m.digest, m.cert):
            self._ignore("bad_certificate")
            return
        slot.cert, slot.cert_digest = m.cert, m.digest
        if slot.digest != m.digest:
            # We lack the certified batch (missed or conflicting PROPOSE): fetch it.
            slot.batch = slot.digest = None
            if self.t_fetch not in self.armed:
                self._arm_fetch_timer(out)
        self._check_slot(m.seq, slot, out)

    def _check_slot(self, seq: int, slot: _Slot, out: list[Action]) -> None:
        """View-commit ``seq`` once we hold its batch and a certificate (or n−f shares)."""
        if slot.committed or slot.batch is None:
            return
        d = slot.digest
        assert d is not None
        cert = slot.cert if slot.cert_digest == d else None
        if cert is None:
            if slot.counts.get(d, 0) < self.quorum:
                return
            if not self.macs:
                shares = {r: s for r, (dd, s) in slot.shares.items() if dd == d}
                assert len(shares) >= self.quorum, "n−f distinct verified shares"
                cert = combine(shares, self.quorum)
                if self.id == self.primary:
                    out.append(Broadcast(Certify(self.view, seq, d, cert)))
        slot.committed = True
        slot.cert, slot.cert_digest = cert, d
        self._view_commit(seq, self.view, slot.batch, cert, out)

    def _view_commit(
        self, seq: int, view: int, batch: Batch, cert: Certificate | None, out: list[Action]
    ) -> None:
        """``batch`` is view-committed at ``seq``: keep the proof, execute it in order.

        At or below the stable checkpoint no proof is kept, but a replica behind it still
        executes the entry: a certificate of the current view agrees with the final state."""
        if seq > self.low:
            prev = self.evidence.get(seq)
            if prev is None or prev.view <= view:
                self.evidence[seq] = Committed(view, seq, batch, cert)
        if seq <= self.last_executed:
            old = self.log.get(seq)
            if old is not None and old[1].digest != batch.digest:
                self._ignore("certified_differs_from_executed")  # cannot happen in one view
            return
        self.ready[seq] = (view, batch)
        self._deliver_ready(out)
        if self.ready and self.last_executed + 1 not in self.ready and self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _deliver_ready(self, out: list[Action]) -> None:
        ready = self.ready
        while True:
            seq = self.last_executed + 1
            if not self.reconciled and seq > self.verified_to:
                break
            entry = ready.pop(seq, None)
            if entry is None:
                break
            view, batch = entry
            self.last_executed = seq
            out.append(Deliver(seq, view, batch, speculative=True))
            self.log[seq] = entry
            self.log.pop(seq - self.history_len, None)
            self._mark_executed(seq, batch)
            if self.in_flight:
                for req in batch.requests:
                    self.in_flight.pop((req.client_id, req.timestamp), None)
            if self.waiting:
                self._waiting_done(batch, out)
            if self._view_unproven and view == self.view:
                self._view_unproven = False
                self.backoff_exp = 0  # the view change succeeded: reset the doubling
        if self.t_final not in self.armed and self.last_executed > self.final_mark:
            self._arm_final_timer(out)

    def _arm_final_timer(self, out: list[Action]) -> None:
        self._final_probe_mark = (self.final_mark, self.last_executed)
        self._set_timer(self.t_final, self._timeout_ticks() << self._final_probe_exp, out)

    def _on_final_timer(self, out: list[Action]) -> None:
        """Executed entries are still not final a timeout later and nothing moved since: ask
        the others what is (f+1 final replies roll back what differs and bring in what we
        lack, and replies from a later view make us join it); the period doubles while
        nothing changes, and a replica that is executing never probes."""
        if self.last_executed <= self.final_mark:
            self._final_probe_exp = 0
            return
        if self.mode != ACTIVE:
            # a view change probes for finals itself (_probe_finals); one that completes
            # re-executes the unfinal suffix in the new view, which must stay unfinal here
            self._arm_final_timer(out)
            return
        if (self.final_mark, self.last_executed) != self._final_probe_mark:
            self._final_probe_exp = 0  # progress: executing, or entries becoming final
        else:
            self._probe_finals(out)
            self.final_probes += 1
            self._final_probe_exp = min(self._final_probe_exp + 1, MAX_FINAL_PROBE_DOUBLINGS)
        self._arm_final_timer(out)

    def _mark_executed(self, seq: int, batch: Batch) -> None:
        window = self.replay_window
        for req in batch.requests:
            recent = self.executed_ts.get(req.client_id)
            if recent is None:
                recent = self.executed_ts[req.client_id] = {}
            recent[req.timestamp] = seq
            if len(recent) > window:  # bounded: older timestamps fall below the floor
                oldest = next(iter(recent))
                del recent[oldest]
                if oldest > self.ts_floor.get(req.client_id, -1):
                    self.ts_floor[req.client_id] = oldest

    def _rollback_to(self, to_seq: int, out: list[Action]) -> None:
        """Undo executed entries above ``to_seq`` (never a final one)."""
        assert to_seq >= self.final_mark, "a final (stable, verified) entry is never rolled back"
        if to_seq >= self.last_executed:
            return
        out.append(Rollback(to_seq))
        self.rollbacks += 1
        for seq in range(to_seq + 1, self.last_executed + 1):
            entry = self.log.pop(seq, None)
            self.own_digest.pop(seq, None)
            if entry is None:
                continue
            self.rolled_back += 1
            for req in entry[1].requests:
                recent = self.executed_ts.get(req.client_id)
                if recent is not None:
                    recent.pop(req.timestamp, None)
        self.last_executed = to_seq
        self.verified_to = min(self.verified_to, to_seq)

    # --- checkpoints and garbage collection (PBFT §4.3) --------------------------------

    # _on_checkpoint, _add_checkpoint, _valid_checkpoint_proof: ReplicaCore (with
    # checkpoint_revotes: a replica that re-executed after a rollback votes again)

    def _make_stable(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        self._move_watermarks(
            seq, digest, proof, (self.slots, self.evidence, self.supported, self.commit_votes)
        )
        self._check_final(out)
        if replay:
            self._replay_held(out)
            self._drain_queue(out)

    def _check_final(self, out: list[Action]) -> None:
        """Make the stable checkpoint final here once our own state matches it."""
        if self.final_mark >= self.low:
            return
        own = self.own_digest.get(self.low) if self.last_executed >= self.low else None
        if own == self.stable_digest:
            if self.mode != ACTIVE:
                # Not while changing view: entering it re-executes the new plan above its
                # base in the new view (INFORMs of one request must agree on the view), and
                # what is final cannot be re-executed. _enter_view calls us again.
                return
            self._diverged = False
            self.final_mark = self.low
            self.verified_to = max(self.verified_to, self.low)
            for s in [s for s in self.own_digest if s < self.low]:
                del self.own_digest[s]
            for s in [s for s in self.finals if s <= self.low]:
                del self.finals[s]
            out.append(StableCheckpoint(self.low, self.stable_digest))
            if self.pending_plan is not None:
                self._reconcile(out)
            return
        if own is not None:
            self._diverged = True  # our state differs from the stable one: verify from finals
        if own is not None or (
            self.last_executed < self.low and self.last_executed + 1 not in self.ready
        ):
            # Diverged below the stable checkpoint, or behind it with a gap: fetch finals.
            self._fetch_now(out)

    # --- catch-up (FETCH) ------------------------------------------------------------

    def _trusted_to(self) -> int:
        """Our executed prefix known to agree with the final state: the part checked against
        final entries, or, in a view we entered and reconciled (and did not diverge in),
        everything executed (the plan's locked entries and certificates of this view)."""
        if self.mode == ACTIVE and self.reconciled and not self._diverged:
            return max(self.verified_to, self.last_executed)
        return self.verified_to

    def _fetch_range(self) -> tuple[int, int]:
        """(first, last) seqs to ask for; first > last when nothing is missing."""
        first = self._trusted_to() + 1
        target = self.low if self.final_mark < self.low else 0
        if self.ready:
            target = max(target, max(self.ready) - 1)
        behind = self._checkpointed_above()
        if behind > target:
            target = behind
        for seq, slot in self.slots.items():
            if slot.committed:
                continue
            if slot.cert is not None or (self.macs and self._quorum_elsewhere(slot)):
                target = max(target, seq)
        return first, min(target, first + self.fetch_span - 1)

    def _checkpointed_above(self) -> int:
        """The highest checkpoint seq above our execution that f+1 replicas voted for (so
        an honest one executed that far: we are behind and should fetch), else 0."""
        best = 0
        for seq, by_digest in self.ckpt_votes.items():
            if seq > self.last_executed and seq > best:
                if sum(len(v) for v in by_digest.values()) >= self.fetch_quorum:
                    best = seq
        return best

    def _add_checkpoint(self, cp: Checkpoint, out: list[Action]) -> None:
        super()._add_checkpoint(cp, out)
        if (
            cp.seq > self.last_executed
            and self.t_fetch not in self.armed
            and self._checkpointed_above() > self.last_executed
        ):
            self._arm_fetch_timer(out)  # fetches if we make no progress before it fires

    def _on_stable_proof(self, sender: int, m: StableProof, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        if m.seq <= self.low:
            self._ignore("old_checkpoint")
            return
        if not self._valid_stable_claim(m.seq, m.proof):
            self._ignore("invalid_stable_proof")
            return
        self._make_stable(m.seq, m.proof[0].state_digest, m.proof, out)

    def _quorum_elsewhere(self, slot: _Slot) -> bool:
        """MACs: n−f replicas support a batch we do not hold (missed or other PROPOSE)."""
        return any(c >= self.quorum and d != slot.digest for d, c in slot.counts.items())

    def _arm_fetch_timer(self, out: list[Action]) -> None:
        self._fetch_mark = (self.last_executed, self.verified_to)
        self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _fetch_now(self, out: list[Action], force: bool = False) -> None:
        """Ask every replica for what we miss, unless that range is already asked for."""
        first, last = self._fetch_range()
        if first > last:
            return
        if not force and self.t_fetch in self.armed and last <= self._fetch_requested_to:
            return
        self._fetch_requested_to = last
        out.append(Broadcast(Fetch(first, last, self.id, self.low)))
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch_timer(self, out: list[Action]) -> None:
        first, last = self._fetch_range()
        if first > last:
            return
        if (self.last_executed, self.verified_to) == self._fetch_mark:  # no progress
            self._fetch_now(out, force=True)
        if self.t_fetch not in self.armed:
            self._arm_fetch_timer(out)

    def _on_fetch(self, sender: int, m: Fetch, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if self.low > m.stable_seq and self.stable_proof:
            out.append(Send(sender, StableProof(self.low, self.stable_proof)))
        first = max(m.first_seq, 1)
        last = min(m.last_seq, first + self.fetch_span - 1)
        for seq in range(first, last + 1):
            ev = self.evidence.get(seq)
            if ev is not None and ev.view == self.view and self.mode == ACTIVE:
                reply = FetchReply(seq, ev.view, ev.batch, self.id, False, ev.cert, self.view)
                out.append(Send(sender, reply))
                continue
            entry = self.log.get(seq)
            if entry is not None and seq <= self.final_mark:
                reply = FetchReply(seq, entry[0], entry[1], self.id, True, None, self.view)
                out.append(Send(sender, reply))

    def _on_fetch_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if not batch_is_valid(m.batch):
            self._ignore("bad_batch_digest")
            return
        self._note_view(sender, m.sender_view, out)
        if m.final:
            if m.sender_view > self.view:
                self._diverged = True  # later views exist: do not trust our prefix, verify it
            self._on_final_reply(sender, m, out)
            return
        cert = m.cert
        seq = m.seq
        if (cert is None) != self.macs or m.view != self.view or self.mode != ACTIVE:
            self._ignore("unneeded_fetch_reply")
            return
        if seq <= self.last_executed or seq in self.ready or seq > self.high:
            self._ignore("unneeded_fetch_reply")
            return
        slot = self.slots.get(seq)
        if slot is not None and slot.committed:
            return
        d = m.batch.digest
        if cert is None:
            self._on_commit_claim(sender, m, out)
            return
        if not self._valid_cert(m.view, seq, d, cert):
            self._ignore("bad_certificate")
            return
        if seq <= self.low:  # behind the stable checkpoint: execute it, keep no slot
            self._view_commit(seq, m.view, m.batch, cert, out)
            return
        slot = self._slot(seq)
        slot.batch, slot.digest, slot.cert, slot.cert_digest = m.batch, d, cert, d
        self._check_slot(seq, slot, out)

    def _on_commit_claim(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        """MACs: ``sender`` says it view-committed ``m.batch`` at ``m.seq`` in our view. With
        f+1 matching claims one honest replica holds n−f supports for it, and no other batch
        can gather n−f in this view: view-commit it as if we had seen those supports."""
        seq = m.seq
        votes = self.commit_votes.get(seq)
        if votes is None:
            if len(self.commit_votes) >= self.fetch_span:
                self._ignore("commit_votes_full")  # bounded: one fetch span of seqs
                return
            votes = self.commit_votes[seq] = {}
        if self._count_fetch_reply(votes, sender, m) is None:
            return
        del self.commit_votes[seq]
        if seq <= self.low:  # behind the stable checkpoint: execute it, keep no slot
            self._view_commit(seq, m.view, m.batch, None, out)
            return
        slot = self._slot(seq)
        slot.batch, slot.digest = m.batch, m.batch.digest
        slot.committed = True
        slot.cert, slot.cert_digest = None, slot.digest
        self._view_commit(seq, m.view, m.batch, None, out)

    def _on_final_reply(self, sender: int, m: FetchReply, out: list[Action]) -> None:
        seq = m.seq
        # f+1 matching "final" replies: one honest replica's stable state has it at seq, so
        # it is final even above our own stable checkpoint (we may miss checkpoint votes).
        trusted = self._trusted_to()
        if seq <= trusted or seq > trusted + self.fetch_span:
            self._ignore("unneeded_fetch_reply")
            return
        if seq in self.finals:
            return
        matching = self._count_fetch_reply(self.fetch_votes.setdefault(seq, {}), sender, m)
        if matching is None:
            return
        del self.fetch_votes[seq]
        # the latest view it was executed in among f+1 (one honest) replicas that agree
        self.finals[seq] = (max(r.view for r in matching), m.batch)
        self._apply_finals(out)

    def _apply_finals(self, out: list[Action]) -> None:
        """Check our entries against trusted final ones, in order; roll back on a mismatch."""
        trusted = self._trusted_to()
        for s in [s for s in self.finals if s <= trusted]:
            del self.finals[s]
        while trusted + 1 in self.finals:
            seq = trusted + 1
            view, batch = self.finals.pop(seq)
            if seq <= self.last_executed:
                old = self.log.get(seq)
                # Same batch executed in an older view: execute it again with the view the
                # others hold it in, or our INFORM never matches theirs (view, seq, result).
                if old is None or old[1].digest != batch.digest or old[0] < view:
                    self._rollback_to(seq - 1, out)
                    self.ready[seq] = (view, batch)
            else:
                self.ready[seq] = (view, batch)
            if seq == self.verified_to + 1:
                self.verified_to = seq
            trusted = seq
            self._deliver_ready(out)
        for s in [s for s in self.fetch_votes if s <= trusted]:
            del self.fetch_votes[s]
        if trusted >= self._fetch_requested_to:
            self._fetch_now(out, force=True)  # the asked range is done: more missing?

    # --- view change (§4) ---------------------------------------------------------------

    def _start_view_change(self, new_view: int, out: list[Action]) -> None:
        assert new_view > self.view, "views only move forward"
        if self.mode != ACTIVE or self._view_unproven:
            self.backoff_exp = min(self.backoff_exp + 1, MAX_BACKOFF_EXP)
        self.view_changes_started += 1
        self._leave_view(new_view, out)
        self.mode = VIEW_CHANGE
        vc = self._make_vc_request(new_view)
        self.vc_latest[self.id] = vc
        out.append(Broadcast(vc))
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.primary_of(new_view) == self.id:
            self._try_new_view(out)
        cert = self.certify_seen.get(new_view)
        if cert is not None:  # we learnt the plan was certified before we got here
            self._on_nv_certify(self.primary_of(new_view), cert, out)

    def _leave_view(self, new_view: int, out: list[Action]) -> None:
        """Stop taking part in the current view (common to VC-REQUEST and a jump by NV)."""
        self.view = new_view
        self._view_unproven = False
        self._cancel_request_timer(out)
        self.slots.clear()
        self.ready.clear()  # undelivered entries of the old view; their evidence stays
        self._fetch_requested_to = 0  # what we asked for may be answered for the old view only
        self.reconciled = False
        self.pending_plan = None
        self.nv = None
        self.plan = None
        self.nv_shares = {}
        self.nv_certify = None
        self.own_nv_support = None
        self.own_nv_commit = None
        if self.pending_nv is not None and self.pending_nv.view < new_view:
            self.pending_nv = None
        self.nv_retries = 0
        self.plan_prepared = False
        self.commit_votes.clear()  # claims about the view we leave
        for v in [v for v in self.nv_commits if v < new_view]:
            del self.nv_commits[v]
        for v in [v for v in self.nv_supports if v < new_view]:
            del self.nv_supports[v]
        for v in [v for v in self.certify_seen if v < new_view]:
            del self.certify_seen[v]
        self.in_flight = {(r.client_id, r.timestamp): 0 for b in self.queue for r in b.requests}

    def _make_vc_request(self, new_view: int) -> VcRequest:
        low = self.low
        entries = tuple(
            self.evidence[s] for s in sorted(self.evidence) if low < s <= low + self.window
        )
        supported = tuple(
            Supported(s, v, d)
            for s in sorted(self.supported)
            if low < s <= low + self.window
            for d, v in sorted(self.supported[s].items())
        )
        vc = VcRequest(new_view, self.id, low, self.stable_proof, entries, supported, b"")
        sig = self.verifier.sign(vc_request_payload(vc))
        return VcRequest(new_view, self.id, low, self.stable_proof, entries, supported, sig)

    def _probe_finals(self, out: list[Action]) -> None:
        """While alone in a view change, keep up with what the others made final (safe to
        execute: final entries are locked); a replica in a view change executes nothing else."""
        first = self.verified_to + 1
        out.append(Broadcast(Fetch(first, first + self.fetch_span - 1, self.id, self.low)))

    def _on_view_change_timer(self, out: list[Action]) -> None:
        if self.mode == VIEW_CHANGE:
            w = self.view
            have = sum(1 for vc in self.vc_latest.values() if vc.new_view >= w)
            if have >= self.quorum:
                # n−f moved to w (or beyond) but no valid NV-PROPOSE came in time: next primary.
                self._start_view_change(w + 1, out)
                return
            own = self.vc_latest.get(self.id)
            if own is not None and own.new_view == w:
                out.append(Broadcast(own))  # messages may be lost: retransmit ours
            self._probe_finals(out)
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        elif self.mode == NV_PENDING:
            if self.nv_retries >= MAX_NV_RETRIES:
                self._start_view_change(self.view + 1, out)
                return
            self.nv_retries += 1
            if self.own_nv_commit is not None:
                out.append(Broadcast(self.own_nv_commit))
            elif self.own_nv_support is not None and self.macs:
                out.append(Broadcast(self.own_nv_support))
            elif self.own_nv_support is not None and self.primary != self.id:
                out.append(Send(self.primary, self.own_nv_support))
            self._set_timer(self.t_view_change, self._timeout_ticks(), out)

    def _on_vc_request(self, sender: int, vc: VcRequest, out: list[Action]) -> None:
        if sender != vc.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        w = vc.new_view
        if w < self.view:
            self._ignore("old_view")
            return
        if w == self.view and self.mode != VIEW_CHANGE:
            self._help_lagging(sender, out)  # it has not entered the view we are in
            return
        prev = self.vc_latest.get(sender)
        if prev is not None and prev.new_view >= w:
            self._ignore("duplicate")
            return
        if not self._valid_vc_request(vc):
            self._ignore("invalid_vc_request")
            return
        self.vc_latest[sender] = vc
        self._note_view(sender, w, out)
        if w == self.view and self.mode == VIEW_CHANGE and self.primary_of(w) == self.id:
            self._try_new_view(out)

    def _help_lagging(self, sender: int, out: list[Action]) -> None:
        """``sender`` asks for the view we are entering or in: send what it needs (bounded)."""
        if self.view < 1:
            return
        if self.nv is not None and (self.primary == self.id or self.plan_prepared):
            out.append(Send(sender, self.nv))
        if self.nv_certify is not None:
            out.append(Send(sender, self.nv_certify))
        sup = self.own_nv_support
        if self.macs and sup is not None and self.plan_prepared:
            out.append(Send(sender, NvSupport(sup.view, self.id, sup.plan_digest, (), False)))
        own = self.own_nv_commit
        if own is not None:
            waiting = self.mode != ACTIVE
            out.append(Send(sender, NvCommit(own.view, self.id, own.plan_digest, waiting)))

    def _valid_vc_request(self, vc: VcRequest) -> bool:
        """Shape, proofs and signature of a VC-REQUEST (§4)."""
        if not 0 <= vc.replica < self.n or vc.new_view < 1:
            return False
        stable = vc.stable_seq
        if not self._valid_stable_claim(stable, vc.checkpoint_proof):
            return False
        seqs: set[int] = set()
        for e in vc.entries:
            if (
                not stable < e.seq <= stable + self.window
                or e.seq in seqs
                or not 0 <= e.view < vc.new_view
                or not batch_is_valid(e.batch)
                or (e.cert is None) != self.macs
                or (
                    e.cert is not None
                    and not self._valid_cert(e.view, e.seq, e.batch.digest, e.cert)
                )
            ):
                return False
            seqs.add(e.seq)
        if vc.supported and not self.macs:
            return False
        if not well_formed(vc.supported, stable, self.window, vc.new_view):
            return False
        try:
            payload = vc_request_payload(vc)
        except Exception:  # an unencodable value cannot carry a valid signature
            return False
        return bool(self.verifier.verify(vc.replica, payload, vc.signature))

    def make_plan(self, view: int, requests: tuple[VcRequest, ...]) -> Plan | None:
        """The plan every replica derives from the same VC-REQUESTs (deterministic); None
        when, with MACs, some seq cannot be decided from them yet (the new primary waits
        for more VC-REQUESTs; with all honest replicas' in hand every seq is decided)."""
        stable_vc = max(requests, key=lambda vc: (vc.stable_seq, -vc.replica))
        base_seq = stable_vc.stable_seq
        seqs = range(base_seq + 1, base_seq + self.window + 1)
        if self.macs:
            decided = self._decide_from_claims(requests, seqs)
            if decided is None:
                return None
            batches = decided
        else:
            best: dict[int, Committed] = {}
            for vc in requests:
                for e in vc.entries:
                    if e.seq <= base_seq:
                        continue
                    cur = best.get(e.seq)
                    if cur is None or (e.view, e.batch.digest) > (cur.view, cur.batch.digest):
                        best[e.seq] = e
            assert all(s <= seqs[-1] for s in best), "certificates stay in one window"
            batches = tuple(best[s].batch if s in best else NULL_BATCH for s in seqs)
        proof = stable_vc.checkpoint_proof
        return Plan(
            view=view,
            base=base_seq,
            base_digest=proof[0].state_digest if proof else b"",
            proof=proof,
            batches=batches,
            digest=plan_digest(view, base_seq, [b.digest for b in batches]),
        )

    def _decide_from_claims(
        self, requests: tuple[VcRequest, ...], seqs: range
    ) -> tuple[Batch, ...] | None:
        """MACs: each seq's batch from unproven claims by protocols.claims.choose (Castro &
        Liskov's rule: view-commits are the "prepared" claims, supports the "pre-prepared"
        ones); None while some seq is undecided."""
        decided = decide(
            [{e.seq: (e.view, e.batch.digest, e.batch) for e in vc.entries} for vc in requests],
            [vc.supported for vc in requests],
            seqs,
            self.quorum,
            self.f,
        )
        if decided is None:
            return None  # wait for more VC-REQUESTs
        return tuple(NULL_BATCH if b is None else b for b in decided)

    def _try_new_view(self, out: list[Action]) -> None:
        w = self.view
        size = self.quorum
        if self.macs:  # every VC-REQUEST we hold for w: each seq must be decided (above)
            size = max(size, sum(1 for vc in self.vc_latest.values() if vc.new_view == w))
        chosen = self._new_view_set(size)
        if chosen is None:
            return
        nv = NvPropose(w, chosen)
        plan = self.make_plan(w, nv.requests)
        if plan is None:
            return  # MACs: some seq is undecided; the next VC-REQUEST may decide it
        out.append(Broadcast(nv))
        self._accept_nv(nv, plan, out)

    def _validate_nv(self, nv: NvPropose) -> Plan | None:
        w = nv.view
        seen: set[int] = set()
        for vc in nv.requests:
            if vc.new_view != w or vc.replica in seen:
                return None
            if self.vc_latest.get(vc.replica) != vc and not self._valid_vc_request(vc):
                return None
            seen.add(vc.replica)
        if len(seen) < self.quorum:
            return None
        return self.make_plan(w, nv.requests)

    def _nv_wanted(self, view: int) -> bool:
        """True if an NV-PROPOSE for ``view`` could still move us (a later view, or ours)."""
        return view >= 1 and (view > self.view or (view == self.view and self.mode == VIEW_CHANGE))

    def _on_nv_propose(self, sender: int, nv: NvPropose, out: list[Action]) -> None:
        if not 0 <= sender < self.n or sender == self.id:
            self._ignore("non_member")
            return
        w = nv.view
        if not self._nv_wanted(w):
            self._ignore("old_view")
            return
        plan = self._validate_nv(nv)
        if plan is None:
            self._ignore("invalid_nv_propose")
            return
        if sender != self.primary_of(w):
            # Relayed: take it only if it is the plan the new view certified (with MACs:
            # one that f+1 replicas supported, so an honest one took it from the primary).
            if self.macs:
                if self._plan_backers(w, plan.digest) < self.f + 1:
                    self.pending_nv = nv
                    return
            else:
                cert = self.certify_seen.get(w)
                if cert is None:
                    self.pending_nv = nv
                    return
                if plan_digest(w, cert.base, cert.digests) != plan.digest:
                    self._ignore("relayed_nv_not_certified")
                    return
        self._take_nv(nv, plan, out)

    def _plan_backers(self, view: int, digest: bytes) -> int:
        """MACs: replicas that sent NV-SUPPORT or NV-COMMIT for plan ``digest`` of ``view``."""
        supports = self.nv_supports.get(view, {}).get(digest, set())
        commits = self.nv_commits.get(view, {}).get(digest, set())
        return len(supports | commits)

    def _try_relayed_nv(self, out: list[Action]) -> None:
        """MACs: a relayed NV-PROPOSE we hold may now be backed by f+1 replicas."""
        nv = self.pending_nv
        if nv is None or self.mode != VIEW_CHANGE or nv.view != self.view:
            return
        plan = self._validate_nv(nv)
        if plan is None or self._plan_backers(nv.view, plan.digest) < self.f + 1:
            return
        self.pending_nv = None
        self._take_nv(nv, plan, out)

    def _take_nv(self, nv: NvPropose, plan: Plan, out: list[Action]) -> None:
        if nv.view > self.view:
            self._leave_view(nv.view, out)  # n−f replicas asked for it: jump there
        self._accept_nv(nv, plan, out)

    def _accept_nv(self, nv: NvPropose, plan: Plan, out: list[Action]) -> None:
        """Support the new view's plan (one share per entry) and wait for it to lock."""
        w = nv.view
        self.mode = NV_PENDING
        self.nv = nv
        self.plan = plan
        self.pending_nv = None
        self.nv_retries = 0
        if plan.base > self.low:
            # The plan's checkpoint proof is a valid stable proof: adopt it now, so the plan's
            # certificates fall inside our window (and into any later VC-REQUEST of ours).
            self._make_stable(plan.base, plan.base_digest, plan.proof, out, replay=False)
        shares = tuple(
            self._sign_share(w, plan.base + 1 + i, b.digest) for i, b in enumerate(plan.batches)
        )
        if self.macs:
            shares = ()
        sup = NvSupport(w, self.id, plan.digest, shares, True)
        self.own_nv_support = sup
        self._set_timer(self.t_view_change, self._timeout_ticks(), out)
        if self.macs:  # all-to-all: each replica prepares the plan on n−f supports
            out.append(Broadcast(sup))
            self._count_nv_support(self.id, sup, out)
            return
        if self.primary_of(w) == self.id:
            self._add_nv_support(self.id, sup, out)
        else:
            out.append(Send(self.primary_of(w), sup))
        cert = self.certify_seen.get(w)
        if cert is not None:
            self._on_nv_certify(self.primary_of(w), cert, out)

    def _on_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if self.macs:
            self._on_nv_support_macs(sender, m, out)
            return
        if m.view != self.view or self.primary != self.id or self.plan is None:
            self._ignore("nv_support_not_for_us")
            return
        if self.nv_certify is not None:  # it missed NV-CERTIFY: send it again
            out.append(Send(sender, self.nv_certify))
            return
        if m.plan_digest != self.plan.digest or sender in self.nv_shares:
            self._ignore("nv_support_mismatch_or_duplicate")
            return
        plan = self.plan
        if len(m.shares) != len(plan.batches):
            self._ignore("bad_share")
            return
        for i, (b, share) in enumerate(zip(plan.batches, m.shares, strict=True)):
            if not self._verify_share(sender, m.view, plan.base + 1 + i, b.digest, share):
                self._ignore("bad_share")
                return
        self._add_nv_support(sender, m, out)

    def _on_nv_support_macs(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        w = m.view
        if w < self.view or w < 1 or m.shares:
            self._ignore("old_view" if w < self.view else "bad_nv_support")
            return
        self._note_view(sender, w, out)
        if w == self.view and self.mode == ACTIVE:
            # The sender is still entering our view: answer with ours (answers are not answered).
            own = self.own_nv_support
            if m.waiting and own is not None and own.plan_digest == m.plan_digest:
                out.append(Send(sender, NvSupport(w, self.id, own.plan_digest, (), False)))
            return
        self._count_nv_support(sender, m, out)

    def _count_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        """MACs: tally NV-SUPPORTs per plan; n−f for our plan prepare it (like NV-CERTIFY)."""
        if not self._tally(self.nv_supports, sender, m.view, m.plan_digest, "nv_support"):
            return
        self._try_relayed_nv(out)
        plan = self.plan
        if self.mode != NV_PENDING or plan is None or plan.view != m.view or self.plan_prepared:
            return
        if len(self.nv_supports.get(plan.view, {}).get(plan.digest, ())) >= self.quorum:
            self._take_certify(plan.view, None, out)

    def _tally(
        self,
        table: dict[int, dict[bytes, set[int]]],
        sender: int,
        view: int,
        digest: bytes,
        kind: str,
    ) -> bool:
        """Add ``sender``'s vote for ``digest`` in ``view`` to ``table`` (NV-SUPPORTs or
        NV-COMMITs); False if it was known or refused. Bounded: at most n plans per view,
        and only the current view and one later view are kept."""
        by_plan = table.setdefault(view, {})
        if digest not in by_plan and len(by_plan) >= self.n:
            self._ignore(f"{kind}_table_full")
            return False
        voters = by_plan.setdefault(digest, set())
        if sender in voters:
            return False  # a retransmission (replicas that entered the view answer those)
        voters.add(sender)
        while len(table) > 2:
            del table[min(v for v in table if v != self.view)]
        return True

    def _add_nv_support(self, sender: int, m: NvSupport, out: list[Action]) -> None:
        plan = self.plan
        assert plan is not None and m.plan_digest == plan.digest
        self.nv_shares[sender] = m.shares
        if len(self.nv_shares) < self.quorum or self.nv_certify is not None:
            return
        certs = tuple(
            combine({r: shares[i] for r, shares in self.nv_shares.items()}, self.quorum)
            for i in range(len(plan.batches))
        )
        certify = NvCertify(plan.view, plan.base, tuple(b.digest for b in plan.batches), certs)
        out.append(Broadcast(certify))
        self._take_certify(plan.view, certify, out)

    def _valid_nv_certify(self, m: NvCertify) -> bool:
        if len(m.digests) != self.window or len(m.certs) != self.window or m.base < 0:
            return False
        return all(
            self._valid_cert(m.view, m.base + 1 + i, d, cert)
            for i, (d, cert) in enumerate(zip(m.digests, m.certs, strict=True))
        )

    def _on_nv_certify(self, sender: int, m: NvCertify, out: list[Action]) -> None:
        if not 0 <= sender < self.n:
            self._ignore("non_member")
            return
        if self.macs:
            self._ignore("certify_with_macs")  # nobody signs shares: it cannot be valid
            return
        w = m.view
        if w < self.view or (w == self.view and self.mode == ACTIVE) or w < 1:
            self._ignore("old_view")
            return
        if self.certify_seen.get(w) != m:
            if not self._valid_nv_certify(m):
                self._ignore("invalid_nv_certify")
                return
            if self.certify_seen and max(self.certify_seen) > w:
                self._ignore("old_view")
                return
            self.certify_seen = {w: m}  # only the highest view we may still enter
        self._note_view(sender, w, out)
        if w > self.view:
            # n−f replicas supported view w's plan: it is established. Ask to join it.
            self._start_view_change(w, out)
            return
        plan = self.plan
        if self.mode == NV_PENDING and plan is not None:
            if plan.digest == plan_digest(w, m.base, m.digests) and not self.plan_prepared:
                self._take_certify(w, m, out)
            return
        nv = self.pending_nv
        if self.mode == VIEW_CHANGE and nv is not None and nv.view == w:
            self.pending_nv = None
            relayed = self._validate_nv(nv)
            if relayed is not None and relayed.digest == plan_digest(w, m.base, m.digests):
                self._take_nv(nv, relayed, out)

    def _take_certify(self, view: int, m: NvCertify | None, out: list[Action]) -> None:
        """We hold view-w certificates for the whole plan (NV-CERTIFY; with MACs n−f
        NV-SUPPORTs, i.e. the plan's entries are view-committed in w): announce it
        (NV-COMMIT)."""
        plan = self.plan
        assert plan is not None and plan.view == view
        self.plan_prepared = True
        self.nv_certify = m
        self.certify_seen.pop(view, None)
        certs = (None,) * len(plan.batches) if m is None else m.certs
        for i, (batch, cert) in enumerate(zip(plan.batches, certs, strict=True)):
            seq = plan.base + 1 + i
            if seq > self.low:
                self.evidence[seq] = Committed(view, seq, batch, cert)
        commit = NvCommit(view, self.id, plan.digest, True)
        self.own_nv_commit = commit
        out.append(Broadcast(commit))
        self._count_nv_commit(self.id, commit, out)

    def _on_nv_commit(self, sender: int, m: NvCommit, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        w = m.view
        if w < self.view:
            self._ignore("old_view")
            return
        self._note_view(sender, w, out)
        if w == self.view and self.mode == ACTIVE:
            # The sender is still entering our view: help it finish (answers are not answered).
            own = self.own_nv_commit
            if m.waiting and own is not None and own.plan_digest == m.plan_digest:
                out.append(Send(sender, NvCommit(own.view, self.id, own.plan_digest, False)))
            return
        self._count_nv_commit(sender, m, out)

    def _count_nv_commit(self, sender: int, m: NvCommit, out: list[Action]) -> None:
        if not self._tally(self.nv_commits, sender, m.view, m.plan_digest, "nv_commit"):
            return
        if self.macs:
            self._try_relayed_nv(out)
        self._check_enter(out)

    def _check_enter(self, out: list[Action]) -> None:
        plan = self.plan
        if self.mode != NV_PENDING or plan is None or not self.plan_prepared:
            return
        voters = self.nv_commits.get(self.view, {}).get(plan.digest, set())
        if len(voters) < self.quorum:
            return
        self._enter_view(plan, out)

    def _enter_view(self, plan: Plan, out: list[Action]) -> None:
        """The plan is locked (n−f NV-COMMITs): take part in view ``plan.view``."""
        w = plan.view
        assert w == self.view and self.mode == NV_PENDING
        self.mode = ACTIVE
        self._view_unproven = True
        self._probed_at = -1
        self._cancel_timer(self.t_view_change, out)
        for r in [r for r, vc in self.vc_latest.items() if vc.new_view <= w]:
            del self.vc_latest[r]
        self.plan_end = plan.end
        self.last_assigned = max(plan.end, self.low)
        self.pending_plan = plan
        if self.primary_of(w) == self.id:  # the plan's requests are ordered already
            for i, batch in enumerate(plan.batches):
                for req in batch.requests:
                    self.in_flight[(req.client_id, req.timestamp)] = plan.base + 1 + i
        self._reconcile(out)
        out.append(base.ViewEntered(w, self.primary_of(w)))
        self._resume_requests(w, out)  # waiting requests: proposed, or sent to the primary
        self._replay_held(out)
        self._check_final(out)

    def _reconcile(self, out: list[Action]) -> None:
        """Bring executed entries in line with the plan: keep what it keeps, roll back from
        the first entry it replaces, execute the rest (needs our state final at its base)."""
        plan = self.pending_plan
        if plan is None or self.mode != ACTIVE or plan.view != self.view:
            return
        if (
            self.final_mark < plan.base <= self.last_executed
            and self.own_digest.get(plan.base) == plan.base_digest
        ):
            # our state matches the plan's (proven stable) base: final there, not above
            self.final_mark = plan.base
            self.verified_to = max(self.verified_to, plan.base)
            out.append(StableCheckpoint(plan.base, plan.base_digest))
        if self.final_mark < plan.base:
            return  # catch up to the plan's base first (fetch); _check_final calls us again
        self.pending_plan = None
        final = max(self.final_mark, self.verified_to)
        # Entries above the final mark were executed in an older view: re-execute them in
        # this one even where the plan keeps the same batch, so every replica INFORMs the
        # client with this view (clients match on view, seq and result, as in the paper).
        first = max(final, plan.base) + 1
        if self.last_executed >= first:
            self.reexecuted += self.last_executed - first + 1
            self._rollback_to(first - 1, out)
        for i, batch in enumerate(plan.batches):
            seq = plan.base + 1 + i
            if seq <= final:
                old = self.log.get(seq)
                if old is not None and old[1].digest != batch.digest:
                    self._ignore("plan_conflicts_final")  # would be a safety bug
                continue
            self.ready[seq] = (plan.view, batch)
        if self.last_executed > max(plan.end, final):
            # Entries above the plan come from an older view (certificates of older views
            # stay inside the plan's window) unless they are final (fetched): undo the rest.
            self._ignore("executed_beyond_plan")
            self._rollback_to(max(plan.end, final), out)
        self.reconciled = True
        self._deliver_ready(out)


__all__ = ["ACTIVE", "CERTIFICATE_MODES", "NV_PENDING", "VIEW_CHANGE", "Plan", "Poe"]
