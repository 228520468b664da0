"""Safety audit of a run: do the honest replicas' ledgers agree?

Each replica hands in its ledger's hash chain, ``[(seq, hash), ...]`` from
``fabric.runtime.execute.Ledger.chain()``. Every honest replica's chain must start at
seq 1, have no gaps, and agree with every other honest chain at every seq up to
the shortest one (the common prefix). A replica whose state was installed from a snapshot
at seq S (state transfer: ``bases``) has no blocks at or below S: its chain must start at
S + 1, the image's hash at S must equal the others' block S, and it is compared from there
(the audit's message says so). Since each hash chains the previous one,
agreement at a seq means agreement on every batch and result before it; the audit
still compares every seq so that it can name the first divergent one.

Hashes may be given as bytes or as hex strings (as read back from a results file).

Must not live here: collecting the chains from replicas (the runner) or printing reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AuditResult:
    ok: bool
    common_prefix: int  # the shortest honest ledger's last seq (0 if none)
    heads: dict[int, tuple[int, str]] = field(
        default_factory=dict
    )  # replica -> (last seq, head hex)
    first_divergence: tuple[int, dict[int, str]] | None = None  # (seq, {replica: hash hex})
    message: str = ""


def _hex(h: Any) -> str:
    if isinstance(h, bytes | bytearray | memoryview):
        return bytes(h).hex()
    if isinstance(h, str):
        return h.lower()
    raise TypeError(f"hash must be bytes or a hex string, got {type(h).__name__}")


def _normalise(chain: Sequence[tuple[int, Any]], base: int = 0) -> tuple[list[str], str | None]:
    """The chain's hashes as hex, indexed by seq - base - 1, or an error describing a gap or a
    bad entry (a chain starts at seq ``base + 1``)."""
    hashes: list[str] = []
    for i, entry in enumerate(chain):
        try:
            seq, h = entry
            hx = _hex(h)
        except (TypeError, ValueError) as exc:
            return hashes, f"malformed entry at position {i}: {exc}"
        if type(seq) is not int or seq != base + i + 1:
            if i == 0:
                return hashes, f"starts at seq {seq!r}, not {base + 1}"
            return hashes, f"gap or disorder after seq {base + i}: next entry is seq {seq!r}"
        hashes.append(hx)
    return hashes, None


def _head(chain: Sequence[tuple[int, Any]]) -> tuple[int, str]:
    """(last seq, head hash hex) as handed in, or (0, "") for an empty or unreadable chain."""
    try:
        seq, h = chain[-1]
        return (int(seq), _hex(h))
    except (IndexError, TypeError, ValueError):
        return (0, "")


def audit_ledgers(
    chains: Mapping[int, Sequence[tuple[int, bytes]]],
    honest: Iterable[int] | None = None,
    bases: Mapping[int, tuple[int, Any]] | None = None,
) -> AuditResult:
    """Check that every honest replica's ledger agrees on the common prefix (see module comment).

    ``honest`` defaults to every replica in ``chains``; an honest replica with no
    chain is a failure. ``heads`` covers every replica handed in, honest or not.
    ``bases`` (replica -> (seq, hash)) names a replica whose state was installed from an image
    at ``seq`` (a snapshot): its chain starts at seq + 1, it is compared from there, and the
    image's ledger hash at ``seq`` is compared with the others' block ``seq``.
    """
    honest_ids = sorted(chains) if honest is None else sorted(set(honest))
    base_of = {r: (int(b[0]), _hex(b[1])) for r, b in (bases or {}).items() if int(b[0]) > 0}
    problems: list[str] = []
    normal: dict[int, list[str]] = {}
    start: dict[int, int] = {}  # replica -> the seq its chain starts after
    heads: dict[int, tuple[int, str]] = {}
    for replica in sorted(chains):
        base, _ = base_of.get(replica, (0, ""))
        hashes, err = _normalise(chains[replica], base)
        normal[replica] = hashes
        start[replica] = base
        heads[replica] = _head(chains[replica])
        if err is not None and replica in honest_ids:
            problems.append(f"replica {replica}: {err}")

    missing = [r for r in honest_ids if r not in chains]
    problems += [f"replica {r}: no ledger handed in" for r in missing]
    present = [r for r in honest_ids if r in chains]
    if not present:
        return AuditResult(False, 0, heads, None, "no honest ledger to audit")

    def hash_at(r: int, seq: int) -> str | None:
        b = start[r]
        if seq == b and b > 0:
            return base_of[r][1]
        i = seq - b - 1
        return normal[r][i] if 0 <= i < len(normal[r]) else None

    common = min(start[r] + len(normal[r]) for r in present)
    divergence: tuple[int, dict[int, str]] | None = None
    for seq in range(1, common + 1):
        held = {r: h for r in present if (h := hash_at(r, seq)) is not None}
        if len(set(held.values())) > 1:
            divergence = (seq, held)
            problems.append(f"honest ledgers diverge at seq {seq}")
            break

    ok = not problems
    snapshot = [r for r in present if start[r] > 0]
    note = "".join(
        f"; replica {r} compared from seq {start[r]} (state installed from a snapshot at seq "
        f"{start[r]}: no blocks below it)"
        for r in snapshot
    )
    if not ok:
        message = "; ".join(problems)
    elif common == 0:
        longest = max(len(normal[r]) for r in present)
        message = (
            f"{len(present)} honest ledgers, all empty: nothing executed, nothing to disagree on"
            if longest == 0
            else f"{len(present)} honest ledgers, common prefix empty (the shortest is empty, "
            f"the longest holds {longest}): nothing to compare"
        )
    else:
        head = hash_at(present[0], common) or ""
        message = (
            f"{len(present)} honest ledgers agree on seq 1..{common} (hash {head[:16]}...){note}"
        )
    return AuditResult(ok, common, heads, divergence, message)
