"""PBFT wire messages (kinds 16..47) and the exact bytes each signature covers.

Every message carries ``instance`` (0 for plain PBFT; RCC runs several PBFT
instances side by side and routes by it). Messages that end up inside a
transferable proof (a pre-prepare or prepare inside a prepared certificate, a
checkpoint inside a stable-checkpoint proof, a view-change inside a new-view)
carry a ``signature`` made through the injected Verifier over the payload the
``*_payload`` functions below build; Commit never leaves its receiver, so it is
not signed. With ``pbft_signed_votes`` off the votes (pre-prepare, prepare) carry b"",
but checkpoints and view-changes are still signed: the MAC view change weighs signed
claims (protocols/claims.py), and a stable checkpoint must stay provable.

Must not live here: protocol logic (Pbft in protocols/pbft/replica.py and its mixins), IO of any kind.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocols.checkpoints import Checkpoint, checkpoint_payload
from protocols.codec import Max, encode_body, message
from protocols.common import Batch, Digest, Signature
from protocols.limits import MAX_REPLICAS, MAX_SEQS_PER_MESSAGE

# Kinds: 16..47 belong to PBFT (transport/wire.py).
KIND_PRE_PREPARE = 16
KIND_PREPARE = 17
KIND_COMMIT = 18
# 19: Checkpoint (protocols/checkpoints.py, shared with PoE; the kind is unchanged)
KIND_PREPARED_CERT = 20
KIND_VIEW_CHANGE = 21
KIND_NEW_VIEW = 22
KIND_FETCH = 23
KIND_FETCH_REPLY = 24
KIND_PRE_PREPARED = 25


@message(KIND_PRE_PREPARE)
@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary of ``view`` assigns ``seq`` to ``batch`` (digest = batch.digest)."""

    instance: int
    view: int
    seq: int
    batch: Batch
    signature: Signature = b""  # by the primary of ``view`` over pre_prepare_payload

    @property
    def digest(self) -> bytes:
        return self.batch.digest

    def proposer(self, n: int) -> int:
        """The only replica that may send this (the primary of ``view`` in ``instance``):
        the runtime checks it before it pre-verifies any client signature inside."""
        return (self.instance + self.view) % n


@message(KIND_PREPARE)
@dataclass(frozen=True, slots=True)
class Prepare:
    """Backup ``replica`` accepted the pre-prepare (view, seq, digest)."""

    instance: int
    view: int
    seq: int
    digest: Digest
    replica: int
    signature: Signature = b""  # by ``replica`` over prepare_payload


@message(KIND_COMMIT)
@dataclass(frozen=True, slots=True)
class Commit:
    """``replica`` is prepared for (view, seq, digest)."""

    instance: int
    view: int
    seq: int
    digest: Digest
    replica: int


@message(KIND_PREPARED_CERT)
@dataclass(frozen=True, slots=True)
class PreparedCert:
    """Proof that ``pre_prepare`` was prepared: 2f matching prepares from distinct backups."""

    pre_prepare: PrePrepare
    prepares: Annotated[tuple[Prepare, ...], Max(MAX_REPLICAS)]


@message(KIND_PRE_PREPARED)
@dataclass(frozen=True, slots=True)
class PrePrepared:
    """Unsigned votes only: the sender accepted a pre-prepare of ``digest`` at ``seq``, last
    in ``view`` (a Q-set claim of Castro & Liskov's MAC view change, protocols/claims.py)."""

    seq: int
    view: int
    digest: Digest


@message(KIND_VIEW_CHANGE)
@dataclass(frozen=True, slots=True)
class ViewChange:
    """``replica`` moves to ``new_view``: its stable checkpoint (with 2f+1 proof) and certificates."""

    instance: int
    new_view: int
    replica: int
    stable_seq: int
    # 2f+1 matching Checkpoint at stable_seq (() at 0)
    checkpoint_proof: Annotated[tuple[Checkpoint, ...], Max(MAX_REPLICAS)]
    # one per prepared seq above stable_seq, highest view
    prepared: Annotated[tuple[PreparedCert, ...], Max(MAX_SEQS_PER_MESSAGE)]
    signature: Signature = b""  # by ``replica`` over view_change_payload (signed in either mode)
    # Unsigned votes only: ``prepared`` holds claims (certificates without prepares, which
    # would prove nothing) and this the pre-prepare claims above stable_seq.
    pre_prepared: Annotated[tuple[PrePrepared, ...], Max(MAX_SEQS_PER_MESSAGE)] = ()


@message(KIND_NEW_VIEW)
@dataclass(frozen=True, slots=True)
class NewView:
    """The primary of ``view`` starts it: 2f+1 view-changes and the pre-prepares they imply."""

    instance: int
    view: int
    view_changes: Annotated[tuple[ViewChange, ...], Max(MAX_REPLICAS)]
    # seqs min_s+1..max_s: re-proposals and null fills
    pre_prepares: Annotated[tuple[PrePrepare, ...], Max(MAX_SEQS_PER_MESSAGE)]


@message(KIND_FETCH)
@dataclass(frozen=True, slots=True)
class Fetch:
    """A lagging ``replica`` asks for committed batches first_seq..last_seq (catch-up)."""

    IS_FETCH: ClassVar[bool] = True  # the runtime rate-limits these per sender

    instance: int
    first_seq: int
    last_seq: int
    replica: int


@message(KIND_FETCH_REPLY)
@dataclass(frozen=True, slots=True)
class FetchReply:
    """``replica`` delivered ``batch`` at ``seq`` (f+1 matching replies make it trusted)."""

    CATCH_UP: ClassVar[bool] = True  # a fetch answer: the runtime sheds these first

    instance: int
    seq: int
    view: int
    batch: Batch
    replica: int


# --- signed payloads -------------------------------------------------------------------

_PP = struct.Struct("!2sqqq")
_PR = struct.Struct("!2sqqqq")


def pre_prepare_payload(instance: int, view: int, seq: int, digest: bytes) -> bytes:
    """Bytes the primary signs for a pre-prepare (raises struct.error on absurd ints)."""
    return _PP.pack(b"PP", instance, view, seq) + digest


def prepare_payload(instance: int, view: int, seq: int, replica: int, digest: bytes) -> bytes:
    return _PR.pack(b"PR", instance, view, seq, replica) + digest


def view_change_payload(vc: ViewChange) -> bytes:
    """The whole view-change body with an empty signature (rare: re-encoding is fine)."""
    unsigned = ViewChange(
        vc.instance,
        vc.new_view,
        vc.replica,
        vc.stable_seq,
        vc.checkpoint_proof,
        vc.prepared,
        b"",
        vc.pre_prepared,
    )
    return b"VC" + encode_body(unsigned)


__all__ = [
    "Checkpoint",
    "Commit",
    "Fetch",
    "FetchReply",
    "NewView",
    "PrePrepare",
    "PrePrepared",
    "Prepare",
    "PreparedCert",
    "ViewChange",
    "checkpoint_payload",
    "pre_prepare_payload",
    "prepare_payload",
    "view_change_payload",
]
