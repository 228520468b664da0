"""Zyzzyva (speculative BFT, SOSP'07; known unsafe): the sans-IO replica and its wire
messages, as "zyzzyva".

Importing this package registers the messages (kinds 160..175) with transport.wire and the
protocol with protocols.registry. Must not live here: protocol logic.
"""

from protocols.registry import register
from protocols.zyzzyva.messages import (
    Commit,
    CommitCert,
    FillHole,
    IHatePrimary,
    NewView,
    OrderReq,
    ViewChange,
)
from protocols.zyzzyva.replica import UNSAFE, Zyzzyva
from protocols.zyzzyva.view_change import new_view_history

register(Zyzzyva)

__all__ = [
    "UNSAFE",
    "Commit",
    "CommitCert",
    "FillHole",
    "IHatePrimary",
    "NewView",
    "OrderReq",
    "ViewChange",
    "Zyzzyva",
    "new_view_history",
]
