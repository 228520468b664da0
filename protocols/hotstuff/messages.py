"""Chained HotStuff wire messages (kinds 112..127), the block digest and the signed bytes.

Yin, Malkhi, Reiter, Gueta, Abraham: "HotStuff: BFT Consensus with Linearity and
Responsiveness", PODC 2019. A ``Block`` (the paper's node, §4.2/§5) names its parent by
digest and carries the quorum certificate ``justify`` of that parent (this implementation
always extends the block its QC certifies: ``parent_digest == justify.block_digest``).
A ``QC`` is the n-f ``Vote`` messages themselves, each an Ed25519 signature made through the
injected Verifier over ``vote_payload``: there is no threshold signature scheme here, so a
QC costs n-f signatures on the wire and n-f verifications at each receiver (the paper's
linearity in authenticators assumes threshold signatures, §4.4; we keep its message pattern,
not its constant).

The block digest (``block_digest``) covers view, height, proposer, parent, the QC's view
and block, and the batch digest, not the QC's signatures: any n-f valid votes certify the
same thing. Every bytes field and array is bounded (protocols/limits.py) so transport.wire
refuses an oversized frame before it builds anything.

Must not live here: protocol logic (protocols/hotstuff/replica.py and its mixins), IO.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocols.codec import Max, message
from protocols.common import NULL_BATCH, Batch, Digest, Signature
from protocols.limits import MAX_FETCH_BLOCKS, MAX_REPLICAS

# Kinds: 112..127 belong to HotStuff (protocols/codec.py lists the ranges).
KIND_VOTE = 112
KIND_QC = 113
KIND_BLOCK = 114
KIND_PROPOSAL = 115
KIND_NEW_VIEW = 116
KIND_WAKE = 117
KIND_FETCH_BLOCKS = 118
KIND_BLOCKS = 119

#: the digest of the genesis block (height 0, view 0): the root every chain extends
GENESIS_DIGEST = hashlib.sha256(b"hotstuff-genesis").digest()


@message(KIND_VOTE)
@dataclass(frozen=True, slots=True)
class Vote:
    """``replica`` votes for block ``block_digest`` proposed in ``view`` (§5: sent to the
    leader of the next view); its signature is one share of a QC."""

    view: int
    block_digest: Digest
    replica: int
    signature: Signature = b""  # by ``replica`` over vote_payload


@message(KIND_QC)
@dataclass(frozen=True, slots=True)
class QC:
    """A quorum certificate: n-f votes of distinct replicas for (view, block_digest).
    The genesis QC (view 0, GENESIS_DIGEST) carries no votes."""

    view: int
    block_digest: Digest
    votes: Annotated[tuple[Vote, ...], Max(MAX_REPLICAS)]


GENESIS_QC = QC(0, GENESIS_DIGEST, ())


@message(KIND_BLOCK)
@dataclass(frozen=True, slots=True)
class Block:
    """A node of the chain: proposed in ``view`` by ``proposer`` at ``height`` (its parent's
    height + 1; the height is the sequence number it is delivered at)."""

    view: int
    height: int
    proposer: int
    parent_digest: Digest
    justify: QC  # certifies the parent
    batch: Batch


@message(KIND_PROPOSAL)
@dataclass(frozen=True, slots=True)
class Proposal:
    """The leader of ``block.view`` proposes ``block`` (§5, chained: one proposal per view)."""

    block: Block

    @property
    def batch(self) -> Batch:  # the runtime pre-verifies client signatures of a proposal
        return self.block.batch

    def proposer(self, n: int) -> int:
        """The only replica that may send this: the leader of the block's view."""
        return self.block.view % n


@message(KIND_NEW_VIEW)
@dataclass(frozen=True, slots=True)
class NewView:
    """The pacemaker (§6): ``replica`` gave up ``view - 1`` and tells the leader of ``view``
    its highest QC, and its last vote (so a QC whose collector crashed is not lost)."""

    view: int
    high_qc: QC
    last_vote: Vote | None
    replica: int


@message(KIND_WAKE)
@dataclass(frozen=True, slots=True)
class Wake:
    """``replica`` holds client requests while the chain is idle (nothing left to commit):
    the leader of ``view`` should propose, and everyone arms its view timer."""

    view: int
    replica: int


@message(KIND_FETCH_BLOCKS)
@dataclass(frozen=True, slots=True)
class FetchBlocks:
    """``replica`` misses block ``block_digest``: send it and up to ``count - 1`` ancestors."""

    IS_FETCH: ClassVar[bool] = True  # the runtime rate-limits these per sender

    block_digest: Digest
    count: int
    replica: int


@message(KIND_BLOCKS)
@dataclass(frozen=True, slots=True)
class Blocks:
    """An answer to FetchBlocks: a block and its ancestors, newest first."""

    CATCH_UP: ClassVar[bool] = True  # a fetch answer: the runtime sheds these first

    blocks: Annotated[tuple[Block, ...], Max(MAX_FETCH_BLOCKS)]
    replica: int


# --- digests and signed payloads ------------------------------------------------------

_BLOCK_HEAD = struct.Struct("!2sqqqq")
_VOTE_HEAD = struct.Struct("!2sqq")


def block_digest(b: Block) -> bytes:
    """What identifies a block (raises struct.error or OverflowError on absurd ints)."""
    h = hashlib.sha256(_BLOCK_HEAD.pack(b"HB", b.view, b.height, b.proposer, b.justify.view))
    h.update(b.parent_digest)
    h.update(b.justify.block_digest)
    h.update(b.batch.digest)
    return h.digest()


def vote_payload(view: int, replica: int, digest: bytes) -> bytes:
    """The bytes a replica signs when it votes (raises struct.error on absurd ints)."""
    return _VOTE_HEAD.pack(b"HV", view, replica) + digest


GENESIS = Block(0, 0, 0, b"", GENESIS_QC, NULL_BATCH)

__all__ = [
    "GENESIS",
    "GENESIS_DIGEST",
    "GENESIS_QC",
    "QC",
    "Block",
    "Blocks",
    "FetchBlocks",
    "NewView",
    "Proposal",
    "Vote",
    "Wake",
    "block_digest",
    "vote_payload",
]
