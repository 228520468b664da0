"""A tiny in-memory PBFT cluster for protocol tests, and a runner for scripted scenarios.

``Cluster`` joins n protocol replicas with a FIFO fake link (no sockets, sleeps or
threads): every action a replica returns is applied at once (Send/Broadcast are
queued, Deliver is recorded and fed back as ``executed`` through the same queue,
timers are only noted and fire when a test says so). Drop and hold rules shape
the network; ``trace`` records every action in a short readable form.

A scenario script (tests/protocol/scenarios/*.txt) is a list of steps, one per line
(``#`` starts a comment):

    cluster n=4 checkpoint_period=2 watermark_window=4 view_change_ticks=10
    propose r0 b1          primary r0 proposes batch b1 (one request, created on first use)
    request r1 b1          b1's client sends its request to r1 (``*`` = every replica)
    drop r0->r2 Prepare    drop matching messages from now on (``*`` matches any)
    hold *->r3 Commit      park matching messages until ``release`` (``release reverse``)
    heal                   forget every drop/hold rule (parked messages stay parked)
    crash r0               r0 stops: nothing reaches it, it sends nothing
    run                    deliver queued messages until the network is quiet
    step 5                 deliver at most 5 queued events
    timeout r1 request     fire r1's timer ("pbft", 0, "request") if it is armed
    status r1 view stable_seq   note some status() fields
    ledgers                note what every replica delivered

Its expected trace lives beside it (*.expected). ``run_script`` returns the trace;
set PBFT_SCENARIO_REGEN=1 to rewrite the expected files on purpose.

Other protocols: ``cluster protocol=poe ...`` runs the script on the Cluster subclass
named in ``CLUSTER_MODULES`` (imported on first use); a speculative protocol's
``Rollback`` truncates the recorded ledger (PBFT never rolls back: it still asserts).

Must not live here: assertions about specific scenarios (they belong in test files).
"""

from __future__ import annotations

import hashlib
import importlib
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from protocols import base
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    ProtocolConfig,
    Rollback,
    Send,
    SetTimer,
    StableCheckpoint,
)
from protocols.common import (
    NULL_DIGEST,
    Batch,
    Request,
    make_batch,
    request_signing_payload,
)
from protocols.pbft import (
    Checkpoint,
    Commit,
    Fetch,
    FetchReply,
    NewView,
    Pbft,
    Prepare,
    PrePrepare,
    ViewChange,
)

MAX_EVENTS = 200_000  # bound on one ``run``


def client_signature(req: Request) -> bytes:
    """The fake client signature the FakeVerifier accepts."""
    return hashlib.sha256(b"client" + request_signing_payload(req)).digest()[:8]


def signed_request(client_id: int, timestamp: int, txns: bytes) -> Request:
    unsigned = Request(client_id, timestamp, txns, b"")
    return Request(client_id, timestamp, txns, client_signature(unsigned))


class FakeVerifier:
    """A deterministic stand-in for Ed25519: a keyed hash per signer (not secure, fast)."""

    def __init__(self, replica_id: int) -> None:
        self.replica_id = replica_id
        self.signed = 0
        self.verified = 0

    @staticmethod
    def _mac(signer: int, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=b"k%d" % signer, digest_size=16).digest()

    def sign(self, payload: bytes) -> bytes:
        self.signed += 1
        return self._mac(self.replica_id, payload)

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        self.verified += 1
        return signature == self._mac(signer, payload)

    def verify_request(self, request: Request) -> bool:
        return request.signature == client_signature(request)


Rule = tuple[int | None, int | None, str | None]


class Cluster:
    """n replicas of ``protocol_cls`` joined by an in-memory FIFO link."""

    def __init__(
        self,
        n: int = 4,
        *,
        protocol_cls: type[Pbft] = Pbft,
        checkpoint_period: int = 10,
        watermark_window: int = 40,
        view_change_ticks: int = 100,
        max_buffered: int = 10_000,
        params: dict[str, Any] | None = None,
        instance: int = 0,
    ) -> None:
        self.n = n
        self.replicas: list[Pbft] = []
        for i in range(n):
            cfg = ProtocolConfig(
                replica_id=i,
                n=n,
                checkpoint_period=checkpoint_period,
                watermark_window=watermark_window,
                view_change_ticks=view_change_ticks,
                max_buffered=max_buffered,
                params=dict(params or {}),
            )
            extra = {"instance": instance} if instance else {}
            self.replicas.append(protocol_cls(cfg, FakeVerifier(i), **extra))
        self.instance = instance
        self.queue: deque[tuple[str, int, int, Any]] = deque()  # (kind, src, dst, payload)
        self.drop_rules: list[Rule] = []
        self.hold_rules: list[Rule] = []
        self.parked: list[tuple[str, int, int, Any]] = []
        self.crashed: set[int] = set()
        self.timers: list[dict[Hashable, int]] = [{} for _ in range(n)]
        self.delivered: list[list[Deliver]] = [[] for _ in range(n)]
        self.stable: list[list[int]] = [[] for _ in range(n)]
        self.state_fetches: list[list[int]] = [[] for _ in range(n)]  # FetchState seqs
        self.views: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self.to_clients: list[tuple[int, int, Any]] = []
        self.state: list[bytes] = [b"" for _ in range(n)]
        self.heads: list[list[bytes]] = [[] for _ in range(n)]  # state after each delivered seq
        self.trace: list[str] = []
        self.names: dict[bytes, str] = {NULL_DIGEST: "null"}
        self.batches: dict[str, Batch] = {}
        self._next_ts: dict[int, int] = {}
        self.dropped = 0

    # --- batches and requests ---------------------------------------------------------

    def batch(self, name: str, client: int | None = None, requests: int = 1) -> Batch:
        """The batch called ``name`` (created on first use: ``requests`` fresh signed requests)."""
        if name in self.batches:
            return self.batches[name]
        client = self.n if client is None else client
        reqs = []
        for _ in range(requests):
            ts = self._next_ts.get(client, 0) + 1
            self._next_ts[client] = ts
            reqs.append(signed_request(client, ts, f"{name}:{ts}".encode()))
        batch = make_batch(tuple(reqs))
        self.batches[name] = batch
        self.names[batch.digest] = name
        return batch

    def name_batch(self, batch: Batch, name: str) -> None:
        self.batches[name] = batch
        self.names[batch.digest] = name

    # --- driving ----------------------------------------------------------------------

    def propose(self, r: int, batch: Batch) -> None:
        self.note(f"r{r} propose {self.bname(batch.digest)}")
        self.apply(r, self.replicas[r].propose(batch))

    def client_request(self, r: int, req: Request) -> None:
        """The request's client sends it to replica ``r`` (through the fake link)."""
        self._enqueue("msg", req.client_id, r, req)

    def deliver_to(self, r: int, sender: int, msg: Any) -> None:
        """Hand ``msg`` to replica ``r`` directly, as if ``sender`` sent it."""
        self.apply(r, self.replicas[r].receive(sender, msg))

    def timer_key(self, name: str) -> Hashable:
        """The protocol's timer called ``name`` (a subclass names another protocol's)."""
        return ("pbft", self.instance, name)

    def fire(self, r: int, name: str) -> bool:
        timer = self.timer_key(name)
        if timer not in self.timers[r]:
            self.note(f"r{r} timeout {name}: not armed")
            return False
        del self.timers[r][timer]
        self.note(f"r{r} timeout {name}")
        self.apply(r, self.replicas[r].timeout(timer))
        return True

    def crash(self, r: int) -> None:
        self.crashed.add(r)
        self.note(f"r{r} crashed")

    def step(self) -> bool:
        """Process one queued event; False when the queue is empty."""
        if not self.queue:
            return False
        kind, src, dst, payload = self.queue.popleft()
        if dst in self.crashed:
            return True
        rep = self.replicas[dst]
        if kind == "exec":
            seq, digest = payload
            heads = self.heads[dst]
            if seq > len(heads) or heads[seq - 1] != digest:
                return True  # rolled back since: the execute stage drops stale feedback
            self.apply(dst, rep.executed(seq, digest))
        else:
            self.apply(dst, rep.receive(src, payload))
        return True

    def run(self, max_events: int = MAX_EVENTS) -> int:
        count = 0
        while count < max_events and self.step():
            count += 1
        assert not self.queue, f"network still busy after {max_events} events"
        return count

    def release(self, reverse: bool = False) -> None:
        parked, self.parked = self.parked, []
        if reverse:
            parked.reverse()
        self.note(f"release {len(parked)}{' reversed' if reverse else ''}")
        self.queue.extend(parked)

    # --- applying actions -------------------------------------------------------------

    def apply(self, r: int, actions: Iterable[Any]) -> None:
        if r in self.crashed:
            return
        for act in actions:
            t = type(act)
            if t is Broadcast:
                self.note(f"r{r} Broadcast {self.fmt(act.msg)}")
                for dst in range(self.n):
                    if dst != r:
                        self._enqueue("msg", r, dst, act.msg)
            elif t is Send:
                self.note(f"r{r} Send r{act.to} {self.fmt(act.msg)}")
                if act.to < self.n:
                    self._enqueue("msg", r, act.to, act.msg)
                else:
                    self.to_clients.append((r, act.to, act.msg))
            elif t is Deliver:
                self.note(f"r{r} Deliver s{act.seq} v{act.view} {self.bname(act.batch.digest)}")
                ledger = self.delivered[r]
                assert not ledger or ledger[-1].seq + 1 == act.seq, "delivery has a gap"
                assert ledger or act.seq == 1, "delivery must start at seq 1"
                ledger.append(act)
                self.state[r] = hashlib.sha256(self.state[r] + act.batch.digest).digest()
                self.heads[r].append(self.state[r])
                self.queue.append(("exec", r, r, (act.seq, self.state[r])))
            elif t is StableCheckpoint:
                self.note(f"r{r} StableCheckpoint s{act.seq}")
                self.stable[r].append(act.seq)
            elif t is base.FetchState:
                # state transfer is the runtime's (fabric.runtime.state_transfer): noted only,
                # the cluster catches up by the batch fetch that goes with it
                self.note(f"r{r} FetchState s{act.seq}")
                self.state_fetches[r].append(act.seq)
            elif t is SetTimer:
                self.note(f"r{r} SetTimer {act.timer[-1]} {act.ticks}")
                self.timers[r][act.timer] = act.ticks
            elif t is CancelTimer:
                if act.timer in self.timers[r]:
                    self.note(f"r{r} CancelTimer {act.timer[-1]}")
                self.timers[r].pop(act.timer, None)
            elif t is base.ViewEntered:
                self.note(f"r{r} ViewEntered v{act.view} primary r{act.primary}")
                self.views[r].append((act.view, act.primary))
            elif t is Rollback:
                if not getattr(self.replicas[r], "speculative_replies", False):
                    raise AssertionError("PBFT never rolls back")
                self.note(f"r{r} Rollback to s{act.to_seq}")
                ledger = self.delivered[r]
                assert 0 <= act.to_seq <= len(ledger), "rollback beyond the ledger"
                del ledger[act.to_seq :]
                del self.heads[r][act.to_seq :]
                self.state[r] = self.heads[r][-1] if self.heads[r] else b""
            else:
                raise AssertionError(f"unknown action {act!r}")

    def _match(self, rules: list[Rule], src: int, dst: int, msg: Any) -> bool:
        name = type(msg).__name__
        return any(
            (s is None or s == src) and (d is None or d == dst) and (k is None or k == name)
            for s, d, k in rules
        )

    def _enqueue(self, kind: str, src: int, dst: int, msg: Any) -> None:
        if src in self.crashed:
            return
        if self._match(self.drop_rules, src, dst, msg):
            self.dropped += 1
            self.note(f"  drop r{src}->r{dst} {self.fmt(msg)}")
            return
        if self._match(self.hold_rules, src, dst, msg):
            self.parked.append((kind, src, dst, msg))
            return
        self.queue.append((kind, src, dst, msg))

    # --- observation ------------------------------------------------------------------

    def note(self, line: str) -> None:
        self.trace.append(line)

    def bname(self, digest: bytes) -> str:
        return self.names.get(digest, digest.hex()[:8])

    def fmt(self, msg: Any) -> str:
        t = type(msg)
        if t is PrePrepare:
            return f"PrePrepare v{msg.view} s{msg.seq} {self.bname(msg.batch.digest)}"
        if t is Prepare or t is Commit:
            return f"{t.__name__} v{msg.view} s{msg.seq} {self.bname(msg.digest)}"
        if t is Checkpoint:
            return f"Checkpoint s{msg.seq} {msg.state_digest.hex()[:8]}"
        if t is ViewChange:
            certs = ",".join(
                f"{c.pre_prepare.seq}:v{c.pre_prepare.view}:{self.bname(c.pre_prepare.digest)}"
                for c in msg.prepared
            )
            return f"ViewChange v{msg.new_view} stable={msg.stable_seq} prepared=[{certs}]"
        if t is NewView:
            vcs = ",".join(f"r{vc.replica}" for vc in msg.view_changes)
            pps = ",".join(f"{pp.seq}:{self.bname(pp.digest)}" for pp in msg.pre_prepares)
            return f"NewView v{msg.view} from=[{vcs}] pre_prepares=[{pps}]"
        if t is Request:
            return f"Request c{msg.client_id} t{msg.timestamp}"
        if t is Fetch:
            return f"Fetch s{msg.first_seq}..{msg.last_seq}"
        if t is FetchReply:
            return f"FetchReply s{msg.seq} {self.bname(msg.batch.digest)}"
        return t.__name__

    def ledger(self, r: int) -> list[tuple[int, str]]:
        return [(d.seq, self.bname(d.batch.digest)) for d in self.delivered[r]]

    def check_safety(self) -> None:
        """No two replicas delivered different batches at one seq."""
        at: dict[int, bytes] = {}
        for r in range(self.n):
            for d in self.delivered[r]:
                prev = at.setdefault(d.seq, d.batch.digest)
                assert prev == d.batch.digest, f"replicas disagree at seq {d.seq}"


# --- scripted scenarios ----------------------------------------------------------------


def view_change_traffic() -> tuple[Cluster, list[Any]]:
    """A PBFT run with checkpoints, a batch prepared but not committed, the primary's crash and
    a view change, and every message it sent (each PBFT message type appears; view changes
    nest prepared certificates and checkpoint proofs). Material for wire and fuzz tests."""
    c = Cluster(4, checkpoint_period=2, watermark_window=4, view_change_ticks=10)
    sent: list[Any] = []
    original = c._enqueue

    def spy(kind: str, src: int, dst: int, msg: Any) -> None:
        sent.append(msg)
        original(kind, src, dst, msg)

    c._enqueue = spy  # type: ignore[method-assign]
    for i in range(1, 4):
        c.propose(0, c.batch(f"b{i}"))
    c.run()
    c.drop_rules.append((None, None, "Commit"))
    c.propose(0, c.batch("b4"))
    c.run()
    c.drop_rules.clear()
    c.crash(0)
    req = c.batch("b5").requests[0]
    for r in range(4):
        c.client_request(r, req)
    c.run()
    for r in (1, 2, 3):
        c.fire(r, "request")
    c.run()
    return c, sent


def _replica(token: str) -> int | None:
    if token == "*":
        return None
    if not token.startswith("r"):
        raise ValueError(f"expected rN or *, got {token!r}")
    return int(token[1:])


def _rule(args: list[str]) -> Rule:
    src, _, dst = args[0].partition("->")
    kind = args[1] if len(args) > 1 and args[1] != "*" else None
    return (_replica(src), _replica(dst), kind)


# Cluster classes of other protocols, by the name a script's ``cluster protocol=...`` gives.
CLUSTER_MODULES: dict[str, tuple[str, str]] = {"poe": ("tests.protocol.poe_cluster", "PoeCluster")}

_CONFIG_KEYS: dict[str, Callable[[str], Any]] = {
    "n": int,
    "checkpoint_period": int,
    "watermark_window": int,
    "view_change_ticks": int,
    "max_buffered": int,
}


def run_script(text: str) -> list[str]:
    """Interpret a scenario script; return its trace (one line per event)."""
    cluster: Cluster | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cmd, *args = line.split()
        try:
            if cmd == "cluster":
                kwargs: dict[str, Any] = {}
                params: dict[str, Any] = {}
                cluster_cls: Any = Cluster
                for arg in args:
                    key, _, value = arg.partition("=")
                    if key in _CONFIG_KEYS:
                        kwargs[key] = _CONFIG_KEYS[key](value)
                    elif key == "signed":
                        params["pbft_signed_votes"] = value == "true"
                    elif key == "protocol" and value in CLUSTER_MODULES:
                        module, name = CLUSTER_MODULES[value]
                        cluster_cls = getattr(importlib.import_module(module), name)
                    elif key == "protocol" and value == "pbft":
                        pass
                    elif key.startswith(("poe_", "pbft_")):  # a protocol param, as a string
                        params[key] = value
                    else:
                        raise ValueError(f"unknown cluster option {key!r}")
                cluster = cluster_cls(params=params, **kwargs)
                cluster.note(f"# {line}")
                continue
            if cluster is None:
                raise ValueError("the script must start with 'cluster'")
            cluster.note(f"# {line}")
            if cmd == "propose":
                r = _replica(args[0])
                assert r is not None
                cluster.propose(r, cluster.batch(args[1]))
            elif cmd == "request":
                req = cluster.batch(args[1]).requests[0]
                target = _replica(args[0])
                for r in range(cluster.n) if target is None else [target]:
                    cluster.client_request(r, req)
            elif cmd == "drop":
                cluster.drop_rules.append(_rule(args))
            elif cmd == "hold":
                cluster.hold_rules.append(_rule(args))
            elif cmd == "heal":
                cluster.drop_rules.clear()
                cluster.hold_rules.clear()
            elif cmd == "release":
                cluster.release(reverse=bool(args and args[0] == "reverse"))
            elif cmd == "crash":
                r = _replica(args[0])
                assert r is not None
                cluster.crash(r)
            elif cmd == "run":
                cluster.run()
            elif cmd == "step":
                for _ in range(int(args[0])):
                    if not cluster.step():
                        break
            elif cmd == "timeout":
                r = _replica(args[0])
                assert r is not None
                cluster.fire(r, args[1])
            elif cmd == "status":
                r = _replica(args[0])
                assert r is not None
                st = cluster.replicas[r].status()
                fields = " ".join(f"{k}={st[k]}" for k in args[1:])
                cluster.note(f"r{r} status {fields}")
            elif cmd == "ledgers":
                cluster.check_safety()
                for r in range(cluster.n):
                    items = " ".join(f"{s}:{name}" for s, name in cluster.ledger(r))
                    cluster.note(f"r{r} ledger {items}")
            else:
                raise ValueError(f"unknown step {cmd!r}")
        except (ValueError, IndexError) as exc:
            raise ValueError(f"line {lineno}: {raw.strip()!r}: {exc}") from exc
    if cluster is None:
        raise ValueError("empty script")
    return cluster.trace
