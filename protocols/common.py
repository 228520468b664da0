"""Messages every protocol shares: the client's signed request, a proposal batch, the reply.

Node ids are global: replicas are 0..n-1, clients n..n+c-1 (as in ResilientDB).
A ``Request`` is one client batch of transactions; ``txns`` is the opaque encoded
transaction list (workloads.txn encodes and decodes it) and the client's
signature covers ``request_signing_payload(req)``: a tag, the client id and timestamp, and
the SHA-256 of ``txns`` (hash-then-sign). Every replica hashes a request's ``txns`` once anyway
(``txns_digest``, memoised on the object), and Ed25519 hashes its message with SHA-512 twice to
sign and once to verify: over a 7.3 KB request that was 40 µs to sign and 51 µs to verify, over
the 66-byte payload 15 µs and 39 µs (libsodium, this machine). A forgery now also needs a
second SHA-256 preimage of the transactions. A ``Batch`` is what a
proposer orders: one or more requests plus their digest, computed once by the
batch stage (``batch_digest``) and re-checked by receivers.

Field bounds (``Digest``, ``Signature``, ``Txns``, ``Requests``): every bytes field and
every variable-length array of a wire message declares its bound with these aliases (or
``Annotated[..., Max(n)]`` with a constant of protocols.limits); transport.wire enforces
them at decode.

Must not live here: protocol-specific messages (they live in their package).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from protocols import limits
from protocols.codec import Max, message

#: a SHA-256 digest (b"" where a field may be empty)
Digest = Annotated[bytes, Max(limits.DIGEST_BYTES)]
#: an Ed25519 signature or share (b"" when signatures are off)
Signature = Annotated[bytes, Max(limits.SIGNATURE_BYTES)]
#: a client request's encoded transactions
Txns = Annotated[bytes, Max(limits.MAX_TXNS_BYTES)]

_REQ_HEAD = struct.Struct("!iQ")
#: opens every request's signing payload: no other signed message of the fabric starts so
_REQ_SIG_TAG = b"bft-fabric/request/v2\x00"


class _RequestMemo:
    """Memo slots of a Request that are no dataclass field (never on the wire, never
    compared, not copied by copy/pickle): the sha256 of ``txns`` (``txns_digest``) and the
    token of the verifier cache that verified this object's signature
    (fabric.runtime.stages.input), so a replica hashes and verifies a request once however
    many stages look at it."""

    __slots__ = ("_txns_digest", "_verified_by")


class _BatchMemo:
    """Memo slot of a Batch that is no dataclass field: ``batch_is_valid``'s answer (the
    batch is immutable, so its digest is checked once however many stages ask)."""

    __slots__ = ("_digest_ok",)


@message(kind=1)
@dataclass(frozen=True, slots=True)
class Request(_RequestMemo):
    client_id: int
    timestamp: int  # per-client, strictly increasing: replays are suppressed by it
    txns: Txns  # encoded transactions (workloads.txn), opaque to protocols
    signature: Signature  # over request_signing_payload(); b"" when signatures are off

    def __post_init__(self) -> None:
        # The signed header packs client_id as i32 and timestamp as u64: refuse what does not
        # fit here, so a hostile frame fails as a DecodeError instead of deep in a hash.
        if not 0 <= self.client_id <= 0x7FFFFFFF:
            raise ValueError(f"client_id {self.client_id} not in 0..2**31-1")
        if not 0 <= self.timestamp <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"timestamp {self.timestamp} not in 0..2**64-1")

    def signing_payload(self) -> bytes:
        """The bytes its client signed (``request_signing_payload``): what a verifier checks
        the signature over, without knowing this class (transport.auth does not import it)."""
        return request_signing_payload(self)


@message(kind=2)
@dataclass(frozen=True, slots=True)
class Batch(_BatchMemo):
    requests: Annotated[tuple[Request, ...], Max(limits.MAX_BATCH_REQUESTS)]
    digest: Digest  # batch_digest(requests); b"" never appears on the wire except for null batches


@message(kind=3)
@dataclass(frozen=True, slots=True)
class Reply:
    view: int
    seq: int
    replica: int
    client_id: int
    timestamp: int  # the request's timestamp this reply answers
    # digest of the request's results (fabric.runtime.execute); a client counts replies per
    # (client, timestamp) and matches them on the fields its protocol's ReplyRule names:
    # seq and result always (PBFT, RCC), and the view too for PoE
    result: Digest
    speculative: bool  # True for PoE INFORM replies (executed before commit)
    # Zyzzyva's SPEC-RESPONSE (Kotla et al. SOSP'07 §3.2) also carries the history digest h_n
    # of the ORDER-REQ it answers and the replica's signature over (view, seq, h_n): 2f+1 of
    # them are the commit certificate a client sends on the slow path. b"" elsewhere.
    history: Digest = b""
    signature: Signature = b""


NULL_DIGEST = hashlib.sha256(b"null-batch").digest()
NULL_BATCH = Batch(requests=(), digest=NULL_DIGEST)


def request_signing_payload(req: Request) -> bytes:
    """The bytes a client signs: a tag, its id, its timestamp and the SHA-256 of the encoded
    transactions (``txns_digest``: hashed once per Request object)."""
    return _signing_payload(_REQ_HEAD.pack(req.client_id, req.timestamp), txns_digest(req))


def _signing_payload(head: bytes, digest: bytes) -> bytes:
    return _REQ_SIG_TAG + head + digest


def signed_request(
    sign: Callable[[bytes], bytes], client_id: int, timestamp: int, txns: bytes
) -> Request:
    """A client's Request with ``sign`` applied to its signing payload (Ed25519 in the
    runtime: ``transport.auth.signer``; the simulator's fake signature in fabric/sim).
    One Request is built (the payload is packed from the fields); ids that do not fit the
    signed header fail as Request's own ValueError."""
    try:
        head = _REQ_HEAD.pack(client_id, timestamp)
    except struct.error:
        Request(client_id, timestamp, txns, b"")  # raises the ValueError that names the field
        raise
    digest = hashlib.sha256(txns).digest()
    req = Request(client_id, timestamp, txns, sign(_signing_payload(head, digest)))
    _memo(req, "_txns_digest", digest)
    return req


def _memo(obj: object, slot: str, value: object) -> None:
    """Fill a memo slot of a frozen message (a no-op on an object without that slot)."""
    try:
        object.__setattr__(obj, slot, value)
    except (AttributeError, TypeError):
        pass


def txns_digest(req: Request) -> bytes:
    """sha256 of ``req.txns``, computed once per Request object (memo slot)."""
    digest = getattr(req, "_txns_digest", None)
    if digest is None:
        digest = hashlib.sha256(req.txns).digest()
        _memo(req, "_txns_digest", digest)
    return digest


def batch_digest(requests: tuple[Request, ...]) -> bytes:
    """Digest of a proposal: SHA-256 over each request's client id, timestamp and the SHA-256
    of its transactions (``txns_digest``, the digest its signature covers). A replica hashes
    each request's transactions once (issue 16): verifying the signature and checking the
    proposal's digest reuse that hash. The signatures are not covered (a request is named by
    what its client signed)."""
    if not requests:
        return NULL_DIGEST
    h = hashlib.sha256()
    update = h.update
    head = _REQ_HEAD.pack
    for req in requests:
        update(head(req.client_id, req.timestamp))
        update(txns_digest(req))
    return h.digest()


def make_batch(requests: tuple[Request, ...]) -> Batch:
    batch = Batch(requests=requests, digest=batch_digest(requests))
    _memo(batch, "_digest_ok", True)  # its digest was just computed from its requests
    return batch


def batch_is_valid(batch: Batch) -> bool:
    """True when the batch's digest matches its content (receivers re-check). The answer
    is remembered on the (immutable) batch object: the input stage's pre-verification and
    the protocol hash one received batch once."""
    ok = getattr(batch, "_digest_ok", None)
    if ok is None:
        ok = batch.digest == batch_digest(batch.requests)
        _memo(batch, "_digest_ok", ok)
    return ok
