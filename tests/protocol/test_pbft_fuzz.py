"""Hostile input never crashes a PBFT replica: any message a Byzantine peer can put on the wire
(every field any value the wire decodes, nested messages mutated) is ignored or handled, and
the replica keeps working afterwards (§4: at most f faulty replicas must not stop the others)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.common import Batch, Request
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
from tests.protocol.scenario import Cluster, view_change_traffic

WIRE_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SMALL_INT = st.integers(min_value=-3, max_value=12)
ANY_INT = st.one_of(SMALL_INT, WIRE_INT)
ANY_BYTES = st.binary(max_size=40)


def _pool() -> list[Any]:
    """Genuine messages of a run with a checkpoint and a view change (material to mutate)."""
    c, seen = view_change_traffic()
    return seen + [Fetch(0, 1, 4, 2), FetchReply(0, 1, 0, c.batches["b1"], 2)]


POOL = _pool()


def _mutate(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    """``value`` with one randomly chosen field (possibly nested) replaced."""
    if isinstance(value, tuple):
        if not value or depth > 3 or data.draw(st.booleans()):
            return data.draw(st.sampled_from([(), value, value + value[:1]]))
        i = data.draw(st.integers(0, len(value) - 1))
        return value[:i] + (_mutate(value[i], data, depth + 1),) + value[i + 1 :]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value)]
        name = data.draw(st.sampled_from(fields))
        old = getattr(value, name)
        if isinstance(old, bool):
            new: Any = data.draw(st.booleans())
        elif isinstance(old, int):
            new = data.draw(ANY_INT)
        elif isinstance(old, bytes):
            new = data.draw(ANY_BYTES)
        else:
            new = _mutate(old, data, depth + 1)
        try:
            return dataclasses.replace(value, **{name: new})
        except ValueError:  # refused at construction, so the wire decoder refuses it too
            return value
    return value


RANDOM_MESSAGES = st.one_of(
    st.builds(Prepare, ANY_INT, ANY_INT, ANY_INT, ANY_BYTES, ANY_INT, ANY_BYTES),
    st.builds(Commit, ANY_INT, ANY_INT, ANY_INT, ANY_BYTES, ANY_INT),
    st.builds(Checkpoint, ANY_INT, ANY_INT, ANY_BYTES, ANY_INT, ANY_BYTES),
    st.builds(Fetch, ANY_INT, ANY_INT, ANY_INT, ANY_INT),
    st.builds(
        PrePrepare,
        ANY_INT,
        ANY_INT,
        ANY_INT,
        st.builds(Batch, st.just(()), ANY_BYTES),
        ANY_BYTES,
    ),
    # Request refuses ids/timestamps its signed header cannot hold (the wire decoder does too)
    st.builds(Request, st.integers(0, 2**31 - 1), st.integers(0, 2**64 - 1), ANY_BYTES, ANY_BYTES),
    st.builds(ViewChange, ANY_INT, ANY_INT, ANY_INT, ANY_INT, st.just(()), st.just(()), ANY_BYTES),
    st.builds(NewView, ANY_INT, ANY_INT, st.just(()), st.just(())),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_messages_never_crash_a_replica(data: st.DataObject) -> None:
    c = Cluster(4, checkpoint_period=2, watermark_window=4, view_change_ticks=10)
    target = data.draw(st.integers(0, 3))
    rep = c.replicas[target]
    for _ in range(data.draw(st.integers(1, 8))):
        if data.draw(st.booleans()):
            msg = _mutate(data.draw(st.sampled_from(POOL)), data)
        else:
            msg = data.draw(RANDOM_MESSAGES)
        sender = data.draw(st.one_of(st.integers(0, 3), SMALL_INT, WIRE_INT))
        c.apply(target, rep.receive(sender, msg))  # must not raise
        timer = data.draw(st.sampled_from([("pbft", 0, "request"), ("x",), ("pbft", 0, "fetch")]))
        c.apply(target, rep.timeout(timer))
    # and the others still order a batch afterwards (the target may have been led astray by
    # replayed genuine messages, as by an equivocating primary; it is one faulty replica)
    c.run()
    if c.replicas[0].is_proposer() and c.replicas[0].proposal_room():
        c.propose(0, c.batch("after"))
        c.run()
        c.check_safety()
        other = next(r for r in (1, 2, 3) if r != target)
        assert any(name == "after" for _, name in c.ledger(other))


def test_wrapped_certificate_with_foreign_types_is_rejected() -> None:
    """A view-change whose certificate nests the wrong kinds of messages is invalid, not fatal."""
    c = Cluster(4)
    r1 = c.replicas[1]
    vc = ViewChange(0, 1, 2, 0, (), (PreparedCert(PrePrepare(0, 0, 1, Batch((), b"")), ()),))
    assert r1.receive(2, vc) == []
    assert r1.status()["ignored"]["invalid_view_change"] == 1
