"""The client process: YCSB requests out, reply quorums in, latencies recorded.

Lives here: ``ClientCore``, the sans-IO acceptance logic (reply quorum
matching under the protocol's ``reply_rule``, latency accounting, the in-flight window, retransmission decisions,
learning the view, and a slow path where the rule has one: Zyzzyva's commit certificate, sent
to every replica, and its LOCAL-COMMIT quorum), unit-tested without sockets; and ``main``, the client
process (``python -m fabric client --config F --id C --run-dir D``) that wraps
the core with generator threads and one IO thread.

Process shape: ``client.threads`` generator threads draw YCSB transactions and
encode them into request bodies (a bounded ring of ready bodies); the IO
thread owns the core and the sockets: it stamps each body with the next
timestamp, signs it once (Ed25519 releases the GIL), sends it to the protocol's
``client_target`` for the view it last learnt, receives replies, and re-sends
a timed-out request to every replica (bounded retries, counted). One IO thread
keeps timestamps in order per client, which replay suppression relies on.

Control: the runner talks over stdin/stdout. The process prints ``ready`` once
its sockets exist, ``progress <epoch> <accepted_txn_total>`` about once a
second, and stops on a ``stop`` line, on stdin EOF (the runner died) or on
SIGTERM, then writes its stats JSON into the run directory.

The simulator (fabric.sim) drives the same ``ClientCore`` in virtual time, so the rule a
run certifies is the rule a real client applies.

Must not live here: protocol logic (the protocol class only names the reply
rule and the target replica), report formatting (fabric.harness.runner).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.analysis.metrics import (
    PerSecond,
    Reservoir,
    ThreadClock,
    dump_profile,
    process_resources,
    profiler,
)
from fabric.runtime.sched import cpus as allowed_cpus
from fabric.runtime.sched import current as current_policy
from protocols.base import ReplyRule
from protocols.common import Reply, Request, signed_request
from transport.delay_line import line_stats

# --- the sans-IO core -------------------------------------------------------------------


#: distinct reply keys (seq, result, ...) one replica may vote for per outstanding request:
#: an honest replica needs more than one only after a rollback or a repeated ordering, and
#: a Byzantine one cannot grow a request's state beyond n * this
MAX_KEYS_PER_REPLICA = 4


@dataclass(slots=True)
class Outstanding:
    """One request the client has sent and not yet accepted."""

    timestamp: int
    payload: Any  # what the IO layer re-sends (the signed Request)
    txns: int
    first_sent: float
    deadline: float
    retries: int = 0
    keys_of: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # replica -> its keys
    votes: dict[tuple[Any, ...], set[int]] = field(default_factory=dict)  # key -> replicas
    # slow path only (rule.commit_quorum): key -> replica -> its speculative reply (what a
    # commit certificate is made of), and when the certificate may be sent
    spec: dict[tuple[Any, ...], dict[int, Reply]] = field(default_factory=dict)
    commit_at: float = 0.0
    commit_sent: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    timestamp: int
    txns: int
    latency_s: float
    result: bytes
    seq: int  # the position the quorum agreed on
    view: int  # the view of the reply that completed the quorum


class ClientCore:
    """Acceptance logic of one client, driven by explicit times (no clock, no sockets).

    Closed loop: at most ``max_in_flight_txn`` transactions outstanding. Open
    loop: a send is due every ``txns_per_request / rate_txn_s`` seconds, still
    capped at ``max_in_flight_txn`` outstanding (sends skipped by the cap are
    counted in ``open_loop_skipped``). A request is accepted when ``rule.quorum``
    distinct replicas sent replies that agree on every field of ``rule.match``
    (the protocol's ``reply_rule``: always seq and result, PoE also the view);
    speculative replies count only if ``rule.speculative``. A replica may vote for
    a few different keys (an honest one re-executes after a rollback; at most
    ``MAX_KEYS_PER_REPLICA``), never twice for one. A request unanswered for
    ``request_timeout_s`` is due for a re-send to all replicas, at most
    ``max_retries`` times, then given up (counted, its window freed).

    Slow path (a rule with ``commit_quorum``, Zyzzyva §3.2): ``commit_wait_s`` after a send
    (or a re-send), a request holding ``commit_quorum`` matching speculative replies but not
    ``quorum`` is due for its commit certificate (``due_commits``: ``make_commit`` builds the
    message from those replies, the IO layer sends it to every replica); it is accepted on
    ``commit_quorum`` matching non-speculative replies (LOCAL-COMMITs), counted apart.
    """

    def __init__(
        self,
        client_id: int,
        n: int,
        f: int,
        rule: ReplyRule,
        max_in_flight_txn: int,
        request_timeout_s: float,
        max_retries: int,
        mode: str = "closed",
        rate_txn_s: float = 0.0,
        latency_capacity: int = 200_000,
        seed: int = 0,
        commit_wait_s: float = 0.0,
        make_commit: Callable[[int, int, tuple[Reply, ...]], Any] | None = None,
    ) -> None:
        if not 1 <= rule.quorum <= n:
            raise ValueError(f"reply quorum {rule.quorum} not in 1..{n}")
        if mode not in ("closed", "open"):
            raise ValueError(f"mode {mode!r} is not closed | open")
        if mode == "open" and rate_txn_s <= 0:
            raise ValueError("open loop needs rate_txn_s > 0")
        if rule.commit_quorum and make_commit is None:
            raise ValueError("a reply rule with a commit quorum needs make_commit")
        self.commit_wait_s = commit_wait_s
        self.make_commit = make_commit
        self.client_id = client_id
        self.n = n
        self.f = f
        self.rule = rule
        self.max_in_flight_txn = max_in_flight_txn
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.mode = mode
        self.rate_txn_s = rate_txn_s
        # deadline order: sends and re-sends append at the end with the latest deadline
        self.outstanding: OrderedDict[int, Outstanding] = OrderedDict()
        self.in_flight_txn = 0
        self.last_timestamp = 0
        self.view = 0
        self._replica_views = [0] * n
        self.next_send_at: float | None = None
        self.latencies = Reservoir(latency_capacity, seed)  # (accept time, latency_s) per request
        self.accepted_per_s = PerSecond()
        self.counters: Counter[str] = Counter()

    @property
    def reply_quorum(self) -> int:
        return self.rule.quorum

    # sending --------------------------------------------------------------------
    def window_open(self, txns: int) -> bool:
        """True if a request of ``txns`` transactions fits the in-flight window."""
        return self.in_flight_txn + txns <= self.max_in_flight_txn or not self.outstanding

    def send_due(self, now: float, txns: int) -> bool:
        """True if the IO layer should send a request of ``txns`` transactions now."""
        if self.mode == "closed":
            return self.window_open(txns)
        if self.next_send_at is None:
            self.next_send_at = now
        if now < self.next_send_at:
            return False
        if not self.window_open(txns):
            # behind schedule and capped: skip this slot rather than burst later
            self.counters["open_loop_skipped"] += 1
            self.next_send_at = max(self.next_send_at, now - 1.0) + txns / self.rate_txn_s
            return False
        return True

    def next_timestamp(self) -> int:
        self.last_timestamp += 1
        return self.last_timestamp

    def record_sent(self, timestamp: int, payload: Any, txns: int, now: float) -> None:
        if timestamp in self.outstanding:
            raise ValueError(f"timestamp {timestamp} already outstanding")
        self.outstanding[timestamp] = Outstanding(
            timestamp,
            payload,
            txns,
            first_sent=now,
            deadline=now + self.request_timeout_s,
            commit_at=now + self.commit_wait_s,
        )
        self.in_flight_txn += txns
        self.counters["requests_sent"] += 1
        self.counters["txns_sent"] += txns
        if self.mode == "open":
            base = self.next_send_at if self.next_send_at is not None else now
            self.next_send_at = max(base, now - 1.0) + txns / self.rate_txn_s

    # replies --------------------------------------------------------------------
    def on_reply(self, sender: int, reply: Reply, now: float) -> Accepted | None:
        """Count an authenticated reply from ``sender``; return the acceptance if it completes one."""
        if not 0 <= sender < self.n or reply.replica != sender:
            self.counters["bad_replies"] += 1
            return None
        if reply.client_id != self.client_id:
            self.counters["bad_replies"] += 1
            return None
        self._learn_view(sender, reply.view)
        entry = self.outstanding.get(reply.timestamp)
        if entry is None:
            self.counters["late_replies"] += 1
            return None
        rule = self.rule
        if reply.speculative and not rule.speculative:
            self.counters["speculative_replies_ignored"] += 1
            return None
        key = rule.key(reply)
        quorum = rule.quorum
        if rule.commit_quorum:
            if reply.speculative:
                entry.spec.setdefault(key, {})[sender] = reply
            else:  # a LOCAL-COMMIT: its own tally, and its own (smaller) quorum
                key = ("local-commit", *key)
                quorum = rule.commit_quorum
        mine = entry.keys_of.setdefault(sender, [])
        if key in mine:
            self.counters["duplicate_replies"] += 1
            return None
        if len(mine) >= MAX_KEYS_PER_REPLICA:
            self.counters["reply_keys_capped"] += 1
            return None
        mine.append(key)
        voters = entry.votes.setdefault(key, set())
        voters.add(sender)
        if len(entry.votes) > 1:
            self.counters["mismatched_replies"] += 1
        if len(voters) < quorum:
            return None
        if quorum != rule.quorum:
            self.counters["slow_path_accepted"] += 1
        elif rule.commit_quorum:
            self.counters["fast_path_accepted"] += 1
        del self.outstanding[reply.timestamp]
        self.in_flight_txn -= entry.txns
        latency = now - entry.first_sent
        self.latencies.offer((now, latency))
        self.accepted_per_s.add(now, entry.txns)
        self.counters["requests_accepted"] += 1
        self.counters["txns_accepted"] += entry.txns
        return Accepted(entry.timestamp, entry.txns, latency, reply.result, reply.seq, reply.view)

    def _learn_view(self, sender: int, view: int) -> None:
        """Adopt the highest view that at least f+1 replicas claim (so one honest replica does)."""
        if view <= self._replica_views[sender]:
            return
        self._replica_views[sender] = view
        ranked = sorted(self._replica_views, reverse=True)
        certified = ranked[self.f]  # the (f+1)-th highest claim
        if certified > self.view:
            self.view = certified
            self.counters["view_changes_seen"] += 1

    def due_commits(self, now: float) -> list[Any]:
        """Slow path: the commit certificates due now (one per request, once per send or
        re-send), built by ``make_commit`` from ``commit_quorum`` matching speculative replies."""
        need = self.rule.commit_quorum
        if not need:
            return []
        out: list[Any] = []
        for entry in self.outstanding.values():
            if entry.commit_sent or now < entry.commit_at:
                continue
            for replies in entry.spec.values():
                if len(replies) >= need:
                    chosen = tuple(replies[r] for r in sorted(replies)[:need])
                    out.append(self.make_commit(self.client_id, entry.timestamp, chosen))  # type: ignore[misc]
                    entry.commit_sent = True
                    self.counters["commits_sent"] += 1
                    break
        return out

    def next_commit_at(self, now: float) -> float | None:
        """The earliest time after ``now`` a commit certificate falls due (None: none
        pending; one already due waits for the replies that complete it)."""
        if not self.rule.commit_quorum:
            return None
        times = [
            e.commit_at
            for e in self.outstanding.values()
            if not e.commit_sent and e.commit_at > now
        ]
        return min(times) if times else None

    # timeouts -------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if not self.outstanding:
            return None
        return next(iter(self.outstanding.values())).deadline

    def due_retransmits(self, now: float) -> list[Outstanding]:
        """Requests whose timeout passed: re-send these to every replica. Gives up beyond max_retries."""
        due: list[Outstanding] = []
        outstanding = self.outstanding
        while outstanding:
            ts, entry = next(iter(outstanding.items()))
            if entry.deadline > now:
                break
            if entry.retries >= self.max_retries:
                del outstanding[ts]
                self.in_flight_txn -= entry.txns
                self.counters["requests_given_up"] += 1
                self.counters["txns_given_up"] += entry.txns
                continue
            entry.retries += 1
            entry.deadline = now + self.request_timeout_s
            if entry.commit_sent:  # re-send the commit certificate with the request
                entry.commit_sent = False
                entry.commit_at = now
            outstanding.move_to_end(ts)
            self.counters["retransmissions"] += 1
            due.append(entry)
        return due

    def stats(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "in_flight_txn": self.in_flight_txn,
            "outstanding_requests": len(self.outstanding),
            "counters": dict(self.counters),
        }


# --- the client process -----------------------------------------------------------------

#: YCSB generators per client: up to 64 generator threads (client.threads) and the IO
#: thread's inline one (the last); each has its own seed and insert lane
GENERATORS_PER_CLIENT = 65
#: ready request bodies the generator threads keep buffered ahead of the IO thread
BODY_RING_CAPACITY = 64
#: bodies the IO thread takes from the ring at once (held in hand until sent): a parked
#: generator is woken once per this many requests, not once per request
BODY_CHUNK = 16
#: replies read per receive call
RECV_CHUNK = 256
#: the IO thread never parks longer than this (stop and progress stay responsive)
MAX_PARK_S = 0.05
#: requests sent per IO-loop pass before replies are read again
MAX_SENDS_PER_PASS = 32


class ClientProcess:
    """The IO side of one client process: owns the core, its sockets and its threads."""

    def __init__(self, cfg: Any, client_id: int) -> None:
        from fabric.harness.config import config_to_dict
        from fabric.harness.network import shaped_sender
        from fabric.runtime.ring import Ring
        from protocols import registry
        from transport.auth import LinkAuth
        from transport.keyfiles import keys_for
        from transport.wire import FramePolicy
        from transport.zmq_io import Addressing, Receiver, Sender, new_context
        from workloads.factory import make_generator

        if client_id not in cfg.client_ids:
            raise ValueError(f"client id {client_id} not in {list(cfg.client_ids)}")
        self.cfg = cfg
        self.id = client_id
        self.n = cfg.cluster.replicas
        self.protocol_cls = registry.get(cfg.protocol.name)
        self.params = cfg.protocol_config(0).params
        self.txns_per_request = cfg.txns_per_request  # client.txns_per_request (0 = batch_size)
        self.core = ClientCore(
            client_id=client_id,
            n=self.n,
            f=cfg.f,
            rule=self.protocol_cls.reply_rule(self.n, cfg.f),
            max_in_flight_txn=cfg.client.max_txn_in_flight,
            request_timeout_s=cfg.client.request_timeout_ms / 1000.0,
            max_retries=cfg.client.max_retries,
            mode=cfg.client.mode,
            rate_txn_s=float(cfg.client.rate_txn_s),
            seed=cfg.run.seed * 7919 + client_id,
            commit_wait_s=self.protocol_cls.commit_wait_ticks(self.params)
            * cfg.protocol.tick_ms
            / 1000.0,
            make_commit=self._make_commit,
        )
        # only this node's links and private key: a process never holds the others' secrets
        self.keys = keys_for(
            client_id, cfg.node_count, cfg.crypto.cluster_secret, cfg.crypto.key_dir
        )
        self.signing = cfg.crypto.effective_client_signature != "none"
        mac = cfg.crypto.effective_link_mac
        self.stop = threading.Event()
        self.body_ring = Ring(BODY_RING_CAPACITY, name="bodies", multi_producer=True)
        self._bodies: list[bytes] = []  # taken from body_ring, not yet sent (newest first)
        self.ctx = new_context()
        addressing = Addressing.from_config(config_to_dict(cfg))
        if addressing.kind == "ipc":
            os.makedirs(addressing.ipc_dir, exist_ok=True)
        # replicas send a client Replies only, and nobody else sends it anything
        self.receiver = Receiver(
            self.ctx,
            addressing.address(client_id, 0),
            LinkAuth(mac, client_id, self.keys),
            recv_hwm=cfg.transport.recv_hwm,
            max_frame_bytes=cfg.transport.max_frame_bytes,
            policy=FramePolicy(
                replicas=cfg.cluster.replicas,
                client_kinds=frozenset(),
                max_client_frame_bytes=0,
                replica_kinds=frozenset({Reply.KIND}),
            ),
        )
        self.sender = shaped_sender(  # network.emulation: transport delays in a delay line
            cfg,
            Sender(
                self.ctx,
                addressing,
                client_id,
                LinkAuth(mac, client_id, self.keys),
                send_hwm=cfg.transport.send_hwm,
            ),
            client_id,
        )
        # Each generator inserts in its own lane of keys (no two clients insert one key):
        # GENERATORS_PER_CLIENT lanes per client, the last for the inline generator.
        lanes = GENERATORS_PER_CLIENT * len(cfg.client_ids)
        first_lane = GENERATORS_PER_CLIENT * list(cfg.client_ids).index(client_id)

        def generator(t: int) -> Any:
            seed = (cfg.run.seed * 1_000_003 + client_id) * GENERATORS_PER_CLIENT + t
            return make_generator(cfg.workload, seed, first_lane + t, lanes)  # workload.kind

        self.generators = [generator(t) for t in range(cfg.client.threads)]
        # the IO thread's own generator, used when the generator threads fall behind
        self.inline_generator = generator(GENERATORS_PER_CLIENT - 1)
        self.io_clock = ThreadClock("io", "client-io")
        self.gen_clocks = [
            ThreadClock(f"generator-{t}", "client-generator") for t in range(len(self.generators))
        ]
        self.threads = [
            threading.Thread(
                target=_generator_loop,
                args=(self.body_ring, gen, self.txns_per_request, self.stop, clock),
                name=f"generator-{t}",
                daemon=True,
            )
            for t, (gen, clock) in enumerate(zip(self.generators, self.gen_clocks, strict=True))
        ]
        self.io_thread = threading.Thread(target=self._io_loop, name="io", daemon=True)
        self.started = threading.Event()
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.sign_s = 0.0
        self.errors: list[str] = []
        self.generated_inline = 0
        self.context_closed = True

    def _make_commit(self, client_id: int, timestamp: int, replies: tuple[Reply, ...]) -> Any:
        return self.protocol_cls.commit_message(client_id, timestamp, replies, self.params)

    # lifecycle ----------------------------------------------------------------------------
    def start_threads(self) -> None:
        for t in self.threads:
            t.start()
        self.io_thread.start()

    def shutdown(self, budget_s: float = 5.0) -> list[str]:
        from transport.zmq_io import close_context

        self.stop.set()
        self.started.set()
        self.body_ring.close()
        deadline = time.monotonic() + budget_s
        for t in [self.io_thread, *self.threads]:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in [self.io_thread, *self.threads] if t.is_alive()]
        self.stopped_at = time.time()
        self.context_closed = close_context(self.ctx, timeout_s=1.0)
        return stuck

    # the IO loop --------------------------------------------------------------------------
    def _next_body(self) -> bytes:
        """A ready body from the generator threads, or one drawn here if they are behind."""
        bodies = self._bodies
        if not bodies:
            bodies = self.body_ring.pop_many(BODY_CHUNK, 0)
            bodies.reverse()  # oldest last: list.pop() hands them out in ring order
            self._bodies = bodies
        if bodies:
            return bodies.pop()
        from workloads.txn import encode_txns

        self.generated_inline += 1
        return encode_txns(self.inline_generator.next_txns(self.txns_per_request))

    def _io_loop(self) -> None:
        clock = self.io_clock
        clock.start()
        try:
            self.started.wait()
            if not self.stop.is_set():
                self.started_at = time.time()
                profile = profiler()
                if profile is None:
                    self._run()
                else:
                    try:
                        profile.runcall(self._run)
                    finally:
                        dump_profile(profile, f"client-{self.id}-io")
        except Exception:
            import traceback

            text = traceback.format_exc()
            print(f"client {self.id}: IO thread failed:\n{text}", file=sys.stderr, flush=True)
            self.errors.append(text.strip().splitlines()[-1])
            self.stop.set()
        finally:
            self.receiver.close()
            self.sender.close()
            clock.stop()

    def _run(self) -> None:
        from transport import wire
        from transport.auth import signer

        core = self.core
        stop = self.stop
        clock = self.io_clock
        recv = self.receiver.recv_batch
        send_frame = self.sender.send_frame
        me = self.id
        n = self.n
        sign = signer(self.keys, me) if self.signing else None
        txns = self.txns_per_request
        target_of = self.protocol_cls.client_target
        params = self.params
        replicas = range(n)
        while not stop.is_set():
            now = time.time()
            sends = 0
            while sends < MAX_SENDS_PER_PASS and core.send_due(now, txns):
                body = self._next_body()
                ts = core.next_timestamp()
                if self.signing:
                    t_sign = time.perf_counter()
                    req = signed_request(sign, me, ts, body)
                    self.sign_s += time.perf_counter() - t_sign
                else:
                    req = Request(me, ts, body, b"")
                frame = wire.encode(req, me)
                now = time.time()  # latency counts from the send, not the loop's start
                core.record_sent(ts, frame, txns, now)
                send_frame(target_of(core.view, me, n, params), frame)
                sends += 1
            # how long may we wait for replies?
            wait = MAX_PARK_S
            deadline = core.next_deadline()
            if deadline is not None:
                wait = min(wait, deadline - now)
            if core.mode == "open" and core.next_send_at is not None:
                wait = min(wait, core.next_send_at - now)
            commit_at = core.next_commit_at(now)
            if commit_at is not None:
                wait = min(wait, commit_at - now)
            if sends >= MAX_SENDS_PER_PASS:
                wait = 0  # more to send: only drain what has arrived
            got = recv(RECV_CHUNK, 0)
            if not got and wait > 0:
                clock.park()
                got = recv(RECV_CHUNK, max(1, int(wait * 1000)))
                clock.unpark()
            if got:
                now = time.time()
                for sender, msg in got:
                    if type(msg) is Reply:
                        core.on_reply(sender, msg, now)
                    else:
                        core.counters["unexpected_messages"] += 1
            for entry in core.due_retransmits(time.time()):
                for to in replicas:
                    send_frame(to, entry.payload)
            for commit in core.due_commits(time.time()):  # the slow path (Zyzzyva)
                frame = wire.encode(commit, me)
                for to in replicas:
                    send_frame(to, frame)

    # stats ---------------------------------------------------------------------------------
    def progress_line(self) -> str:
        from fabric.harness.control import format_progress

        return format_progress(
            time.time(),
            self.core.counters["txns_accepted"],
            self.core.last_timestamp,
            self.core.view,
        )

    def stats(self) -> dict[str, Any]:
        from fabric.runtime.replica import kind_names

        names = kind_names()
        core = self.core
        return {
            "role": "client",
            "node": self.id,
            "protocol": self.cfg.protocol.name,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "txns_per_request": self.txns_per_request,
            "reply_quorum": core.reply_quorum,
            "accepted_per_s": core.accepted_per_s.as_pairs(),
            "latency": [[round(t, 4), round(lat * 1000.0, 3)] for t, lat in core.latencies.items],
            "latency_seen": core.latencies.seen,
            "counters": dict(core.counters),
            "view": core.view,
            "in_flight_txn": core.in_flight_txn,
            "sign_s": round(self.sign_s, 4),
            "generated_inline": self.generated_inline,
            "threads": [self.io_clock.snapshot(), *(c.snapshot() for c in self.gen_clocks)],
            "messages": {
                "sent": {names.get(k, str(k)): v for k, v in self.sender.sent_by_kind.items()},
                "received": {
                    names.get(k, str(k)): v for k, v in self.receiver.received_by_kind.items()
                },
            },
            "drops": {
                **dict(self.receiver.drops),
                **(
                    {"send_full": sum(self.sender.send_drops.values())}
                    if self.sender.send_drops
                    else {}
                ),
            },
            "delay_line": line_stats([self.sender]),  # network.emulation: transport
            "resources": process_resources(),
            "scheduler": current_policy(),  # run.scheduler as the kernel has it
            "cpus": allowed_cpus(),  # the CPUs it may run on (one: run.cpu_affinity pinned it)
            "errors": self.errors,
        }


def _generator_loop(
    ring: Any, generator: Any, txns_per_request: int, stop: threading.Event, clock: ThreadClock
) -> None:
    """Draw YCSB transactions and encode request bodies ahead of the IO thread."""
    from fabric.runtime.ring import RingClosed
    from workloads.txn import encode_txns

    clock.start()
    try:
        while not stop.is_set():
            body = encode_txns(generator.next_txns(txns_per_request))
            while not stop.is_set():
                clock.park()
                pushed = ring.push(body, timeout=0.1)
                clock.unpark()
                if pushed:
                    break
    except RingClosed:
        pass
    except Exception as exc:  # a bug: say so and stop the client, never hang
        print(f"client generator failed: {exc!r}", file=sys.stderr, flush=True)
        stop.set()
    finally:
        clock.stop()


def main(argv: list[str] | None = None) -> int:
    from fabric.harness.control import ChildControl
    from fabric.harness.paths import RunPaths
    from fabric.runtime import process

    args = process.parse_args(
        "python -m fabric client", "one client process", "client node id (n..n+clients-1)", argv
    )
    built = process.build("client", args, ClientProcess)
    if built is None:
        return 2
    cfg, client = built
    stop = client.stop
    process.stop_on_signals(stop)
    control = ChildControl(on_stop=stop.set, ignore_stdin=args.ignore_stdin)
    client.start_threads()
    control.say("ready")
    if args.ignore_stdin:
        client.started.set()
    next_progress = time.monotonic() + 1.0
    while not stop.wait(0.1):
        if control.started.is_set() and not client.started.is_set():
            client.started.set()
        if time.monotonic() >= next_progress:
            next_progress += 1.0
            control.say(client.progress_line())
    stuck = client.shutdown()
    stats = client.stats()
    stats["stuck_threads"] = stuck
    process.write_json(RunPaths(Path(args.run_dir)).client_stats(args.id), stats)
    c = client.core.counters
    print(
        f"client {args.id}: stopped ({c['requests_accepted']} requests accepted, "
        f"{c['retransmissions']} re-sent, {c['requests_given_up']} given up)",
        file=sys.stderr,
        flush=True,
    )
    code = 1 if client.errors or stuck else 0
    return process.leave(f"client {args.id}", code, stuck, client.context_closed)


if __name__ == "__main__":
    sys.exit(main())
