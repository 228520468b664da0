"""PoE wire messages (kinds 48..79) and the exact bytes each signature covers.

Names follow the paper (Gupta, Hellings, Rahnama, Sadoghi, EDBT'21): PROPOSE, SUPPORT,
CERTIFY (normal case, §3), VC-REQUEST and NV-PROPOSE (view change, §4), plus the
messages this implementation adds to make a view change safe against clients that
count speculative replies from different views (NV-SUPPORT, NV-CERTIFY, NV-COMMIT: the
new view's plan is certified and then committed before anyone executes it; see
protocols/poe/new_view.py) and a bounded catch-up (FETCH / FETCH-REPLY, STABLE-PROOF).
INFORM is the common ``Reply`` with ``speculative=True``; checkpoints reuse PBFT's
``Checkpoint``. With MACs (``poe_certificate: macs``) shares are empty, ``Committed``
entries carry no certificate and VC-REQUESTs add ``Supported`` claims.

Every share is a signature through the injected Verifier over ``support_payload(view,
seq, digest)``: a normal-case SUPPORT and a share of the new view's plan sign the same
statement "batch ``digest`` is at ``seq`` in ``view``", so a certificate for a plan entry
is indistinguishable from (and ranks like) a normal-case one.

Must not live here: protocol logic (Poe in protocols/poe/replica.py and its mixins), IO of any kind.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocols.checkpoints import Checkpoint
from protocols.codec import Max, encode_body, message
from protocols.common import Batch, Digest, Signature
from protocols.limits import MAX_REPLICAS, MAX_SEQS_PER_MESSAGE
from protocols.poe.certificate import Certificate

# Kinds: 48..79 belong to PoE (transport/wire.py); 50 is the Certificate.
KIND_PROPOSE = 48
KIND_SUPPORT = 49
KIND_CERTIFY = 51
KIND_COMMITTED = 52
KIND_VC_REQUEST = 53
KIND_NV_PROPOSE = 54
KIND_NV_SUPPORT = 55
KIND_NV_CERTIFY = 56
KIND_NV_COMMIT = 57
KIND_FETCH = 58
KIND_FETCH_REPLY = 59
KIND_SUPPORTED = 60
KIND_STABLE_PROOF = 61


@message(KIND_PROPOSE)
@dataclass(frozen=True, slots=True)
class Propose:
    """PROPOSE: the primary of ``view`` puts ``batch`` at ``seq``; ``share`` is its own support."""

    view: int
    seq: int
    batch: Batch
    share: Signature  # the primary's signature over support_payload(view, seq, batch.digest)

    @property
    def digest(self) -> bytes:
        return self.batch.digest

    def proposer(self, n: int) -> int:
        """The only replica that may send this (the primary of ``view``): the runtime checks
        it before it pre-verifies any client signature inside."""
        return self.view % n


@message(KIND_SUPPORT)
@dataclass(frozen=True, slots=True)
class Support:
    """SUPPORT: ``replica`` accepts (view, seq, digest); ``share`` signs support_payload."""

    view: int
    seq: int
    digest: Digest
    replica: int
    share: Signature


@message(KIND_CERTIFY)
@dataclass(frozen=True, slots=True)
class Certify:
    """CERTIFY: n−f supports for (view, seq, digest), combined by the primary."""

    view: int
    seq: int
    digest: Digest
    cert: Certificate


@message(KIND_COMMITTED)
@dataclass(frozen=True, slots=True)
class Committed:
    """A view-committed entry and its proof: ``cert`` over support_payload(view, seq, digest)."""

    view: int
    seq: int
    batch: Batch
    cert: Certificate | None  # None with MACs: a claim the view change weighs, not a proof


@message(KIND_SUPPORTED)
@dataclass(frozen=True, slots=True)
class Supported:
    """With MACs: the sender supported batch ``digest`` at ``seq``, last in ``view`` (the
    Q-set of Castro & Liskov's MAC view change; a claim, checked by counting f+1)."""

    seq: int
    view: int
    digest: Digest


@message(KIND_VC_REQUEST)
@dataclass(frozen=True, slots=True)
class VcRequest:
    """VC-REQUEST: ``replica`` leaves for ``new_view`` with its stable checkpoint and its
    view-committed entries above it (the highest-view one per seq: with signatures a
    certificate, with MACs a claim), and with MACs what it supported above it."""

    new_view: int
    replica: int
    stable_seq: int
    checkpoint_proof: Annotated[
        tuple[Checkpoint, ...], Max(MAX_REPLICAS)
    ]  # 2f+1 matching signed checkpoints (() at 0)
    entries: Annotated[tuple[Committed, ...], Max(MAX_SEQS_PER_MESSAGE)]
    # MACs only (() with signatures)
    supported: Annotated[tuple[Supported, ...], Max(MAX_SEQS_PER_MESSAGE)]
    signature: Signature  # by ``replica`` over vc_request_payload


@message(KIND_NV_PROPOSE)
@dataclass(frozen=True, slots=True)
class NvPropose:
    """NV-PROPOSE: the primary of ``view`` starts it with n−f VC-REQUESTs for it."""

    view: int
    requests: Annotated[tuple[VcRequest, ...], Max(MAX_REPLICAS)]


@message(KIND_NV_SUPPORT)
@dataclass(frozen=True, slots=True)
class NvSupport:
    """``replica`` accepts the new view's plan: one share per plan entry, in seq order (to
    the new primary); with MACs no shares, to every replica (n−f of them lock the plan).

    ``waiting`` (MACs): the sender has not entered the view; replicas that have answer it
    with their own (``waiting=False``), as for NV-COMMIT."""

    view: int
    replica: int
    plan_digest: Digest
    shares: Annotated[tuple[Signature, ...], Max(MAX_SEQS_PER_MESSAGE)]
    waiting: bool


@message(KIND_NV_CERTIFY)
@dataclass(frozen=True, slots=True)
class NvCertify:
    """The plan of ``view`` (entries base+1..base+len) with one certificate per entry."""

    view: int
    base: int
    digests: Annotated[tuple[Digest, ...], Max(MAX_SEQS_PER_MESSAGE)]
    certs: Annotated[tuple[Certificate, ...], Max(MAX_SEQS_PER_MESSAGE)]


@message(KIND_NV_COMMIT)
@dataclass(frozen=True, slots=True)
class NvCommit:
    """``replica`` holds the certified plan of ``view`` (n−f of these: it is locked).

    ``waiting``: the sender has not entered the view yet (replicas that have answer it with
    their own, ``waiting=False``; answers are never answered, so nothing ping-pongs)."""

    view: int
    replica: int
    plan_digest: Digest
    waiting: bool


@message(KIND_FETCH)
@dataclass(frozen=True, slots=True)
class Fetch:
    """A lagging ``replica`` asks for executed entries first_seq..last_seq; replicas whose
    stable checkpoint is above its ``stable_seq`` send their proof too (``StableProof``)."""

    first_seq: int
    last_seq: int
    replica: int
    stable_seq: int

    IS_FETCH: ClassVar[bool] = True  # the runtime rate-limits these per sender


@message(KIND_STABLE_PROOF)
@dataclass(frozen=True, slots=True)
class StableProof:
    """A stable checkpoint at ``seq``: 2f+1 matching signed ``Checkpoint``s, relayed to a
    replica that missed the votes (anyone may relay it: the proof is transferable)."""

    CATCH_UP: ClassVar[bool] = True  # a fetch answer: the runtime sheds these first

    seq: int
    proof: Annotated[tuple[Checkpoint, ...], Max(MAX_REPLICAS)]


@message(KIND_FETCH_REPLY)
@dataclass(frozen=True, slots=True)
class FetchReply:
    """``replica`` executed ``batch`` at ``seq``: final (at or below its verified stable
    checkpoint; f+1 matching make it trusted) or carrying its certificate."""

    CATCH_UP: ClassVar[bool] = True  # a fetch answer: the runtime sheds these first

    seq: int
    view: int  # the view the entry was view-committed (or executed) in
    batch: Batch
    replica: int
    final: bool
    cert: Certificate | None
    sender_view: int  # the view the sender is in (a lagging replica learns of later views)


# --- signed payloads ---------------------------------------------------------------------

_SUP = struct.Struct("!7sqq")
_PLAN = struct.Struct("!8sqq")


def support_payload(view: int, seq: int, digest: bytes) -> bytes:
    """Bytes a support share signs (raises struct.error on absurd ints)."""
    return _SUP.pack(b"PoE-SUP", view, seq) + digest


def vc_request_payload(vc: VcRequest) -> bytes:
    """The whole VC-REQUEST body with an empty signature (rare: re-encoding is fine)."""
    unsigned = VcRequest(
        vc.new_view, vc.replica, vc.stable_seq, vc.checkpoint_proof, vc.entries, vc.supported, b""
    )
    return b"PoE-VC" + encode_body(unsigned)


def plan_digest(view: int, base: int, digests: Sequence[bytes]) -> bytes:
    """One digest naming a new view's plan (its base and every entry's batch digest)."""
    h = hashlib.sha256(_PLAN.pack(b"PoE-PLAN", view, base))
    for d in digests:
        h.update(d)
    return h.digest()


__all__ = [
    "Certify",
    "Committed",
    "Fetch",
    "FetchReply",
    "NvCertify",
    "NvCommit",
    "NvPropose",
    "NvSupport",
    "Propose",
    "StableProof",
    "Support",
    "Supported",
    "VcRequest",
    "plan_digest",
    "support_payload",
    "vc_request_payload",
]
