"""ZeroMQ sockets of the runtime: addressing, a receiver per input thread, a sender per
output thread, and one context per process.

Addressing. Every node (replica i in 0..n-1, client c in n..n+C-1) binds
``inputs_of(node)`` input sockets, one per input thread; input k of node j is
``tcp://<host of j>:<base_port + j*8 + k>`` (k < 8) or ``ipc://<dir>/node-<j>-<k>``.
Hosts are assigned round-robin by node id (replicas first, then clients, as
``cluster.hosts`` says). A sender s reaches node j on input ``s % inputs_of(j)``,
so each link is one connection and frames on a link arrive in order.

Framing: ZMQ_STREAM sockets carrying our own frames over raw TCP (or ipc) streams
(issue 19, finding 5). A PULL socket cannot bound what a peer makes it hold: libzmq's
pipe keeps every part of a multipart message until the last part arrives, and
ZMQ_MAXMSGSIZE bounds each part, not their sum, so a raw ZMTP peer that never sent a last
part grew a replica by 1.66 GB, counted nowhere. So there is no ZMTP on the receive side:
the stream is a sequence of ``transport.wire`` frames (the 13-byte header already carries
the body length), each followed by its MAC tag, and the Receiver delimits them itself.
Its bounds, from ``protocols.limits``:
- a header is checked before a byte of its body is kept (magic, version, known kind, the
  kind's body bound, the frame bound, ``wire.FramePolicy``); a refused header cuts the
  connection (``send [routing_id, b""]``), since past it the stream cannot be trusted,
  so an unfinished frame is never larger than the bound its header passed;
- bytes of unfinished frames over all connections: ``MAX_INBOUND_BUFFERED_BYTES`` (past
  it the connection holding the most is cut);
- open connections: ``MAX_INBOUND_CONNECTIONS`` (one more is cut as it opens);
- what ZeroMQ itself queues per connection: ``recv_hwm`` reads of at most 8 KiB, clamped
  to ``MAX_INBOUND_QUEUE_CHUNKS``; past it libzmq stops reading that connection and TCP
  pushes back on the sender.
Every byte read is counted in ``received_bytes`` at once; every refused frame and every
cut connection is counted in ``drops`` by reason. ipc:// works the same way (libzmq runs
STREAM on any stream transport). On the hot path: one read hands over every small frame
that arrived together (one ZeroMQ call per 8 KiB, not per frame; a frame over 8 KiB takes
two or more); an idle ``recv_batch(n, 0)`` asks ZMQ_EVENTS instead of raising zmq.Again,
a waiting one waits in its first read (ZMQ_RCVTIMEO, the GIL released: no zmq_poll and no
ZMQ_EVENTS call, the wake-up brings the read), a drain of one read (the common case between
batches) ends on one ZMQ_EVENTS call, and a longer drain ends with one zmq.Again (cheaper
than a ZMQ_EVENTS call per read). ``reads`` / ``drains`` count them.

Receiver (owned by one thread): bytes -> frames (above) -> LinkAuth.open ->
wire.decode_body. The cheap checks on the header come before the MAC and the body, so a
client's 16 MB Batch costs a header read, not seconds of decoding. A frame whose MAC or
body is bad is counted and skipped (its boundary is known); nothing from the network makes
the Receiver raise. Sender (owned by one thread): encode once, seal per destination, send
without blocking, to each destination through its own STREAM socket connected with a
fixed routing id: frames queue (up to the HWM) while the peer is not up yet, and libzmq
reconnects a link that broke. A frame cut in half by a broken link is lost (the receiver
counts ``partial_frame``), and frames still queued on the old connection may be read after
the first ones of the new one: a rare reordering that the protocols tolerate.

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
routing by kind or any protocol logic (fabric/), the values of the bounds
(protocols.limits).
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

from protocols import limits
from transport import wire
from transport.auth import LinkAuth

#: input sockets per node are numbered 0..MAX_INPUTS-1 (the port stride per node)
MAX_INPUTS = 8
#: longest ipc:// path the OS accepts (sun_path is 108 bytes with the NUL)
MAX_IPC_PATH = 107
_KIND = struct.Struct("!H")
_KIND_OFFSET = 3  # magic(2) + version(1)
#: the routing id a Sender gives its one connection per STREAM socket (must not start
#: with a zero byte: libzmq keeps those for the ids it generates)
_PEER_ID = b"peer"
# plain ints, not pyzmq's enum members: ``int & IntFlag`` builds a new enum member each time
# (Flag.__and__, 0.6 us), and the receive loop tests ZMQ_EVENTS twice per drain
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_RCVTIMEO = int(zmq.RCVTIMEO)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
#: the backend's send, which zmq.Socket.send ends in after checking for DRAFT routing_id and
#: group arguments (we pass neither): called directly, a send costs half (bytes as they are)
_send = zmq.backend.Socket.send
#: Sender.send_frames joins sealed frames to one destination into one ZeroMQ message of
#: at most this many bytes (a larger frame goes alone): one send instead of one per
#: frame, and the SNDHWM (messages) still bounds the queued bytes by this times the HWM
MAX_JOINED_SEND_BYTES = 64 * 1024


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


class _Conn:
    """What a Receiver keeps of one inbound connection: the bytes of its unfinished frame
    and, once that frame's header passed, its sealed size, kind and sender."""

    __slots__ = ("buf", "need", "kind", "sender")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = 0  # sealed size of the frame at buf[0]; 0: its header is not checked
        self.kind = 0
        self.sender = 0


class Receiver:
    """One bound ZMQ_STREAM socket, owned by one input thread (not thread-safe): it
    delimits, checks, authenticates and decodes the frames of every inbound connection
    (module note: framing and its bounds).

    A cut completes (libzmq closes the connection) while the owner keeps calling
    ``recv_batch``, as an input stage does: the socket settles its pipes when it is used.

    Counters (cheap, read after the run): ``received_frames`` / ``received_bytes``
    (every frame delimited and every byte read, good or bad), ``received_by_kind``
    (accepted messages per wire kind), ``drops`` (refused frames and cut connections per
    reason), ``buffered_bytes`` / ``peak_buffered_bytes`` (bytes of unfinished frames held
    now / at most) and ``connections`` (open now).
    """

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        auth: LinkAuth,
        *,
        recv_hwm: int = limits.MAX_INBOUND_QUEUE_CHUNKS,
        max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES,
        policy: wire.FramePolicy | None = None,
        max_connections: int = limits.MAX_INBOUND_CONNECTIONS,
        max_buffered_bytes: int = limits.MAX_INBOUND_BUFFERED_BYTES,
    ) -> None:
        if recv_hwm < 1 or max_frame_bytes < wire.HEADER_SIZE or max_connections < 1:
            raise ValueError("recv_hwm, max_frame_bytes and max_connections must be positive")
        self.endpoint = endpoint
        self.auth = auth
        self.policy = policy
        self.max_frame_bytes = max_frame_bytes
        self._max_sealed = max_frame_bytes + auth.tag_size
        self.max_connections = max_connections
        # any legal frame fits, whatever the budget says
        self.max_buffered_bytes = max(max_buffered_bytes, self._max_sealed)
        self.recv_hwm = min(recv_hwm, limits.MAX_INBOUND_QUEUE_CHUNKS)
        self.received_frames = 0
        self.received_bytes = 0
        self.reads = 0  # ZeroMQ reads (one chunk of one connection each)
        self.drains = 0  # recv_batch calls that read at least once
        self.received_by_kind: Counter[int] = Counter()
        self.drops: Counter[str] = Counter()
        self.buffered_bytes = 0
        self.peak_buffered_bytes = 0
        self._conns: dict[bytes, _Conn] = {}
        # connections this side cut, until libzmq says they are gone (bounded, FIFO)
        self._cut: dict[bytes, None] = {}
        # messages decoded past max_items of the last call (at most one read's worth)
        self._carry: list[tuple[int, Any]] = []
        sock = ctx.socket(zmq.STREAM)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, self.recv_hwm)
            sock.setsockopt(zmq.SNDHWM, 16)  # we only ever send close requests
            sock.bind(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        self._rcvtimeo = -1  # the socket's RCVTIMEO now, ms (-1: blocks, never used so)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def recv_batch(self, max_items: int, timeout_ms: int) -> list[tuple[int, Any]]:
        """Up to ``max_items`` (sender, message) pairs.

        Waits at most ``timeout_ms`` when nothing is queued, then drains what is there
        without blocking. At most ``max_items`` reads (of up to 8 KiB each) are made per
        call, so a flood of bad bytes cannot hold the thread; messages decoded past
        ``max_items`` are returned first by the next call.
        """
        if max_items <= 0:
            return []
        out = self._carry
        if len(out) >= max_items:
            self._carry = out[max_items:]
            return out[:max_items]
        self._carry = []
        sock = self._sock
        get = sock.getsockopt
        if not out and timeout_ms <= 0 and not get(_EVENTS) & _POLLIN:
            return out
        recv = sock.recv
        feed = self._feed
        reads = 0
        if not out and timeout_ms > 0:
            # wait in the read itself (RCVTIMEO, the GIL released): no zmq_poll, no
            # ZMQ_EVENTS, the routing id of the first read comes with the wake-up
            if self._rcvtimeo != timeout_ms:
                sock.setsockopt(_RCVTIMEO, int(timeout_ms))
                self._rcvtimeo = timeout_ms
            try:
                routing_id = recv(0)
            except zmq.Again:
                return out
            reads = 1
            feed(routing_id, recv(_NOBLOCK), out)
        # ZMQ_EVENTS said (or the poll did) that a read is there. After the first read one
        # ZMQ_EVENTS call says whether a second is (a drain of one read, the common case
        # between batches, ends without an exception); past that a drain ends with one
        # zmq.Again, cheaper than a ZMQ_EVENTS call per read (bench transport)
        while reads < max_items and len(out) < max_items:
            if reads == 1 and not get(_EVENTS) & _POLLIN:
                break
            try:
                routing_id = recv(_NOBLOCK)
            except zmq.Again:
                break
            data = recv(_NOBLOCK)  # the second part of a STREAM message is already there
            reads += 1
            feed(routing_id, data, out)
        if reads:
            self.reads += reads
            self.drains += 1
        if len(out) > max_items:
            self._carry = out[max_items:]
            del out[max_items:]
        return out

    # --- framing ---------------------------------------------------------------------

    def _feed(self, routing_id: bytes, data: bytes, out: list[tuple[int, Any]]) -> None:
        """One read of one connection: an empty one says it opened or closed."""
        conn = self._conns.get(routing_id)
        if not data:
            if conn is not None:  # closed by the peer
                if conn.buf:
                    self.drops["partial_frame"] += 1
                    self.buffered_bytes -= len(conn.buf)
                del self._conns[routing_id]
            elif routing_id in self._cut:
                del self._cut[routing_id]  # a connection this side cut is gone
            else:
                self._open(routing_id)
            return
        self.received_bytes += len(data)
        if conn is None:
            if routing_id in self._cut:
                return  # bytes already queued on a connection this side cut: counted above
            conn = self._open(routing_id)  # data without a notification: take it as new
            if conn is None:
                return
        if conn.buf:  # an unfinished frame: append, then read from its start
            buf = conn.buf
            buf += data
            self.buffered_bytes += len(data)
            end = self._frames(routing_id, conn, buf, out)
            if routing_id not in self._conns:
                return  # cut while reading its frames: _cut_conn released its bytes
            if end:
                del buf[:end]
                self.buffered_bytes -= end
        else:  # read straight from the chunk, keep only an unfinished tail
            end = self._frames(routing_id, conn, data, out)
            if routing_id not in self._conns:
                return
            if end < len(data):
                conn.buf = bytearray(data[end:]) if end else bytearray(data)
                self.buffered_bytes += len(data) - end
        if self.buffered_bytes > self.peak_buffered_bytes:
            self.peak_buffered_bytes = self.buffered_bytes
        while self.buffered_bytes > self.max_buffered_bytes:
            conns = self._conns
            self._cut_conn(max(conns, key=lambda rid: len(conns[rid].buf)), "cut_buffered")

    def _frames(
        self, routing_id: bytes, conn: _Conn, data: bytes | bytearray, out: list[tuple[int, Any]]
    ) -> int:
        """Hand every whole frame of ``data`` to _accept; the offset of the first byte
        not used (the start of an unfinished frame), or 0 if the connection was cut."""
        pos = 0
        size = len(data)
        header_size = wire.HEADER_SIZE
        while True:
            need = conn.need
            if not need:
                if size - pos < header_size:
                    # a stream that does not open with our magic is cut at its first
                    # bytes (a ZMTP peer's greeting waits for ours before it goes on)
                    if size - pos >= 2 and data[pos : pos + 2] != wire.MAGIC:
                        self.received_frames += 1
                        self._cut_conn(routing_id, "magic")
                        return 0
                    return pos
                self.received_frames += 1
                try:
                    kind, sender, length = wire.check_header(data, pos, self.max_frame_bytes)
                    need = header_size + length + self.auth.tag_size
                    policy = self.policy
                    if policy is not None:
                        reason = policy.refuse(kind, sender, need)
                        if reason is not None:
                            raise wire.DecodeError(reason)
                except wire.DecodeError as exc:
                    self._cut_conn(routing_id, exc.reason)
                    return 0
                conn.need = need
                conn.kind = kind
                conn.sender = sender
            if size - pos < need:
                return pos
            if pos == 0 and need == size and type(data) is bytes:
                frame = data  # the read is exactly one frame (common): no copy
            else:
                frame = bytes(data[pos : pos + need])
            self._accept(frame, conn.kind, conn.sender, out)
            pos += need
            conn.need = 0

    def _open(self, routing_id: bytes) -> _Conn | None:
        if len(self._conns) >= self.max_connections:
            self._close(routing_id)
            self.drops["cut_connections"] += 1
            return None
        conn = self._conns[routing_id] = _Conn()
        return conn

    def _cut_conn(self, routing_id: bytes, reason: str) -> None:
        """Close a connection this side refuses; count why."""
        conn = self._conns.pop(routing_id, None)
        if conn is not None:
            self.buffered_bytes -= len(conn.buf)
            conn.buf = bytearray()
        self.drops[reason] += 1
        self._close(routing_id)

    def _close(self, routing_id: bytes) -> None:
        cut = self._cut
        cut[routing_id] = None
        while len(cut) > self.max_connections:
            del cut[next(iter(cut))]
        try:
            self._sock.send(routing_id, _SNDMORE_NOBLOCK)
            self._sock.send(b"", _NOBLOCK)
        except zmq.ZMQError:
            pass  # already gone

    def _accept(self, data: bytes, kind: int, sender: int, out: list[tuple[int, Any]]) -> None:
        """A delimited frame whose header passed: MAC, then body."""
        try:
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
    """A STREAM socket to every destination this output thread talks to (one per
    destination, connected lazily), owned by one thread. Never blocks: see the module note
    on drops.

    Counters: ``sent_frames`` / ``sent_bytes`` (sealed frames handed to ZeroMQ),
    ``sent_by_kind`` and ``send_drops`` (frames dropped per destination because its
    high-water mark was reached or its link was gone).
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
            sock = self._ctx.socket(zmq.STREAM)
            try:
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, self.send_hwm)
                # nothing is read from a destination: no notifications, and what a hostile
                # one writes back waits in a one-message queue, then TCP pushes back
                sock.setsockopt(zmq.STREAM_NOTIFY, 0)
                sock.setsockopt(zmq.RCVHWM, 1)
                # the pipe exists before the connection does: frames queue for a peer
                # that is not up yet, and the same id survives reconnects
                sock.setsockopt(zmq.CONNECT_ROUTING_ID, _PEER_ID)
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
        sock = self._socks.get(to) or self._socket(to)
        try:
            _send(sock, _PEER_ID, _SNDMORE_NOBLOCK)
            _send(sock, sealed, _NOBLOCK)
        except zmq.Again:
            self.send_drops[to] += 1
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            # the link's pipe is gone (libzmq gave up on it): a new socket next time
            self._socks.pop(to).close(linger=0)
            self.send_drops[to] += 1
            return False
        self.sent_frames += 1
        self.sent_bytes += len(sealed)
        (kind,) = _KIND.unpack_from(frame, _KIND_OFFSET)
        self.sent_by_kind[kind] += 1
        return True

    def send_frames(self, to: int, frames: list[bytes]) -> int:
        """Seal every encoded frame and hand them to ZeroMQ in order, joined into messages
        of up to MAX_JOINED_SEND_BYTES (the stream receiver delimits frames by their
        headers, so a join is invisible on the wire); the number of frames sent."""
        if len(frames) == 1:
            return int(self.send_frame(to, frames[0]))
        seal = self.auth.seal
        sent = 0
        group: list[bytes] = []
        size = 0
        for frame in frames:
            sealed = seal(to, frame)
            if group and size + len(sealed) > MAX_JOINED_SEND_BYTES:
                sent += self._send_joined(to, group, size)
                group = []
                size = 0
            group.append(sealed)
            size += len(sealed)
        if group:
            sent += self._send_joined(to, group, size)
        return sent

    def _send_joined(self, to: int, sealed: list[bytes], size: int) -> int:
        """One ZeroMQ message holding ``sealed`` frames; their count if sent, else 0."""
        sock = self._socks.get(to) or self._socket(to)
        try:
            _send(sock, _PEER_ID, _SNDMORE_NOBLOCK)
            _send(sock, sealed[0] if len(sealed) == 1 else b"".join(sealed), _NOBLOCK)
        except zmq.Again:
            self.send_drops[to] += len(sealed)
            return 0
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._socks.pop(to).close(linger=0)
            self.send_drops[to] += len(sealed)
            return 0
        self.sent_frames += len(sealed)
        self.sent_bytes += size
        by_kind = self.sent_by_kind
        for frame in sealed:
            (kind,) = _KIND.unpack_from(frame, _KIND_OFFSET)
            by_kind[kind] += 1
        return len(sealed)

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
