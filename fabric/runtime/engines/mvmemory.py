"""Block-STM's multi-version memory (Gelashvili et al., PPoPP'23, section 3 and Algorithm 2).

Per key, the value each transaction index wrote, with the incarnation that wrote it; an
aborted incarnation's writes become ESTIMATE markers (a later reader waits for the writer
instead of reading a value about to change). ``read(key, idx)`` returns the entry of the
highest index below ``idx`` that wrote ``key`` (or None: read the store). Per index it also
keeps the last incarnation's write keys and read set, which ``validate_read_set`` re-checks.
``snapshot()`` is the block's output: per key, the value of its highest writer.

One lock guards the maps (CPython runs one thread at a time anyway; the lock makes each
operation atomic, as the paper's per-key structures are).

Must not live here: the scheduler, the transactions, the store.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from typing import Any

ESTIMATE: Any = object()  # the value of an entry whose writer was aborted

Version = tuple[int, int]  # (transaction index, incarnation)
Entry = tuple[int, Any]  # (incarnation, value or ESTIMATE)
ReadSet = list[tuple[int, Version | None]]  # (key, version read; None = read the store)


class MVMemory:
    """Multi-version memory of one block of ``n`` transactions."""

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._data: dict[int, dict[int, Entry]] = {}
        self._writers: dict[int, list[int]] = {}  # key -> sorted indices with an entry
        self._last_written: list[tuple[int, ...]] = [()] * n
        self._last_reads: list[ReadSet] = [[] for _ in range(n)]

    def read(self, key: int, idx: int) -> tuple[int, Entry] | None:
        """(writer index, entry) of the highest writer below ``idx``, or None (no such writer)."""
        with self._lock:
            writers = self._writers.get(key)
            if not writers:
                return None
            pos = bisect_left(writers, idx) - 1
            if pos < 0:
                return None
            j = writers[pos]
            return j, self._data[key][j]

    def record(self, idx: int, incarnation: int, reads: ReadSet, writes: dict[int, Any]) -> bool:
        """Store an incarnation's writes and read set; True if it wrote a key the previous
        incarnation of ``idx`` did not (then higher transactions must be validated again)."""
        with self._lock:
            data, writers = self._data, self._writers
            for key, value in writes.items():
                entries = data.get(key)
                if entries is None:
                    data[key] = {idx: (incarnation, value)}
                    writers[key] = [idx]
                    continue
                if idx not in entries:
                    insort(writers[key], idx)
                entries[idx] = (incarnation, value)
            previous = self._last_written[idx]
            wrote_new = False
            for key in writes:
                if key not in previous:
                    wrote_new = True
                    break
            for key in previous:
                if key not in writes:  # the new incarnation no longer writes it
                    del data[key][idx]
                    writers[key].remove(idx)
            self._last_written[idx] = tuple(writes)
            self._last_reads[idx] = reads
        return wrote_new

    def convert_writes_to_estimates(self, idx: int) -> None:
        """Mark every write of ``idx``'s last incarnation as ESTIMATE (it was aborted)."""
        with self._lock:
            data = self._data
            for key in self._last_written[idx]:
                inc = data[key][idx][0]
                data[key][idx] = (inc, ESTIMATE)

    def validate_read_set(self, idx: int) -> bool:
        """True if every read of ``idx``'s last incarnation would read the same version now."""
        read = self.read
        for key, version in self._last_reads[idx]:
            found = read(key, idx)
            if found is None:
                if version is not None:
                    return False
                continue
            j, (inc, value) = found
            if value is ESTIMATE or version != (j, inc):
                return False
        return True

    def snapshot(self) -> dict[int, Any]:
        """Per written key, the value of its highest writer (the block's effect on the store)."""
        with self._lock:
            out = {}
            for key, writers in self._writers.items():
                if writers:
                    value = self._data[key][writers[-1]][1]
                    assert value is not ESTIMATE, "snapshot of an unfinished block"
                    out[key] = value
            return out

    def written_keys(self, idx: int) -> tuple[int, ...]:
        return self._last_written[idx]
