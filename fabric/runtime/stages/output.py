"""The output stage: encode each frame once, MAC it per destination, send without
blocking (a full peer drops, counted; a destination that is no node of the run drops,
counted: ``send_to_unknown_node``). The frames of one popped chunk are grouped per
destination and handed over in one send each (transport.zmq_io.Sender.send_frames), in
their order for that destination.

While a Byzantine failure of this replica is active (``shared.byzantine``, a
fabric.runtime.byzantine.ByzantineOutput), each message goes through it first: per
destination it may be swapped for a lie, held back in a bounded delay line (throttle, slow;
frames leave in order once due), or sealed with a corrupted MAC (bad_mac). What it did is
counted in ``byzantine`` (per output thread).

Must not live here: sockets and MACs themselves (transport/), the lies themselves
(fabric.runtime.byzantine).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from fabric.runtime.ring import Ring
from fabric.runtime.stages.base import (
    PARK_S,
    ReplicaShared,
    Stage,
)
from transport import wire

#: frames one output thread holds back for a throttle/slow failure (beyond: sent at once, counted)
MAX_DELAYED_FRAMES = 200_000


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
        self.byzantine: Counter[str] = Counter()  # what an active Byzantine failure did here
        self.delayed: deque[tuple[float, int, bytes]] = deque()  # (due, to, frame), due order
        self._byz_auth: Any = None  # the ByzantineOutput whose authenticator is installed

    def loop(self) -> None:
        shared = self.shared
        stop = shared.stop
        ring = self.output_ring
        me = shared.id
        encode = wire.encode
        drops = self.drops
        delayed = self.delayed
        while not stop.is_set():
            if delayed:
                wait = min(PARK_S, max(0.0, delayed[0][0] - time.monotonic()))
                items = self.pop(ring, wait)
            else:
                items = self.pop(ring)
            if shared.silent:
                drops["silent_send"] += len(items)
                continue
            byz = shared.byzantine
            per_dest: dict[int, list[bytes]] = {}
            if byz is not None:
                self._byzantine_chunk(byz, items, per_dest)
            else:
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
            if per_dest:
                self._send(per_dest)

    def _send(self, per_dest: dict[int, list[bytes]]) -> None:
        send_frame = self.sender.send_frame
        send_frames = self.sender.send_frames
        nodes = self.nodes
        for to, frames in per_dest.items():
            if nodes is not None and not 0 <= to < nodes:
                # a destination named by a message's field (a Reply to a request's
                # client_id): an id outside the run has no address, no key, no socket
                self.drops["send_to_unknown_node"] += len(frames)
                continue
            if len(frames) == 1:
                send_frame(to, frames[0])
            else:
                send_frames(to, frames)

    def _byzantine_chunk(
        self, byz: Any, items: list[Any], per_dest: dict[int, list[bytes]]
    ) -> None:
        """``items`` through the active Byzantine output: lies per destination, frames held
        back (in order) until due, then every due held frame goes out with the chunk."""
        counts = self.byzantine
        if self._byz_auth is not byz:
            self._byz_auth = byz
            self.sender.auth = byz.wrap_auth(self.sender.auth, counts)
        me = self.shared.id
        encode = wire.encode
        delayed = self.delayed
        now = time.monotonic()
        for dest, msg in items:
            for group, out in byz.outgoing(dest, msg, counts):
                frame = encode(out, me)
                delay = byz.delay_s(out)
                for to in (group,) if type(group) is int else group:
                    if delay > 0 and len(delayed) < MAX_DELAYED_FRAMES:
                        delayed.append((now + delay, to, frame))
                        counts["frames_delayed"] += 1
                    else:
                        if delay > 0:
                            counts["delay_line_full"] += 1
                        per_dest.setdefault(to, []).append(frame)
        # held frames leave in order once due (a frame made now with no delay does not wait
        # for older held ones: only the held kind is throttled)
        while delayed and delayed[0][0] <= now:
            _, to, frame = delayed.popleft()
            per_dest.setdefault(to, []).append(frame)

    def cleanup(self) -> None:
        self.sender.close()
