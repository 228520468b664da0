"""The replica's pipeline stages: one class per thread kind, joined by rings.

Each stage is started with the rings it reads and the rings it writes, so a
test can feed one ring and read the other (no sockets needed except for the
input and output stages, which take a Receiver/Sender-like object):

    InputStage     Receiver -> route: client Request at a proposer -> batch ring
                   (by client id, keeping each client's order); everything else
                   -> worker ring; requests inside a proposal are pre-verified here
                   (see VerifiedCache), cheapest checks first: the sender is the
                   proposal's proposer, the batch digest holds, the sender's
                   verification budget (a token bucket) has room; verification stops
                   at the first bad signature, and failures are remembered. Fetch
                   requests are rate-limited per sender (token bucket, counted).
    BatchStage     batch ring -> verify client signatures (Ed25519 releases the
                   GIL: batch threads run in parallel) -> cut batches, hash once
                   (make_batch) -> worker ring
    WorkerStage    worker ring -> the protocol (calls in, actions out); timers
                   from a local heap; -> output ring, execute ring, checkpoint ring
    ExecuteStage   execute ring -> Executor.apply in seq order -> one Reply per
                   request -> output ring; executed feedback -> checkpoint ring
                   (execution.pipeline inline: no execute thread; the worker calls
                   its apply_items on each Deliver, and the worker ring is the
                   execute ring for stable checkpoints and lanes' Delivers)
    CheckpointStage  checkpoint ring -> executed feedback to the worker, stable
                   checkpoints to the executor (commit_upto: trims undo logs)
    OutputStage    output ring -> encode once, MAC per destination, send

Rings carry small tuples tagged by an int (see the W_/E_/C_ constants).

Deadlock freedom: the only cycle is worker -> execute -> checkpoint -> worker.
The checkpoint stage never blocks on a push (it keeps a bounded local backlog
and retries), so the execute stage always drains and the worker's blocking
pushes always complete. The input stage never blocks on a batch ring (a full
one drops the request, counted: the client re-sends), so protocol messages
keep flowing while proposals back up.

Idle accounting: a stage first tries a non-blocking pop; only when that finds
nothing does it park, and the parked time is its idle time (ThreadClock).

Must not live here: process wiring, signals, stats files (fabric.runtime.replica);
protocol logic (protocols/); the ring itself (fabric.runtime.ring).
"""

from fabric.runtime.stages.base import (
    C_EXECUTED,
    C_LANE,
    C_STABLE,
    C_STATE_INSTALLED,
    CHUNK,
    E_COMMIT,
    E_DELIVER,
    E_FIRST,
    E_ROLLBACK,
    MAX_BACKLOG,
    MAX_LOGGED_ERRORS,
    MAX_PENDING_BATCHES,
    PARK_S,
    W_BATCH,
    W_CHECKPOINT,
    W_EXECUTED,
    W_FRONTIER,
    W_MSG,
    W_STATE_INSTALLED,
    ReplicaShared,
    ReplyCache,
    Stage,
    ToCoordinator,
)
from fabric.runtime.stages.batch import BatchStage
from fabric.runtime.stages.checkpoint import CheckpointStage
from fabric.runtime.stages.execute import ExecuteStage
from fabric.runtime.stages.input import (
    CachedVerifier,
    InputStage,
    SenderBudgets,
    TokenBucket,
    VerifiedCache,
)
from fabric.runtime.stages.output import OutputStage
from fabric.runtime.stages.worker import Timers, WorkerStage

__all__ = [
    "BatchStage",
    "CHUNK",
    "C_EXECUTED",
    "C_LANE",
    "C_STABLE",
    "C_STATE_INSTALLED",
    "CachedVerifier",
    "CheckpointStage",
    "E_COMMIT",
    "E_DELIVER",
    "E_FIRST",
    "E_ROLLBACK",
    "ExecuteStage",
    "InputStage",
    "MAX_BACKLOG",
    "MAX_LOGGED_ERRORS",
    "MAX_PENDING_BATCHES",
    "OutputStage",
    "PARK_S",
    "ReplicaShared",
    "ReplyCache",
    "SenderBudgets",
    "Stage",
    "Timers",
    "ToCoordinator",
    "TokenBucket",
    "VerifiedCache",
    "W_BATCH",
    "W_CHECKPOINT",
    "W_EXECUTED",
    "W_FRONTIER",
    "W_MSG",
    "W_STATE_INSTALLED",
    "WorkerStage",
]
