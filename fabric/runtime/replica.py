"""One replica process: wires the pipeline stages, runs them, stops cleanly, writes stats.

``python -m fabric replica --config RESOLVED.yaml --id I --run-dir DIR`` (the
runner starts it). Shape (fabric.runtime.stages has each stage):

    input threads -> batch rings -> batch threads -+
         |                                         v
         +--------------> worker ring -> worker (protocol) -> execute ring -> execute
                               ^                 |                               |
                               +-- checkpoint <--+-- output ring <---------------+
                                                       |
                                                output threads -> ZeroMQ

Thread counts come from ``replica:`` in the config; ``execution.pipeline: inline`` starts
no execute thread: worker 0 runs the execute stage's code on each Deliver, before its next
message (fabric.runtime.stages.worker). A protocol with one
instance runs in one worker; a protocol with lanes (RCC) spreads its instances
over ``replica.worker_threads`` workers, and the checkpoint thread becomes the
lanes' coordinator (fabric.runtime.lanes). Client signatures are
verified once per request: by a batch thread at the proposer, and at the
other replicas by the input thread that receives the batch-carrying message
(pre-verification into a bounded VerifiedCache, which the protocol's verifier
consults): the worker, which owns the protocol state, never spends 150 us per
request on Ed25519 on its critical path unless the cache missed.

A durable ledger (``ledger.storage: sqlite | lmdb``) adds the persist thread behind the
execute stage (its own ring: fabric.runtime.stages.persist) and, before anything starts,
recovery: the store in ``replica-<i>/`` is checked and redone into the executor
(``self.recovered``); a ledger that fails its check refuses the start (exit 2, the file and
the first bad block named).

Lifecycle: bind sockets, start threads, print ``ready`` (fabric.harness.control);
``start <t0>`` from the runner fixes time zero for failure injection;
``stop``/EOF/SIGTERM/SIGINT stop every thread (bounded), close sockets and
write ``stats/replica-<i>.json`` (counters, rings, threads, per-second executed
transactions, the ledger hash chain for the audit). A ``failures:`` entry for
this replica crashes it (os._exit with CRASH_EXIT_CODE, no stats: a crash), silences it
(drops every frame in and out) or turns its output Byzantine (equivocate, bad_mac,
wrong_digest, throttle, slow: fabric.runtime.byzantine around the honest protocol) at
``t0 + at_s``; a ``restart`` is the runner's (SIGKILL, then this command again with
``--restart``: ``Replica.restarted``). A stage that dies
of an exception stops the replica and makes it exit 1.

Must not live here: the stages' loops (fabric.runtime.stages), protocol logic, report tables.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabric.analysis.metrics import process_resources
from fabric.harness.config import BYZANTINE_KINDS, REPLICA_FAILURE_KINDS
from fabric.harness.control import CRASH_EXIT_CODE, ChildControl, format_progress
from fabric.harness.paths import RunPaths
from fabric.runtime import process, sched
from fabric.runtime.ring import Ring
from fabric.runtime.stages import (
    BatchStage,
    CachedVerifier,
    CheckpointStage,
    ExecuteStage,
    InputStage,
    OutputStage,
    ReplicaShared,
    Stage,
    VerifiedCache,
    WorkerStage,
)
from fabric.runtime.stages.base import W_STATE_INSTALLED
from fabric.runtime.stages.batch import max_batch_bytes
from fabric.runtime.stages.persist import PersistStage
from fabric.runtime.state_transfer import StateTransfer, executor_images
from fabric.runtime.storage import LedgerStore, ledger_file, open_store
from fabric.runtime.storage.recovery import RecoveredState, recover_into
from protocols import codec, limits
from protocols import state_transfer as _state_messages  # noqa: F401  (registers kinds 200, 201)
from protocols.common import Request
from transport import wire
from transport.auth import TAG_BYTES
from transport.delay_line import line_stats

if TYPE_CHECKING:  # imported where used: only runs with lanes or a Byzantine failure need them
    from fabric.runtime.byzantine import ByzantineOutput
    from fabric.runtime.lanes import LaneCoordinator


def _has_lanes(protocol: Any) -> bool:
    from fabric.runtime.lanes import has_lanes

    return has_lanes(protocol)


#: seconds the whole stop sequence may take before the process gives up waiting
STOP_BUDGET_S = 5.0


def replica_frame_policy(cfg: Any) -> wire.FramePolicy:
    """Who may send a replica what: clients only requests (and the protocol's
    ``client_messages``: Zyzzyva's COMMIT), each in a bounded frame (checked on the header).
    The live fuzzer (fabric.harness.fuzz) predicts drops with it."""
    from protocols import registry

    extra = registry.get(cfg.protocol.name).client_messages
    return wire.FramePolicy(
        replicas=cfg.cluster.replicas,
        client_kinds=frozenset({Request.KIND, *(m.KIND for m in extra)}),
        max_client_frame_bytes=min(cfg.transport.max_frame_bytes, limits.MAX_CLIENT_FRAME_BYTES)
        + TAG_BYTES[cfg.crypto.effective_link_mac],
    )


def kind_names() -> dict[int, str]:

    return {kind: cls.__name__ for kind, cls in codec.registered_kinds().items()}


class Replica:
    """The pipeline of one replica (threads, rings, sockets); ``start``, ``shutdown``, ``stats``."""

    def __init__(
        self, cfg: Any, replica_id: int, restarted: bool = False, run_dir: Path | None = None
    ) -> None:
        from fabric.harness.config import config_to_dict
        from fabric.harness.network import shaped_sender
        from fabric.runtime.execute import Executor
        from protocols import registry
        from transport.auth import LinkAuth, make_verifier
        from transport.keyfiles import keys_for
        from transport.zmq_io import Addressing, Receiver, Sender, new_context
        from workloads.txn import DEFAULT_MAX_SCAN_LENGTH, DEFAULT_MAX_TXNS, DEFAULT_MAX_VALUE_BYTES

        if not 0 <= replica_id < cfg.cluster.replicas:
            raise ValueError(f"replica id {replica_id} not in 0..{cfg.cluster.replicas - 1}")
        self.cfg = cfg
        self.id = replica_id
        # started again by the runner after a kill (failure kind restart): durable state
        # in the run folder is this replica's own, to reload before it rejoins
        self.restarted = restarted
        n = cfg.cluster.replicas
        rc = cfg.replica
        cap = rc.ring_capacity
        self.shared = ReplicaShared(replica_id, n)
        # only this node's links and private key: a process never holds the others' secrets
        keys = keys_for(replica_id, cfg.node_count, cfg.crypto.cluster_secret, cfg.crypto.key_dir)
        mac = cfg.crypto.effective_link_mac
        signature = cfg.crypto.effective_client_signature
        self.ctx = new_context()
        addressing = Addressing.from_config(config_to_dict(cfg))
        if addressing.kind == "ipc":
            os.makedirs(addressing.ipc_dir, exist_ok=True)

        # verification: one cache shared by batch threads, input threads and the protocol
        verifier = make_verifier(signature, replica_id, keys)
        self.cache = VerifiedCache(verifier)
        pre_verify = self.cache if signature != "none" else None
        protocol_cls = registry.get(cfg.protocol.name)
        self.protocol = protocol_cls(
            cfg.protocol_config(replica_id), CachedVerifier(verifier, self.cache)
        )
        # One protocol instance -> one worker. A protocol with lanes (RCC) spreads its
        # instances over replica.worker_threads workers (fabric.runtime.lanes) when there are several.
        self.lanes_mode = rc.worker_threads > 1 and _has_lanes(self.protocol)
        m = len(self.protocol.lanes) if self.lanes_mode else 1
        n_workers = min(rc.worker_threads, m)
        self.shared.proposer_flags = [False] * n_workers

        # rings
        multi_in = rc.input_threads > 1
        self.worker_rings = [
            Ring(cap, f"worker-{k}", multi_producer=True) for k in range(n_workers)
        ]
        self.worker_ring = self.worker_rings[0]
        self.batch_rings = [
            Ring(cap, f"batch-{b}", multi_producer=multi_in) for b in range(rc.batch_threads)
        ]
        # execution.pipeline inline: no execute thread; worker 0 executes, and its ring is
        # also the execute ring (stable checkpoints, lanes' Delivers: E_ tags never equal W_ tags)
        self.inline = cfg.execution.pipeline == "inline"
        self.execute_ring = (
            self.worker_ring if self.inline else Ring(cap, "execute", multi_producer=True)
        )
        self.checkpoint_ring = Ring(cap, "checkpoint", multi_producer=True)
        self.output_ring = Ring(
            cap, "output", multi_producer=True, multi_consumer=rc.output_threads > 1
        )
        self.rings = [
            *self.worker_rings,
            *self.batch_rings,
            *([] if self.inline else [self.execute_ring]),
            self.checkpoint_ring,
            self.output_ring,
        ]

        wl = cfg.workload
        self.executor = Executor(
            wl.record_count,
            wl.value_size,
            # the executor's bounds on one request must admit what the config's clients send
            max_txns_per_request=max(DEFAULT_MAX_TXNS, cfg.batching.batch_size),
            max_value_bytes=max(DEFAULT_MAX_VALUE_BYTES, wl.value_size),
            max_scan_length=max(DEFAULT_MAX_SCAN_LENGTH, wl.max_scan_length),
            # the execution engine of this replica (a mixed cluster names one per replica)
            engine=cfg.execution.engine_for(replica_id),
            threads=cfg.execution.threads,
            txn_cost_us=cfg.execution.txn_cost_us,
            smallbank_accounts=wl.smallbank_accounts,
            # a durable ledger: the executor hands each final block's changes to the persist stage
            record_changes=cfg.ledger.storage != "memory",
            # digest and keep images at the protocol's checkpoints (state transfer serves them)
            checkpoint_period=self.protocol.checkpoint_seq_period(),
        )
        # ledger.storage sqlite | lmdb: the store in replica-<i>/ and what it held at start
        # (checked and redone into the executor: fabric.runtime.storage.recovery); memory:
        # nothing persisted, no persist thread
        self.store: LedgerStore | None = None
        self.recovered: RecoveredState | None = None
        self.persist_ring: Ring | None = None
        if cfg.ledger.storage != "memory":
            if run_dir is None:
                raise ValueError(f"ledger.storage {cfg.ledger.storage} needs the run folder")
            led = cfg.ledger
            self.store = open_store(
                led.storage,
                ledger_file(RunPaths(run_dir).replica_dir(replica_id), led.storage),
                led.sync,
                led.max_blocks_per_txn,
                led.max_file_mb,
            )
            self.recovered = recover_into(self.executor, self.store)
            self.persist_ring = Ring(led.persist_ring_blocks, "persist")
            self.rings.append(self.persist_ring)

        # stages (sockets are created here, on the main thread, and closed by their owners)
        shared = self.shared
        frame_policy = replica_frame_policy(cfg)
        self.inputs = [
            InputStage(
                f"input-{k}",
                shared,
                Receiver(
                    self.ctx,
                    addressing.address(replica_id, k),
                    LinkAuth(mac, replica_id, keys),
                    recv_hwm=cfg.transport.recv_hwm,
                    max_frame_bytes=cfg.transport.max_frame_bytes,
                    policy=frame_policy,
                ),
                self.worker_rings,
                self.batch_rings,
                pre_verify,
                worker_of=self._worker_of if self.lanes_mode else None,
                output_ring=self.output_ring,
                client_messages=protocol_cls.client_messages,
                state_ring=self.execute_ring,  # state transfer: served by the execute stage
            )
            for k in range(rc.input_threads)
        ]
        self.batchers = [
            BatchStage(
                f"batch-{b}",
                shared,
                ring,
                self.worker_ring,
                self.cache,
                # whole client requests up to batch_size txns, cut after the timeout
                txns_per_batch=cfg.batching.batch_size,
                batch_timeout_s=cfg.batching.batch_timeout_ms / 1000.0,
                route=self._route_batch if self.lanes_mode else None,
                # lanes: one batch holds one instance's clients (it routes to one worker)
                group_of=self._instance_of_request if self.lanes_mode else None,
                max_bytes=max_batch_bytes(cfg.transport.max_frame_bytes),
            )
            for b, ring in enumerate(self.batch_rings)
        ]
        self.execute = ExecuteStage(
            "execute",
            shared,
            self.executor,
            self.execute_ring,
            self.output_ring,
            self.checkpoint_ring,
            n,
            persist_ring=self.persist_ring,
            compact_blocks=cfg.ledger.compact_blocks,
            state_transfer=StateTransfer(replica_id, n, executor_images(self.executor)),
            tick_s=cfg.protocol.tick_ms / 1000.0,
        )
        if self.recovered is not None:  # the stored base compaction counts from
            self.execute.compacted_from = self.recovered.base_seq
            # Delivers up to the reloaded seq are in the state already: skipped
            self.execute.restored_upto = self.recovered.seq
        if self.lanes_mode:
            from fabric.runtime.lanes import LaneCoordinator, LaneGroup
        self.workers = [
            WorkerStage(
                f"worker-{k}",
                shared,
                (
                    LaneGroup(self.protocol, [i for i in range(m) if i % n_workers == k])
                    if self.lanes_mode
                    else self.protocol
                ),
                ring,
                self.output_ring,
                self.execute_ring,
                self.checkpoint_ring,
                tick_s=cfg.protocol.tick_ms / 1000.0,
                index=k,
                # pipeline inline: worker 0 does the execute stage's work on its own thread
                inline=self.execute if self.inline and k == 0 else None,
            )
            for k, ring in enumerate(self.worker_rings)
        ]
        self.unused_worker_threads = rc.worker_threads - len(self.workers)
        self.checkpoint: CheckpointStage | LaneCoordinator
        if self.lanes_mode:
            self.checkpoint = LaneCoordinator(
                "checkpoint",
                shared,
                self.protocol,
                self.checkpoint_ring,
                self.worker_rings,
                self.execute_ring,
                getattr(self.protocol, "period", cfg.checkpoint_period),
            )
        else:
            self.checkpoint = CheckpointStage(
                "checkpoint", shared, self.checkpoint_ring, self.worker_ring, self.execute_ring
            )
        self.outputs = [
            OutputStage(
                f"output-{k}",
                shared,
                shaped_sender(  # network.emulation: transport delays in a delay line
                    cfg,
                    Sender(
                        self.ctx,
                        addressing,
                        replica_id,
                        LinkAuth(mac, replica_id, keys),
                        send_hwm=cfg.transport.send_hwm,
                    ),
                    replica_id,
                    f"delay-line-{k}",
                ),
                self.output_ring,
                nodes=cfg.node_count,
            )
            for k in range(rc.output_threads)
        ]
        self.persist = (
            PersistStage("persist", shared, self.store, self.persist_ring)
            if self.store is not None and self.persist_ring is not None
            else None
        )
        self.stages: list[Stage] = [
            *([self.persist] if self.persist is not None else []),
            *self.outputs,
            *([] if self.inline else [self.execute]),
            self.checkpoint,
            *self.workers,
            *self.batchers,
            *self.inputs,
        ]
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.t0: float | None = None
        if self.restarted and not self.lanes_mode:
            # the protocol's first input: the state reloaded (or seq 0 with nothing, memory
            # storage), so it asks its peers where they are and catches up (state transfer)
            rec = self.recovered
            seq = rec.seq if rec is not None else 0
            digest = rec.state_digest if rec is not None else self.executor.state_digest()
            self.worker_ring.push((W_STATE_INSTALLED, seq, digest, ()), 0)
        self.failure_event: dict[str, Any] | None = None
        self.stuck_threads: list[str] = []
        self.context_closed = True
        # a Byzantine failures entry of this replica: its lies, switched on at at_s
        self.byzantine = self._byzantine_output(cfg, verifier)

    def _byzantine_output(self, cfg: Any, verifier: Any) -> ByzantineOutput | None:
        failure = next(
            (f for f in cfg.failures if f.replica == self.id and f.kind in BYZANTINE_KINDS), None
        )
        if failure is None:
            return None
        from fabric.runtime.byzantine import ByzantineOutput  # its forgery tables load protocols

        cls = type(self.protocol)
        return ByzantineOutput(
            failure.kind,
            self.id,
            cfg.cluster.replicas,
            proposal_messages=cls.proposal_messages,
            vote_messages=cls.vote_messages,
            delay_ms=failure.delay_ms,
            sign=verifier.sign,  # its own key only: a liar signs as itself
        )

    # lanes routing (several workers) ------------------------------------------------------
    def _worker_of(self, msg: Any) -> int:
        i = self.protocol.instance_of(msg)
        return i % len(self.workers) if i >= 0 else -1

    def _instance_of_request(self, req: Request) -> int:
        return self.protocol.instance_of_client(req.client_id)

    def _route_batch(self, batch: Any) -> Ring:
        if not batch.requests:
            return self.worker_rings[0]
        i = self.protocol.instance_of_client(batch.requests[0].client_id)
        return self.worker_rings[i % len(self.worker_rings)]

    @property
    def view(self) -> int:
        if self.lanes_mode:
            return self.checkpoint.view  # type: ignore[union-attr]  # the LaneCoordinator
        return self.workers[0].view

    @property
    def view_changes(self) -> list[tuple[float, int, int]]:
        if self.lanes_mode:
            return self.checkpoint.view_changes  # type: ignore[union-attr]
        return self.workers[0].view_changes

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        for stage in self.stages:
            stage.start()

    def shutdown(self, budget_s: float = STOP_BUDGET_S) -> None:
        """Stop every thread (bounded), then close the ZeroMQ context."""
        from transport.zmq_io import close_context

        self.shared.stop.set()
        for ring in self.rings:
            ring.close()
        deadline = time.monotonic() + budget_s
        for stage in self.stages:
            if stage.is_alive():
                stage.join(max(0.0, deadline - time.monotonic()))
        self.stuck_threads = [s.name for s in self.stages if s.is_alive()]
        self.executor.close()  # the engine's worker threads (none for serial)
        self.stopped_at = time.time()
        self.context_closed = close_context(self.ctx, timeout_s=1.0)

    def go_silent(self) -> None:
        self.shared.silent = True

    def turn_byzantine(self) -> None:
        """From now on every frame goes out through this replica's Byzantine output."""
        self.shared.byzantine = self.byzantine

    # progress and stats ------------------------------------------------------------------
    def progress_line(self) -> str:
        return format_progress(
            time.time(), self.execute.txns_total, self.execute.last_seq, self.view
        )

    def stats(self) -> dict[str, Any]:
        names = kind_names()
        sent: dict[str, int] = {}
        received: dict[str, int] = {}
        drops: dict[str, int] = {}
        for stage in self.outputs:
            for kind, count in stage.sender.sent_by_kind.items():
                name = names.get(kind, str(kind))
                sent[name] = sent.get(name, 0) + count
            for to, count in stage.sender.send_drops.items():
                key = "send_full_to_client" if to >= self.cfg.cluster.replicas else "send_full"
                drops[key] = drops.get(key, 0) + count
        for stage in self.inputs:
            for kind, count in stage.receiver.received_by_kind.items():
                name = names.get(kind, str(kind))
                received[name] = received.get(name, 0) + count
            for reason, count in stage.receiver.drops.items():
                drops[reason] = drops.get(reason, 0) + count
        for stage in self.stages:
            for reason, count in stage.drops.items():
                drops[reason] = drops.get(reason, 0) + count
        try:
            status = dict(self.protocol.status())
        except Exception as exc:  # status is introspection only: never lose the stats for it
            status = {"error": repr(exc)}
        workers = self.workers
        ledger_base_seq = getattr(self.executor.ledger, "base_seq", 0)
        return {
            "role": "replica",
            "node": self.id,
            "protocol": self.cfg.protocol.name,
            "pipeline": self.cfg.execution.pipeline,
            "restarted": self.restarted,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "t0": self.t0,
            "threads": [s.clock.snapshot() for s in self.stages]
            + [c.snapshot() for c in self.executor.thread_clocks()],  # engine workers
            "unused_worker_threads": self.unused_worker_threads,
            "rings": [ring.stats() for ring in self.rings],
            "messages": {"sent": sent, "received": received},
            "drops": drops,
            "delay_line": line_stats(s.sender for s in self.outputs),  # network.emulation
            # every frame the input sockets delimited and every byte they read, good or bad
            "inbound": {
                "frames": sum(i.receiver.received_frames for i in self.inputs),
                "bytes": sum(i.receiver.received_bytes for i in self.inputs),
                # ZeroMQ reads, and the recv_batch calls that read (reads per drain)
                "reads": sum(i.receiver.reads for i in self.inputs),
                "drains": sum(i.receiver.drains for i in self.inputs),
                "peak_buffered_bytes": max(
                    (i.receiver.peak_buffered_bytes for i in self.inputs), default=0
                ),
            },
            "executed_per_s": self.execute.executed_per_s.as_pairs(),
            "executed_txns": self.execute.txns_total,
            "executed_batches": self.execute.batches,
            "executed_seq": self.executor.last_seq,
            "workers": len(workers),
            "proposed_batches": sum(w.proposed for w in workers),
            # what this replica's batch threads cut (a proposer's: requests per proposal)
            "batched": {
                key: sum(b.stats()[key] for b in self.batchers)
                for key in ("batches", "requests", "txns", "timeout_cuts")
            },
            "delivered_batches": sum(w.delivered for w in workers),
            "protocol_messages": sum(w.messages for w in workers),
            "forwarded_requests": sum(w.forwarded for w in workers),
            "replies_resent": sum(i.replies_resent for i in self.inputs),
            "timers_fired": sum(w.timers.fired for w in workers),
            "view": self.view,
            "view_changes": self.view_changes,
            "stable_seq": self.checkpoint.stable_seq,
            "stable_checkpoints": self.checkpoint.stable_count,
            "verify": {
                **self.cache.stats(),
                "preverify": dict(sum((i.preverify for i in self.inputs), Counter())),
            },
            "executor": self.executor.stats(),
            # fabric.runtime.state_transfer: fetches, chunks, mismatches, images installed
            "state_transfer": {
                **self.execute.state_transfer.stats(),
                "installed": self.execute.states_installed,
                "delivers_skipped_below_state": self.execute.skipped_below_install,
            },
            # ledger.storage sqlite | lmdb: what the persist stage wrote, what start recovered
            "persist": self.persist.stats() if self.persist is not None else None,
            "recovered": (
                None
                if self.recovered is None
                else {
                    "seq": self.recovered.seq,
                    "blocks": self.recovered.blocks,
                    "base_seq": self.recovered.base_seq,
                    "checkpoint_seq": (
                        self.recovered.checkpoint.seq if self.recovered.checkpoint else None
                    ),
                }
            ),
            "protocol_status": process.jsonable(status),
            "resources": process_resources(),
            "scheduler": sched.current(),  # run.scheduler as the kernel has it
            "cpus": sched.cpus(),  # the CPUs it may run on (one: run.cpu_affinity pinned it)
            "failure": self.failure_event,
            # what the Byzantine output did (per kind of lie; empty: honest or not yet active)
            "byzantine": dict(sum((o.byzantine for o in self.outputs), Counter())),
            "fatal": list(self.shared.fatal),
            "stuck_threads": self.stuck_threads,
            "ledger": [[seq, h.hex()] for seq, h in self.executor.ledger.chain()],
            # the seq the chain starts after, and its hash (0 and genesis unless this replica's
            # state was installed from an image at that seq): the audit compares from there
            "ledger_base": [ledger_base_seq, self.executor.ledger.hash_at(ledger_base_seq).hex()],
        }


def main(argv: list[str] | None = None) -> int:
    args = process.parse_args(
        "python -m fabric replica",
        __doc__.split("\n")[0],
        "replica id, 0..n-1",
        argv,
        restart=True,
    )
    built = process.build(
        "replica",
        args,
        lambda cfg, i: Replica(cfg, i, restarted=args.restart, run_dir=Path(args.run_dir)),
    )
    if built is None:
        return 2
    cfg, replica = built
    paths = RunPaths(Path(args.run_dir))
    stop = replica.shared.stop
    process.stop_on_signals(stop)
    control = ChildControl(on_stop=stop.set, ignore_stdin=args.ignore_stdin)
    failure = next(  # a stall is the runner's (SIGSTOP/SIGCONT), not the replica's to act
        (f for f in cfg.failures if f.replica == args.id and f.kind in REPLICA_FAILURE_KINDS), None
    )
    replica.start()
    ready_at = time.time()
    control.say("ready")
    print(
        f"replica {args.id}: ready ({cfg.protocol.name}, n={cfg.cluster.replicas}, "
        f"{len(replica.stages)} threads, proposer={replica.shared.is_proposer})",
        file=sys.stderr,
        flush=True,
    )
    if replica.unused_worker_threads > 0:
        print(
            f"replica {args.id}: {cfg.protocol.name} runs {len(replica.workers)} worker(s): "
            f"{replica.unused_worker_threads} of replica.worker_threads unused",
            file=sys.stderr,
            flush=True,
        )
    next_progress = time.monotonic() + 1.0
    while not stop.wait(0.1):
        now = time.time()
        replica.t0 = control.t0
        if failure is not None and replica.failure_event is None:
            zero = control.t0 if control.t0 is not None else ready_at
            if now >= zero + failure.at_s:
                replica.failure_event = {"kind": failure.kind, "at": now, "at_s": now - zero}
                print(
                    f"replica {args.id}: injected failure '{failure.kind}' at t={now - zero:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if failure.kind == "crash":
                    os._exit(CRASH_EXIT_CODE)
                if failure.kind in BYZANTINE_KINDS:
                    replica.failure_event["delay_ms"] = failure.delay_ms
                    replica.turn_byzantine()
                else:
                    replica.go_silent()
        if time.monotonic() >= next_progress:
            next_progress += 1.0
            control.say(replica.progress_line())
    replica.t0 = control.t0
    replica.shutdown()
    stats = replica.stats()
    process.write_json(paths.replica_stats(args.id), stats)
    why = "; ".join(replica.shared.fatal)
    print(
        f"replica {args.id}: stopped (executed seq {stats['executed_seq']}, "
        f"{stats['executed_txns']} txns){' FAILED: ' + why if why else ''}",
        file=sys.stderr,
        flush=True,
    )
    code = 1 if replica.shared.fatal or replica.stuck_threads else 0
    return process.leave(f"replica {args.id}", code, replica.stuck_threads, replica.context_closed)


if __name__ == "__main__":
    sys.exit(main())
