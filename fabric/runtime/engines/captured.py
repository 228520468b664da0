"""What one Block-STM incarnation read and wrote (Aptos calls it the captured reads).

``SpeculativeView`` is the ``read``/``write`` pair an incarnation of transaction ``idx``
runs with: a write goes to its own buffer; a read sees the transaction's own write first,
then the multi-version memory's highest lower writer (recording that (index, incarnation)
version), then the store (recording "storage"). Meeting an ESTIMATE raises
``DependencyAbort(blocking index)``: the scheduler suspends the incarnation until the
blocking transaction is re-executed. Read and write sets are discovered here, while the
transaction runs; nothing is declared.

Must not live here: validation (fabric.runtime.engines.mvmemory), scheduling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fabric.runtime.engines.mvmemory import ESTIMATE, MVMemory, ReadSet

_ABSENT: Any = object()


class DependencyAbort(Exception):
    """The incarnation read an ESTIMATE left by transaction ``blocking``."""

    def __init__(self, blocking: int) -> None:
        super().__init__(blocking)
        self.blocking = blocking


class SpeculativeView:
    """Reads and writes of one incarnation (see the module comment)."""

    __slots__ = ("idx", "mv", "storage_get", "reads", "writes")

    def __init__(self, idx: int, mv: MVMemory, storage_get: Callable[[int], Any]) -> None:
        self.idx = idx
        self.mv = mv
        self.storage_get = storage_get
        self.reads: ReadSet = []
        self.writes: dict[int, Any] = {}

    def read(self, key: int) -> Any:
        own = self.writes.get(key, _ABSENT)
        if own is not _ABSENT:
            return own
        found = self.mv.read(key, self.idx)
        if found is None:
            self.reads.append((key, None))
            return self.storage_get(key)
        j, (inc, value) = found
        if value is ESTIMATE:
            raise DependencyAbort(j)
        self.reads.append((key, (j, inc)))
        return value

    def write(self, key: int, value: Any) -> None:
        self.writes[key] = value
