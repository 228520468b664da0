"""PBFT messages on the wire: registered kinds 16..47, exact round trips (nested certificates,
view-changes inside new-views), malformed bodies rejected with DecodeError, never unpickled."""

from __future__ import annotations

import msgpack
import pytest

from protocols import codec
from protocols.common import NULL_BATCH
from protocols.pbft import (
    Checkpoint,
    Commit,
    Fetch,
    FetchReply,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ViewChange,
)
from tests.protocol.scenario import view_change_traffic
from transport import wire

CLASSES = [
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    PreparedCert,
    ViewChange,
    NewView,
    Fetch,
    FetchReply,
]


def test_kinds_are_in_the_pbft_range_and_distinct() -> None:
    kinds = [c.KIND for c in CLASSES]
    assert all(16 <= k <= 47 for k in kinds)
    assert len(set(kinds)) == len(kinds)
    registered = codec.registered_kinds()
    assert all(registered[c.KIND] is c for c in CLASSES)


def _view_change_traffic() -> list[object]:
    """Real messages from a run with a view change (every PBFT message type appears)."""
    c, sent = view_change_traffic()
    assert c.ledger(1)[-2:] == [(4, "b4"), (5, "b5")]
    return sent


def test_every_message_round_trips_exactly() -> None:
    sent = _view_change_traffic()
    seen = {type(m) for m in sent}
    assert {PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView} <= seen
    vcs = [m for m in sent if isinstance(m, ViewChange)]
    assert any(vc.prepared and vc.checkpoint_proof for vc in vcs)  # nested both ways
    for msg in sent:
        frame = wire.encode(msg, 3)
        sender, back = wire.decode(frame)
        assert sender == 3 and back == msg and type(back) is type(msg)
    extra = [
        Fetch(0, 1, 4, 2),
        FetchReply(0, 1, 0, NULL_BATCH, 1),
        PreparedCert(PrePrepare(0, 0, 1, NULL_BATCH, b"s"), (Prepare(0, 0, 1, b"d", 1, b"t"),)),
    ]
    for msg in extra:
        assert wire.decode(wire.encode(msg, 0))[1] == msg


@pytest.mark.parametrize(
    "body",
    [
        [0, 0, 1, b"digest", 2],  # Prepare with a field missing
        [0, 0, 1, b"digest", "two", b""],  # wrong type
        [0, 0, 1, [1, 2], 2, b""],  # a list where bytes belong
        {"instance": 0},  # a map instead of an array
    ],
)
def test_malformed_prepare_bodies_raise_decode_error(body: object) -> None:
    raw = msgpack.packb(body, use_bin_type=True)
    with pytest.raises(wire.DecodeError):
        wire.decode_body(Prepare.KIND, raw)


def test_malformed_nested_view_change_raises_decode_error() -> None:
    # a ViewChange whose certificate list holds a bare int instead of a PreparedCert
    raw = msgpack.packb([0, 1, 2, 0, [], [7], b""], use_bin_type=True)
    with pytest.raises(wire.DecodeError):
        wire.decode_body(ViewChange.KIND, raw)
