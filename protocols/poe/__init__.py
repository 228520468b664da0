"""PoE (Proof-of-Execution, EDBT'21): the sans-IO replica and its wire messages, as "poe".

Importing this package registers the messages (kinds 48..79) with transport.wire and
the protocol with protocols.registry. Must not live here: protocol logic.
"""

from protocols.poe.certificate import Certificate, combine
from protocols.poe.messages import (
    Certify,
    Committed,
    Fetch,
    FetchReply,
    NvCertify,
    NvCommit,
    NvPropose,
    NvSupport,
    Propose,
    StableProof,
    Support,
    Supported,
    VcRequest,
    plan_digest,
    support_payload,
    vc_request_payload,
)
from protocols.poe.replica import Plan, Poe
from protocols.registry import register

register(Poe)

__all__ = [
    "Certificate",
    "Certify",
    "Committed",
    "Fetch",
    "FetchReply",
    "NvCertify",
    "NvCommit",
    "NvPropose",
    "NvSupport",
    "Plan",
    "Poe",
    "Propose",
    "StableProof",
    "Support",
    "Supported",
    "VcRequest",
    "combine",
    "plan_digest",
    "support_payload",
    "vc_request_payload",
]
