"""What every stage shares: the ring item tags (W_/E_/C_), the hand-over bounds,
the flags all stages read (ReplicaShared, with the ReplyCache input and execute share), and
``Stage``, the thread base class that runs ``loop()`` under its ThreadClock and turns a crash
into a loud replica failure.

Must not live here: any one stage's loop (one module per stage kind beside this one).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from fabric.analysis.metrics import ThreadClock, dump_profile, profiler
from fabric.runtime.ring import Ring, RingClosed

# worker ring items
W_MSG = 0  # (W_MSG, sender, msg)
W_BATCH = 1  # (W_BATCH, batch)
W_EXECUTED = 2  # (W_EXECUTED, seq, state_digest)
W_FRONTIER = 3  # (W_FRONTIER, round, deciding instance): lanes protocols (fabric.runtime.lanes)
W_CHECKPOINT = 4  # (W_CHECKPOINT, round, state_digest): lanes protocols
W_STATE_INSTALLED = 5  # (W_STATE_INSTALLED, seq, state_digest, proof): protocol.state_installed
# execute ring items; their tags never equal a worker ring tag: with execution.pipeline
# inline the worker ring is also the execute ring (the worker executes), and the worker tells
# them apart by tag (E_FIRST and above are execute items)
E_FIRST = 16
E_DELIVER = 16  # (E_DELIVER, seq, view, batch, speculative[, history, signature])
E_ROLLBACK = 17  # (E_ROLLBACK, to_seq)
E_COMMIT = 18  # (E_COMMIT, seq, digest, proof): a stable checkpoint; state up to seq is final
E_FETCH_STATE = 19  # (E_FETCH_STATE, seq, digest, proof): the protocol's FetchState
E_STATE_MSG = 20  # (E_STATE_MSG, sender, msg): a state-transfer message (the input stage's)
# (proof: the certificate's votes, () if the protocol gave none; persisted with the ledger)
# persist ring items (fabric.runtime.stages.persist)
P_BLOCK = 32  # (P_BLOCK, block, writes, clients): a final block and its state changes
P_CHECKPOINT = 33  # (P_CHECKPOINT, seq, state_digest, proof): a certified stable checkpoint
P_BASE = 34  # (P_BASE, seq, ledger head, encoded state image): state installed by a transfer
P_COMPACT = 35  # (P_COMPACT, seq, StateImage): blocks up to a stable checkpoint -> its image
# checkpoint ring items
C_EXECUTED = 0  # (C_EXECUTED, seq, state_digest)
C_STABLE = 1  # (C_STABLE, seq, digest[, proof])
C_LANE = 2  # (C_LANE, ...): a lane's decision for the lanes coordinator (fabric.runtime.lanes)
C_STATE_INSTALLED = 3  # (C_STATE_INSTALLED, seq, state_digest, proof): for the worker

#: items taken from a ring per pop
CHUNK = 128
#: the longest any stage parks before re-checking the stop flag, seconds
PARK_S = 0.1
#: bound on a checkpoint stage's local backlog (items waiting for room in a full ring)
MAX_BACKLOG = 65_536
#: (message type, exception type) pairs logged with a traceback per worker (all are counted)
MAX_LOGGED_ERRORS = 5
#: bound on the worker's queue of ready batches waiting for proposal room
MAX_PENDING_BATCHES = 4096


@dataclass(frozen=True, slots=True)
class ToCoordinator:
    """A worker action that goes to the checkpoint ring as ``item`` (lanes protocols)."""

    item: tuple[Any, ...]


class ReplicaShared:
    """Flags every stage reads (plain attributes: a racy read only delays a decision)."""

    def __init__(self, replica_id: int, n: int, workers: int = 1) -> None:
        self.id = replica_id
        self.n = n
        self.stop = threading.Event()
        self.is_proposer = False  # any worker's protocol proposes (input routes requests by it)
        self.proposer_flags = [False] * workers
        self.silent = False  # an injected "silent" failure: receive nothing, send nothing
        # an active Byzantine failure (fabric.runtime.byzantine.ByzantineOutput) the output
        # stage sends through; None: honest output
        self.byzantine: Any = None
        self.fatal: list[str] = []  # what killed a stage (the process then stops, failed)
        self.replies = ReplyCache()  # written by the execute stage, read by input stages

    def fail(self, what: str) -> None:
        self.fatal.append(what)
        self.stop.set()


class ReplyCache:
    """The replies this replica sent lately, by (client, timestamp), bounded (FIFO eviction).

    A client that re-sends a request (its reply was lost, or it timed out) gets the
    cached reply again from the input stage, as Castro & Liskov 4.1 asks: the request
    is already executed, so the protocol would (rightly) not order it again, and
    without this the client could only give up. One writer (the execute stage);
    readers do plain dict lookups (atomic under the GIL). Rollback clears it.
    """

    def __init__(self, capacity: int = 8_192) -> None:
        self.capacity = capacity
        self._replies: dict[tuple[int, int], Any] = {}
        self._order: deque[tuple[int, int]] = deque()

    def put(self, key: tuple[int, int], reply: Any) -> None:
        replies = self._replies
        if key not in replies:
            self._order.append(key)
            if len(self._order) > self.capacity:
                replies.pop(self._order.popleft(), None)
        replies[key] = reply

    def get(self, key: tuple[int, int]) -> Any:
        return self._replies.get(key)

    def clear(self) -> None:
        self._replies.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._replies)


class Stage(threading.Thread):
    """A pipeline thread: runs ``loop()`` with its clock; a crash stops the replica loudly."""

    role = "stage"

    def __init__(self, name: str, shared: ReplicaShared) -> None:
        super().__init__(name=name, daemon=True)
        self.shared = shared
        self.clock = ThreadClock(name, self.role)
        self.drops: Counter[str] = Counter()

    def run(self) -> None:
        self.clock.start()
        profile = profiler()
        try:
            if profile is None:
                self.loop()
            else:
                profile.runcall(self.loop)
        except RingClosed:
            pass  # shutdown
        except Exception:
            if not self.shared.stop.is_set():
                text = traceback.format_exc()
                print(
                    f"replica {self.shared.id}: stage {self.name} failed:\n{text}", file=sys.stderr
                )
                self.shared.fail(f"{self.name}: {text.strip().splitlines()[-1]}")
        finally:
            try:
                self.cleanup()
            finally:
                self.clock.stop()
                if profile is not None:
                    dump_profile(profile, f"replica-{self.shared.id}-{self.name}")

    def loop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Close what this thread owns (sockets); called on the thread itself."""

    def pop(self, ring: Ring, timeout: float = PARK_S, chunk: int = CHUNK) -> list[Any]:
        """Non-blocking pop first; park (counted idle) only when the ring is empty."""
        items = ring.pop_many(chunk, 0)
        if items:
            return items
        clock = self.clock
        clock.park()
        items = ring.pop_many(chunk, timeout)
        clock.unpark()
        return items

    def push_all(self, ring: Ring, items: list[Any]) -> None:
        """Blocking push of every item (parks on a full ring; gives up only at stop)."""
        done = ring.push_many(items, 0) if items else 0
        stop = self.shared.stop
        while done < len(items):
            if stop.is_set():
                return
            self.clock.park()
            done += ring.push_many(items[done:], PARK_S)
            self.clock.unpark()
