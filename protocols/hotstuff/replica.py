"""Chained HotStuff (Yin, Malkhi, Reiter, Gueta, Abraham, PODC'19) as a sans-IO state
machine, registered as "hotstuff": calls in, actions out.

``HotStuff`` is composed of one mixin per concern, each in its own module that opens with
the paper section it implements:
- protocols/hotstuff/safety.py: QCs, the vote rule, the lock, the three-chain commit (§5);
- protocols/hotstuff/normal.py: propose, check, vote, collect votes (§5, Algorithm 3);
- protocols/hotstuff/pacemaker.py: views, rotating leaders, view timeouts, NEW-VIEW (§6);
- protocols/hotstuff/catch_up.py: fetching missing ancestors by digest;
- the block tree (tree.py) and the client requests a leader proposes (mempool.py);
- checkpoints and log GC: protocols/checkpoints.py's ``CheckpointVotes`` as PBFT and PoE
  use it (2f+1 signed CHECKPOINTs on executed heights; a stable one moves the watermarks,
  blocks past the high one carry no payload).

Quorum certificates are n-f Ed25519 signatures through the injected Verifier: no threshold
scheme (protocols/hotstuff/messages.py says what that costs). Every replica may lead, so
``is_proposer`` is always true: each keeps the batches its batch stage cuts until one of
its views; clients spread their requests over the replicas (``client_target``).

Lives here: the state of one replica (every mixin reads and writes it), quorum sizes, the
dispatch of messages and timers, checkpoints, the client's reply rule, ``status``. Must not
live here: any step of the protocol (the mixins), sockets, threads, clocks, randomness.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from protocols.base import (
    Action,
    Protocol,
    ProtocolConfig,
    ReplyRule,
    SetTimer,
    StableCheckpoint,
    Verifier,
)
from protocols.checkpoints import Checkpoint, CheckpointVotes
from protocols.common import Batch, Request
from protocols.hotstuff.catch_up import HotStuffCatchUp
from protocols.hotstuff.mempool import Delivered, Mempool
from protocols.hotstuff.messages import (
    GENESIS_DIGEST,
    GENESIS_QC,
    QC,
    Blocks,
    FetchBlocks,
    NewView,
    Proposal,
    Vote,
    Wake,
)
from protocols.hotstuff.normal import HotStuffNormal
from protocols.hotstuff.pacemaker import HotStuffPacemaker
from protocols.hotstuff.params import HotStuffParams
from protocols.hotstuff.safety import HotStuffSafety
from protocols.hotstuff.tree import BlockTree
from protocols.limits import (
    FETCH_TICKS_DIVISOR,
    HISTORY_WINDOWS,
    MAX_VERIFIED_QCS,
    ORPHAN_BLOCKS_PER_WINDOW,
    QUEUED_BATCHES_PER_WINDOW,
    REPLAY_WINDOW_PER_CLIENT,
    TREE_BLOCKS_PER_WINDOW,
)


class HotStuff(
    HotStuffNormal,
    HotStuffPacemaker,
    HotStuffSafety,
    HotStuffCatchUp,
    CheckpointVotes,
    Protocol,
):
    """One chained-HotStuff replica."""

    name = "hotstuff"

    def __init__(self, config: ProtocolConfig, verifier: Verifier) -> None:
        super().__init__(config, verifier)
        self.params = HotStuffParams.from_params(config.params)
        f = self.f
        self.quorum = self.n - f  # votes in a QC, NEW-VIEWs that make a leader ready
        self.checkpoint_quorum = 2 * f + 1
        self.checkpoint_instance = 0

        # bounds (protocols/limits.py), relative to the watermark window and the timeout
        self.period = config.checkpoint_period
        self.window = config.watermark_window
        self.base_ticks = max(1, int(config.view_change_ticks))
        self.fetch_ticks = max(1, self.base_ticks // FETCH_TICKS_DIVISOR)
        self.ckpt_per_replica = self.window // self.period + 2
        self.max_verified_qcs = MAX_VERIFIED_QCS
        self.tree = BlockTree(
            max_uncommitted=TREE_BLOCKS_PER_WINDOW * self.window,
            max_orphans=ORPHAN_BLOCKS_PER_WINDOW * self.window,
            history_len=HISTORY_WINDOWS * self.window,
        )
        self.mempool = Mempool(QUEUED_BATCHES_PER_WINDOW * self.window)
        self.delivered = Delivered(REPLAY_WINDOW_PER_CLIENT)

        self.t_view = ("hotstuff", "view")
        self.t_fetch = ("hotstuff", "fetch")
        self.t_fetch_later = ("hotstuff", "fetch_later")

        # views (pacemaker.py)
        self.view = 1  # view 0 is genesis's; replica 1 leads the first block
        self.timer_view = -1  # the view the view timer is armed for (-1: not armed)
        self.backoff_exp = 0
        self.proposed_view = 0
        self.nv_ready_view = 0  # a view this replica leads and got n-f NEW-VIEWs for
        self.nv_latest: dict[int, NewView] = {}  # replica -> its newest NEW-VIEW
        self.held_proposals: dict[int, tuple[bytes, Any]] = {}  # view -> (digest, block)
        self.wakers: dict[int, int] = {}  # replica -> view of its WAKE
        self.wake_view = 0  # the last view we sent WAKE in

        # safety (safety.py)
        self.voted_view = 0
        self.last_vote: Vote | None = None
        self.lock_view = 0
        self.lock_digest = GENESIS_DIGEST
        self.high_qc: QC = GENESIS_QC
        self._tip = GENESIS_DIGEST  # the newest block voted for, proposed or certified
        self._tip_view = 0
        self.verified_qcs: dict[tuple[int, bytes], None] = {}
        self.waiting_qcs: dict[bytes, QC] = {}  # block digest -> its QC, block being fetched
        self.votes: dict[int, dict[int, Vote]] = {}  # view -> replica -> vote (next leader)
        self.last_delivered = 0
        self.last_committed = GENESIS_DIGEST

        # catch-up (catch_up.py)
        self.wanted: dict[bytes, int] = {}  # missing block -> times asked for
        self.fetch_later: dict[bytes, int] = {}  # missing block -> who has it (fetched soon)

        # checkpoints (protocols/checkpoints.py reads these)
        self.low = 0
        self.high = self.window
        self.last_assigned = 0
        self.stable_digest = b""
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.ckpt_votes: dict[int, dict[bytes, dict[int, Checkpoint]]] = {}
        self.ckpt_of: dict[int, dict[int, bytes]] = {}
        self._stable_unannounced = False
        self.checkpoint_mismatches = 0

        # counters
        self.ignored: dict[str, int] = {}
        self.armed: set[Hashable] = set()
        self.timeouts = 0
        self.proposals_made = 0
        self.qcs_formed = 0
        self.batches_committed = 0
        self.fetches_sent = 0
        self.proposals_dropped = 0
        self.empty_beyond_watermark = 0  # blocks proposed empty: past the high watermark
        self.pruned_forks = 0  # uncommitted blocks dropped: they conflict with the lock

        self._handlers = {
            Proposal: self._on_proposal,
            Vote: self._on_vote,
            NewView: self._on_new_view,
            Wake: self._on_wake,
            FetchBlocks: self._on_fetch_blocks,
            Blocks: self._on_blocks,
            Checkpoint: self._on_checkpoint,
            Request: self._on_request,
        }
        self._timers = {
            self.t_view: self._on_view_timer,
            self.t_fetch: self._on_fetch_timer,
            self.t_fetch_later: self._on_fetch_later_timer,
        }

    # --- who proposes, what a client accepts ----------------------------------------------

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return f + 1

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """f+1 matching replies of committed blocks: one of them is honest, and an honest
        replica replies only for a block it committed (the three-chain)."""
        return ReplyRule(f + 1, ("seq", "result"), speculative=False)

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        """Spread clients over the replicas (each holds its requests for its own views),
        moving on with the view the client last learnt (a crashed target is left behind)."""
        return (client_id + view) % n

    def is_proposer(self) -> bool:
        return True  # every replica leads some views: each keeps its own requests

    def proposal_room(self) -> int:
        return self.mempool.room()

    # --- calls in --------------------------------------------------------------------------

    def propose(self, batch: Batch) -> list[Action]:
        out: list[Action] = []
        if not self.mempool.add(batch):
            self.proposals_dropped += 1
            self._ignore("mempool_full")
        self._after(out)
        return out

    def receive(self, sender: int, msg: Any) -> list[Action]:
        out: list[Action] = []
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._ignore("unknown_message")
            return out
        handler(sender, msg, out)
        self._after(out)
        return out

    def timeout(self, timer: Hashable) -> list[Action]:
        out: list[Action] = []
        handler = self._timers.get(timer)
        if handler is None:
            self._ignore("unknown_timer")
            return out
        self.armed.discard(timer)
        handler(out)
        self._after(out)
        return out

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        """Checkpoints (Castro & Liskov §4.3, shared): sign the state at a period's height."""
        out: list[Action] = []
        if seq % self.period or seq <= self.low or seq > self.last_delivered:
            return out
        self._cast_checkpoint(seq, state_digest, out)
        self._after(out)
        return out

    # --- helpers ----------------------------------------------------------------------------

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def _set_timer(self, timer: Hashable, ticks: int, out: list[Action]) -> None:
        self.armed.add(timer)
        out.append(SetTimer(timer, ticks))

    def _make_stable(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        out: list[Action],
        replay: bool = True,
    ) -> None:
        """2f+1 matching checkpoints at ``seq``: move the watermarks (the block tree keeps
        its own bounded history of committed blocks for fetches)."""
        own = self.ckpt_of.get(self.id, {}).get(seq)
        if own is not None and own != digest:
            self.checkpoint_mismatches += 1
        self._move_watermarks(seq, digest, proof, ())
        if self.last_delivered >= seq:
            self._stable_unannounced = False
            out.append(StableCheckpoint(seq, digest, proof))
        else:
            self._stable_unannounced = True  # announced once delivery catches up

    def status(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "primary": self.leader_of(self.view),
            "in_view_change": False,
            "last_delivered": self.last_delivered,
            "stable_seq": self.low,
            "low_watermark": self.low,
            "high_watermark": self.high,
            "high_qc_view": self.high_qc.view,
            "locked_view": self.lock_view,
            "voted_view": self.voted_view,
            "mempool_batches": len(self.mempool),
            "tree_blocks": len(self.tree.blocks),
            "orphans": len(self.tree.orphans),
            "wanted": len(self.wanted),
            "timeouts": self.timeouts,
            "backoff_exp": self.backoff_exp,
            "proposals_made": self.proposals_made,
            "qcs_formed": self.qcs_formed,
            "batches_committed": self.batches_committed,
            "fetches_sent": self.fetches_sent,
            "proposals_dropped": self.proposals_dropped,
            "empty_beyond_watermark": self.empty_beyond_watermark,
            "pruned_forks": self.pruned_forks,
            "checkpoint_mismatches": self.checkpoint_mismatches,
            "ignored": dict(self.ignored),
        }


__all__ = ["HotStuff"]
