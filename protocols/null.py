"""The null protocol: no consensus, replica 0 delivers each batch at once.

It is the baseline that measures the pipeline without agreement (``make bench``
compares PBFT against it). Only replica 0 proposes and executes; the others
stay idle. Replies need one matching answer.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from protocols.base import Action, Deliver, Protocol, ReplyRule
from protocols.common import Batch, Request
from protocols.registry import register


@register
class NullProtocol(Protocol):
    name = "null"

    def __init__(self, config, verifier) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, verifier)
        self.next_seq = 1

    @classmethod
    def reply_quorum(cls, n: int, f: int) -> int:
        return 1

    @classmethod
    def reply_rule(cls, n: int, f: int) -> ReplyRule:
        """One reply from replica 0, the only one that executes (no fault tolerance)."""
        return ReplyRule(1, ("seq", "result"), speculative=False)

    @classmethod
    def client_target(cls, view: int, client_id: int, n: int, params: Mapping[str, Any]) -> int:
        return 0

    def is_proposer(self) -> bool:
        return self.id == 0

    def proposal_room(self) -> int:
        return 1 << 30 if self.id == 0 else 0

    def propose(self, batch: Batch) -> list[Action]:
        seq = self.next_seq
        self.next_seq += 1
        return [Deliver(seq=seq, view=0, batch=batch)]

    def receive(self, sender: int, msg: Any) -> list[Action]:
        return []  # a Request that reaches a replica other than 0 is dropped (no forwarding)

    def timeout(self, timer: Hashable) -> list[Action]:
        return []

    def executed(self, seq: int, state_digest: bytes) -> list[Action]:
        return []

    def status(self) -> dict[str, Any]:
        return {"view": 0, "last_delivered": self.next_seq - 1}


__all__ = ["NullProtocol", "Request"]
