"""The in-memory test cluster (tests/protocol/scenario.py) running PoE replicas.

``PoeCluster`` only names PoE's timers and prints PoE's messages in short form; the
fake link, drop/hold rules, ledgers (with Rollback) and the script runner are the shared
ones (a script says ``cluster protocol=poe ...``).

Must not live here: assertions about PoE behaviour (tests/protocol/test_poe*.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from protocols.poe import (
    Certify,
    Fetch,
    FetchReply,
    NvCertify,
    NvCommit,
    NvPropose,
    NvSupport,
    Poe,
    Propose,
    StableProof,
    Support,
    VcRequest,
)
from tests.protocol.scenario import Cluster


class PoeCluster(Cluster):
    """n PoE replicas on the shared fake link."""

    def __init__(self, n: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("protocol_cls", Poe)
        super().__init__(n, **kwargs)

    @property
    def poe(self) -> list[Poe]:
        return self.replicas  # type: ignore[return-value]

    def timer_key(self, name: str) -> Hashable:
        return ("poe", name)

    def fmt(self, msg: Any) -> str:
        t = type(msg)
        if t is Propose:
            return f"Propose v{msg.view} s{msg.seq} {self.bname(msg.batch.digest)}"
        if t is Support:
            return f"Support v{msg.view} s{msg.seq} {self.bname(msg.digest)} from r{msg.replica}"
        if t is Certify:
            signers = ",".join(f"r{s}" for s in msg.cert.signers)
            return f"Certify v{msg.view} s{msg.seq} {self.bname(msg.digest)} by [{signers}]"
        if t is VcRequest:
            entries = ",".join(
                f"{e.seq}:v{e.view}:{self.bname(e.batch.digest)}" for e in msg.entries
            )
            text = f"VcRequest v{msg.new_view} stable={msg.stable_seq} entries=[{entries}]"
            if msg.supported:
                sup = ",".join(f"{q.seq}:v{q.view}:{self.bname(q.digest)}" for q in msg.supported)
                text += f" supported=[{sup}]"
            return text
        if t is NvPropose:
            senders = ",".join(f"r{vc.replica}" for vc in msg.requests)
            return f"NvPropose v{msg.view} from=[{senders}]"
        if t is NvSupport:
            if not msg.shares:  # MACs: no shares, all-to-all
                return (
                    f"NvSupport v{msg.view} from r{msg.replica}{' waiting' if msg.waiting else ''}"
                )
            return f"NvSupport v{msg.view} from r{msg.replica} ({len(msg.shares)} shares)"
        if t is NvCertify:
            plan = ",".join(
                f"{msg.base + 1 + i}:{self.bname(d)}" for i, d in enumerate(msg.digests)
            )
            return f"NvCertify v{msg.view} plan=[{plan}]"
        if t is NvCommit:
            return f"NvCommit v{msg.view} from r{msg.replica}{' waiting' if msg.waiting else ''}"
        if t is Fetch:
            return f"Fetch s{msg.first_seq}..{msg.last_seq}"
        if t is FetchReply:
            kind = "final" if msg.final else "certified" if msg.cert else "claimed"
            return f"FetchReply s{msg.seq} {self.bname(msg.batch.digest)} {kind}"
        if t is StableProof:
            return f"StableProof s{msg.seq} ({len(msg.proof)} checkpoints)"
        return super().fmt(msg)


def small_cluster(n: int = 4, **kwargs: Any) -> PoeCluster:
    """A cluster with a short window and timeouts, as the unit tests use it."""
    kwargs.setdefault("checkpoint_period", 4)
    kwargs.setdefault("watermark_window", 8)
    kwargs.setdefault("view_change_ticks", 10)
    return PoeCluster(n, **kwargs)


def ledger(c: PoeCluster, r: int) -> list[str]:
    """Replica ``r``'s delivered entries as ``seq:batch-name``."""
    return [f"{d.seq}:{c.bname(d.batch.digest)}" for d in c.delivered[r]]


def sent(c: PoeCluster, prefix: str) -> list[str]:
    """Trace lines starting with ``prefix`` (e.g. ``"r1 Broadcast Support"``)."""
    return [ln for ln in c.trace if ln.startswith(prefix)]


def suspect_primary(c: PoeCluster, backups: list[int]) -> None:
    """The request timers of ``backups`` expire twice: first a catch-up probe, then VC."""
    for _ in range(2):
        for r in backups:
            assert c.fire(r, "request")
        c.run()


__all__ = ["PoeCluster", "ledger", "sent", "small_cluster", "suspect_primary"]
