"""The codec's per-class encoders and decoders (protocols.codec, built once at registration)
give the bytes and the messages the generic field-by-field code gave: a golden digest of
three deterministic samples of every protocol kind, encoded as frames, was taken with the
generic code (before issue 16's generated codecs) and is pinned here; every sample decodes
back to an equal message whose fields have exactly the declared types; and a malformed
body fails on the generated path with the reason and detail the generic checks give.

Must not live here: hypothesis round trips and hostile frames (test_wire.py,
test_hostile_inputs.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from typing import Annotated, Any

import pytest

from protocols import codec
from tests.unit.test_wire import IMPORT_ERRORS  # noqa: F401  (imports every protocol module)
from transport import wire


def _sample(tp: Any, k: int, depth: int = 0) -> Any:
    """Variant ``k`` (0, 1, 2) of a value of wire type ``tp``, deterministic, in bounds."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        bound = next((m.n for m in meta if isinstance(m, codec.Max)), None)
        if base is bytes:
            size = min(bound if bound is not None else 64, (0, 5, 32)[k])
            return bytes((i * 7 + k + depth) % 256 for i in range(size))
        return _sample(base, k, depth)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if k == 0 else _sample(inner, k, depth)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            count = 0 if depth > 2 else k
            return tuple(_sample(args[0], (k + i) % 3, depth + 1) for i in range(count))
        return tuple(_sample(a, k, depth + 1) for a in args)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _message(tp, k, depth + 1)
    if tp is bool:
        return k == 1
    if tp is int:
        return (3 + depth, 1000 + k * 17, 2**31 - 1)[k]
    if tp is float:
        return (0.0, 1.5, 2.0**40)[k]
    if tp is bytes:
        return bytes(range(k * 9))
    if tp is str:
        return ("", "ab", "\u00e9t\u00e9")[k]
    raise TypeError(f"no sample for {tp!r}")


def _message(cls: type, k: int, depth: int = 0) -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(*[_sample(hints[f.name], k, depth) for f in dataclasses.fields(cls)])


def _protocol_kinds() -> dict[int, type]:
    return {k: c for k, c in codec.registered_kinds().items() if k < 256}


def _frames_digest(cls: type) -> str:
    h = hashlib.sha256()
    for k in range(3):
        h.update(wire.encode(_message(cls, k), 5 + k))
        h.update(codec.encode_body(_message(cls, k)))
    return h.hexdigest()[:16]


#: _frames_digest of every protocol kind, taken with the generic codec (main at 11a349a)
GOLDEN = {
    1: "9ed85929ea05cac1",  # Request
    2: "60a91b723014b71e",  # Batch
    3: "7013ae774415db6b",  # Reply
    16: "4d073e6a2ee1a4dc",  # PrePrepare
    17: "4198f865450b33ad",  # Prepare
    18: "14dbbb1e196fdcab",  # Commit
    19: "f2a2b63187318e18",  # Checkpoint
    20: "cc42d148e4bafac5",  # PreparedCert
    21: "ca2f0e99d9d1f955",  # ViewChange
    22: "ba630796fc9d182c",  # NewView
    23: "d255d7893e98d345",  # Fetch
    24: "fef14fad466084e2",  # FetchReply
    25: "cf2895bb9e13ecca",  # PrePrepared
    48: "39378796e2167a9a",  # Propose
    49: "2a7943c713da75eb",  # Support
    50: "4f5e6c12a4062eea",  # Certificate
    51: "6b1f2be005acfa72",  # Certify
    52: "af3071a3cb2120de",  # Committed
    53: "bbb1e6d6c33e788a",  # VcRequest
    54: "fd6fd599ab2be099",  # NvPropose
    55: "25a415de17dd6be2",  # NvSupport
    56: "4c8431f02f2a243d",  # NvCertify
    57: "552f9b91759c69f2",  # NvCommit
    58: "51baeb4be8e638a3",  # Fetch
    59: "0efac53aa2b3dd05",  # FetchReply
    60: "4c7c6e97a09f7871",  # Supported
    61: "422a18f43554b360",  # StableProof
    112: "5dcfb6c16781be46",  # Vote
    113: "3522d6d468e57ff8",  # QC
    114: "b854f42d99d565b2",  # Block
    115: "589b1e5646bac723",  # Proposal
    116: "fa56a91f24585441",  # NewView
    117: "5b64a15ad0c36949",  # Wake
    118: "d8673e8c1165db81",  # FetchBlocks
    119: "9bb166cd18f7143a",  # Blocks
    160: "2876e8e1a1ada37e",  # OrderReq
    161: "93abbdd5dd516ebf",  # FillHole
    162: "1ca7c6ee7ab71510",  # Commit
    163: "88f14ca97013e9ec",  # IHatePrimary
    164: "504bb146eb876474",  # ViewChange
    165: "4295438f2e4348f7",  # NewView
    166: "2e92c586867382bc",  # CommitCert
    200: "62685d74798816bb",  # StateRequest
    201: "070f48bce534f325",  # StateChunk
}


def test_every_protocol_kind_encodes_to_its_golden_bytes() -> None:
    kinds = _protocol_kinds()
    got = {kind: _frames_digest(cls) for kind, cls in sorted(kinds.items())}
    assert {k: got[k] for k in GOLDEN if k in got} == GOLDEN
    assert set(GOLDEN) <= set(got), "a pinned kind is no longer registered"


def _exact_types(msg: Any) -> None:
    """Every field holds exactly the type its hint names (int is not bool, float is float)."""
    hints = typing.get_type_hints(type(msg), include_extras=True)
    for f in dataclasses.fields(msg):
        _check_type(hints[f.name], getattr(msg, f.name))


def _check_type(tp: Any, value: Any) -> None:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        _check_type(typing.get_args(tp)[0], value)
    elif origin in (typing.Union, types.UnionType):
        if value is not None:
            (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
            _check_type(inner, value)
    elif origin is tuple:
        assert type(value) is tuple
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            for item in value:
                _check_type(args[0], item)
        else:
            for a, item in zip(args, value, strict=True):
                _check_type(a, item)
    elif dataclasses.is_dataclass(tp):
        assert type(value) is tp
        _exact_types(value)
    else:
        assert type(value) is tp, (tp, value)


@pytest.mark.parametrize("kind", sorted(_protocol_kinds()))
def test_every_sample_decodes_to_an_equal_message(kind: int) -> None:
    cls = codec.registered_kinds()[kind]
    for k in range(3):
        msg = _message(cls, k)
        sender, back = wire.decode(wire.encode(msg, 9))
        assert sender == 9 and type(back) is cls and back == msg
        _exact_types(back)


#: values put in place of each top-level field of each sample: wrong types, a bool where an
#: int goes, out-of-range ints (a __post_init__ refuses), bytes past every bound, arrays
_BAD = (True, "x", b"\x01" * 70, 1.5, None, (), (1,), 2**64 - 1, -1, 0)


def _outcome(kind: int, plain: Any) -> str:
    import msgpack

    try:
        msg = codec.decode_body(kind, msgpack.packb(plain, use_bin_type=True))
    except codec.DecodeError as exc:
        return f"{exc.reason}|{exc}"
    return f"ok|{msg!r}"


def _errors_digest(kind: int) -> str:
    cls = codec.registered_kinds()[kind]
    h = hashlib.sha256()
    for k in range(3):
        plain = codec._SPECS[cls].to_plain(_message(cls, k))
        plain = list(plain)
        for case in (plain[:-1], [*plain, 0], 7, [plain]):
            h.update(_outcome(kind, case).encode())
        for i in range(len(plain)):
            for bad in _BAD:
                h.update(_outcome(kind, [*plain[:i], bad, *plain[i + 1 :]]).encode())
    return h.hexdigest()[:16]


#: _errors_digest of every protocol kind, taken with the generic codec (main at 11a349a)
GOLDEN_ERRORS = {
    1: "b0f70f72cb2cae21",  # Request
    2: "f9c96003a662473f",  # Batch
    3: "5c7264e353dded0a",  # Reply
    16: "1e95bfb92fab45b6",  # PrePrepare
    17: "4760e4efd548115a",  # Prepare
    18: "63826e562624cfa0",  # Commit
    19: "4479db1aa201fb33",  # Checkpoint
    20: "6233636f90adc1f0",  # PreparedCert
    21: "62ad5e47b0bca3dc",  # ViewChange
    22: "97574c1f30ae2c53",  # NewView
    23: "f0ee07e7d60dfbcc",  # Fetch
    24: "2c7bd2822955374e",  # FetchReply
    25: "9b67b35539823c8d",  # PrePrepared
    48: "2c1024adc387e40d",  # Propose
    49: "2faf0df93827d238",  # Support
    50: "6c051014402a71f2",  # Certificate
    51: "db2758868674887e",  # Certify
    52: "671e71be81373384",  # Committed
    53: "4324f87e5e39149d",  # VcRequest
    54: "73b2bd15b7c8dc07",  # NvPropose
    55: "09a2900116fe59f7",  # NvSupport
    56: "08756ee213a7a5a3",  # NvCertify
    57: "cb063ef8a7a555a3",  # NvCommit
    58: "39802723ac102ab1",  # Fetch
    59: "f74d04ff7eb93a44",  # FetchReply
    60: "4d718e780d909ea3",  # Supported
    61: "5e3f34f5026e833a",  # StableProof
    112: "27638d050ad98bed",  # Vote
    113: "59711241c3337e13",  # QC
    114: "a6246e40ded4b2dc",  # Block
    115: "cd34344d1cad119b",  # Proposal
    116: "e978d4c17f9c6bea",  # NewView
    117: "97410c51f5f4ec3c",  # Wake
    118: "e0c10b5fb68f76fe",  # FetchBlocks
    119: "35f100f5a9ef7aa0",  # Blocks
    160: "2fcfa4b95804c551",  # OrderReq
    161: "4cc25bac924eac7d",  # FillHole
    162: "0ba7acb1df6777bc",  # Commit
    163: "c0871160aadf2410",  # IHatePrimary
    164: "8196dd7d7919ad64",  # ViewChange
    165: "a060c37a88c0c2bd",  # NewView
    166: "b975663e8de1765c",  # CommitCert
    200: "44850359f058084e",  # StateRequest
    201: "adc98703d007ede5",  # StateChunk
}


def test_every_malformed_body_fails_as_the_generic_checks_said() -> None:
    kinds = _protocol_kinds()
    got = {kind: _errors_digest(kind) for kind in sorted(kinds)}
    assert {k: got[k] for k in GOLDEN_ERRORS if k in got} == GOLDEN_ERRORS
    assert set(GOLDEN_ERRORS) <= set(got), "a pinned kind is no longer registered"


@pytest.mark.parametrize("kind", sorted(_protocol_kinds()))
def test_every_protocol_kind_is_built_through_its_slots(kind: int) -> None:
    """The generated decoder builds each protocol message without its __init__ (object.__new__
    and the slot setters, then __post_init__): a class that lost that path (a hand-written
    __init__, no __slots__) still decodes, through ``cls(...)``, but slower."""
    cls = codec.registered_kinds()[kind]
    assert codec._SPECS[cls].from_plain.inline_build


def test_a_decoded_request_runs_its_post_init() -> None:
    """Request.__post_init__ refuses a client id past i32 on the generated path too."""
    from protocols.common import Request

    body = codec.encode_body(Request(2**31 - 1, 5, b"t", b""))
    assert codec.decode_body(Request.KIND, body) == Request(2**31 - 1, 5, b"t", b"")
    bad = body.replace(b"\xce\x7f\xff\xff\xff", b"\xce\x80\x00\x00\x00", 1)
    with pytest.raises(codec.DecodeError, match="client_id"):
        codec.decode_body(Request.KIND, bad)


def test_the_thread_packer_gives_packb_bytes_after_errors_and_big_bodies() -> None:
    import threading

    import msgpack

    small = (1, b"ab", "c", (2, None, True, 1.5))
    assert codec._pack(small) == msgpack.packb(small, use_bin_type=True)
    with pytest.raises(OverflowError):
        codec._pack((1, 2**70))  # half packed, then refused: the buffer is emptied
    assert codec._pack(small) == msgpack.packb(small, use_bin_type=True)
    big = (b"x" * (codec.PACKER_KEEP_BYTES + 1),)
    first = codec._packers.packer
    assert codec._pack(big) == msgpack.packb(big, use_bin_type=True)
    assert codec._packers.packer is not first  # its grown buffer went with it
    out: dict[int, list[bytes]] = {}

    def encode(i: int) -> None:
        out[i] = [codec._pack((i, bytes([i]) * n)) for n in range(300)]

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert out[i] == [msgpack.packb((i, bytes([i]) * n)) for n in range(300)]
