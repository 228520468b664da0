"""Zyzzyva's wire messages (Kotla, Alvisi, Dahlin, Clement, Wong, SOSP'07 §3; kinds 160..175)
and the bytes each signature covers.

- ``OrderReq`` (§3.2 step 2): the primary's ORDER-REQ ⟨v, n, h_n, d⟩ with the batch, signed
  by the primary of ``view``, so it can be shown to others (fill-hole answers, view change);
  ``h_n = H(h_{n-1}, d)`` is the history digest (``extend_history``).
- The SPEC-RESPONSE (§3.2 step 4) is the shared ``protocols.common.Reply`` with ``history``
  (h_n) and ``signature`` (the replica's, over ``spec_payload(v, n, h_n)``) set: the
  execute stage copies both from the ``Deliver`` action.
- ``CommitCert`` (§3.2 step 4b): 2f+1 matching spec-response signatures; ``Commit`` is the
  client's COMMIT ⟨c, CC⟩; a replica answers with a LOCAL-COMMIT, a non-speculative Reply.
- ``FillHole`` (§3.3): a replica that saw a gap asks for the ORDER-REQs it missed.
- ``IHatePrimary``, ``ViewChange``, ``NewView`` (§3.5): the view change as published: a
  replica that suspects the primary says so; f+1 of those commit it to the view change; its
  VIEW-CHANGE carries its stable checkpoint, its highest commit certificate (with the
  ORDER-REQ at that seq) and its ordered history after the checkpoint; the new primary's
  NEW-VIEW carries 2f+1 VIEW-CHANGEs and its ORDER-REQs of the history they determine.

Every bytes field and array is bounded (protocols.limits, codec ``Max``). Must not live
here: protocol logic, IO.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from typing import Annotated

from protocols import limits
from protocols.checkpoints import Checkpoint
from protocols.codec import Max, encode_body, message
from protocols.common import Batch, Digest, Signature

KIND_ORDER_REQ = 160
KIND_FILL_HOLE = 161
KIND_COMMIT = 162
KIND_I_HATE = 163
KIND_VIEW_CHANGE = 164
KIND_NEW_VIEW = 165
KIND_COMMIT_CERT = 166

_VS = struct.Struct("!2sqq")

#: h_0, the history digest before the first request
GENESIS_HISTORY = hashlib.sha256(b"zyzzyva/history/genesis").digest()


def extend_history(history: bytes, batch_digest: bytes) -> bytes:
    """h_n = H(h_{n-1}, d_n): the history digest after appending batch ``batch_digest``."""
    return hashlib.sha256(history + batch_digest).digest()


@message(kind=KIND_ORDER_REQ)
@dataclass(frozen=True, slots=True)
class OrderReq:
    """ORDER-REQ: the primary of ``view`` put ``batch`` at ``seq``; ``history`` is h_seq."""

    view: int
    seq: int
    history: Digest
    batch: Batch
    signature: Signature  # by primary_of(view) over order_payload


def order_payload(view: int, seq: int, history: bytes, digest: bytes) -> bytes:
    return _VS.pack(b"ZO", view, seq) + history + digest


def spec_payload(view: int, seq: int, history: bytes) -> bytes:
    """What a replica signs in its SPEC-RESPONSE (and a commit certificate carries)."""
    return _VS.pack(b"ZS", view, seq) + history


@message(kind=KIND_FILL_HOLE)
@dataclass(frozen=True, slots=True)
class FillHole:
    """``replica`` in ``view`` misses the ORDER-REQs ``first_seq`` .. ``last_seq``."""

    view: int
    first_seq: int
    last_seq: int
    replica: int


@message(kind=KIND_COMMIT_CERT)
@dataclass(frozen=True, slots=True)
class CommitCert:
    """CC: ``signers`` (2f+1 distinct replicas) signed spec_payload(view, seq, history)."""

    view: int
    seq: int
    history: Digest
    signers: Annotated[tuple[int, ...], Max(limits.MAX_REPLICAS)]
    signatures: Annotated[tuple[Signature, ...], Max(limits.MAX_REPLICAS)]


@message(kind=KIND_COMMIT)
@dataclass(frozen=True, slots=True)
class Commit:
    """The client's COMMIT: its request (client_id, timestamp) has the result ``result`` at
    the position the certificate names; every replica whose history matches acknowledges
    it with a LOCAL-COMMIT (a non-speculative Reply)."""

    client_id: int
    timestamp: int
    result: Digest
    cert: CommitCert


@message(kind=KIND_I_HATE)
@dataclass(frozen=True, slots=True)
class IHatePrimary:
    """I-HATE-THE-PRIMARY: ``replica`` suspects the primary of ``view``."""

    view: int
    replica: int


@message(kind=KIND_VIEW_CHANGE)
@dataclass(frozen=True, slots=True)
class ViewChange:
    """VIEW-CHANGE to ``new_view``: the stable checkpoint, the highest commit certificate
    (and the ORDER-REQ at its seq) and the ordered history after the checkpoint."""

    new_view: int
    replica: int
    stable_seq: int
    stable_proof: Annotated[tuple[Checkpoint, ...], Max(limits.MAX_REPLICAS)]
    cc: CommitCert | None
    cc_order: OrderReq | None
    history: Annotated[tuple[OrderReq, ...], Max(limits.MAX_SEQS_PER_MESSAGE)]
    signature: Signature  # by ``replica`` over view_change_payload


def view_change_payload(vc: ViewChange) -> bytes:
    """The bytes a VIEW-CHANGE's signature covers: the digest of its body unsigned."""
    return b"ZV" + hashlib.sha256(encode_body(replace(vc, signature=b""))).digest()


@message(kind=KIND_NEW_VIEW)
@dataclass(frozen=True, slots=True)
class NewView:
    """NEW-VIEW: 2f+1 VIEW-CHANGEs for ``view`` and the new primary's ORDER-REQs (view
    ``view``) of the history they determine, from ``start_seq`` + 1 on."""

    view: int
    replica: int
    proofs: Annotated[tuple[ViewChange, ...], Max(limits.MAX_REPLICAS)]
    start_seq: int
    orders: Annotated[tuple[OrderReq, ...], Max(limits.MAX_SEQS_PER_MESSAGE)]


__all__ = [
    "GENESIS_HISTORY",
    "Commit",
    "CommitCert",
    "FillHole",
    "IHatePrimary",
    "NewView",
    "OrderReq",
    "ViewChange",
    "extend_history",
    "order_payload",
    "spec_payload",
    "view_change_payload",
]
