"""Safety audit of a run: do the honest replicas' ledgers agree?

Each replica hands in its ledger's hash chain, ``[(seq, hash), ...]`` from
``fabric.runtime.execute.Ledger.chain()``. Every honest replica's chain must start at
seq 1, have no gaps, and agree with every other honest chain at every seq up to
the shortest one (the common prefix). Since each hash chains the previous one,
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


def _normalise(chain: Sequence[tuple[int, Any]]) -> tuple[list[str], str | None]:
    """The chain's hashes as hex, indexed by seq - 1, or an error describing a gap or bad entry."""
    hashes: list[str] = []
    for i, entry in enumerate(chain):
        try:
            seq, h = entry
            hx = _hex(h)
        except (TypeError, ValueError) as exc:
            return hashes, f"malformed entry at position {i}: {exc}"
        if type(seq) is not int or seq != i + 1:
            if i == 0:
                return hashes, f"starts at seq {seq!r}, not 1"
            return hashes, f"gap or disorder after seq {i}: next entry is seq {seq!r}"
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
) -> AuditResult:
    """Check that every honest replica's ledger agrees on the common prefix (see module comment).

    ``honest`` defaults to every replica in ``chains``; an honest replica with no
    chain is a failure. ``heads`` covers every replica handed in, honest or not.
    """
    honest_ids = sorted(chains) if honest is None else sorted(set(honest))
    problems: list[str] = []
    normal: dict[int, list[str]] = {}
    heads: dict[int, tuple[int, str]] = {}
    for replica in sorted(chains):
        hashes, err = _normalise(chains[replica])
        normal[replica] = hashes
        heads[replica] = _head(chains[replica])
        if err is not None and replica in honest_ids:
            problems.append(f"replica {replica}: {err}")

    missing = [r for r in honest_ids if r not in chains]
    problems += [f"replica {r}: no ledger handed in" for r in missing]
    present = [r for r in honest_ids if r in chains]
    if not present:
        return AuditResult(False, 0, heads, None, "no honest ledger to audit")

    common = min(len(normal[r]) for r in present)
    divergence: tuple[int, dict[int, str]] | None = None
    for idx in range(common):
        first = normal[present[0]][idx]
        if any(normal[r][idx] != first for r in present[1:]):
            divergence = (idx + 1, {r: normal[r][idx] for r in present})
            problems.append(f"honest ledgers diverge at seq {idx + 1}")
            break

    ok = not problems
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
        head = normal[present[0]][common - 1]
        message = f"{len(present)} honest ledgers agree on seq 1..{common} (hash {head[:16]}...)"
    return AuditResult(ok, common, heads, divergence, message)
