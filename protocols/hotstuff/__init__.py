"""Chained HotStuff (Yin et al., PODC'19): the sans-IO replica and its wire messages,
registered as "hotstuff".

Importing this package registers the messages (kinds 112..127) with transport.wire and the
protocol with protocols.registry. Must not live here: protocol logic.
"""

from protocols.hotstuff.messages import (
    QC,
    Block,
    Blocks,
    FetchBlocks,
    NewView,
    Proposal,
    Vote,
    Wake,
)
from protocols.hotstuff.replica import HotStuff
from protocols.registry import register

register(HotStuff)

__all__ = [
    "QC",
    "Block",
    "Blocks",
    "FetchBlocks",
    "HotStuff",
    "NewView",
    "Proposal",
    "Vote",
    "Wake",
]
