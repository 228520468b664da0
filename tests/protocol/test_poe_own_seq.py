"""PoE §3: the primary assigns each sequence number once per view, whatever it is sent.

Found by tests/fuzz (hostile messages never make a protocol raise): a primary that learns,
through a FETCH answer, a certified entry of its own view at a seq it has not assigned yet
(a replayed share of its own key from another run with the same keys: run keys derive from
``crypto.cluster_secret``) raised "the primary assigns each seq once per view" at its next
proposal. It now proposes past the taken seq and never twice at one.
"""

from __future__ import annotations

from typing import Any

from protocols.poe import Certify, FetchReply, Propose
from tests.protocol.poe_cluster import PoeCluster, small_cluster


def _spy(c: PoeCluster) -> list[tuple[int, Any]]:
    """Every (sender, message) ``c``'s replicas put on the link, in order."""
    seen: list[tuple[int, Any]] = []
    enqueue = c._enqueue

    def record(kind: str, src: int, dst: int, msg: Any) -> None:
        seen.append((src, msg))
        enqueue(kind, src, dst, msg)

    c._enqueue = record  # type: ignore[method-assign]
    return seen


def _certified_first_batch() -> tuple[Any, Any]:
    """A batch and its n-f certificate at (view 0, seq 1), from another run with the same keys."""
    other = small_cluster()
    seen = _spy(other)
    batch = other.batch("b1")
    other.propose(0, batch)
    other.run()
    certs = [msg.cert for _, msg in seen if type(msg) is Certify]
    assert certs, "the other run certified seq 1"
    return batch, certs[0]


def test_a_fetched_entry_at_an_unassigned_seq_is_never_proposed_over() -> None:
    batch, cert = _certified_first_batch()
    c = small_cluster()
    seen = _spy(c)
    c.deliver_to(0, 2, FetchReply(1, 0, batch, 2, False, cert, 0))  # seq 1, view 0, from r2
    c.propose(0, c.batch("b2", client=5))  # raised AssertionError before the fix
    c.run()
    proposed = {m.seq for src, m in seen if type(m) is Propose and src == 0}
    assert proposed == {2}
    c.check_safety()
