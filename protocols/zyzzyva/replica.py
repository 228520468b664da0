"""Zyzzyva (Kotla, Alvisi, Dahlin, Clement, Wong, SOSP'07) as a sans-IO state machine, as
"zyzzyva". KNOWN UNSAFE: its view change can lose a request a client completed on the fast
path (Abraham, Gueta, Malkhi, Alvisi, Kotla, Martin, "Revisiting Fast Practical Byzantine
Fault Tolerance", 2017); it is here as the simulator's proof that it finds such bugs, and a
real run refuses it unless ``protocol.allow_unsafe: true``.

``Zyzzyva`` is composed of one mixin per part of the paper:
- protocols/zyzzyva/normal.py: ordering and speculative execution (§3.2), the commit
  certificate (slow path), fill-hole (§3.3), checkpoints (§3.4);
- protocols/zyzzyva/view_change.py: I-HATE-THE-PRIMARY, VIEW-CHANGE, NEW-VIEW (§3.5) and the
  history rule that is unsafe.

The client (``reply_rule``): 3f+1 speculative replies matching in view, seq, result and
history digest complete a request (fast path); with 2f+1 of them after
``zyzzyva_commit_wait_ticks`` it sends their signatures as a commit certificate
(``commit_message``) and completes on 2f+1 LOCAL-COMMITs (slow path). The runtime's and the
simulator's ``ClientCore`` run that rule. Replicas execute speculatively only; an entry
becomes final at a stable checkpoint.

Left out, as not needed for the paper's safety argument nor the counter-example: the
MAC-authenticator variant, state transfer (a replica left behind a stable checkpoint or a
new view's start stays behind, counted as ``behind``), proofs of misbehaviour sent by
clients (a replica that sees two ORDER-REQs for one seq suspects the primary itself), and
the "f+1 VIEW-CHANGEs make a replica join" shortcut (it joins on the NEW-VIEW).

Lives here: the state of one replica, its quorums, who proposes, the client rule, ``status``.
Must not live here: the protocol's steps (the mixins), IO, clocks, randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.base import ProtocolConfig, ReplyRule, Verifier
from protocols.checkpoints import Checkpoint
from protocols.common import Reply, Request
from protocols.limits import (
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
    ZYZZYVA_CHECKED_CERTS_WINDOWS,
    ZYZZYVA_FILL_WINDOWS,
    ZYZZYVA_FUTURE_WINDOWS,
    ZYZZYVA_HISTORY_WINDOWS,
)
from protocols.replica_core import ReplicaCore
from protocols.zyzzyva.messages import (
    GENESIS_HISTORY,
    Commit,
    CommitCert,
    FillHole,
    IHatePrimary,
    NewView,
    OrderReq,
    ViewChange,
)
from protocols.zyzzyva.normal import ZyzzyvaNormalCase
from protocols.zyzzyva.params import ZyzzyvaParams
from protocols.zyzzyva.view_change import ZyzzyvaViewChange

UNSAFE = (
    "its view change can lose a request a client completed on the fast path (Abraham, "
    "Gueta, Malkhi, Alvisi, Kotla, Martin 2017; python -m fabric sim --protocol zyzzyva "
    "--faults stale_cc replays it)"
)


class _NoSlot:
    """Zyzzyva keeps no per-seq agreement state (ReplicaCore's slot table is unused)."""


class Zyzzyva(ZyzzyvaNormalCase, ZyzzyvaViewChange, ReplicaCore[_NoSlot]):
    """One Zyzzyva replica."""

    name = "zyzzyva"
    speculative_replies = True
    client_messages = (Commit,)
    unsafe = UNSAFE
    checkpoint_revotes = True  # a replica re-executing after a new view votes again
    checkpoints_from_self = False  # so one in our own name could replace our vote: refused

    def __init__(self, config: ProtocolConfig, verifier: Verifier) -> None:
        super().__init__(config, verifier, _NoSlot)
        f = self.f
        self.params = ZyzzyvaParams.from_params(config.params)
        self.checkpoint_instance = 0
        # quorums (SOSP'07 §3): 3f+1 speculative replies (the client), 2f+1 for a commit
        # certificate, VIEW-CHANGEs per NEW-VIEW and a stable checkpoint; f+1 I-HATEs
        self.cc_quorum = 2 * f + 1
        self.vc_quorum = 2 * f + 1
        self.checkpoint_quorum = 2 * f + 1
        self.fetch_quorum = f + 1  # (ReplicaCore's; Zyzzyva fetches nothing)
        # bounds (protocols/limits.py), relative to the watermark window
        self.max_queued = QUEUED_BATCHES_PER_WINDOW * self.window
        self.max_waiting = max(1, config.max_buffered)
        self.replay_window = REPLAY_WINDOW_PER_CLIENT
        self.max_history = max(1, ZYZZYVA_HISTORY_WINDOWS * self.window)
        self.max_future = max(1, ZYZZYVA_FUTURE_WINDOWS * self.window)
        self.fill_span = max(1, ZYZZYVA_FILL_WINDOWS * self.window)
        self.max_checked_certs = max(1, ZYZZYVA_CHECKED_CERTS_WINDOWS * self.window)

        self.t_request = ("zyzzyva", "request")
        self.t_fill = ("zyzzyva", "fill_hole")
        self.t_view_change = ("zyzzyva", "view_change")

        # history: ORDER-REQs accepted (and executed) above the stable checkpoint
        self.log: dict[int, OrderReq] = {}
        self.max_n = 0  # highest seq in the history
        self.history = GENESIS_HISTORY  # h_max_n
        self.history_at: dict[int, bytes] = {}  # seq -> h_seq, above the checkpoint
        self.history_low = GENESIS_HISTORY  # h at the stable checkpoint
        self.future: dict[int, OrderReq] = {}  # ORDER-REQs beyond a hole (<= window)
        self.fill_stage = 0
        self.max_cc: CommitCert | None = None  # highest commit certificate for our history
        self.max_cc_order: OrderReq | None = None  # our ORDER-REQ at its seq
        self.certs_checked: dict[tuple[Any, ...], None] = {}  # verified CCs (bounded)
        self.ordered_ts: dict[int, dict[int, int]] = {}  # client -> ordered ts -> seq
        self.ts_floor: dict[int, int] = {}  # client -> highest ts evicted from ordered_ts

        # view change
        self.in_vc = False
        self.vc_target = 0
        self.haters: dict[int, set[int]] = {}  # view -> replicas that hate its primary
        self.vc_latest: dict[int, ViewChange] = {}  # replica -> its latest valid VIEW-CHANGE
        self.nv_sent = 0  # the last view we sent NEW-VIEW for
        self.behind = False  # a new view or stable checkpoint started past our history
        self.suspicions = 0
        self.rolled_back = 0

        self._handlers = {
            OrderReq: self._on_order_req,
            FillHole: self._on_fill_hole,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
            IHatePrimary: self._on_i_hate,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
            Request: self._on_request,
        }
        self._timers = (
            (self.t_request, self._on_request_timer),
            (self.t_fill, self._on_fill_timer),
            (self.t_view_change, self._on_view_change_timer),
        )

    # --- the client ---------------------------------------------------------------------

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return n

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """SOSP'07 §3.2 step 4: 3f+1 SPEC-RESPONSEs matching in view, seq, result and
        history digest complete a request (fast path); 2f+1 of them are a commit certificate
        and 2f+1 matching LOCAL-COMMITs complete it (slow path)."""
        return ReplyRule(
            n, ("view", "seq", "result", "history"), speculative=True, commit_quorum=2 * f + 1
        )

    @classmethod
    def commit_message(
        cls, client_id: int, timestamp: int, replies: tuple[Reply, ...], params: Mapping[str, Any]
    ) -> Commit:
        first = replies[0]
        cert = CommitCert(
            first.view,
            first.seq,
            first.history,
            tuple(r.replica for r in replies),
            tuple(r.signature for r in replies),
        )
        return Commit(client_id, timestamp, first.result, cert)

    @classmethod
    def commit_wait_ticks(cls, params: Mapping[str, Any]) -> int:
        return ZyzzyvaParams.from_params(params).commit_wait_ticks

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return view % n

    # --- who proposes -------------------------------------------------------------------

    def is_proposer(self) -> bool:
        return not self.in_vc and not self.behind and self.primary == self.id

    def proposal_room(self) -> int:
        if not self.is_proposer():
            return 0
        return max(0, self.high - self.last_assigned) + (self.max_queued - len(self.queue))

    def _changing_view(self) -> bool:
        return self.in_vc

    def status(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "primary": self.primary,
            "in_view_change": self.in_vc,
            "last_delivered": self.max_n,
            "last_executed": self.max_n,
            "stable_seq": self.low,
            "low_watermark": self.low,
            "high_watermark": self.high,
            "last_assigned": self.last_assigned,
            "max_cc_seq": self.max_cc.seq if self.max_cc is not None else 0,
            "behind": self.behind,
            "buffered": len(self.held),
            "dropped": self.dropped,
            "queued": len(self.queue),
            "waiting": len(self.waiting),
            "proposals_dropped": self.proposals_dropped,
            "view_changes_started": self.view_changes_started,
            "suspicions": self.suspicions,
            "rolled_back": self.rolled_back,
            "backoff_exp": self.backoff_exp,
            "ignored": dict(self.ignored),
        }


__all__ = ["UNSAFE", "Zyzzyva"]
