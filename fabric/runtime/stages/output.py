"""The output stage: encode each frame once, MAC it per destination, send without
blocking (a full peer drops, counted; a destination that is no node of the run drops,
counted: ``send_to_unknown_node``). The frames of one popped chunk are grouped per
destination and handed over in one send each (transport.zmq_io.Sender.send_frames), in
their order for that destination.

Must not live here: sockets and MACs themselves (transport/).
"""

from __future__ import annotations

from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    ReplicaShared,
    Stage,
)
from transport import wire


class OutputStage(Stage):
    """Encode each message once, seal per destination (MAC), send without blocking."""

    role = "output"

    def __init__(
        self,
        name: str,
        shared: ReplicaShared,
        sender: Any,
        output_ring: Ring,
        nodes: int | None = None,
    ) -> None:
        """``nodes``: the run's node count (replicas and clients, ids 0..nodes-1); a frame
        to any other id is dropped and counted (``send_to_unknown_node``). None: the
        sender's own check (tests with a fake sender)."""
        super().__init__(name, shared)
        self.sender = sender
        self.output_ring = output_ring
        self.nodes = nodes

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        ring = self.output_ring
        me = shared.id
        encode = wire.encode
        send_frame = self.sender.send_frame
        send_frames = self.sender.send_frames
        drops = self.drops
        nodes = self.nodes
        while not stop.is_set():
            items = self.pop(ring)
            if not items:
                continue
            if shared.silent:
                drops["silent_send"] += len(items)
                continue
            per_dest: dict[int, list[bytes]] = {}
            for dest, msg in items:
                frame = encode(msg, me)
                if type(dest) is int:
                    frames = per_dest.get(dest)
                    if frames is None:
                        per_dest[dest] = [frame]
                    else:
                        frames.append(frame)
                else:
                    for to in dest:
                        frames = per_dest.get(to)
                        if frames is None:
                            per_dest[to] = [frame]
                        else:
                            frames.append(frame)
            for to, frames in per_dest.items():
                if nodes is not None and not 0 <= to < nodes:
                    # a destination named by a message's field (a Reply to a request's
                    # client_id): an id outside the run has no address, no key, no socket
                    drops["send_to_unknown_node"] += len(frames)
                    continue
                if len(frames) == 1:
                    send_frame(to, frames[0])
                else:
                    send_frames(to, frames)

    def cleanup(self) -> None:
        self.sender.close()
