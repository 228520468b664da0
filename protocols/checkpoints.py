"""Checkpoints (Castro & Liskov OSDI'99 §4.3 / TOCS'02 §2.3.4, reused by PoE, Gupta et al.
EDBT 2021 §3.3): the signed CHECKPOINT message, the bytes its signature covers, and the
vote counting both replicas run (``CheckpointVotes``, a mixin of ReplicaCore).

How it works: on executing a multiple of ``checkpoint_period`` a replica signs its state
digest and broadcasts CHECKPOINT; each replica keeps at most ``ckpt_per_replica`` votes
per sender (its newest); ``checkpoint_quorum`` (2f+1) matching votes make the checkpoint
stable: the subclass's ``_make_stable`` moves the watermarks (``_move_watermarks``: low =
the stable seq, high = low + window) and discards the log below. Those 2f+1 signed
votes are the stable-checkpoint proof a view change (PBFT VIEW-CHANGE, PoE VC-REQUEST)
and PoE's StableProof carry; ``_valid_checkpoint_proof`` checks one. Checkpoints are
signed in every mode (a stable proof must stay transferable).

Wire kind 19 stays where PBFT's range put it (16..47), so frames are unchanged; PBFT's
instance field is kept (RCC instances checkpoint separately; PoE uses instance 0).

Must not live here: what a stable checkpoint triggers in each protocol (their
``_make_stable``), IO, clocks or randomness.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from protocols.base import Action, Broadcast
from protocols.codec import message
from protocols.common import Digest, Signature

KIND_CHECKPOINT = 19  # in PBFT's range (16..47), where it was first registered

_CK = struct.Struct("!2sqqq")


@message(KIND_CHECKPOINT)
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """``replica`` executed up to ``seq`` and its state digest is ``state_digest``."""

    instance: int
    seq: int
    state_digest: Digest
    replica: int
    signature: Signature = b""  # by ``replica`` over checkpoint_payload


def checkpoint_payload(instance: int, seq: int, replica: int, state_digest: bytes) -> bytes:
    """Bytes ``replica`` signs for its checkpoint (raises struct.error on absurd ints)."""
    return _CK.pack(b"CK", instance, seq, replica) + state_digest


class CheckpointVotes:
    """Checkpoint votes and stabilisation, shared by Pbft and Poe through ReplicaCore (which
    holds the state these read: ``ckpt_votes``, ``ckpt_of``, ``low``, ``high``, ...)."""

    #: PoE: a replica that re-executed after a rollback may sign another digest for a seq,
    #: and that later vote replaces its earlier one; PBFT keeps a replica's first vote
    checkpoint_revotes: ClassVar[bool] = False
    #: PBFT: a checkpoint in our own name is treated like any other (normally a duplicate
    #: of the one we counted); PoE refuses it (it could replace our own vote)
    checkpoints_from_self: ClassVar[bool] = True

    # state and hooks of ReplicaCore / the protocol (declared for readers and type checkers)
    id: int
    n: int
    period: int
    window: int
    low: int
    high: int
    last_assigned: int
    stable_digest: bytes
    stable_proof: tuple[Checkpoint, ...]
    checkpoint_quorum: int
    checkpoint_instance: int
    ckpt_per_replica: int
    ckpt_votes: dict[int, dict[bytes, dict[int, Checkpoint]]]
    ckpt_of: dict[int, dict[int, bytes]]
    verifier: Any

    _ignore: Callable[[str], None]  # ReplicaCore: count an ignored input by reason
    #: the protocol: what checkpoint ``seq`` becoming stable triggers (``proof``: the votes)
    _make_stable: Callable[..., None]

    def _valid_checkpoint_signature(self, cp: Checkpoint) -> bool:
        """True if ``cp`` carries its replica's valid signature (signed in every mode)."""
        try:
            payload = checkpoint_payload(cp.instance, cp.seq, cp.replica, cp.state_digest)
        except Exception:  # absurd ints cannot carry a valid signature
            return False
        return bool(self.verifier.verify(cp.replica, payload, cp.signature))

    def _on_checkpoint(self, sender: int, cp: Checkpoint, out: list[Action]) -> None:
        if cp.instance != self.checkpoint_instance:
            self._ignore("wrong_instance")
            return
        if (
            sender != cp.replica
            or not 0 <= sender < self.n
            or (sender == self.id and not self.checkpoints_from_self)
        ):
            self._ignore("wrong_replica_field")
            return
        if cp.seq <= self.low or cp.seq % self.period:
            self._ignore("old_checkpoint")
            return
        mine = self.ckpt_of.get(sender)
        if mine is not None:
            if self.checkpoint_revotes:  # only the same vote again is a duplicate
                duplicate = mine.get(cp.seq) == cp.state_digest
            else:
                duplicate = cp.seq in mine
            if duplicate:
                self._ignore("duplicate")
                return
        if not self._valid_checkpoint_signature(cp):
            self._ignore("bad_signature")
            return
        self._add_checkpoint(cp, out)

    def _cast_checkpoint(self, seq: int, state_digest: bytes, out: list[Action]) -> None:
        """§4.3: sign our state digest at ``seq``, broadcast the CHECKPOINT, count our own vote."""
        instance = self.checkpoint_instance
        sig = self.verifier.sign(checkpoint_payload(instance, seq, self.id, state_digest))
        cp = Checkpoint(instance, seq, state_digest, self.id, sig)
        out.append(Broadcast(cp))
        self._add_checkpoint(cp, out)

    def _add_checkpoint(self, cp: Checkpoint, out: list[Action]) -> None:
        """Count ``cp``; stable on ``checkpoint_quorum`` matching votes. With
        ``checkpoint_revotes`` a replica's later vote for a seq replaces its earlier one."""
        mine = self.ckpt_of.setdefault(cp.replica, {})
        old = mine.get(cp.seq)
        if old is not None:
            if not self.checkpoint_revotes or old == cp.state_digest:
                return
            by_digest = self.ckpt_votes.get(cp.seq, {}).get(old)
            if by_digest is not None:
                by_digest.pop(cp.replica, None)
        elif len(mine) >= self.ckpt_per_replica:  # bounded: keep each replica's newest few
            oldest = min(mine)
            if cp.seq < oldest:
                self._ignore("old_checkpoint")
                return
            digest = mine.pop(oldest)
            by_digest = self.ckpt_votes.get(oldest, {}).get(digest)
            if by_digest is not None:
                by_digest.pop(cp.replica, None)
        mine[cp.seq] = cp.state_digest
        votes = self.ckpt_votes.setdefault(cp.seq, {}).setdefault(cp.state_digest, {})
        votes[cp.replica] = cp
        if len(votes) >= self.checkpoint_quorum and cp.seq > self.low:
            proof = tuple(votes[r] for r in sorted(votes)[: self.checkpoint_quorum])
            self._make_stable(cp.seq, cp.state_digest, proof, out)

    def _valid_checkpoint_proof(self, seq: int, proof: tuple[Checkpoint, ...]) -> bool:
        if seq == 0:
            return not proof
        if len(proof) < self.checkpoint_quorum:
            return False
        digest = proof[0].state_digest
        seen: set[int] = set()
        for cp in proof:
            if (
                cp.instance != self.checkpoint_instance
                or cp.seq != seq
                or cp.state_digest != digest
                or not 0 <= cp.replica < self.n
                or cp.replica in seen
                or not self._valid_checkpoint_signature(cp)
            ):
                return False
            seen.add(cp.replica)
        return True

    def _valid_stable_claim(self, seq: int, proof: tuple[Checkpoint, ...]) -> bool:
        """A view-change's stable checkpoint: a checkpoint seq with a valid proof."""
        if seq < 0 or seq % self.period:
            return False
        return self._valid_checkpoint_proof(seq, proof)

    def _move_watermarks(
        self,
        seq: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        logs: tuple[dict[int, Any], ...],
    ) -> None:
        """``seq`` is the stable checkpoint: move the watermarks, keep its proof, and drop
        every entry at or below it from ``logs`` and the checkpoint votes."""
        assert seq > self.low, "stable checkpoints only move forward"
        assert len({c.replica for c in proof}) >= self.checkpoint_quorum, "distinct signers"
        self.low = seq
        self.high = seq + self.window
        self.stable_digest = digest
        self.stable_proof = proof
        for table in (*logs, self.ckpt_votes):
            for s in [s for s in table if s <= seq]:
                del table[s]
        for mine in self.ckpt_of.values():
            for s in [s for s in mine if s <= seq]:
                del mine[s]
        if self.last_assigned < seq:
            self.last_assigned = seq


__all__ = ["KIND_CHECKPOINT", "Checkpoint", "CheckpointVotes", "checkpoint_payload"]
