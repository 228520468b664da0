"""A delay line in front of a Sender: WAN delay, jitter and the cost of TCP loss, emulated in
the sending process (``network.emulation: transport``, for kernels without sch_netem).

``DelayedSender`` has a Sender's interface (send, send_frame, send_frames, broadcast, close and
the counters). The output thread that calls it only appends each frame to its destination's
line, stamped with the time it is due; one delay thread per DelayedSender owns the real Sender
from then on and hands every due frame to it (sealed and joined per destination, as the
Sender does). The delay thread parks on a condition until the earliest frame is due, or
until a new frame becomes the earliest: it never spins.

The model of one link (``LinkShape``), for a frame sent at ``now``:
- due = now + delay_s + U(-jitter_s, +jitter_s) (never before now), and never before the
  frame sent before it to the same destination: a TCP stream delivers in order, so jitter
  delays a frame behind a later-stamped one instead of reordering them (what netem jitter
  under TCP also comes to at the receiving application);
- loss: TCP never loses a message; a lost segment is retransmitted after a retransmission
  timeout. Each of the frame's ceil(bytes / SEGMENT_BYTES) segments is lost with chance
  ``loss``; a frame with a lost segment arrives ``rto_s`` later (max(MIN_RTO_S, RTT + 4 x
  jitter), Linux's lower bound), a retransmission lost again doubles it (TCP backoff, at
  most MAX_RETRANSMITS times), and frames behind it wait (in-order delivery). Fast
  retransmit is not modelled, so a busy link pays more than a real one would.

Bounds: at most ``max_frames`` frames per destination and MAX_DELAYED_BYTES over all
destinations wait in the line; a frame past either is dropped and counted in
``send_drops[to]`` (like a full send high-water mark) and ``line_full``. Frames still in the
line at ``close`` are dropped (the Sender's LINGER 0).

Must not live here: the config and which link gets which shape (fabric.harness.network),
sockets and MACs (transport.zmq_io, transport.auth).
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from transport import wire

#: TCP payload of one segment on a 1500-byte MTU link (the veth default), bytes
SEGMENT_BYTES = 1448
#: Linux's lower bound on the retransmission timeout (TCP_RTO_MIN), seconds
MIN_RTO_S = 0.2
#: retransmissions of one segment modelled at most (then it is taken as delivered)
MAX_RETRANSMITS = 8
#: bytes of frames waiting in one DelayedSender's line, over all destinations
MAX_DELAYED_BYTES = 64 * 1024 * 1024
#: seconds close() waits for the delay thread to exit
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class LinkShape:
    """One directed link: one-way delay and jitter (seconds), segment loss (0..1)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0 or not 0 <= self.loss < 1:
            raise ValueError(f"bad link shape {self}: delay, jitter >= 0 and 0 <= loss < 1")

    @property
    def rto_s(self) -> float:
        """The first retransmission timeout a lost segment waits."""
        return max(MIN_RTO_S, 2 * self.delay_s + 4 * self.jitter_s)


class DelayedSender:
    """A Sender behind per-destination delay lines (module note). ``sender`` is handed over:
    after this call only the delay thread uses it. Destinations absent from ``links`` get
    no delay (their frames still pass through the line, in order)."""

    def __init__(
        self,
        sender: Any,
        links: Mapping[int, LinkShape],
        *,
        seed: int = 0,
        max_frames: int = 100_000,
        name: str = "delay-line",
        clock: Any = time.monotonic,
    ) -> None:
        if max_frames < 1:
            raise ValueError("max_frames must be positive")
        self._sender = sender
        self.node_id = sender.node_id
        self.links = dict(links)
        self.max_frames = max_frames
        self._clock = clock
        self._rng = random.Random(seed)
        self._cond = threading.Condition(threading.Lock())
        self._lines: dict[int, deque[tuple[float, bytes]]] = {}
        self._last_due: dict[int, float] = {}
        self._heads: list[tuple[float, int]] = []  # (due of the line's head, destination)
        self._bytes = 0
        self._closed = False
        # counters (written under the lock by the caller's thread)
        self.line_full: Counter[int] = Counter()
        self.delayed_frames = 0
        self.retransmits = 0  # modelled TCP retransmissions (lost segments)
        self.peak_delayed_bytes = 0
        self.errors: Counter[str] = Counter()  # frames the Sender raised on, by exception
        self.thread_cpu_s = 0.0  # the delay thread's own CPU time (set when it ends)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- the Sender interface (the caller's thread) ------------------------------------

    def send(self, to: int, msg: Any) -> bool:
        return self.send_frame(to, wire.encode(msg, self.node_id))

    def broadcast(self, targets: Iterable[int], msg: Any) -> int:
        frame = wire.encode(msg, self.node_id)
        return sum(self.send_frame(to, frame) for to in targets)

    def send_frame(self, to: int, frame: bytes) -> bool:
        return self.send_frames(to, [frame]) == 1

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        """Put ``frames`` on the line to ``to``; the number taken (the rest dropped: full)."""
        shape = self.links.get(to)
        with self._cond:
            if self._closed:
                return 0
            line = self._lines.get(to)
            if line is None:
                line = self._lines[to] = deque()
            was_empty = not line
            earliest = self._heads[0][0] if self._heads else math.inf
            now = self._clock()
            last = self._last_due.get(to, 0.0)
            taken = 0
            for frame in frames:
                if len(line) >= self.max_frames or self._bytes + len(frame) > MAX_DELAYED_BYTES:
                    self.line_full[to] += len(frames) - taken
                    break
                due = now + self._delay(shape, len(frame)) if shape is not None else now
                last = due if due > last else last
                line.append((last, frame))
                self._bytes += len(frame)
                taken += 1
            if not taken:
                return 0
            self._last_due[to] = last
            self.delayed_frames += taken
            if self._bytes > self.peak_delayed_bytes:
                self.peak_delayed_bytes = self._bytes
            if was_empty:
                head = line[0][0]
                heapq.heappush(self._heads, (head, to))
                if head < earliest:
                    self._cond.notify()
            return taken

    def _delay(self, shape: LinkShape, size: int) -> float:
        rng = self._rng
        delay = shape.delay_s
        if shape.jitter_s:
            delay = max(0.0, delay + rng.uniform(-shape.jitter_s, shape.jitter_s))
        if shape.loss:
            segments = max(1, -(-size // SEGMENT_BYTES))
            if rng.random() < 1.0 - (1.0 - shape.loss) ** segments:
                rto = shape.rto_s
                for _ in range(MAX_RETRANSMITS):
                    delay += rto
                    self.retransmits += 1
                    rto *= 2
                    if rng.random() >= shape.loss:
                        break
        return delay

    # --- counters read after close (the real Sender's, plus the line's drops) ----------

    @property
    def sent_frames(self) -> int:
        return self._sender.sent_frames

    @property
    def sent_bytes(self) -> int:
        return self._sender.sent_bytes

    @property
    def sent_by_kind(self) -> Counter[int]:
        return self._sender.sent_by_kind

    @property
    def send_drops(self) -> Counter[int]:
        return self._sender.send_drops + self.line_full

    def network_stats(self) -> dict[str, int]:
        """What the line did (reported in the process's stats under ``network``)."""
        return {
            "delayed_frames": self.delayed_frames,
            "modelled_retransmits": self.retransmits,
            "line_full_drops": sum(self.line_full.values()),
            "peak_delayed_bytes": self.peak_delayed_bytes,
            "send_errors": sum(self.errors.values()),
            "thread_cpu_ms": round(self.thread_cpu_s * 1000),
        }

    def close(self) -> None:
        """Stop the delay thread (frames still waiting are dropped), close the Sender."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_TIMEOUT_S)

    # --- the delay thread ------------------------------------------------------------

    def _due(self, now: float) -> list[tuple[int, list[bytes]]]:
        """Take every frame due at ``now`` off its line (under the lock)."""
        out: list[tuple[int, list[bytes]]] = []
        heads = self._heads
        while heads and heads[0][0] <= now:
            _, to = heapq.heappop(heads)
            line = self._lines[to]
            frames = []
            while line and line[0][0] <= now:
                frames.append(line.popleft()[1])
            self._bytes -= sum(len(f) for f in frames)
            out.append((to, frames))
            if line:
                heapq.heappush(heads, (line[0][0], to))
        return out

    def _run(self) -> None:
        cond = self._cond
        try:
            while True:
                with cond:
                    while True:
                        if self._closed:
                            return
                        now = self._clock()
                        ready = self._due(now)
                        if ready:
                            break
                        wait = self._heads[0][0] - now if self._heads else None
                        cond.wait(wait)
                for to, frames in ready:
                    try:
                        if len(frames) == 1:
                            self._sender.send_frame(to, frames[0])
                        else:
                            self._sender.send_frames(to, frames)
                    except Exception as exc:  # a bug, not the network: count it, keep going
                        self.errors[type(exc).__name__] += len(frames)
        finally:
            self._sender.close()
            self.thread_cpu_s = time.thread_time()


def line_stats(senders: Iterable[Any]) -> dict[str, int]:
    """The summed ``network_stats`` of the DelayedSenders among ``senders`` ({} if none)."""
    out: Counter[str] = Counter()
    for sender in senders:
        stats = getattr(sender, "network_stats", None)
        if stats is not None:
            out.update(stats())
    return dict(out)
