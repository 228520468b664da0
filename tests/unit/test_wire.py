"""Wire format: every registered message kind round-trips, and nothing a peer can send
makes decode raise anything but wire.DecodeError (with the right reason).

Message instances are built from each class's type hints (strategy_for), so a
kind registered by any protocol package is covered without editing this file.
Must not live here: MAC or socket tests (test_auth.py, integration/test_transport.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
import protocols.common  # noqa: F401  (registers kinds 1-3)
from protocols import codec
from protocols.common import Batch, Reply, Request, make_batch
from tests.strategies import INT64_MIN, UINT64_MAX, message_strategy
from transport import wire


def _import_protocol_modules() -> dict[str, str]:
    """Import every module under protocols/ (their @message classes register); errors by name."""
    errors: dict[str, str] = {}

    def onerror(name: str) -> None:
        errors[name] = "package failed to import while walking"

    for info in pkgutil.walk_packages(protocols.__path__, "protocols.", onerror=onerror):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # reported by test_every_protocol_module_imports
            errors[info.name] = f"{type(exc).__name__}: {exc}"
    return errors


IMPORT_ERRORS = _import_protocol_modules()


# A test-only message (kind outside the documented 1-255 ranges) using every field shape
# wire supports, so the round trip covers them even before a protocol uses them.
@codec.message(65000)
@dataclasses.dataclass(frozen=True, slots=True)
class AllShapes:
    flag: bool
    ratio: float
    name: str
    maybe: int | None
    pair: tuple[int, bytes]
    names: tuple[str, ...]
    inner: Request | None
    batches: tuple[Batch, ...]


KINDS = sorted(codec.registered_kinds())
SETTINGS = settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])

# --- strategies from type hints: tests/strategies.py -------------------------------------

any_message = st.sampled_from(KINDS).flatmap(
    lambda kind: message_strategy(codec.registered_kinds()[kind])
)
senders = st.integers(-(2**31), 2**31 - 1)


def decode_or_error(frame: bytes, max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES) -> Any:
    """decode's result, or the DecodeError it raised; any other exception fails the test."""
    try:
        sender, msg = wire.decode(frame, max_frame_bytes)
    except wire.DecodeError as exc:
        assert exc.reason, "a DecodeError must carry a reason"
        return exc
    assert isinstance(msg, tuple(codec.registered_kinds().values()))
    assert -(2**31) <= sender < 2**31
    return sender, msg


def header(kind: int, sender: int, length: int, magic: bytes = wire.MAGIC, version: int = 1):
    return wire.HEADER.pack(magic, version, kind, sender, length)


# --- registry ------------------------------------------------------------------------------


def test_every_protocol_module_imports() -> None:
    assert IMPORT_ERRORS == {}, "protocol modules that fail to import are not round-trip tested"


def test_common_kinds_registered() -> None:
    kinds = codec.registered_kinds()
    assert kinds[1] is Request and kinds[2] is Batch and kinds[3] is Reply
    assert Request.KIND == 1 and codec.kind_of(make_batch(())) == 2


def test_registration_rejects_a_taken_kind_and_unfrozen_classes() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @codec.message(1)
        @dataclasses.dataclass(frozen=True)
        class Impostor:
            x: int

    # same (qualified) name as the owner of kind 1, other module: must not replace it
    namesake = dataclasses.make_dataclass("Request", [("x", int)], frozen=True)
    assert namesake.__qualname__ == Request.__qualname__
    with pytest.raises(ValueError, match="already registered"):
        codec.message(1)(namesake)

    assert codec.registered_kinds()[1] is protocols.common.Request
    with pytest.raises(ValueError, match="already registered as kind 1"):
        codec.message(65001)(protocols.common.Request)

    with pytest.raises(TypeError, match="init"):

        @codec.message(65002)
        @dataclasses.dataclass(frozen=True)
        class Derived:
            x: int
            y: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="frozen"):

        @codec.message(65000)
        @dataclasses.dataclass
        class Mutable:
            x: int


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data(), sender=senders)
def test_round_trip_of_every_kind(kind: int, data: st.DataObject, sender: int) -> None:
    cls = codec.registered_kinds()[kind]
    msg = data.draw(message_strategy(cls), label=cls.__name__)
    frame = wire.encode(msg, sender)
    got_sender, got = wire.decode(frame)
    assert got_sender == sender
    assert type(got) is cls and got == msg
    assert wire.encode(got, sender) == frame  # canonical: re-encoding gives the same bytes
    assert frame[wire.HEADER_SIZE :] == codec.encode_body(msg)
    assert wire.decode(memoryview(frame)) == (sender, msg)


def test_float_fields_accept_ints() -> None:
    msg = AllShapes(True, 2.0, "n", None, (1, b"b"), ("a",), None, ())
    plain = [True, 2, "n", None, [1, b"b"], ["a"], None, []]  # 2 instead of 2.0
    body = msgpack.packb(plain, use_bin_type=True)
    sender, got = wire.decode(header(AllShapes.KIND, 9, len(body)) + body)
    assert sender == 9 and got == msg and type(got.ratio) is float


def test_round_trip_of_a_realistic_batch() -> None:
    reqs = tuple(Request(100 + i, i, bytes(range(200)) * 5, b"s" * 64) for i in range(10))
    batch = make_batch(reqs)
    assert wire.decode(wire.encode(batch, 3)) == (3, batch)


# --- nothing but DecodeError -----------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    decode_or_error(data)


@SETTINGS
@given(kind=st.sampled_from(KINDS), sender=senders, body=st.binary(max_size=300))
def test_valid_header_with_arbitrary_body(kind: int, sender: int, body: bytes) -> None:
    decode_or_error(header(kind, sender, len(body)) + body)


@st.composite
def msgpack_values(draw: st.DrawFn) -> Any:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(INT64_MIN, UINT64_MAX)
        | st.floats()
        | st.binary(max_size=16)
        | st.text(max_size=8)
    )
    return draw(
        st.recursive(
            leaves,
            lambda kids: (
                st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
            ),
            max_leaves=20,
        )
    )


@SETTINGS
@given(kind=st.sampled_from(KINDS), body=msgpack_values())
def test_well_formed_msgpack_of_the_wrong_shape(kind: int, body: Any) -> None:
    packed = msgpack.packb(body, use_bin_type=True)
    decode_or_error(header(kind, 0, len(packed)) + packed)


MUTATIONS = ("truncate", "flip", "length", "magic", "version", "kind", "extend")


@SETTINGS
@given(msg=any_message, sender=senders, mutation=st.sampled_from(MUTATIONS), data=st.data())
def test_mutated_valid_frames(msg: Any, sender: int, mutation: str, data: st.DataObject) -> None:
    frame = bytearray(wire.encode(msg, sender))
    size = len(frame)
    expected: str | None = None  # the reason this mutation must be rejected with (if known)
    if mutation == "truncate":
        cut = data.draw(st.integers(0, size - 1))
        frame = frame[:cut]
        expected = "short" if cut < wire.HEADER_SIZE else "length"
    elif mutation == "flip":
        bit = data.draw(st.integers(0, size * 8 - 1))
        frame[bit // 8] ^= 1 << (bit % 8)
        if bit < 16:
            expected = "magic"
        elif bit < 24:
            expected = "version"
        elif 72 <= bit < 104:
            expected = "length"
    elif mutation == "length":
        wrong = data.draw(st.integers(0, 2**32 - 1).filter(lambda n: n != size - 13))
        struct.pack_into("!I", frame, 9, wrong)
        expected = "length"
    elif mutation == "magic":
        magic = data.draw(st.binary(min_size=2, max_size=2).filter(lambda m: m != wire.MAGIC))
        frame[0:2] = magic
        expected = "magic"
    elif mutation == "version":
        frame[2] = data.draw(st.integers(0, 255).filter(lambda v: v != wire.VERSION))
        expected = "version"
    elif mutation == "kind":
        kind = data.draw(st.integers(0, 0xFFFF))
        struct.pack_into("!H", frame, 3, kind)
        if kind not in codec.registered_kinds():
            expected = "unknown_kind"
    elif mutation == "extend":
        extra = data.draw(st.binary(min_size=1, max_size=16))
        frame += extra
        struct.pack_into("!I", frame, 9, size - wire.HEADER_SIZE + len(extra))
        # msgpack refuses trailing data after the one array; a kind with a bounded body
        # (a few fixed-size fields) refuses the longer length first, from the header alone
        expected = "body|too_long_for_kind"
    result = decode_or_error(bytes(frame))
    if expected is not None:
        assert isinstance(result, wire.DecodeError), f"{mutation} accepted: {result!r}"
        assert result.reason in expected.split("|"), (mutation, result)


# --- specific reasons ------------------------------------------------------------------------


def test_too_long_frames_are_rejected_before_anything_else() -> None:
    frame = wire.encode(Request(7, 1, b"x" * 200, b""), 7)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(frame, max_frame_bytes=len(frame) - 1)
    assert info.value.reason == "too_long"
    assert wire.decode(frame, max_frame_bytes=len(frame)) == (7, Request(7, 1, b"x" * 200, b""))
    # the default bound (16 MiB), with a garbage header that would fail other checks
    huge = b"\x00" * (wire.DEFAULT_MAX_FRAME_BYTES + 1)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(huge)
    assert info.value.reason == "too_long"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (msgpack.packb([1, 2, 3], use_bin_type=True), "shape"),  # 3 fields, Request has 4
        # a map, not an array: no wire message has maps, the unpacker refuses any (max_map_len 0)
        (msgpack.packb({"client_id": 1}, use_bin_type=True), "body"),
        (msgpack.packb([True, 1, b"", b""], use_bin_type=True), "shape"),  # bool for int
        # str for bytes: Request has no str field, so the unpacker refuses any (max_str_len 0)
        (msgpack.packb([1, 1, "text", b""], use_bin_type=True), "body"),
        (msgpack.packb([1, 1, b"", b""], use_bin_type=True) + b"\xc0", "body"),  # trailing
        (b"\xa2\xff\xfe", "body"),  # a str that is not UTF-8
        (b"\xdc\xff\xff", "body"),  # an array claiming 65535 items that are not there
        (b"", "body"),
    ],
)
def test_bad_request_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(header(Request.KIND, 0, len(body)) + body)
    assert info.value.reason == reason


def test_nested_message_of_the_wrong_shape_is_rejected() -> None:
    bad_request = [1, 2, b"txns"]  # one field short
    body = msgpack.packb([[bad_request], b"d" * 32], use_bin_type=True)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(header(Batch.KIND, 0, len(body)) + body)
    assert info.value.reason == "shape"


def test_unknown_kind_and_short_header() -> None:
    unused = next(k for k in range(65535, 0, -1) if k not in codec.registered_kinds())
    body = msgpack.packb([], use_bin_type=True)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(header(unused, 0, len(body)) + body)
    assert info.value.reason == "unknown_kind"
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(wire.MAGIC + b"\x01")
    assert info.value.reason == "short"
