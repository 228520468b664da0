"""PBFT's per-batch protocol cost without a cluster: the worker thread's share, in one process.

The CPU ledger of ``bench cluster`` says what the worker thread costs per transaction, rings,
wake-ups and a busy machine included; this benchmark isolates the Python the worker itself
runs, so a change to protocols/pbft, replica_core, checkpoints or the worker's loop can be
measured in seconds, without sockets, and A/B'd in one process. Shapes as in ``bench
cluster``: 4 replicas, one signed client request of 100 transactions (100 B values) per
batch, a checkpoint every 100 batches, window 200, 10 batches in flight. The verifier passes
every check and signs with fixed bytes (the runtime's caches answer client signatures; the
Ed25519 costs are ``bench mac``'s), so the figures are protocol logic only.

Prints, median of PASSES (thread CPU clock, so a busy machine slows it little):
- protocol: µs per committed batch summed over the 4 replicas' calls (receive, propose,
  executed), for MAC votes and for signed votes, and the actions per batch;
- worker: µs per batch of a backup's WorkerStage.loop replaying the items its ring got in
  the run above (stand-in rings: no hand-offs), taking 1 and 4 items per pop.
Figures, never assertions. ``python -m bench protocol`` (BENCH_PROTOCOL_BATCHES, default
3000). Must not live here: anything the runtime imports.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter, deque
from typing import Any

from fabric.runtime.stages.base import W_BATCH, W_EXECUTED, W_MSG, ReplicaShared
from fabric.runtime.stages.worker import WorkerStage
from protocols.base import Broadcast, Deliver, ProtocolConfig, Send
from protocols.common import Request, make_batch
from protocols.pbft import Pbft

PASSES = 5
N = 4
PERIOD = 100  # batches per checkpoint (txn_per_chkpt 10000 / batch_size 100)
WINDOW = 2 * PERIOD  # watermark_window 0 = two checkpoints
IN_FLIGHT = 10  # batches (max_txn_in_flight 1000 / 100)
TXNS = bytes(range(256)) * 47  # ~12 KB: 100 encoded transactions of 100 B values
STATE_DIGEST = b"d" * 32


class PassVerifier:
    """Every check passes, signatures are fixed bytes: protocol logic only."""

    def sign(self, payload: bytes) -> bytes:
        return b"s" * 64

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        return True

    def verify_request(self, request: Request) -> bool:
        return True


def _replica(i: int, signed: bool) -> Pbft:
    config = ProtocolConfig(
        replica_id=i,
        n=N,
        checkpoint_period=PERIOD,
        watermark_window=WINDOW,
        params={"pbft_signed_votes": signed},
    )
    return Pbft(config, PassVerifier())


def drive(
    batches: int, signed: bool, record: int | None = None, count: bool = False
) -> tuple[float, Counter[str], list[Any]]:
    """Order ``batches`` batches on 4 replicas over a FIFO link; the µs of CPU per batch
    (the protocol's calls and this loop's queue), the actions by type (``count``), and
    (``record``: a replica) the items that replica's worker ring would have got, in order."""
    reps = [_replica(i, signed) for i in range(N)]
    work = [make_batch((Request(1000, ts, TXNS, b"x" * 64),)) for ts in range(1, batches + 1)]
    queue: deque[tuple[int, int, Any]] = deque()
    delivered = [0] * N
    actions: Counter[str] = Counter()
    items: list[tuple[Any, ...]] = []

    def apply(r: int, out: list[Any]) -> None:
        for a in out:
            t = type(a)
            if count:
                actions[t.__name__] += 1
            if t is Broadcast:
                msg = a.msg
                for d in range(N):
                    if d != r:
                        queue.append((d, r, msg))
            elif t is Send:
                queue.append((a.to, r, a.msg))
            elif t is Deliver:
                delivered[r] = a.seq
                if a.seq % PERIOD == 0:  # the execute stage's feedback: checkpoint seqs only
                    queue.append((r, -1, a.seq))

    nxt = 0
    primary = reps[0]
    started = time.thread_time()
    while True:
        while nxt < batches and nxt - delivered[0] < IN_FLIGHT:
            if record == 0:
                items.append((W_BATCH, work[nxt]))
            apply(0, primary.propose(work[nxt]))
            nxt += 1
        if not queue:
            if nxt >= batches:
                break
            continue
        dst, src, msg = queue.popleft()
        if src < 0:
            if dst == record:
                items.append((W_EXECUTED, msg, STATE_DIGEST))
            apply(dst, reps[dst].executed(msg, STATE_DIGEST))
        else:
            if dst == record:
                items.append((W_MSG, src, msg))
            apply(dst, reps[dst].receive(src, msg))
    elapsed = time.thread_time() - started
    assert delivered == [batches] * N, delivered
    return elapsed / batches * 1e6, actions, items


class _Feed:
    """A worker ring stand-in: each pop hands over the next ``per_pop`` recorded items, and
    the last one stops the stage."""

    capacity = 1 << 16

    def __init__(self, items: list[Any], per_pop: int, shared: ReplicaShared) -> None:
        self.items, self.per_pop, self.shared, self.at = items, per_pop, shared, 0

    def pop_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        at = self.at
        if at >= len(self.items):
            self.shared.stop.set()
            return []
        self.at = at + self.per_pop
        return self.items[at : at + self.per_pop]

    def __len__(self) -> int:
        return 0


class _Sink:
    """An output/execute/checkpoint ring stand-in that takes everything."""

    capacity = 1 << 16

    def push_many(self, items: list[Any], timeout: float | None = None) -> int:
        return len(items)

    def __len__(self) -> int:
        return 0


def worker_us(items: list[Any], replica: int, batches: int, per_pop: int) -> float:
    """µs per batch of WorkerStage.loop replaying ``items`` into a fresh replica's worker."""
    shared = ReplicaShared(replica, N)
    protocol = _replica(replica, signed=False)
    sink = _Sink()
    stage = WorkerStage(
        "worker-0", shared, protocol, _Feed(items, per_pop, shared), sink, sink, sink, 0.01
    )
    started = time.thread_time()
    stage.loop()
    elapsed = time.thread_time() - started
    assert protocol.last_delivered == batches, protocol.last_delivered
    return elapsed / batches * 1e6


def main() -> None:
    batches = int(os.environ.get("BENCH_PROTOCOL_BATCHES", "3000"))
    print(
        f"PBFT, {N} replicas, 1 request of 100 txns per batch, {batches} batches, "
        f"checkpoint every {PERIOD}, window {WINDOW}, {IN_FLIGHT} in flight; median of {PASSES}"
    )
    items: list[Any] = []
    for signed in (False, True):
        _, actions, recorded = drive(batches, signed, record=1, count=True)
        if not signed:
            items = recorded
        us = statistics.median(drive(batches, signed)[0] for _ in range(PASSES))
        per = ", ".join(f"{k} {v / batches:.2f}" for k, v in sorted(actions.items()))
        kind = "signed votes" if signed else "MAC votes"
        print(
            f"  protocol, {kind:<12}: {us:6.1f} us/batch (4 replicas), {us / 100:.3f} us/txn;"
            f" actions/batch: {per}"
        )
    for per_pop in (1, 4):
        us = statistics.median(worker_us(items, 1, batches, per_pop) for _ in range(PASSES))
        print(
            f"  worker loop, backup, {per_pop} item(s)/pop: {us:6.1f} us/batch "
            f"({len(items) / batches:.1f} ring items/batch)"
        )


if __name__ == "__main__":
    main()
