"""Lies a Byzantine replica can sign: protocol-specific rewrites of its own signed messages.

The generic rewriting (fabric.runtime.byzantine.rewrite) never signs, so a lie in a message
the liar signs itself (a view-change message, say) used to fail verification and count as
silence. A real Byzantine replica holds its own key and can sign any claim it
likes; where a protocol accepts *unproven claims* in such a message, the simulator must
send signed lies too, or it never tests the rule that weighs them.

``FORGERS`` maps a message class to ``forge(msg, sign) -> msg``: the message with the
liar's claims made as damaging as the protocol lets them be, re-signed with ``sign`` (the
liar's own key). Today: PoE's VC-REQUEST with MACs and PBFT's VIEW-CHANGE with unsigned
votes (claims of view-commits / prepares carry no certificate, so the liar claims them in
the latest view it may name; with the equivocator's swapped batches that is "I prepared
batch B in view w−1", backed by its own support / pre-prepare claim). With signatures a claim
carries its certificate and a forged one fails, so those messages are left alone.

``RESIGNERS`` maps a proposal or vote class to ``resign(msg, sign) -> msg``: the message's
own signature (or share) made again over its rewritten fields with the liar's key, so a
conflicting proposal or a vote for a wrong digest verifies as the liar's (left empty where
the protocol runs without that signature). The simulator and the runtime's Byzantine
output (fabric.runtime.byzantine) both use these tables: a liar signs only as itself.

Must not live here: generic rewriting (fabric.runtime.byzantine), honest protocol logic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from protocols.claims import MAX_CLAIMED_PER_SEQ
from protocols.pbft.messages import (
    Prepare,
    PreparedCert,
    PrePrepare,
    PrePrepared,
    ViewChange,
    pre_prepare_payload,
    prepare_payload,
    view_change_payload,
)
from protocols.poe.messages import (
    Propose,
    Support,
    Supported,
    VcRequest,
    support_payload,
    vc_request_payload,
)
from protocols.zyzzyva.messages import ViewChange as ZyzzyvaViewChange
from protocols.zyzzyva.messages import view_change_payload as zyzzyva_view_change_payload

Sign = Callable[[bytes], bytes]


def forge_poe_vc_request(vc: VcRequest, sign: Sign) -> VcRequest:
    """MACs: every claim moved to view new_view−1 and backed by a support claim there."""
    if not vc.entries and not vc.supported:
        return vc
    if any(e.cert is not None for e in vc.entries):
        return vc  # signatures: certificates cannot be forged, nothing to gain
    top = vc.new_view - 1
    entries = tuple(dataclasses.replace(e, view=top) for e in vc.entries)
    backed = {(q.seq, q.digest) for q in vc.supported}
    backed |= {(e.seq, e.batch.digest) for e in entries}
    supported = _capped(sorted(backed), lambda seq, digest: Supported(seq, top, digest))
    lie = dataclasses.replace(vc, entries=entries, supported=supported, signature=b"")
    return dataclasses.replace(lie, signature=sign(vc_request_payload(lie)))


def forge_pbft_view_change(vc: ViewChange, sign: Sign) -> ViewChange:
    """Unsigned votes: every prepared claim moved to view new_view−1 and backed by a
    pre-prepare claim there (signed votes: left alone, certificates cannot be forged)."""
    if not vc.prepared and not vc.pre_prepared:
        return vc
    if any(c.prepares for c in vc.prepared):
        return vc
    top = vc.new_view - 1
    prepared = tuple(
        PreparedCert(dataclasses.replace(c.pre_prepare, view=top), ()) for c in vc.prepared
    )
    backed = {(q.seq, q.digest) for q in vc.pre_prepared}
    backed |= {(c.pre_prepare.seq, c.pre_prepare.batch.digest) for c in prepared}
    claims = _capped(sorted(backed), lambda seq, digest: PrePrepared(seq, top, digest))
    lie = dataclasses.replace(vc, prepared=prepared, pre_prepared=claims, signature=b"")
    return dataclasses.replace(lie, signature=sign(view_change_payload(lie)))


def _capped(keys: list[tuple[int, bytes]], make: Callable[[int, bytes], Any]) -> tuple[Any, ...]:
    """Claims for sorted (seq, digest) keys, at most MAX_CLAIMED_PER_SEQ per seq (the
    bound the protocols enforce: more would only get the whole message refused)."""
    per_seq: dict[int, int] = {}
    out = []
    for seq, digest in keys:
        if per_seq.get(seq, 0) < MAX_CLAIMED_PER_SEQ:
            per_seq[seq] = per_seq.get(seq, 0) + 1
            out.append(make(seq, digest))
    return tuple(out)


def forget_zyzzyva_view_change(vc: ZyzzyvaViewChange, sign: Sign) -> ZyzzyvaViewChange:
    """Amnesia: a VIEW-CHANGE that claims no ordered history and no commit certificate
    beyond the stable checkpoint (a valid message: nothing in it can be checked missing)."""
    lie = dataclasses.replace(vc, cc=None, cc_order=None, history=(), signature=b"")
    return dataclasses.replace(lie, signature=sign(zyzzyva_view_change_payload(lie)))


#: message class -> what an ``amnesia`` replica sends instead (faults.SCRIPTED_BEHAVIOURS)
AMNESIA: dict[type, Callable[[Any, Sign], Any]] = {
    ZyzzyvaViewChange: forget_zyzzyva_view_change,
}

FORGERS: dict[type, Callable[[Any, Sign], Any]] = {
    VcRequest: forge_poe_vc_request,
    ViewChange: forge_pbft_view_change,
}


def resign_pre_prepare(pp: PrePrepare, sign: Sign) -> PrePrepare:
    """PBFT signed votes: the primary's signature over the (possibly swapped) batch digest."""
    if not pp.signature:
        return pp
    payload = pre_prepare_payload(pp.instance, pp.view, pp.seq, pp.batch.digest)
    return dataclasses.replace(pp, signature=sign(payload))


def resign_prepare(p: Prepare, sign: Sign) -> Prepare:
    """PBFT signed votes: the backup's signature over the (possibly wrong) digest."""
    if not p.signature:
        return p
    payload = prepare_payload(p.instance, p.view, p.seq, p.replica, p.digest)
    return dataclasses.replace(p, signature=sign(payload))


def resign_propose(p: Propose, sign: Sign) -> Propose:
    """PoE: the primary's own support share over the (possibly swapped) batch digest."""
    if not p.share:
        return p
    return dataclasses.replace(p, share=sign(support_payload(p.view, p.seq, p.batch.digest)))


def resign_support(s: Support, sign: Sign) -> Support:
    """PoE: a backup's support share over the (possibly wrong) digest."""
    if not s.share:
        return s
    return dataclasses.replace(s, share=sign(support_payload(s.view, s.seq, s.digest)))


RESIGNERS: dict[type, Callable[[Any, Sign], Any]] = {
    PrePrepare: resign_pre_prepare,
    Prepare: resign_prepare,
    Propose: resign_propose,
    Support: resign_support,
}

__all__ = [
    "AMNESIA",
    "FORGERS",
    "RESIGNERS",
    "forge_pbft_view_change",
    "forge_poe_vc_request",
    "forget_zyzzyva_view_change",
    "resign_pre_prepare",
    "resign_prepare",
    "resign_propose",
    "resign_support",
]
