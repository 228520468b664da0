"""The sans-IO protocol interface: calls in, actions out.

A protocol is a deterministic state machine. It never touches a socket, a
thread, a clock or a random number generator; the runtime (fabric/) and the
simulator (fabric/sim/) drive the same code. Inputs:

    propose(batch)            a proposer's batch stage hands over a ready batch
    receive(sender, msg)      an authenticated message from a replica (0..n-1)
                              or a client (ids >= n; client Requests at backups)
    timeout(timer)            a timer set earlier with SetTimer expired
    executed(seq, digest)     the execute stage applied ``seq``; ``digest`` is
                              the state digest after it (feeds checkpoints; b"" at a
                              seq that is not a checkpoint: only those are digested)
    state_installed(seq, digest, proof)
                              the execute stage now holds the state after ``seq``
                              (a snapshot fetched after ``FetchState``, or durable
                              state reloaded at a restart): the protocol moves to it

Each returns a list of actions (below). Time is counted in ticks; the runtime
maps a tick to ``protocol.tick_ms`` of wall time, the simulator to virtual time.
Transferable proofs (client signatures, certificates) go through the injected
``Verifier`` so the simulator can use a fast fake and the runtime real Ed25519.

Must not live here: anything that does IO, reads a clock or draws randomness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

from protocols.common import Batch, Reply, Request

# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to one node (replica or client id)."""

    to: int
    msg: Any


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``msg`` to every other replica (not to self, not to clients)."""

    msg: Any


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``batch`` to the execute stage at global sequence ``seq`` (in order, no gaps).

    ``speculative`` batches (PoE) may later be undone by ``Rollback``.
    """

    seq: int
    view: int
    batch: Batch
    speculative: bool = False
    # Zyzzyva: the history digest h_seq and the replica's signature over (view, seq, h_seq),
    # copied by the execute stage into every Reply of this batch (b"" elsewhere)
    history: bytes = b""
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Rollback:
    """Undo every delivered batch with sequence number > ``to_seq`` (store and ledger)."""

    to_seq: int


@dataclass(frozen=True, slots=True)
class StableCheckpoint:
    """Sequence ``seq`` is stable (2f+1 matching checkpoints): state below it may be discarded.

    ``proof`` holds the signed Checkpoint votes (protocols.checkpoints.Checkpoint) that made
    it stable, a transferable certificate of ``digest`` the runtime persists and serves
    with the state (empty where a protocol has none: RCC's rounds, a restart's own state).
    """

    seq: int
    digest: bytes
    proof: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchState:
    """The replica cannot reach stable checkpoint ``seq`` by replaying batches (peers keep a
    bounded history): fetch the state image at ``seq`` from peers, verify it against
    ``digest`` (certified by ``proof``, the 2f+1 signed Checkpoint votes), install it, and
    answer with ``state_installed``. A newer FetchState supersedes an older one."""

    seq: int
    digest: bytes
    proof: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)arm ``timer`` to fire after ``ticks`` ticks; arming an armed timer restarts it."""

    timer: Hashable
    ticks: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Hashable


@dataclass(frozen=True, slots=True)
class ViewEntered:
    """The replica entered ``view`` whose primary is ``primary`` (for metrics and clients)."""

    view: int
    primary: int


Action = (
    Send
    | Broadcast
    | Deliver
    | Rollback
    | StableCheckpoint
    | FetchState
    | SetTimer
    | CancelTimer
    | ViewEntered
)


# --- injected services -----------------------------------------------------------------


class Verifier(TypingProtocol):
    """Signatures for transferable proofs. The runtime uses Ed25519, the simulator a fake."""

    def sign(self, payload: bytes) -> bytes:
        """Sign ``payload`` as this replica."""
        ...

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        """True if ``signature`` is ``signer``'s signature over ``payload``."""
        ...

    def verify_request(self, request: Request) -> bool:
        """True if the client's signature on ``request`` is valid (or signatures are off)."""
        ...


# --- what a client accepts ------------------------------------------------------------

#: Reply fields a rule may ask replies to agree on (client and timestamp always agree: a
#: client counts replies per outstanding timestamp)
REPLY_MATCH_FIELDS = ("view", "seq", "result", "history")


@dataclass(frozen=True, slots=True)
class ReplyRule:
    """When a client accepts a result: ``quorum`` replies from distinct replicas that agree
    on every field in ``match``; speculative replies count only if ``speculative``.

    Every rule matches on ``seq`` and ``result``: a result digest alone does not show where
    a request was ordered (an update-only request has the same result at any position), and
    the accepted position is what the simulator checks against every ledger. The protocol
    class decides the rest from its paper (``Protocol.reply_rule``); the client process and
    the simulator both drive ``fabric.runtime.client.ClientCore`` with it.
    """

    quorum: int
    match: tuple[str, ...] = ("seq", "result")
    speculative: bool = False
    #: the slow path (Zyzzyva §3.2): with this many matching speculative replies but fewer
    #: than ``quorum``, the client sends the protocol's ``commit_message`` (a commit
    #: certificate) to every replica and accepts on this many matching non-speculative
    #: replies (LOCAL-COMMITs); 0: no slow path, non-speculative replies count to ``quorum``
    commit_quorum: int = 0

    def __post_init__(self) -> None:
        if self.quorum < 1:
            raise ValueError(f"reply quorum {self.quorum} < 1")
        if not 0 <= self.commit_quorum <= self.quorum:
            raise ValueError(f"commit quorum {self.commit_quorum} not in 0..{self.quorum}")
        if self.commit_quorum and not self.speculative:
            raise ValueError("a slow path (commit_quorum) needs speculative replies")
        bad = [name for name in self.match if name not in REPLY_MATCH_FIELDS]
        if bad or len(set(self.match)) != len(self.match):
            raise ValueError(f"reply rule matches on {self.match}; fields are {REPLY_MATCH_FIELDS}")
        if "seq" not in self.match or "result" not in self.match:
            raise ValueError("a reply rule must match on seq and result (the position)")

    def key(self, reply: Reply) -> tuple[Any, ...]:
        """What two replies must share to count together."""
        return tuple(getattr(reply, name) for name in self.match)


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """Everything a protocol instance needs to know about its cluster. All bounds explicit."""

    replica_id: int
    n: int
    checkpoint_period: int = 10  # sequence numbers between checkpoints (txn_per_chkpt / batch_size)
    watermark_window: int = (
        40  # high - low watermark, in sequence numbers (>= 2 * checkpoint_period)
    )
    view_change_ticks: int = 100  # a backup waits this long for a forwarded request to commit
    max_buffered: int = 10_000  # messages held for future views/sequences, per replica
    params: Mapping[str, Any] = field(default_factory=dict)  # protocol-specific knobs

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    def __post_init__(self) -> None:
        if self.n < 4:
            raise ValueError(f"n={self.n}: BFT needs n >= 3f+1 with f >= 1, so n >= 4")
        if not 0 <= self.replica_id < self.n:
            raise ValueError(f"replica_id {self.replica_id} not in 0..{self.n - 1}")
        if self.checkpoint_period < 1:
            raise ValueError("checkpoint_period must be >= 1")
        if self.watermark_window < 2 * self.checkpoint_period:
            raise ValueError("watermark_window must be >= 2 * checkpoint_period")


# --- the interface ---------------------------------------------------------------------


class Protocol(ABC):
    """Base class of every consensus protocol. Subclasses register in protocols.registry."""

    name: ClassVar[str]
    #: the protocol executes speculatively (Deliver(speculative=True), Rollback) and its
    #: clients accept speculative replies
    speculative_replies: ClassVar[bool] = False
    #: message classes a client may send besides its Request (Zyzzyva's commit
    #: certificate): the runtime's input stage hands them to the protocol, others are dropped
    client_messages: ClassVar[tuple[type, ...]] = ()
    #: why the protocol is known to be unsafe ("" if it is not): the CLI marks it and a
    #: real run refuses it unless ``protocol.allow_unsafe: true``
    unsafe: ClassVar[str] = ""
    #: what the protocol's wire offers a Byzantine replica (a declared fact, read by
    #: fabric.runtime.byzantine and by config validation, never attack code here): the
    #: message classes that carry a primary's proposal (a batch at a sequence number) and
    #: the votes on a proposal's digest. Empty: nothing to equivocate, throttle or vote on.
    proposal_messages: ClassVar[tuple[type, ...]] = ()
    vote_messages: ClassVar[tuple[type, ...]] = ()

    def __init__(self, config: ProtocolConfig, verifier: Verifier) -> None:
        self.config = config
        self.verifier = verifier
        self.id = config.replica_id
        self.n = config.n
        self.f = config.f

    # who proposes ------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        """Matching replies a client needs to accept a result (PBFT: f+1; PoE: n-f)."""

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """The client's acceptance rule: ``reply_quorum`` replies agreeing on seq and result.

        A protocol whose paper asks more (PoE: the view too) overrides this.
        """
        return ReplyRule(cls.reply_quorum(n, f), ("seq", "result"), cls.speculative_replies)

    @classmethod
    def commit_message(
        cls, client_id: int, timestamp: int, replies: tuple[Reply, ...], params: Mapping[str, Any]
    ) -> Any:
        """The slow path's message (``ReplyRule.commit_quorum``): what a client sends every
        replica once it holds ``replies``, that many matching speculative replies. Only a
        protocol whose rule has a commit quorum is asked."""
        raise NotImplementedError(f"{cls.__name__} has no slow path")

    @classmethod
    def commit_wait_ticks(cls, params: Mapping[str, Any]) -> int:
        """Ticks a client waits for the fast quorum before it starts the slow path."""
        return 0

    @classmethod
    @abstractmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        """The replica a client sends its requests to, given the last view it heard of."""

    @abstractmethod
    def is_proposer(self) -> bool:
        """True if this replica currently proposes batches (the runtime runs batch threads)."""

    @abstractmethod
    def proposal_room(self) -> int:
        """How many more batches ``propose`` accepts now (0 when the window is full)."""

    # calls in ----------------------------------------------------------------------
    @abstractmethod
    def propose(self, batch: Batch) -> list[Action]:
        """Order ``batch`` (only at a proposer, only when proposal_room() > 0)."""

    @abstractmethod
    def receive(self, sender: int, msg: Any) -> list[Action]:
        """Handle an authenticated message from ``sender``."""

    @abstractmethod
    def timeout(self, timer: Hashable) -> list[Action]:
        """Handle the expiry of ``timer``."""

    @abstractmethod
    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        """Feedback from the execute stage after applying ``seq``: called at the checkpoint
        seqs only (multiples of ``checkpoint_seq_period``; every seq when it is 0), by the
        runtime's execute stage and the simulator alike, so a protocol must not rely on a
        call for any other seq."""

    def state_installed(
        self, seq: int, state_digest: bytes, proof: tuple[Any, ...] = ()
    ) -> list[Action]:
        """The execute stage holds the state after ``seq`` (digest ``state_digest``): a
        snapshot installed after ``FetchState`` (``proof`` certifies it), or durable state a
        restarted replica reloaded (``proof`` as persisted, maybe empty). The protocol takes
        ``seq`` as delivered and catches up the rest by its batch fetch. A protocol without
        state transfer ignores it."""
        return []

    # introspection -----------------------------------------------------------------
    def checkpoint_seq_period(self) -> int:
        """Global sequence numbers between two checkpoints (the execute stage digests its
        state at multiples of it; RCC counts rounds of m seqs)."""
        return self.config.checkpoint_period

    def status(self) -> dict[str, Any]:
        """A small snapshot for metrics and tests (view, last delivered, stable checkpoint)."""
        return {}
