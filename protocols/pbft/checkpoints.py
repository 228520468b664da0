"""PBFT checkpoints and garbage collection (Castro & Liskov OSDI'99 §4.3).

On ``executed`` at a multiple of checkpoint_period a replica broadcasts CHECKPOINT;
a checkpoint that becomes stable more than ``state_fetch_gap`` seqs beyond what this
replica delivered asks the runtime for the state there (``FetchState`` with the 2f+1 votes:
the peers' history of batches is bounded, HISTORY_WINDOWS windows);
``checkpoint_quorum`` (2f+1) matching make it stable: the log below is discarded and the
watermarks move (low = stable seq, high = low + window). The votes and their counting are
shared with PoE (protocols/checkpoints.py, through ReplicaCore); this mixin of ``Pbft`` says
what PBFT does with them. Must not live here: the vote counting, the wire format, IO.
"""

from __future__ import annotations

from protocols.base import Action, Broadcast, FetchState, StableCheckpoint
from protocols.checkpoints import Checkpoint
from protocols.limits import MAX_IDLE_ROUNDS
from protocols.pbft.messages import Fetch


class PbftCheckpoints:
    """CHECKPOINT on execution, and what a stable checkpoint does to PBFT's log (§4.3)."""

    def _arm_idle(self, out: list[Action]) -> None:
        """Watch for idleness (one timer per view-change timeout while deliveries go on)."""
        if self.watches_idle and self.t_idle not in self.armed:
            self._idle_mark = self.last_delivered
            self._set_timer(self.t_idle, self.base_ticks << self._idle_rounds, out)

    def _on_idle_timer(self, out: list[Action]) -> None:
        """Nothing was delivered for a whole period: a replica that lost messages to a
        partition or a lossy link would never hear of the last batches or the last stable
        checkpoint (nothing new comes once the clients are done). So re-broadcast our vote
        for the stable checkpoint and ask what follows our last delivered batch (a FETCH:
        peers answer from their history), MAX_IDLE_ROUNDS times at most, the period
        doubling; a delivery starts the count again. Under load it never fires idle."""
        if self.last_delivered != self._idle_mark:
            self._idle_rounds = 0  # deliveries went on: keep watching
            self._arm_idle(out)
            return
        if self._idle_rounds >= MAX_IDLE_ROUNDS:
            return  # quiet for good until the next delivery
        self._idle_rounds += 1
        vote = self.stable_vote
        if vote is not None and vote.seq == self.low:
            out.append(Broadcast(vote))
        first = self.last_delivered + 1
        out.append(Broadcast(Fetch(self.instance, first, first + self.fetch_span - 1, self.id)))
        self._arm_idle(out)

    # _on_checkpoint, _add_checkpoint, _valid_checkpoint_proof: ReplicaCore

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        out: list[Action] = []
        if seq % self.period or seq <= self.low or seq > self.last_delivered:
            return out
        self._cast_checkpoint(seq, state_digest, out)
        return out

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
        # our own vote for it, if we cast the matching one (a probe's answer: catch_up.py)
        self.stable_vote = self.ckpt_votes.get(seq, {}).get(digest, {}).get(self.id)
        self._arm_idle(out)
        self._move_watermarks(seq, digest, proof, (self.slots, self.certs, self.pre_prepared))
        if self.last_delivered >= seq:
            self._stable_unannounced = False
            out.append(StableCheckpoint(seq, digest, proof))
        else:
            self._stable_unannounced = True  # announced once delivery catches up
        if replay:
            if self.last_delivered < seq and self._probes_left == 0 and self.fetches_state:
                # behind a stable checkpoint: ask for what follows, past it too (peers may
                # hold committed batches beyond it that no later checkpoint will announce)
                self._probe(out)
            if self.last_delivered < seq:
                if self.fetches_state and seq - self.last_delivered > self.state_fetch_gap:
                    # further behind than the peers' bounded history reliably covers: fetch
                    # the certified state at seq (state transfer), batches for the rest
                    self.state_fetches += 1
                    out.append(FetchState(seq, digest, proof))
                self._fetch_now(out)
            self._replay_held(out)
            self._drain_queue(out)
