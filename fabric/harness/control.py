"""The runner <-> process control channel: short text lines over stdin/stdout.

A replica or client process (the child) prints on stdout:

    ready                                       its sockets are bound, its threads run
    progress <epoch_s> <txns> <seq> <view>      about once a second: executed (replica)
                                                or accepted (client) transactions so far

and reads on stdin:

    start <epoch_s>     the run's time zero (clients start sending; failures count from it)
    stop                stop cleanly, write stats, exit

EOF on stdin means the runner is gone: the child stops (no orphans). Lines are
short and bounded; an unknown or malformed line is counted and ignored, never
fatal. Stderr is the process's log (the runner sends it to logs/).

Lives here: both ends' parsing and the child's reader thread. Must not live
here: process management (fabric.harness.runner) or anything on the replica hot path.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

#: exit code of a process killed by an injected ``crash`` failure (the runner expects it)
CRASH_EXIT_CODE = 86
#: lines longer than this are ignored (both directions)
MAX_LINE = 512


@dataclass(frozen=True, slots=True)
class ProgressReport:
    epoch_s: float
    txns: int
    seq: int
    view: int


def format_progress(epoch_s: float, txns: int, seq: int, view: int) -> str:
    return f"progress {epoch_s:.3f} {txns} {seq} {view}"


def parse_child_line(line: str) -> tuple[str, ProgressReport | None]:
    """('ready', None) | ('progress', ProgressReport) | ('other', None) for a line a child printed."""
    words = line.strip().split()
    if words == ["ready"]:
        return "ready", None
    if len(words) == 5 and words[0] == "progress":
        try:
            return "progress", ProgressReport(
                float(words[1]), int(words[2]), int(words[3]), int(words[4])
            )
        except ValueError:
            return "other", None
    return "other", None


class ChildControl:
    """The child's end: a daemon thread reads stdin; ``say`` writes a line to stdout.

    ``on_stop`` runs (once) on a ``stop`` line or EOF; ``t0`` is set by ``start``.
    With ``ignore_stdin`` (a process started by hand) stdin is not read at all.
    """

    def __init__(
        self, on_stop: Callable[[], None], ignore_stdin: bool = False, stdin: IO[str] | None = None
    ) -> None:
        self.on_stop = on_stop
        self.t0: float | None = None
        self.started = threading.Event()
        self.ignored_lines = 0
        self._stdin = stdin if stdin is not None else sys.stdin
        self._stopped = False
        self._lock = threading.Lock()
        if not ignore_stdin:
            threading.Thread(target=self._read, name="control", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._stdin:
                words = line[:MAX_LINE].split()
                if words == ["stop"]:
                    break
                if len(words) == 2 and words[0] == "start":
                    try:
                        self.t0 = float(words[1])
                    except ValueError:
                        self.ignored_lines += 1
                        continue
                    self.started.set()
                    continue
                self.ignored_lines += 1
        except (OSError, ValueError):
            pass  # stdin closed under us: same as EOF
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.started.set()  # nobody waits for a start that will never come
        self.on_stop()

    def say(self, line: str) -> None:
        """One line to the runner; a closed stdout (runner gone) is ignored."""
        try:
            sys.stdout.write(line[:MAX_LINE] + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
