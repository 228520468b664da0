"""The deterministic simulator: n protocol instances and clients in virtual time from one seed.

One ``random.Random(seed)`` (owned here; protocols never see it) draws the fault plan,
every message delay, drop and duplicate, and the clients' pauses. Events live in one heap
ordered by (virtual tick, insertion number), so a seed replays exactly. Each message is
encoded with ``transport.wire.encode`` and decoded again (a configurable fraction of sends,
default all), so a message that cannot cross the wire fails the run.

Per replica the simulator plays the runtime's stages: a batch stage at the proposer
(verifies client signatures, cuts batches of ``batch_size`` requests or after
``batch_timeout_ticks``, calls ``propose`` while ``proposal_room() > 0``), the protocol,
timers in ticks, and an execute stage (fabric.sim.ledger: the runtime's ``Executor`` and
reply cache) that feeds ``executed`` back and answers clients. Clients are the runtime's
``ClientCore`` (fabric.sim.client adds the workload and liveness deadlines), accepting by
the protocol's ``reply_rule`` (with a slow path, as Zyzzyva's, the core's commit certificates
go to every replica).

Checks, on every step: no two honest replicas commit different batches (or chain heads) at
one sequence number; deliveries are in order without gaps; a committed entry is never
rolled back, nor is a result a client accepted lost (a replica that rolls one back must
execute the same outcome at that seq next: PoE re-executes what a new view keeps); honest stable checkpoints agree, and a
stable checkpoint makes speculative entries up to it committed (checked like the others).
At the end: honest ledgers' committed prefixes are prefixes of one another and agree with
every accepted result (speculative suffixes may still be rolled back).
Liveness: every request is accepted by ``max(submitted, fault_end) + liveness_ticks``.
The first violation stops the run; ``SimResult.replay`` is the one command that replays it.

Must not live here: fault plans and Byzantine rewriting (faults.py), the ledger (ledger.py),
argument parsing (cli.py).

Why ``Simulator`` is one class of about 1,000 lines: it is the event loop and one handler per
event kind (message, timer, executed, crash, restart, client submit/timeout/commit, state
transfer) over one shared virtual-time state (the heap, the replicas, their executors and
timers, the clients, the fault plan, the trace digest); every handler reads and writes most
of it. What stands alone already lives beside it (faults, ledger, client, lanes, cli).
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import random
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fabric.runtime.lanes import has_lanes
from fabric.runtime.state_transfer import Arm, Installed, Out, StateTransfer, executor_images
from fabric.sim.client import Accepted, SimClient
from fabric.sim.faults import ALL_MIXES, MIXES, ByzantineMutator, FaultPlan, make_plan
from fabric.sim.lanes import SplitLanes
from fabric.sim.ledger import Entry, LedgerError, SimExecution, sim_txns
from fabric.sim.verifier import FakeVerifier, SimKeys, signed_request
from protocols import registry
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    FetchState,
    Protocol,
    ProtocolConfig,
    Rollback,
    Send,
    SetTimer,
    StableCheckpoint,
    ViewEntered,
)
from protocols.common import Batch, Reply, Request, make_batch
from protocols.state_transfer import StateChunk, StateRequest
from transport import wire

_ST_MESSAGES = (StateChunk, StateRequest)

#: ClientCore counters a SimResult reports (as client_<name>): what it refused and why
CLIENT_COUNTERS = (
    "bad_replies",
    "late_replies",
    "duplicate_replies",
    "mismatched_replies",
    "speculative_replies_ignored",
    "reply_keys_capped",
    "view_changes_seen",
)
#: and those of a client with a slow path (Zyzzyva): which path completed each request
SLOW_PATH_COUNTERS = ("fast_path_accepted", "slow_path_accepted", "commits_sent")

# event types (the third element of a heap entry)
_MSG, _TIMER, _EXECUTED, _CUT, _SUBMIT, _CLIENT_TIMEOUT, _CRASH, _CLIENT_COMMIT, _RESTART = range(9)
#: the state transfer's one retry timer, per replica (fabric.runtime.state_transfer)
_ST_TIMER = ("state_transfer",)
#: ticks without a chunk before the state transfer asks the next peer
ST_RETRY_TICKS = 20
_EVENT_NAMES = (
    "msg",
    "timer",
    "executed",
    "cut",
    "submit",
    "client_timeout",
    "crash",
    "client_commit",
)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The workload, network and bounds of one simulated run. Times are virtual ticks."""

    clients: int = 2
    requests: int = 4  # per client
    in_flight: int = 2  # outstanding requests per client
    batch_size: int = 2  # requests per proposal
    batch_timeout_ticks: float = 1.0  # a proposer cuts a partial batch after this long
    base_delay_ticks: float = 1.0  # every message takes at least this long
    jitter_ticks: float = 0.5  # mean of the exponential extra delay (always on)
    fault_window_ticks: float = 400.0  # faulty mixes inject network faults before this tick
    think_ticks: float = 200.0  # a client pauses uniform(0, think_ticks) before each request
    # a client re-sends to all replicas after this long; re-sends stop at the request's
    # liveness deadline, so at most (fault window + liveness_ticks) / timeout of them
    request_timeout_ticks: float = 150.0
    liveness_ticks: float = 4000.0  # every request completes this long after faults stop
    checkpoint_period: int = 5
    watermark_window: int = 10
    view_change_ticks: int = 100
    max_buffered: int = 10_000
    params: Mapping[str, Any] = field(default_factory=dict)
    codec_fraction: float = (
        1.0  # share of sent messages that cross wire.encode/decode (a broadcast is encoded once)
    )
    max_events: int = 300_000
    max_in_flight: int = 50_000  # messages in the network at once
    max_pending_requests: int = 1024  # per proposer's batch stage
    max_proposed_keys: int = 4096  # per proposer: requests remembered as proposed this view
    # a protocol with lanes (RCC) runs its instances on this many workers, split as the
    # runtime splits them (replica.worker_threads; fabric/sim/lanes.py); 1: one worker
    worker_threads: int = 1
    # after the clients are done (and the faults over), keep running this long, then demand
    # that every honest replica that did not crash caught up: its ledger reaches the
    # longest honest final prefix with the same head ("lagging" otherwise). 0: stop at once.
    settle_ticks: float = 0.0
    trace: bool = False  # keep a readable line per event in SimResult.trace
    trace_limit: int = 100_000  # lines kept at most


DEFAULT_OPTIONS = SimOptions()


@dataclass(frozen=True, slots=True)
class Violation:
    """What went wrong, where: ``kind`` is a short token (agreement, gap, liveness, ...)."""

    kind: str
    step: int
    tick: float
    detail: str


@dataclass(slots=True)
class SimResult:
    protocol: str
    n: int
    seed: int
    faults: str
    plan: str
    outcome: str  # ok | violation | liveness | bound
    violation: Violation | None
    replay: str
    steps: int
    virtual_ticks: float
    committed: int  # highest sequence number an honest replica executed
    requests_total: int
    requests_accepted: int
    sent_by_kind: dict[str, int]
    counters: dict[str, int]
    latency_ticks_max: float
    latency_ticks_mean: float
    trace_digest: str
    wall_s: float
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def report(self) -> str:
        """A few lines for a human: outcome, plan, violation and the replay command."""
        lines = [
            f"seed {self.seed} [{self.faults}] {self.outcome}: {self.plan}",
            f"  steps={self.steps} ticks={self.virtual_ticks:.0f} committed={self.committed} "
            f"accepted={self.requests_accepted}/{self.requests_total} digest={self.trace_digest[:16]}",
        ]
        if self.violation is not None:
            v = self.violation
            lines.append(f"  {v.kind} at step {v.step} (tick {v.tick:.2f}): {v.detail}")
            lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)


class _Stop(Exception):
    def __init__(self, outcome: str, violation: Violation) -> None:
        super().__init__(violation.detail)
        self.outcome = outcome
        self.violation = violation


def _short(obj: Any, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def protocol_class(protocol: str | type[Protocol]) -> type[Protocol]:
    return registry.get(protocol) if isinstance(protocol, str) else protocol


def replay_command(
    protocol: str | type[Protocol], n: int, seed: int, faults: str, options: SimOptions
) -> str:
    """The one command that replays a seed (options the CLI cannot set are listed after it)."""
    name = protocol if isinstance(protocol, str) else protocol.name
    cmd = f"python -m fabric sim --protocol {name} --replicas {n} --seed {seed} --faults {faults}"
    cli_flags = {
        "clients": "--clients",
        "requests": "--requests",
        "in_flight": "--in-flight",
        "batch_size": "--batch-size",
        "worker_threads": "--worker-threads",
    }
    for attr, flag in cli_flags.items():
        value = getattr(options, attr)
        if value != getattr(DEFAULT_OPTIONS, attr):
            cmd += f" {flag} {value}"
    for key, value in sorted(options.params.items()):
        cmd += f" --param {key}={value}"
    other = [
        f"{name_}={getattr(options, name_)!r}"
        for name_ in SimOptions.__dataclass_fields__
        if name_ not in cli_flags
        and name_ not in ("trace", "trace_limit", "params")
        and getattr(options, name_) != getattr(DEFAULT_OPTIONS, name_)
    ]
    if other:
        cmd += "  # with SimOptions(" + ", ".join(other) + ")"
    if not isinstance(protocol, str):
        cmd += f"  # protocol class {protocol.__module__}.{protocol.__qualname__}"
    return cmd


class Simulator:
    """One run: build it, call ``run()`` once, read the SimResult."""

    def __init__(
        self,
        protocol: str | type[Protocol],
        n: int,
        seed: int,
        faults: str = "none",
        options: SimOptions = DEFAULT_OPTIONS,
        plan: FaultPlan | None = None,
    ) -> None:
        """``plan``: a targeted schedule written by hand (a test's), instead of drawing the
        plan of mix ``faults`` from the seed."""
        if n < 4:
            raise ValueError(f"n={n}: the simulator needs n >= 4 replicas (n >= 3f+1, f >= 1)")
        self.cls = protocol_class(protocol)
        self.protocol_arg = protocol
        self.n = n
        self.f = (n - 1) // 3
        self.seed = seed
        self.faults = faults
        self.opt = options
        self.rng = random.Random(seed)
        params = dict(options.params)
        primary = self.cls.client_target(0, n, n, params)
        self.plan: FaultPlan = plan or make_plan(
            faults, self.rng, n, self.f, primary, options.fault_window_ticks
        )
        self.byzantine = self.plan.byzantine_ids()
        self.keys = SimKeys(seed)
        self.mutator = ByzantineMutator(self.plan, self.rng, sign=self.keys.signature)
        self.config_args = dict(
            n=n,
            checkpoint_period=options.checkpoint_period,
            watermark_window=options.watermark_window,
            view_change_ticks=options.view_change_ticks,
            max_buffered=options.max_buffered,
            params=params,
        )
        self.replicas: list[Protocol] = []
        self.execs = [SimExecution(r, n) for r in range(n)]
        self.max_ticks = (
            options.fault_window_ticks
            + options.liveness_ticks
            + options.requests * (options.think_ticks + options.liveness_ticks)
            + options.settle_ticks
        )
        rule = self.rule = self.cls.reply_rule(n, self.f)
        # the slow path (a rule with a commit quorum: Zyzzyva), in ticks as the core counts
        self.commit_wait_ticks = float(self.cls.commit_wait_ticks(params))
        make_commit = None
        if rule.commit_quorum:
            cls = self.cls

            def make_commit(client_id: int, ts: int, replies: tuple[Reply, ...]) -> Any:
                return cls.commit_message(client_id, ts, replies, params)

        self.clients = [
            SimClient(
                n + c,
                n,
                self.f,
                rule,
                options.requests,
                options.in_flight,
                options.request_timeout_ticks,
                self.max_ticks,
                commit_wait_ticks=self.commit_wait_ticks,
                make_commit=make_commit,
            )
            for c in range(options.clients)
        ]
        self.params = params
        # runtime state
        self.now = 0.0
        self.steps = 0
        self.heap: list[tuple] = []
        self._ctr = 0
        self.in_flight = 0
        self.crashed: set[int] = set()
        self.timers: list[dict[Hashable, int]] = [{} for _ in range(n)]
        self._timer_gen = 0
        self.pending: list[deque[tuple[float, Request]]] = [deque() for _ in range(n)]
        self.pending_keys: list[set[tuple[int, int]]] = [set() for _ in range(n)]
        self.proposed: list[dict[tuple[int, int], None]] = [{} for _ in range(n)]
        self.views = [0] * n
        self.link_sent: dict[tuple[int, int], int] = {}  # messages sent per (source, target)
        # the last message that crossed the codec: (sent object, sender, decoded, frame)
        self._codec_last: tuple[Any, int, Any, bytes | None] = (None, -1, None, None)
        # checks
        self.committed: dict[int, tuple[bytes, bytes, int]] = {}  # seq -> digest, head, replica
        self.stable: dict[int, tuple[bytes, int]] = {}  # seq -> checkpoint digest, replica
        self.final_upto = [0] * n  # speculative entries up to here became final (StableCheckpoint)
        self.stable_mark = [0] * n  # highest StableCheckpoint seq per replica (may pass its ledger)
        # per replica: accepted results it rolled back, by seq; its next delivery there must
        # re-execute the same outcome (a rollback that loses an accepted result is a violation)
        self.redo: list[dict[int, list[Accepted]]] = [{} for _ in range(n)]
        # Twins: copy 0 of twin t is slot t, copy 1 lives in slot twin_base + k (past the
        # client ids); every per-replica list is indexed by slot
        self.twin_base = n + options.clients
        self.twin_slot = {t: self.twin_base + k for k, t in enumerate(self.plan.twins)}
        self.slot_id = {slot: t for t, slot in self.twin_slot.items()}
        pad = len(self.twin_slot) and self.twin_base + len(self.twin_slot) - n
        self.timers += [{} for _ in range(pad)]
        self.pending += [deque() for _ in range(pad)]
        self.pending_keys += [set() for _ in range(pad)]
        self.proposed += [{} for _ in range(pad)]
        self.redo += [{} for _ in range(pad)]
        self.views += [0] * pad
        self.final_upto += [0] * pad
        self.stable_mark += [0] * pad
        self.execs += [SimExecution(self.slot_id.get(s, 0), n) for s in range(n, n + pad)]
        self.accepted: dict[tuple[int, int], Accepted] = {}
        # state transfer per slot (the runtime's own StateTransfer), made on first use
        self.st: dict[int, StateTransfer] = {}
        self.restored_upto: dict[int, int] = {}  # slot -> seq its state was installed at
        # figures
        self.sent_by_kind: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.digest = hashlib.sha256(b"bft-sim-trace")
        self.trace: list[str] = []

    # --- plumbing ------------------------------------------------------------------------

    def _push(
        self, at: float, etype: int, a: Any = None, b: Any = None, c: Any = None, d: Any = None
    ) -> None:
        self._ctr += 1
        heapq.heappush(self.heap, (at, self._ctr, etype, a, b, c, d))

    def _stop(self, outcome: str, kind: str, detail: str) -> NoReturn:
        raise _Stop(outcome, Violation(kind, self.steps, self.now, detail))

    def _line(self, text: str) -> None:
        if len(self.trace) < self.opt.trace_limit:
            self.trace.append(f"{self.now:10.3f} #{self.steps:<6} {text}")

    def _honest(self, r: int) -> bool:
        return r < self.n and r not in self.byzantine

    def _id(self, slot: int) -> int:
        """The node id a slot speaks as (a twin's second copy speaks as the twin)."""
        return self.slot_id.get(slot, slot)

    def _twin_targets(self, src: int, twin: int) -> tuple[int, ...]:
        """The copies of ``twin`` that hear ``src`` now: both, unless a phase splits them."""
        both = (twin, self.twin_slot[twin])
        if self.n <= src < self.twin_base or self.now >= self.plan.fault_end:
            return both  # clients reach every copy; after the faults everyone does
        side = self.plan.twin_side(self._id(src), int(src >= self.twin_base), self.now)
        return both if side is None else (both[side],)

    def _twins_split(self, src: int, dst: int) -> bool:
        """True if a Twins phase puts replica slots ``src`` and ``dst`` on different sides."""
        plan = self.plan
        now = self.now
        a = plan.twin_side(self._id(src), int(src >= self.twin_base), now)
        b = plan.twin_side(self._id(dst), int(dst >= self.twin_base), now)
        return a is not None and b is not None and a != b

    def _call(self, r: int, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            actions = fn(*args)
        except _Stop:
            raise
        except Exception:
            if self._id(r) in self.twin_slot:
                # A twin is the Byzantine node: its honest code may trip an invariant only
                # a second copy of itself can break (a seq of its own view taken in its
                # name). It crashes, which a Byzantine node may do; honest ones never raise.
                self.crashed.add(r)
                self.counters["twin_copy_raised"] += 1
                if self.opt.trace:
                    self._line(f"r{self._id(r)} (slot {r}) twin copy raised in {what}: stops")
                return
            self._stop(
                "violation",
                "exception",
                f"replica {r} raised in {what}: {traceback.format_exc(limit=6)}",
            )
        self._apply(r, actions, what)

    # --- network -------------------------------------------------------------------------

    def _transmit(self, src: int, dst: int, msg: Any, mutate: bool = True) -> None:
        """Put ``msg`` on the wire from slot ``src`` to node ``dst`` under the fault plan."""
        if self.twin_slot and dst in self.twin_slot:
            if self._id(src) == dst:
                self._transmit_one(src, src, msg, mutate)  # a copy's message to itself
                return
            for slot in self._twin_targets(src, dst):
                self._transmit_one(src, slot, msg, mutate)
            return
        self._transmit_one(src, dst, msg, mutate)

    def _transmit_one(self, src: int, dst: int, msg: Any, mutate: bool = True) -> None:
        n = self.n
        sid = self._id(src)
        if mutate and src < n and src in self.mutator.behaviour and dst != src:
            if isinstance(msg, Reply):
                msg = self.mutator.reply(src, msg)
            else:
                msg = self.mutator.outgoing(src, dst, msg)
            if msg is None:
                self.counters["byzantine_silenced"] += 1
                return
        self.sent_by_kind[type(msg).__name__] += 1
        if src in self.crashed or dst in self.crashed:
            self.counters["crash_dropped"] += 1
            return
        plan = self.plan
        faulty_now = self.now < plan.fault_end and src != dst
        if faulty_now and plan.twin_phases and not (n <= src < self.twin_base):
            if not (n <= dst < self.twin_base) and self._twins_split(src, dst):
                self.counters["twins_split_dropped"] += 1
                return
        if faulty_now and plan.kind_cuts:
            for k in plan.kind_cuts:
                if k.cuts(sid, dst, msg, self.now):
                    self.counters["kind_cut_dropped"] += 1
                    return
        if faulty_now and src < n and dst < n:
            for p in plan.partitions:
                if p.splits(src, dst, self.now):
                    self.counters["partition_dropped"] += 1
                    return
            for cut in plan.lane_cuts:
                if cut.cuts(dst, msg, self.now):
                    self.counters["lane_cut_dropped"] += 1
                    return
        rng = self.rng
        if faulty_now and plan.drop_p and rng.random() < plan.drop_p:
            self.counters["dropped"] += 1
            return
        copies = 1
        if faulty_now and plan.dup_p and rng.random() < plan.dup_p:
            copies = 2
            self.counters["duplicated"] += 1
        opt = self.opt
        link = (sid, dst)
        index = self.link_sent.get(link, 0) + 1
        self.link_sent[link] = index
        frame = None
        if msg is self._codec_last[0] and sid == self._codec_last[1]:
            msg, frame = self._codec_last[2], self._codec_last[3]  # one broadcast: encode once
        elif opt.codec_fraction >= 1.0 or rng.random() < opt.codec_fraction:
            original = msg
            msg, frame = self._roundtrip(sid, msg)
            self._codec_last = (original, sid, msg, frame)
        for _ in range(copies):
            if src == dst:
                delay = 0.0
            else:
                delay = opt.base_delay_ticks
                if opt.jitter_ticks:
                    delay += rng.expovariate(1.0 / opt.jitter_ticks)
                if faulty_now and plan.jitter_ticks:
                    delay += rng.expovariate(1.0 / plan.jitter_ticks)
            self.in_flight += 1
            if self.in_flight > opt.max_in_flight:
                self._stop(
                    "bound", "max_in_flight", f"more than {opt.max_in_flight} messages in flight"
                )
            self._push(self.now + delay, _MSG, dst, sid, msg, (frame, index))

    def _roundtrip(self, src: int, msg: Any) -> tuple[Any, bytes]:
        try:
            frame = wire.encode(msg, src)
        except Exception as exc:
            self._stop(
                "violation", "codec", f"{type(msg).__name__} from {src} cannot be encoded: {exc!r}"
            )
        try:
            sender, decoded = wire.decode(frame)
        except wire.DecodeError as exc:
            self._stop(
                "violation", "codec", f"{type(msg).__name__} from {src} does not decode: {exc}"
            )
        if sender != src or decoded != msg:
            self._stop(
                "violation",
                "codec",
                f"{type(msg).__name__} from {src} changes across the wire: {_short(msg)} -> {_short(decoded)}",
            )
        self.counters["codec_roundtrips"] += 1
        return decoded, frame

    # --- actions -------------------------------------------------------------------------

    def _apply(self, r: int, actions: Any, what: str, skip: frozenset[int] = frozenset()) -> None:
        """Carry out ``actions`` of replica ``r``; sends to ``skip`` are left out."""
        if type(actions) is not list:
            self._stop("violation", "bad_action", f"replica {r} {what} returned {_short(actions)}")
        n_nodes = self.n + len(self.clients)
        for a in actions:
            t = type(a)
            if t is Send:
                if type(a.to) is not int or not 0 <= a.to < n_nodes:
                    self._stop("violation", "bad_action", f"replica {r}: {_short(a)}")
                if a.to not in skip:
                    self._transmit(r, a.to, a.msg)
            elif t is Broadcast:
                me = self._id(r)
                for dst in range(self.n):
                    if dst != me and dst not in skip:
                        self._transmit(r, dst, a.msg)
            elif t is Deliver:
                self._deliver(r, a)
            elif t is Rollback:
                self._rollback(r, a.to_seq)
            elif t is SetTimer:
                if type(a.ticks) is not int or a.ticks < 0:
                    self._stop("violation", "bad_action", f"replica {r}: {_short(a)}")
                self._timer_gen += 1
                self.timers[r][a.timer] = self._timer_gen
                self._push(self.now + a.ticks, _TIMER, r, a.timer, self._timer_gen)
            elif t is CancelTimer:
                self.timers[r].pop(a.timer, None)
            elif t is StableCheckpoint:
                self._stable_checkpoint(r, a)
            elif t is FetchState:
                self.counters["state_fetches"] += 1
                if self.opt.trace:
                    self._line(f"r{r} FETCH-STATE seq={a.seq} digest={a.digest.hex()[:12]}")
                self._st_outputs(r, self._st(r).fetch(a.seq, a.digest, a.proof))
            elif t is ViewEntered:
                if a.view > self.views[r]:
                    self.counters["view_changes"] += 1
                self.views[r] = a.view
                self.proposed[r].clear()
                if self.opt.trace:
                    self._line(f"r{r} new view {a.view} primary {a.primary}")
            else:
                self._stop(
                    "violation", "bad_action", f"replica {r} {what}: unknown action {_short(a)}"
                )

    # --- state transfer (the runtime's StateTransfer, over the simulated network) ----------

    def _st(self, r: int) -> StateTransfer:
        st = self.st.get(r)
        if st is None:
            st = StateTransfer(
                self._id(r),
                self.n,
                executor_images(self.execs[r].executor),
                retry_ticks=ST_RETRY_TICKS,
            )
            self.st[r] = st
        return st

    def _st_outputs(self, r: int, outs: list[Any]) -> None:
        for o in outs:
            t = type(o)
            if t is Out:
                self._transmit(r, o.to, o.msg)
            elif t is Arm:
                self._timer_gen += 1
                self.timers[r][_ST_TIMER] = self._timer_gen
                self._push(self.now + o.ticks, _TIMER, r, _ST_TIMER, self._timer_gen)
            elif t is Installed:
                self._install(r, o)
        st = self.st.get(r)
        if st is not None and st.target is not None:
            st.reached(self.execs[r].last_seq)

    def _install(self, r: int, done: Installed) -> None:
        """A verified image arrived: install it (the runtime's execute stage does the same)
        unless execution got there by batches meanwhile, then tell the protocol."""
        ledger = self.execs[r]
        seq = done.image.seq
        if ledger.last_seq >= seq:
            self.counters["state_not_needed"] += 1
            return
        if self._honest(r):
            known = self.stable.get(seq)
            if known is not None and known[0] != done.digest:
                self._stop(
                    "violation",
                    "state_transfer",
                    f"replica {r} installed state {done.digest.hex()[:16]} at seq {seq}; "
                    f"replica {known[1]} holds stable digest {known[0].hex()[:16]} there",
                )
        ledger.install(done.image)
        self.restored_upto[r] = seq
        self.final_upto[r] = max(self.final_upto[r], seq)
        self.redo[r] = {s: accs for s, accs in self.redo[r].items() if s > seq}
        self.counters["states_installed"] += 1
        if self.opt.trace:
            self._line(f"r{r} STATE-INSTALLED seq={seq} digest={done.digest.hex()[:12]}")
        proto = self.replicas[r]
        self._call(r, "state_installed", proto.state_installed, seq, done.digest, done.proof)

    def _restart(self, r: int, durable: bool) -> None:
        """Start crashed replica ``r`` again: a new protocol instance; with ``durable`` the
        state it had made final survives (as the persist stage wrote it), else nothing."""
        old = self.execs[r]
        image = None
        if durable and old.last_seq > old.base_seq:
            ex = old.executor
            if ex.speculative_batches():
                ex.rollback(ex.last_seq - ex.speculative_batches())  # never persisted
            image = ex.export_image()
        fresh = SimExecution(r, self.n)
        fresh.executor.checkpoint_period = old.executor.checkpoint_period
        self.execs[r] = fresh
        self.st.pop(r, None)
        cfg = ProtocolConfig(replica_id=r, **self.config_args)  # type: ignore[arg-type]
        proto: Any = self.cls(cfg, FakeVerifier(r, self.keys))
        if self.opt.worker_threads > 1 and has_lanes(proto):
            proto = SplitLanes(proto, self.opt.worker_threads)
        self.replicas[r] = proto
        self.crashed.discard(r)
        self.timers[r].clear()
        self.views[r] = 0
        self.final_upto[r] = 0
        self.stable_mark[r] = 0
        self.redo[r] = {}
        self.proposed[r].clear()
        self.counters["restarts"] += 1
        if self.opt.trace:
            what = f"durable state at seq {image.seq}" if image is not None else "no state"
            self._line(f"r{r} RESTART with {what}")
        # the runtime does the same at start (fabric.runtime.replica): what was reloaded, or
        # seq 0 with nothing, so the protocol asks its peers where they are
        seq, digest = 0, fresh.head
        if image is not None:
            digest = fresh.install(image)
            seq = self.final_upto[r] = image.seq
        self.restored_upto[r] = seq
        self._call(r, "state_installed", proto.state_installed, seq, digest, ())

    def _deliver(self, r: int, a: Deliver) -> None:
        if a.seq <= self.restored_upto.get(r, 0):
            # below an installed image or a restart's reloaded state: the runtime's execute
            # stage skips it (ExecuteStage.restored_upto); so does the simulator
            self.counters["delivers_below_state"] += 1
            return
        try:
            entry, replies = self.execs[r].deliver(a)
        except LedgerError as exc:
            if self._honest(r):
                self._stop("violation", exc.kind, f"replica {r}: {exc.detail}")
            self.counters["byzantine_ledger_errors"] += 1
            return
        redo = self.redo[r]
        if redo:
            for acc in redo.pop(entry.seq, ()):
                key = (acc.client, acc.timestamp)
                at = entry.requests.index(key) if key in entry.requests else -1
                if at < 0 or entry.results[at] != acc.result:
                    self._stop(
                        "violation",
                        "rollback_accepted",
                        f"replica {r} rolled back seq {entry.seq}, whose result client "
                        f"{acc.client} accepted for timestamp {acc.timestamp}, and executed "
                        f"another outcome there",
                    )
                self.counters["accepted_reexecuted"] += 1
        if self.opt.trace:
            self._line(
                f"r{r} DELIVER seq={a.seq} view={a.view} digest={entry.digest.hex()[:12]} "
                f"requests={list(entry.requests)} spec={a.speculative} head={entry.head.hex()[:12]}"
            )
        if self._honest(r):
            self.counters["deliveries"] += 1
            if not a.speculative:
                self._check_commit(r, entry)
            elif entry.seq <= self.stable_mark[r]:
                self._finalize(r, self.stable_mark[r])  # the Executor holds it final already
        for reply in replies:
            self._transmit(r, reply.client_id, reply)
        st = self.st.get(r)
        if st is not None and st.target is not None:
            st.reached(entry.seq)  # caught up by batches: the fetch is moot (as the runtime)
        if self.execs[r].executor.is_checkpoint(entry.seq):
            # executed feedback at checkpoint seqs only, as the runtime's execute stage
            self._push(self.now, _EXECUTED, r, entry.seq, entry.head)

    def _check_commit(self, r: int, entry: Entry) -> None:
        prev = self.committed.get(entry.seq)
        if prev is None:
            self.committed[entry.seq] = (entry.digest, entry.head, r)
            return
        digest, head, other = prev
        if digest != entry.digest:
            self._stop(
                "violation",
                "agreement",
                f"seq {entry.seq}: replica {other} committed batch {digest.hex()[:16]}, "
                f"replica {r} committed {entry.digest.hex()[:16]}",
            )
        if head != entry.head:
            self._stop(
                "violation",
                "prefix",
                f"seq {entry.seq}: same batch but ledgers of replicas {other} and {r} differ below it",
            )

    def _rollback(self, r: int, to_seq: int) -> None:
        try:
            removed = self.execs[r].rollback(to_seq)
        except LedgerError as exc:
            if self._honest(r):
                self._stop("violation", exc.kind, f"replica {r}: {exc.detail}")
            self.counters["byzantine_ledger_errors"] += 1
            return
        self.counters["rolled_back"] += len(removed)
        if self.opt.trace:
            self._line(f"r{r} ROLLBACK to {to_seq} ({len(removed)} entries)")
        if not self._honest(r):
            return
        for e in removed:
            for key, result in zip(e.requests, e.results, strict=True):
                acc = self.accepted.get(key)
                if acc is not None and acc.seq == e.seq and acc.result == result:
                    # allowed only to re-execute it at once (PoE re-executes the entries a
                    # new view keeps, so its replies carry the new view): _deliver checks
                    self.redo[r].setdefault(e.seq, []).append(acc)

    def _stable_checkpoint(self, r: int, a: StableCheckpoint) -> None:
        self.counters["stable_checkpoints"] += 1
        self.execs[r].commit_upto(a.seq)  # as the runtime's checkpoint stage does (E_COMMIT)
        self.stable_mark[r] = max(self.stable_mark[r], a.seq)
        if not self._honest(r):
            return
        own = self.execs[r].head_at(a.seq)
        if own is not None and own != a.digest:
            self._stop(
                "violation",
                "checkpoint",
                f"replica {r}: stable checkpoint at seq {a.seq} has digest {a.digest.hex()[:16]}, "
                f"its ledger head there is {own.hex()[:16]}",
            )
        prev = self.stable.get(a.seq)
        if prev is None:
            self.stable[a.seq] = (a.digest, r)
        elif prev[0] != a.digest:
            self._stop(
                "violation",
                "checkpoint",
                f"seq {a.seq}: replicas {prev[1]} and {r} hold different stable checkpoints",
            )
        self._finalize(r, a.seq)

    def _finalize(self, r: int, seq: int) -> None:
        """A stable checkpoint makes speculative entries up to ``seq`` final (PoE): from now on
        rolling them back is a violation, and they must agree with every other commit."""
        ledger = self.execs[r]
        upto = min(seq, ledger.last_seq)
        for s in range(self.final_upto[r] + 1, upto + 1):
            entry = ledger.entries[s - 1]
            if entry is not None and entry.speculative:
                entry.speculative = False
                self._check_commit(r, entry)
        self.final_upto[r] = max(self.final_upto[r], upto)

    # --- replica-side stages -------------------------------------------------------------

    def _on_request(self, r: int, src: int, req: Request) -> None:
        cached = self.execs[r].cached_reply(req.client_id, req.timestamp)
        if cached is not None:
            self.counters["replies_resent"] += 1
            self._transmit(r, req.client_id, cached)
            if cached.speculative:
                # The client still lacks a quorum for a speculative result: a speculative
                # protocol (PoE) is told, as the runtime would (it may suspect its primary).
                proto = self.replicas[r]
                self._call(r, "receive", proto.receive, src, req)
            return
        proto = self.replicas[r]
        if not proto.is_proposer():
            self._call(r, "receive", proto.receive, src, req)
            return
        if not proto.verifier.verify_request(req):
            self.counters["bad_request_signature"] += 1
            return
        key = (req.client_id, req.timestamp)
        if key in self.pending_keys[r] or key in self.proposed[r]:
            self.counters["duplicate_requests"] += 1
            return
        if len(self.pending[r]) >= self.opt.max_pending_requests:
            self.counters["pending_full"] += 1
            return
        self.pending[r].append((self.now, req))
        self.pending_keys[r].add(key)
        if len(self.pending[r]) < self.opt.batch_size:
            self._push(self.now + self.opt.batch_timeout_ticks, _CUT, r)

    def _after(self, r: int) -> None:
        """Batch stage: cut and propose while the protocol has room."""
        pending = self.pending[r]
        if not pending or r in self.crashed:
            return
        proto = self.replicas[r]
        if not proto.is_proposer():
            self.counters["pending_dropped"] += len(pending)
            pending.clear()
            self.pending_keys[r].clear()
            return
        size = self.opt.batch_size
        timeout = self.opt.batch_timeout_ticks
        proposed = self.proposed[r]
        while pending and (len(pending) >= size or self.now - pending[0][0] >= timeout):
            if proto.proposal_room() <= 0:
                self.counters["proposal_window_full"] += 1
                return
            reqs = []
            while pending and len(reqs) < size:
                req = pending.popleft()[1]
                key = (req.client_id, req.timestamp)
                self.pending_keys[r].discard(key)
                proposed[key] = None
                reqs.append(req)
            while len(proposed) > self.opt.max_proposed_keys:
                proposed.pop(next(iter(proposed)))
            batch = make_batch(tuple(reqs))
            self.counters["proposals"] += 1
            if self.opt.trace:
                self._line(
                    f"r{r} PROPOSE {batch.digest.hex()[:12]} requests={[(q.client_id, q.timestamp) for q in reqs]}"
                )
            if self.mutator.behaviour.get(r) == "equivocate":
                self._propose_twice(r, proto, batch)
            else:
                self._call(r, "propose", proto.propose, batch)
            if not proto.is_proposer():
                break

    def _propose_twice(self, r: int, proto: Protocol, batch: Batch) -> None:
        """An equivocating proposer: group B gets the proposal of an alternative batch.

        A copy of the replica's state (its own key included: it signs validly as itself)
        proposes the alternative; only its sends reach group B, unchanged. The real
        instance proposes ``batch``; its sends reach everyone else. Later messages about the
        batch are rewritten per recipient by the ByzantineMutator (digest A -> digest B).
        """
        group_b = self.mutator.group_b
        alternative = self.mutator.alternative(batch)
        if alternative is not batch:
            try:
                shadow = copy.deepcopy(proto, {id(proto.verifier): proto.verifier})
                shadow_actions = shadow.propose(alternative)
            except Exception:
                self._stop(
                    "violation",
                    "exception",
                    f"replica {r} (copy) raised in propose: {traceback.format_exc(limit=6)}",
                )
            self.counters["byzantine_equivocate"] += 1
            for a in shadow_actions:
                if type(a) is Send and a.to in group_b:
                    self._transmit(r, a.to, a.msg, mutate=False)
                elif type(a) is Broadcast:
                    for dst in sorted(group_b):
                        if dst != r:
                            self._transmit(r, dst, a.msg, mutate=False)
        else:
            group_b = frozenset()
        try:
            actions = proto.propose(batch)
        except Exception:
            self._stop(
                "violation",
                "exception",
                f"replica {r} raised in propose: {traceback.format_exc(limit=6)}",
            )
        self._apply(r, actions, "propose", skip=group_b)

    # --- clients -------------------------------------------------------------------------

    def _client(self, node: int) -> SimClient:
        return self.clients[node - self.n]

    def _schedule_submit(self, client: SimClient) -> None:
        if client.issued + client.scheduled < client.total:
            client.scheduled += 1
            self._push(self.now + self.rng.uniform(0, self.opt.think_ticks), _SUBMIT, client.id)

    def _submit(self, client: SimClient) -> None:
        client.scheduled -= 1
        if not client.can_submit():
            return
        ts = client.next_timestamp()
        req = signed_request(self.keys, client.id, ts, sim_txns(client.id, ts))
        deadline = max(self.now, self.plan.fault_end) + self.opt.liveness_ticks
        client.submit(req, self.now, deadline)
        target = self.cls.client_target(client.view, client.id, self.n, self.params)
        if type(target) is not int or not 0 <= target < self.n:
            self._stop("violation", "bad_action", f"client_target returned {target!r}")
        if self.opt.trace:
            self._line(f"c{client.id} SUBMIT ts={ts} -> r{target}")
        self._transmit(client.id, target, req)
        self._arm_client_timer(client, ts)
        if self.rule.commit_quorum:
            self._push(self.now + self.commit_wait_ticks, _CLIENT_COMMIT, client.id)

    def _arm_client_timer(self, client: SimClient, ts: int) -> None:
        """Wake the client when the core's re-send timeout of ``ts`` passes (or its deadline)."""
        pending = client.pending[ts]
        at = min(self.now + self.opt.request_timeout_ticks, pending.deadline)
        self._push(at, _CLIENT_TIMEOUT, client.id, ts)

    def _client_timeout(self, client: SimClient, ts: int) -> None:
        pending = client.pending.get(ts)
        if pending is None:
            return
        if self.now >= pending.deadline:
            entry = client.outstanding.get(ts)
            votes = {k: sorted(v) for k, v in entry.votes.items()} if entry is not None else {}
            self._stop(
                "liveness",
                "liveness",
                f"client {client.id} request {ts} (submitted at tick {pending.submitted:.0f}) "
                f"not accepted by tick {pending.deadline:.0f} after {client.retries(ts)} "
                f"re-sends; replies held: {_short(votes, 400)}",
            )
        for req in client.due_resends(self.now):
            self.counters["client_resends"] += 1
            if self.opt.trace:
                self._line(f"c{client.id} TIMEOUT ts={req.timestamp}: re-send to all")
            for r in range(self.n):
                self._transmit(client.id, r, req)
            self._arm_client_timer(client, req.timestamp)
        self._client_commits(client)

    def _client_commits(self, client: SimClient) -> None:
        """The slow path: send every commit certificate the client's core has due."""
        for commit in client.core.due_commits(self.now):
            self.counters["client_commits"] += 1
            if self.opt.trace:
                self._line(f"c{client.id} COMMIT {_short(commit, 120)}")
            for r in range(self.n):
                self._transmit(client.id, r, commit)

    def _client_receive(self, client: SimClient, src: int, msg: Any) -> None:
        if not isinstance(msg, Reply):
            self.counters["client_not_a_reply"] += 1
            return
        acc = client.on_reply(src, msg, self.now)
        if acc is None:
            if self.rule.commit_quorum:
                self._client_commits(client)
            return
        self.accepted[(acc.client, acc.timestamp)] = acc
        if self.opt.trace:
            self._line(
                f"c{client.id} ACCEPT ts={acc.timestamp} seq={acc.seq} result={acc.result.hex()[:12]}"
            )
        self._schedule_submit(client)

    # --- the loop ------------------------------------------------------------------------

    def _start(self) -> None:
        for r in range(self.n):
            try:
                cfg = ProtocolConfig(replica_id=r, **self.config_args)  # type: ignore[arg-type]
                proto: Any = self.cls(cfg, FakeVerifier(r, self.keys))
                if self.opt.worker_threads > 1 and has_lanes(proto):
                    proto = SplitLanes(proto, self.opt.worker_threads)
                self.replicas.append(proto)
            except Exception:
                self._stop(
                    "violation",
                    "exception",
                    f"replica {r} constructor: {traceback.format_exc(limit=4)}",
                )
        for r, at in self.plan.crashes:
            self._push(at, _CRASH, r)
        for r, down, up, durable in self.plan.restarts:
            self._push(down, _CRASH, r)
            self._push(up, _RESTART, r, durable)
        for r, proto in enumerate(self.replicas):  # images kept at the protocol's checkpoints
            period = getattr(proto, "checkpoint_seq_period", None)
            if period is not None:
                self.execs[r].executor.checkpoint_period = period()
        if self.twin_slot:  # Twins: a second honest copy of each twin, same id and keys
            self.replicas += [None] * (self.twin_base - self.n)  # type: ignore[list-item]
            for t in self.plan.twins:
                cfg = ProtocolConfig(replica_id=t, **self.config_args)  # type: ignore[arg-type]
                self.replicas.append(self.cls(cfg, FakeVerifier(t, self.keys)))
        for client in self.clients:
            for _ in range(min(client.in_flight, client.total)):
                self._schedule_submit(client)

    def run(self) -> SimResult:
        started = time.perf_counter()
        outcome, violation = "ok", None
        try:
            self._start()
            self._loop()
            self._final_checks()
        except _Stop as stop:
            outcome, violation = stop.outcome, stop.violation
            if self.opt.trace:
                self._line(f"STOP {violation.kind}: {violation.detail}")
        return self._result(outcome, violation, time.perf_counter() - started)

    def _loop(self) -> None:
        heap = self.heap
        n = self.n
        opt = self.opt
        trace = opt.trace
        update = self.digest.update
        link_delivered: dict[tuple[int, int], int] = {}
        clients_left = sum(1 for c in self.clients if not c.done)
        settle_until: float | None = None
        while heap:
            if not clients_left:
                if not opt.settle_ticks:
                    break
                if settle_until is None:
                    settle_until = max(self.now, self.plan.fault_end) + opt.settle_ticks
                if heap[0][0] > settle_until:
                    break
            if self.steps >= opt.max_events:
                self._stop("bound", "max_events", f"more than {opt.max_events} events")
            at, _, etype, a, b, c, d = heapq.heappop(heap)
            if at > self.max_ticks:
                self._stop("bound", "max_ticks", f"virtual time passed {self.max_ticks:.0f} ticks")
            self.now = at
            self.steps += 1
            if etype == _MSG:
                self.in_flight -= 1
                dst, src, msg = a, b, c
                update(b"%r|m|%d|%d|" % (at, src, dst))
                frame, index = d
                update(frame if frame is not None else repr(msg).encode())
                link = (src, dst)
                if index < link_delivered.get(link, 0):
                    self.counters["reordered"] += 1
                else:
                    link_delivered[link] = index
                if trace:
                    self._line(f"{_node(src, n)} -> {_node(dst, n)} {_short(msg)}")
                if n <= dst < self.twin_base:
                    client = self._client(dst)
                    was_done = client.done
                    self._client_receive(client, src, msg)
                    clients_left -= client.done and not was_done
                    continue
                if dst in self.crashed:
                    self.counters["crash_dropped"] += 1
                    continue
                if dst in self.mutator.behaviour:
                    self.mutator.observe(msg)
                if isinstance(msg, Request):
                    self._on_request(dst, src, msg)
                elif type(msg) in _ST_MESSAGES:
                    self._st_outputs(dst, self._st(dst).receive(src, msg))
                else:
                    proto = self.replicas[dst]
                    self._call(dst, "receive", proto.receive, src, msg)
                self._after(dst)
            elif etype == _TIMER:
                r, timer, gen = a, b, c
                if r in self.crashed or self.timers[r].get(timer) != gen:
                    continue
                del self.timers[r][timer]
                update(b"%r|t|%d|" % (at, r) + repr(timer).encode())
                if trace:
                    self._line(f"r{r} timer {timer!r}")
                self.counters["timers_fired"] += 1
                if timer == _ST_TIMER:
                    self._st_outputs(r, self._st(r).timeout())
                    continue
                self._call(r, "timeout", self.replicas[r].timeout, timer)
                self._after(r)
            elif etype == _EXECUTED:
                r, seq, head = a, b, c
                if r in self.crashed or self.execs[r].head_at(seq) != head:
                    continue
                update(b"%r|e|%d|%d" % (at, r, seq))
                self._call(r, "executed", self.replicas[r].executed, seq, head)
                self._after(r)
            elif etype == _CUT:
                self._after(a)
            elif etype == _SUBMIT:
                update(b"%r|s|%d" % (at, a))
                self._submit(self._client(a))
            elif etype == _CLIENT_TIMEOUT:
                self._client_timeout(self._client(a), b)
            elif etype == _CLIENT_COMMIT:
                self._client_commits(self._client(a))
            elif etype == _CRASH:
                update(b"%r|c|%d" % (at, a))
                self.crashed.add(a)
                self.timers[a].clear()
                self.pending[a].clear()
                self.pending_keys[a].clear()
                self.counters["crashes"] += 1
                if trace:
                    self._line(f"r{a} CRASH")
            elif etype == _RESTART:
                update(b"%r|r|%d" % (at, a))
                self._restart(a, b)
                self._after(a)
        if clients_left:
            left = [c.id for c in self.clients if not c.done]
            self._stop("liveness", "liveness", f"no events left but clients {left} are not done")

    def _final_len(self, r: int) -> int:
        """Entries of replica ``r``'s ledger before its first speculative one."""
        for e in self.execs[r].entries:
            if e is not None and e.speculative:
                return e.seq - 1
        return self.execs[r].last_seq

    def _final_checks(self) -> None:
        # Committed (non-speculative) prefixes only: a replica of a speculative protocol may
        # end the run lagging in an old view with a speculative suffix it will roll back;
        # speculative entries were checked all along (rollback of accepted results).
        honest = [r for r in range(self.n) if self._honest(r)]
        final = {r: self._final_len(r) for r in honest}
        longest = max(honest, key=lambda r: final[r])
        ref = self.execs[longest]
        for r in honest:
            ledger = self.execs[r]
            # below an installed image a ledger holds no entries: compare where both know
            # (two honest replicas installed only certified state, checked on install)
            at = final[r]
            mine, theirs = ledger.head_at(at), ref.head_at(at)
            if mine is not None and theirs is not None and mine != theirs:
                self._stop(
                    "violation",
                    "divergent_ledgers",
                    f"replica {r}'s ledger (up to seq {final[r]}) is not a prefix of "
                    f"replica {longest}'s (up to seq {final[longest]})",
                )
        if self.opt.settle_ticks:
            target = final[longest]
            for r in honest:
                ledger = self.execs[r]
                if r in self.crashed:
                    continue
                if ledger.last_seq < target or ledger.head_at(target) != ref.head_at(target):
                    # (a replica that installed state above ``target`` has no head there)
                    if ledger.last_seq >= target and ledger.base_seq >= target:
                        continue
                    first = ledger.entry(1)
                    self._stop(
                        "liveness",
                        "lagging",
                        f"replica {r} ended at seq {ledger.last_seq} in view {self.views[r]} "
                        f"(seq 1 from view {first.view if first else '-'}), "
                        f"{self.opt.settle_ticks:.0f} ticks after the clients were done; replica "
                        f"{longest} has {target} final entries (view {self.views[longest]})",
                    )
        for (client, ts), acc in self.accepted.items():
            for r in honest:
                entry = self.execs[r].entry(acc.seq)
                if entry is None or entry.speculative:
                    continue
                try:
                    at = entry.requests.index((client, ts))
                except ValueError:
                    at = -1
                if at < 0 or entry.results[at] != acc.result:
                    self._stop(
                        "violation",
                        "accepted_result",
                        f"client {client} accepted timestamp {ts} at seq {acc.seq}, "
                        f"but replica {r}'s ledger has a different outcome there",
                    )

    def _result(self, outcome: str, violation: Violation | None, wall_s: float) -> SimResult:
        honest = [r for r in range(self.n) if self._honest(r)]
        latencies = [
            acc.accepted - acc.submitted for client in self.clients for acc in client.accepted
        ]
        counters = Counter(self.counters)
        for how, count in self.mutator.mutated.items():
            counters[f"byzantine_{how}"] += count
        for client in self.clients:
            for reason in CLIENT_COUNTERS + (SLOW_PATH_COUNTERS if self.rule.commit_quorum else ()):
                counters[f"client_{reason}"] += client.core.counters[reason]
        counters["max_view"] = max(self.views) if self.views else 0
        return SimResult(
            protocol=self.cls.name,
            n=self.n,
            seed=self.seed,
            faults=self.faults,
            plan=self.plan.describe(),
            outcome=outcome,
            violation=violation,
            replay=replay_command(self.protocol_arg, self.n, self.seed, self.faults, self.opt),
            steps=self.steps,
            virtual_ticks=self.now,
            committed=max((self.execs[r].last_seq for r in honest), default=0),
            requests_total=sum(c.total for c in self.clients),
            requests_accepted=sum(len(c.accepted) for c in self.clients),
            sent_by_kind=dict(sorted(self.sent_by_kind.items())),
            counters=dict(sorted(counters.items())),
            latency_ticks_max=max(latencies, default=0.0),
            latency_ticks_mean=sum(latencies) / len(latencies) if latencies else 0.0,
            trace_digest=self.digest.hexdigest(),
            wall_s=wall_s,
            trace=self.trace,
        )


def _node(node: int, n: int) -> str:
    return f"r{node}" if node < n else f"c{node}"


def run_seed(
    protocol: str | type[Protocol],
    n: int,
    seed: int,
    faults: str = "none",
    options: SimOptions = DEFAULT_OPTIONS,
) -> SimResult:
    """Run one seed under one fault mix and return what happened."""
    return Simulator(protocol, n, seed, faults, options).run()


@dataclass(slots=True)
class SimSummary:
    """Many seeds: outcome counts, failures (bounded), message totals."""

    protocol: str
    n: int
    runs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_mix: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[SimResult] = field(default_factory=list)
    committed: int = 0
    requests_accepted: int = 0
    sent_by_kind: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    wall_s: float = 0.0

    @property
    def violations(self) -> int:
        return self.outcomes["violation"]

    @property
    def liveness_failures(self) -> int:
        return self.outcomes["liveness"]

    @property
    def ok(self) -> bool:
        return self.outcomes["ok"] == self.runs

    def messages_per_batch(self) -> dict[str, float]:
        if not self.committed:
            return {}
        return {k: v / self.committed for k, v in sorted(self.sent_by_kind.items())}

    def add(self, result: SimResult, keep_failures: int) -> None:
        self.runs += 1
        self.outcomes[result.outcome] += 1
        self.by_mix.setdefault(result.faults, Counter())[result.outcome] += 1
        if not result.ok and len(self.failures) < keep_failures:
            self.failures.append(result)
        self.committed += result.committed
        self.requests_accepted += result.requests_accepted
        self.sent_by_kind.update(result.sent_by_kind)
        self.counters.update(result.counters)
        self.steps += result.steps


def mix_for_seed(seed: int, mixes: Sequence[str]) -> str:
    """Each seed runs one mix of the list, round robin (so ``--seed S --faults M`` replays it)."""
    return mixes[seed % len(mixes)]


def run_many(
    protocol: str | type[Protocol],
    n: int,
    seeds: Iterable[int],
    faults: str | Sequence[str] = MIXES,
    options: SimOptions = DEFAULT_OPTIONS,
    progress: Callable[[SimSummary, SimResult], None] | None = None,
    keep_failures: int = 20,
    stop_after_failures: int | None = None,
) -> SimSummary:
    """Run every seed (seed s under mix ``faults[s % len(faults)]``) and sum up."""
    mixes = [faults] if isinstance(faults, str) else list(faults)
    for mix in mixes:
        if mix not in ALL_MIXES:
            raise ValueError(f"unknown fault mix {mix!r}; choose from {', '.join(ALL_MIXES)}")
    cls = protocol_class(protocol)
    summary = SimSummary(protocol=cls.name, n=n)
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(protocol, n, seed, mix_for_seed(seed, mixes), options)
        summary.add(result, keep_failures)
        summary.wall_s = time.perf_counter() - started
        if progress is not None:
            progress(summary, result)
        if (
            stop_after_failures is not None
            and summary.runs - summary.outcomes["ok"] >= stop_after_failures
        ):
            break
    summary.wall_s = time.perf_counter() - started
    return summary
