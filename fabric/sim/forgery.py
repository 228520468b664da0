"""Lies a Byzantine replica can sign: protocol-specific rewrites of its own signed messages.

``ByzantineMutator`` (faults.py) rewrites messages generically and never signs, so a lie in
a message the liar signs itself (a view-change message, say) used to fail verification and
count as silence. A real Byzantine replica holds its own key and can sign any claim it
likes; where a protocol accepts *unproven claims* in such a message, the simulator must
send signed lies too, or it never tests the rule that weighs them.

``FORGERS`` maps a message class to ``forge(msg, sign) -> msg``: the message with the
liar's claims made as damaging as the protocol lets them be, re-signed with ``sign`` (the
liar's own key). Today: PoE's VC-REQUEST with MACs (claims of view-commits and supports
carry no certificate, so the liar claims them in the latest view it may name; with the
mutator's swapped batches that is "I view-committed batch B in view w−1", backed by its
own support claim). With signatures a claim carries its certificate and a forged one
fails, so those VC-REQUESTs are left alone.

Must not live here: generic rewriting (faults.py), honest protocol logic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from protocols.poe.messages import (
    MAX_SUPPORTED_PER_SEQ,
    Supported,
    VcRequest,
    vc_request_payload,
)

Sign = Callable[[bytes], bytes]


def forge_poe_vc_request(vc: VcRequest, sign: Sign) -> VcRequest:
    """MACs: every claim moved to view new_view−1 and backed by a support claim there."""
    if not vc.entries and not vc.supported:
        return vc
    if any(e.cert is not None for e in vc.entries):
        return vc  # signatures: certificates cannot be forged, nothing to gain
    top = vc.new_view - 1
    entries = tuple(dataclasses.replace(e, view=top) for e in vc.entries)
    backed: dict[tuple[int, bytes], Supported] = {}
    for q in vc.supported:
        backed[(q.seq, q.digest)] = Supported(q.seq, top, q.digest)
    for e in entries:
        backed[(e.seq, e.batch.digest)] = Supported(e.seq, top, e.batch.digest)
    per_seq: dict[int, int] = {}
    supported = []
    for key in sorted(backed):  # the protocol's bound on claims per seq still applies
        if per_seq.get(key[0], 0) < MAX_SUPPORTED_PER_SEQ:
            per_seq[key[0]] = per_seq.get(key[0], 0) + 1
            supported.append(backed[key])
    lie = dataclasses.replace(vc, entries=entries, supported=tuple(supported), signature=b"")
    return dataclasses.replace(lie, signature=sign(vc_request_payload(lie)))


FORGERS: dict[type, Callable[[Any, Sign], Any]] = {VcRequest: forge_poe_vc_request}

__all__ = ["FORGERS", "forge_poe_vc_request"]
