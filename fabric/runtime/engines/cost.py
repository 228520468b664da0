"""The execution cost knob: ``execution.txn_cost_us`` of extra work per transaction, GIL released.

It stands in for contract execution: sha256 over a buffer sized so one hash takes about
``txn_cost_us`` microseconds on this machine. CPython's hashlib releases the GIL for inputs
of 2 KiB and more, so engine threads really run it in parallel on the cores present. The
digest is thrown away: the cost changes no result, so replicas need not agree on the
calibration (each process measures its own, once, the fastest of a few passes).

Must not live here: anything that decides results (fabric.runtime.engines.txns).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable

from fabric.runtime.engines.limits import COST_CALIBRATION_BYTES, MAX_TXN_COST_US

_GIL_RELEASE_BYTES = 2048  # hashlib holds the GIL below this input size


@functools.lru_cache(maxsize=1)
def sha256_bytes_per_us() -> float:
    """Bytes sha256 hashes per microsecond here (fastest of 5 passes over 1 MiB)."""
    buf = bytes(COST_CALIBRATION_BYTES)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        hashlib.sha256(buf).digest()
        best = min(best, time.perf_counter() - started)
    return COST_CALIBRATION_BYTES / max(best * 1e6, 1e-3)


def make_burn(txn_cost_us: float) -> Callable[[], None] | None:
    """A callable doing ``txn_cost_us`` µs of GIL-releasing work, or None for 0."""
    if not 0 <= txn_cost_us <= MAX_TXN_COST_US:
        raise ValueError(f"txn_cost_us {txn_cost_us} not in 0..{MAX_TXN_COST_US}")
    if txn_cost_us == 0:
        return None
    size = max(_GIL_RELEASE_BYTES, int(txn_cost_us * sha256_bytes_per_us()))
    view = memoryview(bytes(size))
    sha256 = hashlib.sha256

    def burn() -> None:
        sha256(view).digest()

    return burn
