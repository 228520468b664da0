"""Byzantine behaviour around an honest protocol instance: the rewriting the simulator and the
real runtime share, and the runtime's Byzantine output (what a faulty replica sends).

The protocol instance of a Byzantine replica stays honest; its lies are made on the way out,
per recipient, generically over the wire dataclasses:

- ``rewrite`` replaces every ``Batch`` and every bytes field named ``digest``/``*_digest``
  (or tuples ``digests``/``*_digests``) recursively through nested messages and tuples;
- ``Alternatives`` keeps, per batch A a replica proposed, the conflicting batch B it shows to
  the other half (same requests reordered, or one more request it saw), so later messages
  about A can be swapped to B consistently;
- fabric.runtime.forgery re-signs what was rewritten with the liar's own key (``RESIGNERS``)
  and makes the protocol-specific lies of its own view-change messages (``FORGERS``).

``ByzantineOutput`` is what the output stage (fabric.runtime.stages.output) consults while a
Byzantine ``failures`` entry of this replica is active (from ``t0 + at_s``); its kinds:

- ``equivocate``: proposals (the protocol's declared ``proposal_messages``) reach the first
  half of the other replicas with batch A and the second half with batch B (same view and
  seq, a valid MAC, re-signed by itself where the protocol signs proposals); its later
  messages to the second half name B's digest instead of A's;
- ``wrong_digest``: its votes (``vote_messages``) name a wrong digest (re-signed);
- ``throttle``: each proposal leaves ``delay_ms`` after the protocol made it;
- ``slow``: every frame leaves ``delay_ms`` after it was made;
- ``bad_mac``: every frame's MAC tag is corrupted (receivers drop them: reason ``mac``).

Which kinds a protocol can play follows from its declared capability (BYZANTINE_KINDS in
fabric.harness.config names the Protocol attribute each kind needs); config validation
refuses the others before anything starts.

Must not live here: protocol logic (protocols/), sockets and MACs themselves (transport/), the
simulator's fault plans (fabric/sim/faults.py), randomness not drawn from the generator
handed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from fabric.harness.config import BYZANTINE_KINDS
from fabric.runtime.forgery import FORGERS, RESIGNERS, Sign
from protocols.common import NULL_DIGEST, Batch, Reply, Request, make_batch

#: alternative batches an equivocator remembers (oldest forgotten first)
MAX_ALTERNATIVES = 4096
#: requests an equivocator keeps as material for alternative batches
POOL_SIZE = 64
#: seed of the runtime equivocator's choices (a spare request): a run replays its lies
RUNTIME_SEED = 14


def _digest_field(name: str) -> bool:
    return name in ("digest", "digests") or name.endswith(("_digest", "_digests"))


def rewrite(
    value: Any, on_batch: Callable[[Batch], Batch], on_digest: Callable[[bytes], bytes]
) -> Any:
    """``value`` with every Batch and digest field replaced (recursively); same object if unchanged."""
    if isinstance(value, Batch):
        return on_batch(value)
    if isinstance(value, Request):
        return value
    if type(value) is tuple:
        items = tuple(rewrite(v, on_batch, on_digest) for v in value)
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        old = getattr(value, field.name)
        if _digest_field(field.name) and type(old) is bytes:
            new = on_digest(old)
        elif _digest_field(field.name) and type(old) is tuple:
            new = tuple(on_digest(x) if type(x) is bytes else x for x in old)
            if all(a is b for a, b in zip(new, old, strict=True)):
                new = old
        else:
            new = rewrite(old, on_batch, on_digest)
        if new is not old:
            changes[field.name] = new
    if not changes:
        return value
    try:
        return dataclasses.replace(value, **changes)
    except (TypeError, ValueError):  # the class validates its fields: send it unchanged
        return value


class Alternatives:
    """Batch A -> the conflicting batch B an equivocator shows the other half (stable).

    Not thread-safe: one owner, or the caller's lock (ByzantineOutput holds one)."""

    def __init__(
        self,
        rng: random.Random,
        max_alternatives: int = MAX_ALTERNATIVES,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.rng = rng
        self.max_alternatives = max_alternatives
        self.alternatives: dict[bytes, Batch] = {}
        self.pool: deque[Request] = deque(maxlen=pool_size)

    def observe(self, msg: Any) -> None:
        """Remember a request the liar saw (material for alternative batches)."""
        if isinstance(msg, Request):
            self.pool.append(msg)

    def alternative(self, batch: Batch) -> Batch:
        """The batch the other half sees instead of ``batch`` (the same one every time;
        ``batch`` itself when no valid alternative exists: a null batch, no other request)."""
        known = self.alternatives.get(batch.digest)
        if known is not None:
            return known
        reqs = batch.requests
        for req in reqs:
            self.pool.append(req)
        if len(reqs) >= 2:
            alt = make_batch(tuple(reversed(reqs)))
        else:
            spare = [r for r in self.pool if r not in reqs]
            if spare:
                alt = make_batch(reqs + (self.rng.choice(spare),))
            elif batch.digest != NULL_DIGEST:
                alt = make_batch(())
            else:
                return batch
        if len(self.alternatives) >= self.max_alternatives:
            self.alternatives.pop(next(iter(self.alternatives)))
        self.alternatives[batch.digest] = alt
        return alt

    def swap_digest(self, digest: bytes) -> bytes:
        """B's digest for A's; any other digest unchanged."""
        alt = self.alternatives.get(digest)
        return alt.digest if alt is not None else digest


def forge(msg: Any, out: Any, sign: Sign | None) -> Any:
    """``out`` (``msg`` rewritten, or ``msg`` itself) as the liar signs it: its own view-change
    lies (FORGERS) and, where a field changed, its signature over the new fields (RESIGNERS)."""
    if sign is None:
        return out
    forger = FORGERS.get(type(out))
    if forger is not None:
        out = forger(out, sign)
    if out is not msg:
        resign = RESIGNERS.get(type(out))
        if resign is not None:
            out = resign(out, sign)
    return out


def wrong_digest(digest: bytes) -> bytes:
    """The digest a ``wrong_digest`` replica votes for instead of ``digest`` (never equal)."""
    return hashlib.sha256(b"byz-wrong-digest" + digest).digest()


def equivocation_halves(me: int, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The other replicas split in two: (first half, second half); the second gets batch B."""
    peers = [r for r in range(n) if r != me]
    cut = (len(peers) + 1) // 2
    return tuple(peers[:cut]), tuple(peers[cut:])


class CorruptMacs:
    """A LinkAuth whose every tag has its last byte flipped (``bad_mac``); the rest delegates."""

    def __init__(self, auth: Any, counts: Any) -> None:
        self._auth = auth
        self._counts = counts
        self.tag_size = auth.tag_size

    def seal(self, to: int, frame: bytes) -> bytes:
        sealed = self._auth.seal(to, frame)
        self._counts["macs_corrupted"] += 1
        return sealed[:-1] + bytes([sealed[-1] ^ 0xFF])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._auth, name)


class ByzantineOutput:
    """What one Byzantine replica's output threads do to its frames (see the module note).

    ``outgoing(dest, msg)`` -> [(to, msg')] per destination; ``delay_s(msg)`` -> how long the
    frame is held back; ``wrap_auth(auth, counts)`` -> the link authenticator to seal with.
    Shared by the replica's output threads: the equivocator's table is behind a lock."""

    def __init__(
        self,
        kind: str,
        me: int,
        n: int,
        *,
        proposal_messages: Iterable[type] = (),
        vote_messages: Iterable[type] = (),
        delay_ms: float = 0.0,
        sign: Sign | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if kind not in BYZANTINE_KINDS:
            raise ValueError(
                f"unknown Byzantine kind {kind!r}; choose from {', '.join(BYZANTINE_KINDS)}"
            )
        self.kind = kind
        self.me = me
        self.n = n
        self.proposals = frozenset(proposal_messages)
        self.votes = frozenset(vote_messages)
        self.delay = delay_ms / 1000.0
        self.sign = sign
        self.alternatives = Alternatives(rng or random.Random(RUNTIME_SEED))
        self.half_a, self.half_b = equivocation_halves(me, n)
        self.group_b = frozenset(self.half_b)
        self._lock = threading.Lock()

    def delay_s(self, msg: Any) -> float:
        """Seconds ``msg``'s frames are held back before they leave (0: at once)."""
        if self.kind == "slow":
            return self.delay
        if self.kind == "throttle" and type(msg) in self.proposals:
            return self.delay
        return 0.0

    def wrap_auth(self, auth: Any, counts: Any) -> Any:
        """The authenticator this kind seals with (``bad_mac``: corrupted tags)."""
        return CorruptMacs(auth, counts) if self.kind == "bad_mac" else auth

    def outgoing(
        self, dest: int | tuple[int, ...], msg: Any, counts: Any
    ) -> list[tuple[int | tuple[int, ...], Any]]:
        """What each destination of ``dest`` gets instead of ``msg`` (grouped by message)."""
        kind = self.kind
        if kind not in ("equivocate", "wrong_digest") or isinstance(msg, Request | Reply):
            return [(dest, msg)]
        if kind == "wrong_digest":
            if type(msg) not in self.votes:
                return [(dest, msg)]
            out = forge(msg, rewrite(msg, _same_batch, wrong_digest), self.sign)
            if out is not msg:
                counts["votes_rewritten"] += 1
            return [(dest, out)]
        # equivocate: the second half hears batch B (and B's digest), the first half A
        group_b = self.group_b
        if type(dest) is int:
            to_a: int | tuple[int, ...] = () if dest in group_b else dest
            to_b: int | tuple[int, ...] = dest if dest in group_b else ()
        else:
            to_a = tuple(d for d in dest if d not in group_b)
            to_b = tuple(d for d in dest if d in group_b)
        if to_b == ():
            return [(dest, self._forged_a(msg))]
        with self._lock:
            alts = self.alternatives
            lie = rewrite(msg, alts.alternative, alts.swap_digest)
        lie = forge(msg, lie, self.sign)
        if lie is not msg:
            counts[
                "proposals_equivocated" if type(msg) in self.proposals else "messages_swapped"
            ] += 1
        out: list[tuple[int | tuple[int, ...], Any]] = [(to_b, lie)]
        if to_a != ():
            out.append((to_a, self._forged_a(msg)))
        return out

    def _forged_a(self, msg: Any) -> Any:
        forger = FORGERS.get(type(msg))
        return msg if forger is None or self.sign is None else forger(msg, self.sign)


def _same_batch(batch: Batch) -> Batch:
    return batch


__all__ = [
    "Alternatives",
    "ByzantineOutput",
    "CorruptMacs",
    "equivocation_halves",
    "forge",
    "rewrite",
    "wrong_digest",
]
