"""Messages every protocol shares: the client's signed request, a proposal batch, the reply.

Node ids are global: replicas are 0..n-1, clients n..n+c-1 (as in ResilientDB).
A ``Request`` is one client batch of transactions; ``txns`` is the opaque encoded
transaction list (workloads.txn encodes and decodes it) and the client's
signature covers ``request_signing_payload(req)``. A ``Batch`` is what a
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


@message(kind=1)
@dataclass(frozen=True, slots=True)
class Request:
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
class Batch:
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


NULL_DIGEST = hashlib.sha256(b"null-batch").digest()
NULL_BATCH = Batch(requests=(), digest=NULL_DIGEST)


def request_signing_payload(req: Request) -> bytes:
    """The bytes a client signs: its id, its timestamp and the encoded transactions."""
    return _REQ_HEAD.pack(req.client_id, req.timestamp) + req.txns


def signed_request(
    sign: Callable[[bytes], bytes], client_id: int, timestamp: int, txns: bytes
) -> Request:
    """A client's Request with ``sign`` applied to its signing payload (Ed25519 in the
    runtime: ``transport.auth.signer``; the simulator's fake signature in fabric/sim)."""
    unsigned = Request(client_id=client_id, timestamp=timestamp, txns=txns, signature=b"")
    return Request(client_id, timestamp, txns, sign(request_signing_payload(unsigned)))


def request_digest(req: Request) -> bytes:
    return hashlib.sha256(request_signing_payload(req)).digest()


def batch_digest(requests: tuple[Request, ...]) -> bytes:
    """Digest of a proposal: a hash over each request's payload and signature."""
    if not requests:
        return NULL_DIGEST
    h = hashlib.sha256()
    for req in requests:
        h.update(_REQ_HEAD.pack(req.client_id, req.timestamp))
        h.update(struct.pack("!I", len(req.txns)))
        h.update(req.txns)
    return h.digest()


def make_batch(requests: tuple[Request, ...]) -> Batch:
    return Batch(requests=requests, digest=batch_digest(requests))


def batch_is_valid(batch: Batch) -> bool:
    """True when the batch's digest matches its content (receivers re-check)."""
    return batch.digest == batch_digest(batch.requests)
