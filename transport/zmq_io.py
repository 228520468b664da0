"""ZeroMQ sockets of the runtime: addressing, a receiver per input thread, a sender per
output thread, and one context per process.

Addressing. Every node (replica i in 0..n-1, client c in n..n+C-1) binds
``inputs_of(node)`` PULL sockets, one per input thread; input k of node j is
``tcp://<host of j>:<base_port + j*8 + k>`` (k < 8) or ``ipc://<dir>/node-<j>-<k>``.
Hosts are assigned round-robin by node id (replicas first, then clients, as
``cluster.hosts`` says). A sender s reaches node j on input ``s % inputs_of(j)``,
so each link is one PUSH->PULL pipe and frames on a link arrive in order.

Receiver (owned by one thread): recv -> header checks (length, kind's body bound,
``wire.FramePolicy``: which kinds a client may send, how large) -> LinkAuth.open ->
wire.decode_body. The cheap checks on the header come before the MAC and the body, so a
client's 16 MB Batch costs a header read, not seconds of decoding. Every bad frame is
counted in ``drops`` by reason and skipped; nothing from the network makes it raise. Sender (owned by one thread): encode once, seal per
destination, send without blocking.

Why a full peer drops instead of blocking: sends use zmq.NOBLOCK. When a peer's
send high-water mark is reached (it is slow, dead or not up yet), the frame is
dropped and counted in ``send_drops[peer]``. Memory stays bounded (HWM frames per
peer) and one slow peer never stalls the output thread that serves the others;
BFT protocols already tolerate lost messages (retransmission, view change), and
the drop counts are reported so a run that lost frames says so.

Shutdown: every socket has LINGER 0, so close() never waits for unsent frames;
each owner thread closes its own Receiver/Sender, then the process calls
``close_context`` (which gives up after a bound instead of hanging).

Must not live here: frame layout (transport.wire), keys and MACs (transport.auth),
routing by kind or any protocol logic (fabric/).
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from transport import wire
from transport.auth import LinkAuth

#: input sockets per node are numbered 0..MAX_INPUTS-1 (the port stride per node)
MAX_INPUTS = 8
#: longest ipc:// path the OS accepts (sun_path is 108 bytes with the NUL)
MAX_IPC_PATH = 107
_KIND = struct.Struct("!H")
_KIND_OFFSET = 3  # magic(2) + version(1)


# --- addressing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Addressing:
    """Where every node's input sockets live. ``inputs_per_node``: one count for all
    nodes, or a mapping node id -> count (nodes absent from it have 1 input)."""

    kind: str  # tcp | ipc
    hosts: tuple[str, ...] = ("127.0.0.1",)
    base_port: int = 17000
    ipc_dir: str = ""
    inputs_per_node: int | Mapping[int, int] = 1
    _inputs: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("tcp", "ipc"):
            raise ValueError(f"transport kind {self.kind!r}: choose tcp | ipc")
        if self.kind == "tcp" and not self.hosts:
            raise ValueError("tcp addressing needs at least one host")
        if self.kind == "ipc" and not self.ipc_dir:
            raise ValueError("ipc addressing needs ipc_dir")
        object.__setattr__(self, "hosts", tuple(self.hosts))
        if isinstance(self.inputs_per_node, int):
            counts = [self.inputs_per_node]
        else:
            counts = list(self.inputs_per_node.values())
            self._inputs.update(self.inputs_per_node)
        for count in counts:
            if not 1 <= count <= MAX_INPUTS:
                raise ValueError(f"inputs per node {count} not in 1..{MAX_INPUTS}")

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any], ipc_dir: str | None = None, client_inputs: int = 1
    ) -> Addressing:
        """From a config mapping shaped like config/default.yaml (sections as dicts).

        Replicas get ``replica.input_threads`` inputs, clients ``client_inputs``.
        ipc_dir defaults to ``transport.ipc_dir`` if set, else a per-base-port
        folder under the system temp dir.
        """
        transport = cfg.get("transport", {})
        cluster = cfg.get("cluster", {})
        replicas = int(cluster.get("replicas", 4))
        clients = int(cluster.get("clients", 1))
        base_port = int(transport.get("base_port", 17000))
        replica_inputs = int(cfg.get("replica", {}).get("input_threads", 1))
        inputs: dict[int, int] = {i: replica_inputs for i in range(replicas)}
        inputs.update({replicas + c: client_inputs for c in range(clients)})
        if ipc_dir is None:
            ipc_dir = str(
                transport.get("ipc_dir")
                or os.path.join(tempfile.gettempdir(), f"bft-fabric-{base_port}")
            )
        return cls(
            kind=str(transport.get("kind", "tcp")),
            hosts=tuple(cluster.get("hosts", ["127.0.0.1"])),
            base_port=base_port,
            ipc_dir=ipc_dir,
            inputs_per_node=inputs,
        )

    def inputs_of(self, node_id: int) -> int:
        if isinstance(self.inputs_per_node, int):
            return self.inputs_per_node
        return self._inputs.get(node_id, 1)

    def host_of(self, node_id: int) -> str:
        return self.hosts[node_id % len(self.hosts)]

    def address(self, node_id: int, k: int) -> str:
        """The endpoint of input ``k`` of ``node_id`` (the receiver binds it, senders connect)."""
        if node_id < 0:
            raise ValueError(f"node id {node_id} < 0")
        if not 0 <= k < self.inputs_of(node_id):
            raise ValueError(f"node {node_id} has no input {k}")
        if self.kind == "ipc":
            path = os.path.join(self.ipc_dir, f"node-{node_id}-{k}")
            if len(path) > MAX_IPC_PATH:
                raise ValueError(f"ipc path longer than {MAX_IPC_PATH} bytes: {path}")
            return f"ipc://{path}"
        port = self.base_port + node_id * MAX_INPUTS + k
        if not 0 < port < 65536:
            raise ValueError(f"port {port} of node {node_id} input {k} out of range")
        return f"tcp://{self.host_of(node_id)}:{port}"

    def input_for(self, sender: int, to: int) -> int:
        """The input of ``to`` that ``sender`` writes to (one pipe per link: in order)."""
        return sender % self.inputs_of(to)


def address(node_id: int, k: int, cfg_like: Addressing | Mapping[str, Any]) -> str:
    """Endpoint of input ``k`` of ``node_id``, given an Addressing or a config mapping."""
    addressing = cfg_like if isinstance(cfg_like, Addressing) else Addressing.from_config(cfg_like)
    return addressing.address(node_id, k)


# --- one context per process ------------------------------------------------------------


def new_context(io_threads: int = 1) -> zmq.Context:
    """The process's one zmq.Context: create it once (main thread), pass it to every
    Receiver/Sender. One ZeroMQ IO thread moves ~300k small frames/s here; raise
    ``io_threads`` only if a profile shows it saturated."""
    ctx = zmq.Context(io_threads=io_threads)
    ctx.setsockopt(zmq.LINGER, 0)
    return ctx


def close_context(ctx: zmq.Context, timeout_s: float = 2.0) -> bool:
    """Terminate ``ctx`` after its sockets are closed; never hang.

    Owner threads close their own sockets first. If a socket is still open after
    ``timeout_s`` (an owner thread is stuck), give up and return False; the
    context is then reclaimed at process exit (all sockets have LINGER 0).
    """
    done = threading.Event()

    def term() -> None:
        ctx.term()
        done.set()

    threading.Thread(target=term, name="zmq-term", daemon=True).start()
    return done.wait(timeout_s)


# --- receiving ---------------------------------------------------------------------------


class Receiver:
    """One bound PULL socket, owned by one input thread (not thread-safe).

    Counters (cheap, read after the run): ``received_frames`` / ``received_bytes``
    (everything that came off the socket, good or bad), ``received_by_kind``
    (accepted messages per wire kind) and ``drops`` (rejected frames per reason).
    """

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        auth: LinkAuth,
        *,
        recv_hwm: int = 100_000,
        max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES,
        policy: wire.FramePolicy | None = None,
    ) -> None:
        if recv_hwm < 1 or max_frame_bytes < wire.HEADER_SIZE:
            raise ValueError("recv_hwm and max_frame_bytes must be positive")
        self.endpoint = endpoint
        self.auth = auth
        self.policy = policy
        self.max_frame_bytes = max_frame_bytes
        self._max_sealed = max_frame_bytes + auth.tag_size
        self.received_frames = 0
        self.received_bytes = 0
        self.received_by_kind: Counter[int] = Counter()
        self.drops: Counter[str] = Counter()
        sock = ctx.socket(zmq.PULL)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, recv_hwm)
            # Frames up to twice the bound are received and counted as too_long; ZeroMQ
            # cuts a peer that sends anything larger (memory stays bounded).
            sock.setsockopt(zmq.MAXMSGSIZE, 2 * self._max_sealed)
            sock.bind(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)

    def recv_batch(self, max_items: int, timeout_ms: int) -> list[tuple[int, Any]]:
        """Up to ``max_items`` (sender, message) pairs.

        Waits at most ``timeout_ms`` when nothing is queued, then drains what is
        there without blocking. At most ``max_items`` frames (good or bad) are
        read per call, so a flood of bad frames cannot hold the thread.
        """
        out: list[tuple[int, Any]] = []
        if max_items <= 0:
            return out
        sock = self._sock
        recv = sock.recv
        try:
            data = recv(zmq.NOBLOCK)
        except zmq.Again:
            if timeout_ms <= 0 or not self._poller.poll(timeout_ms):
                return out
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                return out
        frames = 1
        while True:
            self._accept(data, out)
            if frames >= max_items:
                break
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            frames += 1
        return out

    def _accept(self, data: bytes, out: list[tuple[int, Any]]) -> None:
        size = len(data)
        self.received_frames += 1
        self.received_bytes += size
        try:
            if size > self._max_sealed:
                raise wire.DecodeError("too_long", f"{size} bytes")
            # header first (the tag is not covered by its length field), then the MAC
            kind, sender, _ = wire.decode_header(
                memoryview(data)[: size - self.auth.tag_size], self.max_frame_bytes
            )
            policy = self.policy
            if policy is not None:
                reason = policy.refuse(kind, sender, size)
                if reason is not None:
                    raise wire.DecodeError(reason)
            frame = self.auth.open(data)
            msg = wire.decode_body(kind, memoryview(frame)[wire.HEADER_SIZE :])
        except wire.DecodeError as exc:
            self.drops[exc.reason] += 1
            return
        except Exception as exc:  # a bug, not an attack: count it, never kill the thread
            self.drops[f"error:{type(exc).__name__}"] += 1
            return
        self.received_by_kind[msg.KIND] += 1
        out.append((sender, msg))

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(linger=0)


# --- sending -----------------------------------------------------------------------------


class Sender:
    """PUSH sockets to every destination this output thread talks to (one per destination,
    connected lazily), owned by one thread. Never blocks: see the module note on drops.

    Counters: ``sent_frames`` / ``sent_bytes`` (sealed frames handed to ZeroMQ),
    ``sent_by_kind`` and ``send_drops`` (frames dropped per destination because its
    high-water mark was reached).
    """

    def __init__(
        self,
        ctx: zmq.Context,
        addressing: Addressing,
        node_id: int,
        auth: LinkAuth,
        *,
        send_hwm: int = 100_000,
    ) -> None:
        if send_hwm < 1:
            raise ValueError("send_hwm must be positive")
        self._ctx = ctx
        self.addressing = addressing
        self.node_id = node_id
        self.auth = auth
        self.send_hwm = send_hwm
        self._socks: dict[int, zmq.Socket] = {}
        self.sent_frames = 0
        self.sent_bytes = 0
        self.sent_by_kind: Counter[int] = Counter()
        self.send_drops: Counter[int] = Counter()
        self._closed = False

    def _socket(self, to: int) -> zmq.Socket:
        sock = self._socks.get(to)
        if sock is None:
            if self._closed:
                raise RuntimeError("Sender is closed")
            endpoint = self.addressing.address(to, self.addressing.input_for(self.node_id, to))
            sock = self._ctx.socket(zmq.PUSH)
            try:
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, self.send_hwm)
                sock.setsockopt(zmq.IMMEDIATE, 0)  # queue for a peer that is not up yet
                sock.connect(endpoint)
            except BaseException:
                sock.close(linger=0)
                raise
            self._socks[to] = sock
        return sock

    def send(self, to: int, msg: Any) -> bool:
        """Encode, seal and send ``msg`` to node ``to``; False if dropped (peer full)."""
        return self.send_frame(to, wire.encode(msg, self.node_id))

    def send_frame(self, to: int, frame: bytes) -> bool:
        """Seal and send an encoded frame (whose header names this node as sender)."""
        sealed = self.auth.seal(to, frame)
        try:
            self._socket(to).send(sealed, zmq.NOBLOCK)
        except zmq.Again:
            self.send_drops[to] += 1
            return False
        self.sent_frames += 1
        self.sent_bytes += len(sealed)
        (kind,) = _KIND.unpack_from(frame, _KIND_OFFSET)
        self.sent_by_kind[kind] += 1
        return True

    def broadcast(self, targets: Iterable[int], msg: Any) -> int:
        """Encode once, seal per target; the number of targets the frame was handed to."""
        frame = wire.encode(msg, self.node_id)
        sent = 0
        for to in targets:
            sent += self.send_frame(to, frame)
        return sent

    def close(self) -> None:
        self._closed = True
        for sock in self._socks.values():
            sock.close(linger=0)
        self._socks.clear()
