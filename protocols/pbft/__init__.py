"""PBFT (Castro & Liskov): the sans-IO replica and its wire messages, registered as "pbft".

Importing this package registers the messages (kinds 16..47) with transport.wire
and the protocol with protocols.registry. Must not live here: protocol logic.
"""

from protocols.pbft.messages import (
    Checkpoint,
    Commit,
    Fetch,
    FetchReply,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ViewChange,
)
from protocols.pbft.replica import Pbft
from protocols.registry import register

register(Pbft)

__all__ = [
    "Checkpoint",
    "Commit",
    "Fetch",
    "FetchReply",
    "NewView",
    "Pbft",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "ViewChange",
]
