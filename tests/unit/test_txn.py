"""workloads.txn: round trips, every malformed shape rejected with TxnDecodeError, fuzzing."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.txn import (
    BALANCE,
    INSERT,
    MAX_KEY,
    READ,
    RMW,
    SCAN,
    SEND_PAYMENT,
    SMALLBANK_OPS,
    UPDATE,
    YCSB_OPS,
    TxnDecodeError,
    _check_all,
    decode_txns,
    encode_txns,
)

EVERY_OP = [
    (READ, 7, None),
    (UPDATE, 8, b"v" * 10),
    (INSERT, 100_000, b""),
    (SCAN, 3, 5),
    (RMW, 0, b"\x00\xff"),
]


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_round_trip_every_op() -> None:
    assert decode_txns(encode_txns(EVERY_OP)) == EVERY_OP


def test_round_trip_empty_list() -> None:
    assert decode_txns(encode_txns([])) == []


def test_decoded_transactions_are_tuples() -> None:
    out = decode_txns(encode_txns([[READ, 1, None]]))
    assert out == [(READ, 1, None)] and type(out[0]) is tuple


@pytest.mark.parametrize(
    "blob",
    [
        b"",  # nothing at all
        b"\xc1",  # a reserved msgpack byte
        b"\x91",  # an array header promising one element, then nothing
        pack([[READ, 1, None]]) + b"\x00",  # trailing bytes
        pack(5),  # not an array
        pack({"op": 0}),  # a map
        pack([[READ, 1]]),  # two fields
        pack([[READ, 1, None, 0]]),  # four fields
        pack([(READ, 1, None), 5]),  # an element that is not an array
        pack([[9, 1, None]]),  # unknown op
        pack([[-1, 1, None]]),  # negative op
        pack([[True, 1, b"x"]]),  # bool is not an op
        pack([["read", 1, None]]),  # op as a string
        pack([[READ, -1, None]]),  # negative key
        pack([[READ, MAX_KEY + 1, None]]),  # key beyond int64
        pack([[READ, 1.5, None]]),  # float key
        pack([[READ, True, None]]),  # bool key
        pack([[READ, 1, b"x"]]),  # READ takes no argument
        pack([[UPDATE, 1, None]]),  # UPDATE needs a value
        pack([[UPDATE, 1, "text"]]),  # a str is not a value
        pack([[INSERT, 1, 5]]),  # nor is an int
        pack([[RMW, 1, [1, 2]]]),  # nor an array
        pack([b"\x03\x05\x07"]),  # a 3-byte bin is not a transaction (it unpacks to 3 ints)
        pack([[1.0, 1, b"x"]]),  # a float equal to an op is not an op
        pack([[SCAN, 1, b"x"]]),  # SCAN takes a length
        pack([[SCAN, 1, 0]]),  # of at least 1
        pack([[SCAN, 1, -3]]),
        pack([[SCAN, 1, 10**9]]),  # and bounded
        pack([[SCAN, 1, True]]),  # bool is not a length
        msgpack.packb([[UPDATE, 1, msgpack.ExtType(5, b"x")]]),  # ext types are refused
        b"\x91" * 100_000 + b"\xc0",  # nesting deep enough to break a recursive decoder
    ],
)
def test_malformed_blobs_raise_txn_decode_error(blob: bytes) -> None:
    with pytest.raises(TxnDecodeError):
        decode_txns(blob)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(TxnDecodeError):
        decode_txns(bytearray(encode_txns(EVERY_OP)))  # type: ignore[arg-type]


def test_too_many_transactions_refused() -> None:
    blob = encode_txns([(READ, i, None) for i in range(11)])
    assert len(decode_txns(blob, max_txns=11)) == 11
    with pytest.raises(TxnDecodeError):
        decode_txns(blob, max_txns=10)


def test_value_size_bounded() -> None:
    blob = encode_txns([(UPDATE, 1, b"x" * 101)])
    assert decode_txns(blob, max_value_bytes=101)[0][2] == b"x" * 101
    with pytest.raises(TxnDecodeError):
        decode_txns(blob, max_value_bytes=100)


def test_scan_length_bounded() -> None:
    blob = encode_txns([(SCAN, 1, 50)])
    assert decode_txns(blob, max_scan_length=50) == [(SCAN, 1, 50)]
    with pytest.raises(TxnDecodeError):
        decode_txns(blob, max_scan_length=49)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(TxnDecodeError, ValueError)


# --- fuzzing ----------------------------------------------------------------------------

valid_txn = st.one_of(
    st.tuples(st.just(READ), st.integers(0, MAX_KEY), st.none()),
    st.tuples(st.sampled_from([UPDATE, INSERT, RMW]), st.integers(0, MAX_KEY), st.binary()),
    st.tuples(st.just(SCAN), st.integers(0, MAX_KEY), st.integers(1, 10_000)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_txn, max_size=50))
def test_valid_lists_round_trip(txns: list[tuple]) -> None:
    assert decode_txns(encode_txns(txns)) == txns


def _check_decoded(out: list[tuple]) -> None:
    """Whatever decode_txns returns is a well-formed transaction list."""
    assert isinstance(out, list)
    for op, key, arg in out:
        assert type(op) is int and op in YCSB_OPS + SMALLBANK_OPS
        assert type(key) is int and 0 <= key <= MAX_KEY
        if op in SMALLBANK_OPS:  # bounds of amounts and accounts: test_smallbank.py
            assert type(arg) is {BALANCE: type(None), SEND_PAYMENT: tuple}.get(op, int)
        elif op == READ:
            assert arg is None
        elif op == SCAN:
            assert type(arg) is int and arg >= 1
        else:
            assert type(arg) is bytes


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_a_list_or_raise(blob: bytes) -> None:
    try:
        out = decode_txns(blob)
    except TxnDecodeError:
        return
    _check_decoded(out)


@settings(max_examples=500, deadline=None)
@given(st.lists(valid_txn, min_size=1, max_size=10), st.data())
def test_corrupted_valid_blobs_decode_to_a_list_or_raise(txns: list[tuple], data) -> None:  # type: ignore[no-untyped-def]
    blob = bytearray(encode_txns(txns))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    try:
        out = decode_txns(bytes(blob))
    except TxnDecodeError:
        return
    _check_decoded(out)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_like)
def test_arbitrary_msgpack_values_decode_to_a_list_or_raise(value: object) -> None:
    try:
        out = decode_txns(pack(value))
    except TxnDecodeError:
        return
    _check_decoded(out)


@pytest.mark.parametrize("txn", [[{}, None, None], [{}, 1, b"v"], [0, {}, None], [0, 1, {}]])
def test_an_empty_map_in_any_field_is_refused_not_raised(txn: list) -> None:
    """msgpack hands an empty map ({}: unhashable) through max_map_len=0; as an op it once
    reached the op table's lookup and raised TypeError out of the execute stage."""
    with pytest.raises(TxnDecodeError):
        decode_txns(pack([txn]))


# the fast pass of decode_txns against _check_all (every check, in order, naming the culprit):
# near-valid transactions, each field sometimes of a wrong type or out of its bound
_op = st.one_of(st.integers(-1, 11), st.sampled_from([True, False, 1.0, "read", None]))
_key = st.one_of(
    st.integers(0, 50),
    st.sampled_from([-1, MAX_KEY, MAX_KEY + 1, (1 << 61), (1 << 61) - 1, True, 1.5, None]),
)
_arg = st.one_of(
    st.none(),
    st.binary(max_size=4),
    st.integers(-(1 << 41), 1 << 41),
    st.sampled_from([0, 1, 10_000, 10_001, -1, True, "x", 1.5, (1 << 61), (1 << 40) + 1]),
    st.tuples(st.integers(-2, 1 << 62), st.integers(-2, 1 << 41)),
    st.tuples(st.integers(0, 5)),
    st.tuples(st.integers(0, 5), st.booleans()),
)
_near_txn = st.one_of(
    st.tuples(_op, _key, _arg),
    st.tuples(_op, _key),
    st.tuples(_op, _key, _arg, _arg),
    st.binary(min_size=3, max_size=3),
    st.integers(0, 4),
)


def _outcome(f, *args):  # type: ignore[no-untyped-def]
    try:
        return ("ok", f(*args))
    except TxnDecodeError as exc:
        return ("error", str(exc))


@settings(max_examples=800, deadline=None)
@given(st.lists(_near_txn, max_size=6))
def test_fast_pass_agrees_with_every_check(txns: list) -> None:
    """decode_txns accepts exactly what _check_all accepts and raises what it raises."""
    blob = pack(txns)
    reference = _outcome(_check_all, msgpack.unpackb(blob, use_list=False), 10_000)
    assert _outcome(decode_txns, blob) == reference
