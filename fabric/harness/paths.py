"""Every path of a results folder, owned by one object (no string paths elsewhere).

The layout is documented in results/README.md; keep the two in step.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_")


def run_folder_name(
    protocol: str, replicas: int, batch_size: int, label: str = "", when: float | None = None
) -> str:
    """``<YYYYmmdd-HHMMSS>-<protocol>-n<N>-b<batch>[-<label>]``: the run's parameters in its name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    name = f"{stamp}-{_slug(protocol)}-n{replicas}-b{batch_size}"
    return f"{name}-{_slug(label)}" if label else name


def sweep_folder_name(name: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    return f"sweep-{stamp}-{_slug(name)}"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def res_out(self) -> Path:
        return self.root / "res.out"

    @property
    def throughput(self) -> Path:
        return self.root / "throughput.csv"

    @property
    def latency(self) -> Path:
        return self.root / "latency.csv"

    @property
    def threads(self) -> Path:
        return self.root / "threads.csv"

    @property
    def rings(self) -> Path:
        return self.root / "rings.csv"

    @property
    def messages(self) -> Path:
        return self.root / "messages.csv"

    @property
    def drops(self) -> Path:
        return self.root / "drops.csv"

    @property
    def fuzz(self) -> Path:
        """What the live fuzzer sent and what the target counted (python -m fabric fuzz)."""
        return self.root / "fuzz.json"

    @property
    def fuzz_figure(self) -> Path:
        """The fuzzed replica's throughput under fuzzing and undisturbed (python -m fabric fuzz)."""
        return self.root / "fuzz-throughput.png"

    @property
    def memory(self) -> Path:
        return self.root / "memory.csv"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes.csv"

    @property
    def execution(self) -> Path:
        return self.root / "execution.csv"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def replica_log(self, replica: int) -> Path:
        return self.logs / f"replica-{replica}.log"

    def client_log(self, client: int) -> Path:
        return self.logs / f"client-{client}.log"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    def replica_dir(self, replica: int) -> Path:
        """A replica's own data (its durable ledger, ledger.storage sqlite | lmdb)."""
        return self.root / f"replica-{replica}"

    def replica_stats(self, replica: int) -> Path:
        return self.stats / f"replica-{replica}.json"

    def client_stats(self, client: int) -> Path:
        return self.stats / f"client-{client}.json"

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def make(self) -> RunPaths:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stats.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class SweepPaths:
    """The files of one sweep folder (run folders live inside it)."""

    root: Path

    @property
    def combined(self) -> Path:
        return self.root / "combined.csv"

    @property
    def sweep_yaml(self) -> Path:
        return self.root / "sweep.yaml"

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def run(self, name: str) -> RunPaths:
        return RunPaths(self.root / name)
