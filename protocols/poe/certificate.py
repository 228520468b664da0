"""PoE certificates: n−f signature shares over one statement, checked through the Verifier.

A ``Certificate`` is what the primary forms from n−f SUPPORT shares (Gupta et al.,
EDBT'21, §3: "the primary combines nf shares into a certificate") and what a replica
keeps as proof that a batch was view-committed. Here it is a plain set of n−f distinct
Ed25519 signatures (``signers``/``shares`` side by side); ``verify(verifier, payload,
quorum, n)`` checks every share. This is the seam a threshold signature drops into: a
threshold scheme would combine the shares into one signature (``signers=()``,
``shares=(combined,)``) and ``verify`` would check it against the group key, without
any caller changing (they only ever call ``combine`` and ``verify``).

Must not live here: what a share signs (protocols.poe.messages builds payloads),
protocol logic, IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from protocols.base import Verifier
from protocols.codec import Max, message
from protocols.common import Signature
from protocols.limits import MAX_REPLICAS

KIND_CERTIFICATE = 50


@message(KIND_CERTIFICATE)
@dataclass(frozen=True, slots=True)
class Certificate:
    """``quorum`` distinct replicas' signature shares over one payload."""

    signers: Annotated[tuple[int, ...], Max(MAX_REPLICAS)]
    shares: Annotated[tuple[Signature, ...], Max(MAX_REPLICAS)]

    def verify(self, verifier: Verifier, payload: bytes, quorum: int, n: int) -> bool:
        """True if at least ``quorum`` distinct replicas of 0..n-1 signed ``payload``."""
        signers = self.signers
        if len(signers) != len(self.shares) or len(signers) < quorum:
            return False
        if len(set(signers)) != len(signers):
            return False
        for signer, share in zip(signers, self.shares, strict=True):
            if not 0 <= signer < n or not verifier.verify(signer, payload, share):
                return False
        return True


def combine(shares: Mapping[int, bytes], quorum: int) -> Certificate:
    """A certificate from ``quorum`` already-verified shares (lowest replica ids first)."""
    if len(shares) < quorum:
        raise ValueError(f"{len(shares)} shares < quorum {quorum}")
    chosen = sorted(shares)[:quorum]
    return Certificate(tuple(chosen), tuple(shares[r] for r in chosen))


__all__ = ["KIND_CERTIFICATE", "Certificate", "combine"]
