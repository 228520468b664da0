"""RCC (Resilient Concurrent Consensus): m PBFT instances in parallel, registered as "rcc".

Importing this package registers the protocol with protocols.registry. RCC adds no wire
messages of its own: its instances speak PBFT (kinds 16..47) with ``instance`` set.
Must not live here: protocol logic (replica.py, lane.py, coordinator.py, rounds.py).
"""

from protocols.rcc.coordinator import LaneCheckpoint, LaneRounds, RoundCoordinator
from protocols.rcc.lane import RccLane
from protocols.rcc.replica import Rcc, instance_count
from protocols.rcc.rounds import (
    RoundAssembler,
    RoundOrderError,
    RoundOverflow,
    StableMerger,
    global_seq,
    round_of,
    round_order,
)
from protocols.registry import register

register(Rcc)

__all__ = [
    "LaneCheckpoint",
    "LaneRounds",
    "Rcc",
    "RccLane",
    "RoundCoordinator",
    "RoundAssembler",
    "RoundOrderError",
    "RoundOverflow",
    "StableMerger",
    "global_seq",
    "instance_count",
    "round_of",
    "round_order",
]
