"""Cheap hot-path counters and the small helpers that turn them into stats.

Lives here: a thread's busy/idle clock, a per-second counter, a bounded
reservoir sample, percentile maths, process resource readings, and the per-thread
profiler that FABRIC_PROFILE switches on (``profiler``/``dump_profile``, diagnostics only). Every
structure is bounded. Measurements are taken from counters that cost a few
attribute updates in the hot path and are turned into tables after the run
(fabric.harness.runner), never computed while the replica works.

Must not live here: sockets, rings, report formatting (fabric.harness.runner owns the
text report and the CSVs).
"""

from __future__ import annotations

import cProfile
import math
import os
import random
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: per-second counters keep at most this many distinct seconds (about 27 hours)
MAX_SECONDS = 100_000
#: environment variable: a directory to write one cProfile file per thread into
PROFILE_ENV = "FABRIC_PROFILE"


def profiler() -> cProfile.Profile | None:
    """A per-thread profiler (thread CPU time) when FABRIC_PROFILE names a directory."""
    return cProfile.Profile(time.thread_time) if os.environ.get(PROFILE_ENV) else None


def dump_profile(profile: cProfile.Profile, name: str) -> None:
    """Write ``profile`` as ``<FABRIC_PROFILE>/<name>.prof``."""
    folder = Path(os.environ[PROFILE_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    profile.dump_stats(str(folder / f"{name}.prof"))


class ThreadClock:
    """Busy and idle seconds of one thread; idle = parked waiting for input.

    The owning thread calls ``start()`` once, wraps every blocking wait with
    ``park()``/``unpark()`` (or adds measured idle time with ``add_idle``) and
    calls ``stop()`` when it ends. Busy = lifetime - idle, so time spent waiting
    for the GIL or the CPU counts as busy (the thread wanted to run).
    """

    __slots__ = ("name", "role", "started", "stopped", "idle_s", "cpu_s", "_cpu0", "_park0")

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.started = 0.0
        self.stopped = 0.0
        self.idle_s = 0.0
        self.cpu_s = 0.0
        self._cpu0 = 0.0
        self._park0 = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self._cpu0 = time.thread_time()

    def park(self) -> None:
        self._park0 = time.perf_counter()

    def unpark(self) -> None:
        self.idle_s += time.perf_counter() - self._park0

    def add_idle(self, seconds: float) -> None:
        self.idle_s += seconds

    def stop(self) -> None:
        """Called by the owning thread (thread CPU time is only readable from inside it)."""
        self.stopped = time.perf_counter()
        self.cpu_s = time.thread_time() - self._cpu0

    def snapshot(self) -> dict[str, Any]:
        end = self.stopped or time.perf_counter()
        lifetime = max(0.0, end - self.started) if self.started else 0.0
        idle = min(self.idle_s, lifetime)
        return {
            "thread": self.name,
            "role": self.role,
            "busy_s": round(lifetime - idle, 6),
            "idle_s": round(idle, 6),
            "cpu_s": round(self.cpu_s, 6),
        }


class PerSecond:
    """Counts keyed by whole epoch second (``int(time.time())``); bounded to MAX_SECONDS keys."""

    __slots__ = ("counts", "dropped")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.dropped = 0

    def add(self, now: float, amount: int) -> None:
        sec = int(now)
        counts = self.counts
        if sec in counts:
            counts[sec] += amount
        elif len(counts) < MAX_SECONDS:
            counts[sec] = amount
        else:
            self.dropped += amount

    def total(self) -> int:
        return sum(self.counts.values())

    def as_pairs(self) -> list[list[int]]:
        return [[sec, n] for sec, n in sorted(self.counts.items())]


class Reservoir:
    """A uniform bounded sample (Vitter's algorithm R) of the items offered to it."""

    __slots__ = ("capacity", "items", "seen", "_rng")

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("reservoir capacity must be >= 1")
        self.capacity = capacity
        self.items: list[Any] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        j = self._rng.randrange(self.seen)
        if j < self.capacity:
            self.items[j] = item


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation; nan if empty."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def latency_summary(values_ms: Iterable[float]) -> dict[str, float]:
    """avg, p50, p90, p99 and max of latencies in milliseconds (nan when there are none)."""
    vals = sorted(values_ms)
    if not vals:
        nan = math.nan
        return {"avg": nan, "p50": nan, "p90": nan, "p99": nan, "max": nan, "count": 0}
    return {
        "avg": sum(vals) / len(vals),
        "p50": percentile(vals, 50),
        "p90": percentile(vals, 90),
        "p99": percentile(vals, 99),
        "max": float(vals[-1]),
        "count": len(vals),
    }


def _vm_hwm_kib(status: str = "/proc/self/status") -> int | None:
    """Peak RSS of this process image (VmHWM, KiB) from /proc, or None off Linux."""
    try:
        with open(status, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_resources_of(pid: int) -> dict[str, float] | None:
    """CPU seconds and peak RSS (MB) of another live process, read from /proc; None if gone
    or off Linux. The runner samples its children with it, so a crashed one keeps figures."""
    hwm = _vm_hwm_kib(f"/proc/{pid}/status")
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces: after ')'
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, ValueError, IndexError):
        return None
    cpu_s = ticks / os.sysconf("SC_CLK_TCK")
    return {
        "cpu_s": round(cpu_s, 3),
        "peak_rss_mb": round(hwm / 1024, 1) if hwm is not None else float("nan"),
    }


#: this process's CPU seconds when it finished starting (mark_startup_done), or None
_startup_cpu_s: float | None = None


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mark_startup_done() -> None:
    """Record the CPU this process spent starting (interpreter, imports, config, keys,
    sockets, a restart's recovery): a fixed cost, not per transaction, which
    ``process_resources`` then reports apart (``startup_cpu_s``) so the CPU ledger can leave
    it out. Call once, after the process object is built and before its threads start."""
    global _startup_cpu_s
    _startup_cpu_s = _cpu_s()


def process_resources() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS in MB of this process so far, and the CPU
    seconds of its start-up if ``mark_startup_done`` was called.

    Peak RSS comes from /proc/self/status (VmHWM) where it exists: Linux's ru_maxrss
    carries the pre-exec peak over an exec, so every replica a big parent (a sweep holding
    pandas and matplotlib) spawned reported the parent's peak instead of its own."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    hwm = _vm_hwm_kib()
    if hwm is not None:
        rss_mb = hwm / 1024
    elif sys.platform == "darwin":  # ru_maxrss: bytes on macOS, KiB elsewhere
        rss_mb = usage.ru_maxrss / (1024 * 1024)
    else:
        rss_mb = usage.ru_maxrss / 1024
    out = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_mb": round(rss_mb, 1)}
    if _startup_cpu_s is not None:
        out["startup_cpu_s"] = round(_startup_cpu_s, 3)
    return out
