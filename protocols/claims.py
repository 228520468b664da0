"""A view change over unproven claims: Castro & Liskov's decision rule for PBFT with MACs.

With signed votes a view-change message carries certificates and the new view takes, per
sequence number, the highest-view one. With MACs nothing is transferable: a replica can
only *claim* what it prepared (its P-set: per seq the highest view it prepared a batch in,
with the batch) and what it pre-prepared (its Q-set: per seq the digests it accepted a
proposal for, each with the latest view). The view-change message itself is signed, so a
replica cannot be impersonated, but a Byzantine replica can sign any lie. Castro & Liskov
(TOCS'02, §4.5, "view changes with MACs") decide each seq by counting instead:

- choose a claimed (view v, digest d) if (A1) ``quorum`` (2f+1 = n−f) messages claim
  nothing prepared at the seq, or a prepare in a view below v, or (v, d); and (A2) f+1
  messages claim to have pre-prepared d in a view ≥ v;
- choose the null batch if ``quorum`` messages claim nothing prepared at the seq;
- otherwise wait for more view-change messages (those of all honest replicas decide).

Why it is safe: a batch that committed was prepared in some view by f+1 honest replicas,
one of which is among any ``quorum`` messages, so A1 rules out every other batch from an
older or the same view, and the null batch; a claim from a later view needs (A2) an honest
replica that pre-prepared it there, which no new view after the commit lets happen (its
plan keeps the committed batch, fresh proposals go above it). PBFT (``pbft_signed_votes:
false``) and PoE (``poe_certificate: macs``, view-commit in the role of "prepared",
SUPPORT in the role of "pre-prepared") both decide with ``choose``.

Must not live here: message formats (each protocol's messages.py), IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Claim(Protocol):
    """A pre-prepare (Q-set) claim: PBFT's ``PrePrepared``, PoE's ``Supported``."""

    seq: int
    view: int
    digest: bytes


MAX_CLAIMED_PER_SEQ = 4  # Q-set digests kept (and accepted) per seq: the latest views win


def choose(
    prepared: Sequence[tuple[int, bytes, T] | None],
    pre_prepared: Sequence[Mapping[bytes, int]],
    quorum: int,
    f: int,
) -> tuple[bool, T | None]:
    """Decide one seq from the claims of the view-change messages in hand.

    ``prepared[i]``: message i's prepared claim at the seq, (view, digest, batch) or None;
    ``pre_prepared[i]``: its pre-prepare claims at the seq, digest -> latest view.
    Returns (True, batch), (True, None) for the null batch, or (False, None): undecided.
    Deterministic: the highest (view, digest) satisfying A1 and A2 wins.
    """
    candidates = {(c[0], c[1]): c[2] for c in prepared if c is not None}
    for (v, d), batch in sorted(candidates.items(), key=lambda item: item[0], reverse=True):
        a1 = sum(1 for c in prepared if c is None or c[0] < v or (c[0] == v and c[1] == d))
        if a1 < quorum:
            continue
        a2 = sum(1 for q in pre_prepared if q.get(d, -1) >= v)
        if a2 >= f + 1:
            return True, batch
    if sum(1 for c in prepared if c is None) >= quorum:
        return True, None
    return False, None


def decide(
    prepared: Sequence[Mapping[int, tuple[int, bytes, T]]],
    pre_prepared: Sequence[Iterable[Claim]],
    seqs: Iterable[int],
    quorum: int,
    f: int,
) -> list[T | None] | None:
    """``choose`` for every seq in ``seqs``: per view-change message i, ``prepared[i]`` maps
    seq -> (view, digest, batch) and ``pre_prepared[i]`` are its Q-set claims. The batch
    per seq (None: the null batch), or None while some seq is undecided."""
    by_seq: list[dict[int, dict[bytes, int]]] = []
    for claims in pre_prepared:
        table: dict[int, dict[bytes, int]] = {}
        for q in claims:
            table.setdefault(q.seq, {})[q.digest] = q.view
        by_seq.append(table)
    nothing: dict[bytes, int] = {}
    out: list[T | None] = []
    for s in seqs:
        decided, batch = choose(
            [p.get(s) for p in prepared], [q.get(s, nothing) for q in by_seq], quorum, f
        )
        if not decided:
            return None
        out.append(batch)
    return out


def well_formed(claims: Iterable[Claim], stable_seq: int, window: int, new_view: int) -> bool:
    """One view-change's Q-set claims: inside its window above ``stable_seq``, from views
    before ``new_view``, distinct digests per seq and at most MAX_CLAIMED_PER_SEQ of them."""
    per_seq: dict[int, set[bytes]] = {}
    for q in claims:
        digests = per_seq.setdefault(q.seq, set())
        if (
            not stable_seq < q.seq <= stable_seq + window
            or not 0 <= q.view < new_view
            or type(q.digest) is not bytes
            or q.digest in digests
            or len(digests) >= MAX_CLAIMED_PER_SEQ
        ):
            return False
        digests.add(q.digest)
    return True


def note_pre_prepared(
    table: dict[int, dict[bytes, int]], seq: int, digest: bytes, view: int
) -> None:
    """Record in a Q-set that we accepted ``digest`` at ``seq`` in ``view`` (bounded per seq:
    the oldest view's digest goes first; forgetting only ever delays a decision)."""
    by_digest = table.setdefault(seq, {})
    if by_digest.get(digest, -1) < view:
        by_digest[digest] = view
    if len(by_digest) > MAX_CLAIMED_PER_SEQ:
        del by_digest[min(by_digest, key=lambda d: (by_digest[d], d))]


__all__ = ["MAX_CLAIMED_PER_SEQ", "Claim", "choose", "decide", "note_pre_prepared", "well_formed"]
