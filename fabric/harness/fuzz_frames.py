"""Hostile frames for the live fuzzer (``python -m fabric fuzz``): seeded generators, one per
class, each frame carrying the fate its target replica must give it.

A frame's fate is a drop reason the target's Receiver or input stage counts
(``transport.zmq_io``), or ``accepted:<Kind>`` for a frame that passes the MAC and decodes
(it reaches the input stage and the protocol, which ignore what is stale or forged). Fates
are computed with the functions the Receiver itself calls, not a copy of them:
``wire.check_header`` and the replica's ``wire.FramePolicy`` for a header,
``LinkAuth.open`` and ``wire.decode_body`` for a delimited frame.

The target reads one TCP stream per connection and cuts a connection at the first header
it refuses (past it the stream cannot be trusted), so the rest of that stream is never
counted. The generator therefore shapes traffic as *bursts*, one connection each: any
number of stream frames (their header passes, each one is counted on its own), then at
most one terminal frame that ends the connection (a refused header, or a frame cut short
by closing the connection: ``partial_frame``). Every frame sent is then counted exactly
once, and the fuzzer's expected counts can be compared with the replica's counters.

Classes (``CLASSES``): stream frames ``garbage_body`` (a valid header, random body and
tag), ``wrong_key`` (a genuine frame sealed with a key that is not the link's),
``replay`` (byte-identical replays of genuine frames on the compromised link) and
``mac_hostile`` (a compromised peer: bodies sealed with the real link key, either random
messages of every registered kind, genuine ones with a field replaced, truncated or
padded genuine bodies, or random bytes); terminal frames ``random_bytes``,
``bad_header`` (wrong magic, version, unknown kind, negative sender, a client sending a
replica's kind), ``oversized`` (over the frame bound, the kind's bound, the client bound:
the header alone is sent, it is refused before its body) and ``truncated``.

Genuine frames are what the compromised peer really sent the target: the live fuzzer
captures them off the loopback interface during the warm-up (``whole_frames`` cuts the
TCP segments into frames); without the rights to capture (or with ``--no-capture``) they
are the messages the peer sent the target in a short seeded run of the simulator (the
runtime's own protocol code), sealed as the peer's Sender seals them.

Sans-IO: no sockets, clocks or global randomness (one ``random.Random(seed)``), so a seed
replays the same frames (given the same genuine ones: captured frames differ per run).

Must not live here: sockets, capture and pacing (fabric.harness.fuzz), the report
(fabric.harness.fuzz_report).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols import codec
from protocols.common import Request
from transport import auth, wire

#: the classes of hostile frames and what each is
CLASSES: dict[str, str] = {
    "garbage_body": "valid header (known kind, sender, length), random body and MAC tag",
    "wrong_key": "genuine frame sealed with a key that is not the link's",
    "replay": "byte-identical replay of a genuine frame on the compromised link",
    "mac_hostile": "hostile body sealed with the compromised link's real key",
    "random_bytes": "random bytes (ends its connection)",
    "bad_header": "wrong magic / version / unknown kind / bad sender / client kind (ends it)",
    "oversized": "header over the frame, kind or client bound (ends it)",
    "truncated": "a frame cut short by closing the connection (ends it)",
}
STREAM_CLASSES = ("garbage_body", "wrong_key", "replay", "mac_hostile")
TERMINAL_CLASSES = ("random_bytes", "bad_header", "oversized", "truncated")
#: relative weights of the stream classes within a burst
STREAM_WEIGHTS = (30, 10, 25, 35)
#: relative weights of the terminal classes
TERMINAL_WEIGHTS = (25, 30, 20, 25)
#: stream frames per burst (one connection): uniform in 0..2x this, so ~this on average
MEAN_BURST_FRAMES = 96
#: a burst ends with a terminal frame with this probability (else the connection just closes)
TERMINAL_SHARE = 0.6
#: bytes of a random body or random-bytes frame: mostly small, sometimes several reads
MAX_SMALL_BODY_BYTES = 512
MAX_LARGE_BODY_BYTES = 24 * 1024
LARGE_BODY_SHARE = 0.03
#: genuine messages kept for replays and mutations (memory bound of the source)
MAX_GENUINE = 2048
#: hostile frames sealed with the link key kept for re-sending, and the share of fresh ones
MAX_HOSTILE_POOL = 1024
FRESH_HOSTILE_SHARE = 0.1
#: requests per simulated client in the run genuine messages come from
GENUINE_REQUESTS = 40
#: items per tuple and nesting depth of a random message
MAX_RANDOM_ITEMS = 4
MAX_RANDOM_DEPTH = 3
#: the accepted fate's prefix: ``accepted:<message class name>``
ACCEPTED = "accepted:"

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True, slots=True)
class FuzzTarget:
    """What the fuzzer knows of its target: the cluster's shape, the wire bounds, the
    target's frame policy, and the one link key it holds (link ``peer`` <-> ``target``;
    None when links carry no MAC)."""

    n: int
    node_count: int
    target: int
    peer: int
    mac: str
    link_key: bytes | None
    max_frame_bytes: int
    policy: wire.FramePolicy
    kinds: frozenset[int]  # the wire kinds the target's process registers (its protocol's)

    @property
    def tag_size(self) -> int:
        return auth.TAG_BYTES[self.mac]

    def peer_auth(self) -> auth.LinkAuth:
        """The compromised peer's LinkAuth: it holds only its link to the target."""
        if self.mac == "none":
            return auth.LinkAuth("none", self.peer, None)
        assert self.link_key is not None
        keys = auth.KeyStore({self.mac: {(self.peer, self.target): self.link_key}}, {}, {})
        return auth.LinkAuth(self.mac, self.peer, keys)

    def target_auth(self) -> auth.LinkAuth:
        """The target's side of that one link (what its Receiver does with the peer's frames;
        frames claiming any other sender are refused before a key is needed)."""
        if self.mac == "none":
            return auth.LinkAuth("none", self.target, None)
        assert self.link_key is not None
        keys = auth.KeyStore({self.mac: {(self.peer, self.target): self.link_key}}, {}, {})
        return auth.LinkAuth(self.mac, self.target, keys)


@dataclass(slots=True)
class Frame:
    cls: str  # one of CLASSES
    data: bytes
    fate: str  # the drop reason the target counts, or ACCEPTED + message class name


def header_fate(target: FuzzTarget, data: bytes) -> str | None:
    """The reason the target's Receiver refuses the header at the start of ``data``
    (``data`` holds at least the header), or None if it passes: the Receiver's own checks,
    with the target's kinds (this process may register more protocols' messages)."""
    kind = wire.HEADER.unpack_from(data, 0)[2]
    try:
        kind, sender, length = wire.check_header(data, 0, target.max_frame_bytes)
    except wire.DecodeError as exc:
        if exc.reason in ("unknown_kind", "too_long_for_kind") and kind not in target.kinds:
            return "unknown_kind"
        return exc.reason
    if kind not in target.kinds:
        return "unknown_kind"
    return target.policy.refuse(kind, sender, wire.HEADER_SIZE + length + target.tag_size)


def body_fate(target: FuzzTarget, opener: auth.LinkAuth, sealed: bytes) -> str:
    """The fate of a sealed frame whose header passed: the Receiver's MAC, then decode."""
    _, _, kind, sender, _ = wire.HEADER.unpack_from(sealed, 0)
    if target.tag_size and sender != target.peer:
        # the fuzzer holds no key of this link; the target holds one for every node of the
        # run, and the tag is random: a MAC failure, or a sender it has no key for
        return "mac" if 0 <= sender < target.node_count else "unknown_sender"
    try:
        frame = opener.open(sealed)
        msg = wire.decode_body(kind, memoryview(frame)[wire.HEADER_SIZE :])
    except wire.DecodeError as exc:
        return exc.reason
    return ACCEPTED + type(msg).__name__


def _header(
    kind: int, sender: int, length: int, magic: bytes = wire.MAGIC, version: int = wire.VERSION
) -> bytes:
    return wire.HEADER.pack(magic, version, kind, sender, length)


# --- random values of wire field types --------------------------------------------------


def _random_int(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.6:
        return rng.randint(-2, 12)
    if pick < 0.8:
        return rng.randint(0, 1 << 20)
    return rng.randint(_INT64_MIN, _UINT64_MAX)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def _message_classes() -> frozenset[type]:
    return frozenset(codec.registered_kinds().values())


def random_value(tp: Any, rng: random.Random, depth: int = 0, bound: int | None = None) -> Any:
    """A random value of a wire field type (the types protocols.codec accepts), within its
    ``Max`` bound (one time in twenty just past it: a decode case)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        found = next((m.n for m in meta if isinstance(m, codec.Max)), None)
        if found is not None and rng.random() < 0.05:
            found += 1  # field_too_long / too_many_items
        return random_value(base, rng, depth, found)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if rng.random() < 0.3 else random_value(inner, rng, depth, bound)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            most = MAX_RANDOM_ITEMS if depth < MAX_RANDOM_DEPTH else 0
            if bound is not None:
                most = min(most, bound)
            return tuple(random_value(args[0], rng, depth + 1) for _ in range(rng.randint(0, most)))
        return tuple(random_value(a, rng, depth + 1) for a in args)
    if isinstance(tp, type) and tp in _message_classes():
        inner_msg = random_message(tp, rng, depth + 1)
        if inner_msg is None:
            raise ValueError(f"no random {tp.__name__}")  # refuses the enclosing message
        return inner_msg
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return _random_int(rng)
    if tp is float:
        return rng.uniform(-1e9, 1e9)
    if tp is bytes:
        most = 48 if bound is None else min(bound, MAX_SMALL_BODY_BYTES)
        return rng.randbytes(most if rng.random() < 0.6 else rng.randint(0, most))
    if tp is str:
        return "".join(rng.choice("abcxyz019") for _ in range(rng.randint(0, 24)))
    raise TypeError(f"no random value for wire field type {tp!r}")


def random_message(cls: type, rng: random.Random, depth: int = 0) -> Any:
    """A random instance of the registered message class ``cls``; None if its constructor
    refuses the values drawn (the decoder refuses them too)."""
    hints = _hints(cls)
    try:
        values = {f.name: random_value(hints[f.name], rng, depth) for f in dataclasses.fields(cls)}
        return cls(**values)
    except (ValueError, TypeError):
        return None


def mutate(msg: Any, rng: random.Random) -> Any:
    """``msg`` with one top-level field replaced by a random value of its type."""
    fields = dataclasses.fields(msg)
    if not fields:
        return msg
    field = rng.choice(fields)
    hints = _hints(type(msg))
    try:
        value = random_value(hints[field.name], rng, 1)
        return dataclasses.replace(msg, **{field.name: value})
    except (ValueError, TypeError):
        return msg


# --- genuine traffic ---------------------------------------------------------------------


def genuine_messages(protocol: str, n: int, peer: int, target: int, seed: int) -> list[Any]:
    """Messages replica ``peer`` sent replica ``target`` in a short seeded simulator run of
    ``protocol`` at ``n`` replicas (at most MAX_GENUINE; if ``peer`` sent none, what any
    replica sent the target), for replays and mutations."""
    from fabric.sim.simulator import Simulator

    kept: list[Any] = []
    others: list[Any] = []

    class Recorder(Simulator):
        def _transmit(self, src: int, dst: int, msg: Any, mutate: bool = True) -> None:
            if dst == target and src < n and len(kept) + len(others) < 2 * MAX_GENUINE:
                (kept if src == peer else others).append(msg)
            super()._transmit(src, dst, msg, mutate)

    if n < 4:
        return []  # the simulator needs n >= 4: replays fall back to hostile frames
    from fabric.sim.simulator import SimOptions

    options = SimOptions(requests=GENUINE_REQUESTS, view_change_ticks=40)
    Recorder(protocol, n, seed=seed, faults="crash", options=options).run()
    return (kept or others)[:MAX_GENUINE]


# --- the source of bursts ----------------------------------------------------------------


class FrameSource:
    """Seeded bursts of hostile frames (module note); ``counts`` says how many frames of each
    class and fate it made."""

    def __init__(
        self,
        target: FuzzTarget,
        genuine: Sequence[Any],
        seed: int,
        captured: Sequence[bytes] = (),
    ) -> None:
        """``genuine``: messages of the protocol (simulated); ``captured``: sealed frames the
        peer really sent the target (``whole_frames`` of captured segments). Captured frames,
        when there are any, are the ones replayed byte for byte, and their messages are the
        ones mutated."""
        self.target = target
        self.rng = random.Random(seed)
        self.seal = target.peer_auth().seal
        self._opener = target.target_auth()
        captured = list(captured)[:MAX_GENUINE]
        live = []
        for sealed in captured:
            try:
                frame = self._opener.open(sealed)
                live.append(wire.decode(frame, target.max_frame_bytes)[1])
            except wire.DecodeError:
                pass  # replayed as it is; its fate says why the target refuses it
        self.genuine = (live or list(genuine))[:MAX_GENUINE]
        registered = codec.registered_kinds()
        self.kinds = sorted(k for k in registered if k in target.kinds)
        self.classes = [registered[k] for k in self.kinds]
        # kinds whose own bound is below the frame bound (a header can say too_long_for_kind)
        self._bounded_kinds = [
            k
            for k in self.kinds
            if (codec.max_body_of(k) or target.max_frame_bytes) + wire.HEADER_SIZE
            < target.max_frame_bytes
        ]
        # genuine frames on the compromised link: captured ones, else the genuine messages
        # sealed as the peer's Sender seals them (byte for byte what it would send)
        self.sealed_genuine = captured or [
            self.seal(target.target, wire.encode(msg, target.peer)) for msg in self.genuine
        ]
        wrong = random.Random(seed ^ 0x5EED)
        self._wrong_key = wrong.randbytes(auth.LINK_KEY_BYTES.get(target.mac, 16))
        wrong_keys = auth.KeyStore(
            {target.mac: {(target.peer, target.target): self._wrong_key}}
            if target.mac != "none"
            else {},
            {},
            {},
        )
        self._wrong_seal = auth.LinkAuth(
            target.mac, target.peer, wrong_keys if target.mac != "none" else None
        ).seal
        self._replays = [Frame("replay", data, self._fate(data)) for data in self.sealed_genuine]
        self._hostile_pool: list[Frame] = []
        self._stream = (self._garbage_body, self._wrong_key_frame, self._replay, self._mac_hostile)
        self._terminal = (self._random_bytes, self._bad_header, self._oversized, self._truncated)

    # bursts ---------------------------------------------------------------------------
    def burst(self, max_frames: int) -> list[Frame]:
        """One connection's frames (at most ``max_frames``): stream frames, then maybe a
        terminal one."""
        rng = self.rng
        if max_frames <= 0:
            return []
        frames = [
            rng.choices(self._stream, STREAM_WEIGHTS)[0]()
            for _ in range(min(rng.randint(0, 2 * MEAN_BURST_FRAMES), max_frames))
        ]
        if len(frames) < max_frames and (not frames or rng.random() < TERMINAL_SHARE):
            frames.append(rng.choices(self._terminal, TERMINAL_WEIGHTS)[0]())
        return frames

    # stream classes -------------------------------------------------------------------
    def _body_size(self, kind: int) -> int:
        rng = self.rng
        most = MAX_LARGE_BODY_BYTES if rng.random() < LARGE_BODY_SHARE else MAX_SMALL_BODY_BYTES
        bound = codec.max_body_of(kind)
        if bound is not None:
            most = min(most, bound)
        return rng.randint(0, most)

    def _garbage_body(self) -> Frame:
        rng, t = self.rng, self.target
        if rng.random() < 0.8:  # a replica's claim: any kind
            sender = rng.randrange(t.n)
            kind = rng.choice(self.kinds)
        else:  # a client's (known or not): a Request, as the policy demands
            sender = rng.randrange(t.n, t.node_count + 8)
            kind = Request.KIND
        body = rng.randbytes(self._body_size(kind))
        data = _header(kind, sender, len(body)) + body + rng.randbytes(t.tag_size)
        return Frame("garbage_body", data, self._fate(data))

    def _fate(self, data: bytes) -> str:
        reason = header_fate(self.target, data)
        return reason if reason is not None else body_fate(self.target, self._opener, data)

    def _genuine_frame(self) -> bytes:
        if self.genuine:
            return wire.encode(self.rng.choice(self.genuine), self.target.peer)
        return wire.encode(self._random_message(), self.target.peer)

    def _wrong_key_frame(self) -> Frame:
        data = self._wrong_seal(self.target.target, self._genuine_frame())
        return Frame("wrong_key", data, self._fate(data))

    def _replay(self) -> Frame:
        if not self._replays:
            return self._mac_hostile()
        return self.rng.choice(self._replays)

    def _random_message(self) -> Any:
        rng = self.rng
        for _ in range(8):
            msg = random_message(rng.choice(self.classes), rng)
            if msg is not None:
                return msg
        return Request(client_id=self.target.n, timestamp=0, txns=b"", signature=b"")

    def _mac_hostile(self) -> Frame:
        """A hostile frame sealed with the real link key: a fresh one (FRESH_HOSTILE_SHARE of
        the time, or while the pool fills), else one of the pool's (building a random message
        costs ~100x sending it)."""
        rng, pool = self.rng, self._hostile_pool
        if len(pool) < MAX_HOSTILE_POOL or rng.random() < FRESH_HOSTILE_SHARE:
            frame = self._fresh_hostile()
            if len(pool) < MAX_HOSTILE_POOL:
                pool.append(frame)
            else:
                pool[rng.randrange(MAX_HOSTILE_POOL)] = frame
            return frame
        return rng.choice(pool)

    def _fresh_hostile(self) -> Frame:
        rng, t = self.rng, self.target
        pick = rng.random()
        if pick < 0.35 or not self.genuine:
            kind, body = codec.kind_and_body(self._random_message())
        elif pick < 0.7:
            kind, body = codec.kind_and_body(mutate(rng.choice(self.genuine), rng))
        else:
            kind, body = codec.kind_and_body(rng.choice(self.genuine))
            if pick < 0.8 and body:
                body = body[: rng.randrange(len(body))]  # truncated body, length matches
            elif pick < 0.9:
                body = body + rng.randbytes(rng.randint(1, 16))  # trailing junk
            else:
                body = rng.randbytes(len(body))  # random bytes of a genuine length
        bound = codec.max_body_of(kind)
        if bound is not None and len(body) > bound:
            body = body[:bound]
        data = self.seal(t.target, _header(kind, t.peer, len(body)) + body)
        return Frame("mac_hostile", data, self._fate(data))

    # terminal classes -----------------------------------------------------------------
    def _random_bytes(self) -> Frame:
        rng = self.rng
        data = rng.randbytes(rng.randint(wire.HEADER_SIZE, MAX_SMALL_BODY_BYTES))
        if data[:2] == wire.MAGIC:
            data = b"\x00" + data[1:]
        return Frame("random_bytes", data, "magic")

    def _bad_header(self) -> Frame:
        rng, t = self.rng, self.target
        kind = rng.choice(self.kinds)
        sender = rng.randrange(t.n)
        how = rng.randrange(5)
        if how == 0:
            magic = rng.randbytes(2)
            magic = magic if magic != wire.MAGIC else b"\x00\x00"
            head = _header(kind, sender, 0, magic=magic)
        elif how == 1:
            version = rng.choice([v for v in range(256) if v != wire.VERSION])
            head = wire.HEADER.pack(wire.MAGIC, version, kind, sender, 0)
        elif how == 2:
            unknown = rng.choice([k for k in range(1, 400) if k not in codec.registered_kinds()])
            head = _header(unknown, sender, 0)
        elif how == 3:
            head = _header(kind, rng.randint(-(2**31), -1), 0)
        else:
            client_kinds = t.policy.client_kinds
            kind = rng.choice([k for k in self.kinds if k not in client_kinds])
            head = _header(kind, rng.randrange(t.n, t.node_count + 8), 0)
        fate = header_fate(t, head)
        assert fate is not None, "a bad header must be refused"
        return Frame("bad_header", head + rng.randbytes(rng.randint(0, 64)), fate)

    def _oversized(self) -> Frame:
        rng, t = self.rng, self.target
        how = rng.randrange(3)
        bounded = self._bounded_kinds
        if how == 0 or not bounded:
            head = _header(rng.choice(self.kinds), rng.randrange(t.n), t.max_frame_bytes)
        elif how == 1:
            kind = rng.choice(bounded)
            bound = codec.max_body_of(kind)
            assert bound is not None
            length = bound + 1 + rng.randrange(1024)
            if wire.HEADER_SIZE + length > t.max_frame_bytes:
                length = bound + 1
            head = _header(kind, rng.randrange(t.n), length)
        else:
            length = t.policy.max_client_frame_bytes  # header + tag push it past the bound
            head = _header(Request.KIND, rng.randrange(t.n, t.node_count), length)
        fate = header_fate(t, head)
        if fate is None:  # the bounds of this config admit it: make it over the frame bound
            head = _header(rng.choice(self.kinds), rng.randrange(t.n), t.max_frame_bytes)
            fate = header_fate(t, head)
        assert fate is not None
        return Frame("oversized", head, fate)

    def _truncated(self) -> Frame:
        rng = self.rng
        whole = rng.choice(self.sealed_genuine) if self.sealed_genuine else self._mac_hostile().data
        if header_fate(self.target, whole) is not None:
            return self._random_bytes()
        # at least the magic and at most one byte short: the connection closes mid-frame
        cut = rng.randint(2, len(whole) - 1)
        return Frame("truncated", whole[:cut], "partial_frame")


def whole_frames(payload: bytes, sender: int, tag_size: int, max_frame_bytes: int) -> list[bytes]:
    """The sealed frames from ``sender`` in ``payload`` if it is exactly a sequence of whole
    frames (a TCP segment that starts on a frame boundary, as a Sender's sends do), else
    none: a segment that starts mid-frame or ends mid-frame is skipped, not guessed at."""
    out: list[bytes] = []
    pos = 0
    size = len(payload)
    while pos < size:
        if size - pos < wire.HEADER_SIZE:
            return []
        try:
            _, frame_sender, length = wire.check_header(payload, pos, max_frame_bytes)
        except wire.DecodeError:
            return []
        end = pos + wire.HEADER_SIZE + length + tag_size
        if end > size:
            return []
        if frame_sender == sender:
            out.append(payload[pos:end])
        pos = end
    return out


def expected_counts(frames: Sequence[Frame]) -> dict[str, dict[str, int]]:
    """class -> fate -> frames (a summary of what a sequence of frames should make the
    target count)."""
    out: dict[str, dict[str, int]] = {}
    for frame in frames:
        by_fate = out.setdefault(frame.cls, {})
        by_fate[frame.fate] = by_fate.get(frame.fate, 0) + 1
    return out
