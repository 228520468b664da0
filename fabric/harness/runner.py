"""The runner: one experiment end to end (``python -m fabric run`` = ``./run-cluster.sh``).

``run_experiment(cfg, results_root, label, progress) -> RunOutcome`` is the
Python API (the sweep calls it): resolve the run folder (fabric.harness.paths), write
config.yaml, start every replica and client process (each in its own process
group, stderr to logs/), wait until all print ``ready`` (bounded), send them
``start <t0>``, show progress while the run lasts, then stop clients, then
replicas (a ``stop`` line, then SIGTERM, then SIGKILL, each bounded; by
process group id, never by name), read their stats, audit the ledgers, and
write summary.json, res.out and the CSV tables (fabric.analysis.summary), then draw the run's
figures and report.html (fabric.analysis.report; ``python -m fabric report`` redraws them).

While the run lasts the runner keeps each child's progress lines (executed seq, view,
transactions) and samples its CPU and peak RSS from /proc about once a second, so a replica
killed by a configured ``crash`` keeps its figures up to the crash (``stats_source: runner``).
A ``stall`` failure is the runner's own: it SIGSTOPs the replica's process group at ``at_s``
and SIGCONTs it ``duration_s`` later (and before any stop or kill). So is a ``restart``: it
SIGKILLs the replica's process group at ``at_s`` and, ``down_s`` later, starts the same replica
again (same id and ports, same log, ``--restart``: it reloads its durable state and rejoins),
sending it the run's ``start <t0>`` once it is ready. Its figures before the kill (the
runner's samples) and after (its own stats) are merged (``merge_restart``), it stays honest:
audited, and DEGRADED if it ends behind.

A run is DEGRADED (status degraded, exit 3) when nothing failed but an honest replica ends
more than ``run.degraded_lag_seq`` sequence numbers behind (fabric.analysis.summary names it).
A run fails loudly (status failed, exit 1, the dead process's log tail shown)
when a process dies unexpectedly, a process does not start or stop in time or
writes no stats, nothing commits, or the audit finds honest ledgers that
disagree. A replica killed by a configured ``crash`` failure is expected: it is
reported as an event and the run passes if the rest commit. Ctrl-C or SIGTERM
stops every process the runner started and still writes what it has.

With ``network.emulation`` netem or transport the runner first asks fabric.harness.network
whether this machine can emulate that network (NetworkUnavailable, raised before a folder is
made or a process started, names what is missing), writes each node's namespace address into
cluster.hosts, builds the namespaces before the first process starts (each child runs under
``ip netns exec``) and removes them after the last one is gone, on every path out (a failed
run, Ctrl-C, SIGTERM); namespaces left behind make the run fail, named.

Must not live here: the report's arithmetic and text (fabric.analysis.summary), plots
(fabric.analysis.report), sweeps (fabric.harness.sweep), anything inside a replica.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fabric.analysis.metrics import process_resources_of
from fabric.analysis.summary import (
    RunInfo,
    build_summary,
    faulty_replicas,
    format_report,
    write_tables,
)
from fabric.harness.control import CRASH_EXIT_CODE, ProgressReport, parse_child_line
from fabric.harness.paths import RunPaths, run_folder_name
from fabric.harness.remote import HostError

REPO_ROOT = Path(__file__).resolve().parents[2]
#: seconds every process gets to print "ready" (imports and socket binds on a loaded machine)
READY_TIMEOUT_S = 60.0
#: seconds a process gets to exit after "stop" before SIGTERM, then after SIGTERM before SIGKILL
STOP_TIMEOUT_S = 15.0
TERM_TIMEOUT_S = 3.0
#: lines of a dead process's log shown in the report
LOG_TAIL_LINES = 25
#: stdout lines kept per child that were not control lines (shown when it dies)
MAX_STRAY_LINES = 50
#: hosts on which the runner can check that its ports are free before it starts
LOOPBACK = ("127.0.0.1", "localhost")
#: the live throughput line averages over this many seconds of client progress reports
PROGRESS_WINDOW_S = 3.0
#: progress samples kept per child (about one a second: a day of run)
MAX_PROGRESS_SAMPLES = 86_400
#: exit code of a run that finished but is DEGRADED (an honest replica ended behind)
DEGRADED_EXIT_CODE = 3
#: after the clients stop, replicas whose last progress lines differ by more than the
#: degraded bound get up to this long to drain (a transient lag is not an end state)
DRAIN_MAX_S = 3.0


def child_env(parent: Mapping[str, str]) -> dict[str, str]:
    """The environment of a replica or client process started on this machine: the runner's,
    unbuffered output, and compiled bytecode cached. Where PYTHONDONTWRITEBYTECODE is set, every
    process compiled the project's ~80 modules from source at each start (about 80 ms of CPU
    each, a third of its start-up); the children then keep the source tree free of bytecode as
    asked but cache it under the interpreter's prefix (``<venv>/pycache``: PYTHONPYCACHEPREFIX),
    if that is writable. An explicit PYTHONPYCACHEPREFIX is kept."""
    env = dict(parent)
    env["PYTHONUNBUFFERED"] = "1"
    if env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        cache = Path(sys.prefix) / "pycache"
        try:
            cache.mkdir(exist_ok=True)
        except OSError:
            return env  # no writable prefix: leave the choice as it was
        if os.access(cache, os.W_OK):
            del env["PYTHONDONTWRITEBYTECODE"]
            env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM reached the runner."""


@dataclass
class RunOutcome:
    ok: bool  # status ok: nothing failed and no honest replica ended behind
    folder: Path
    summary: dict[str, Any]
    reason: str  # why not ok (the problems, or what made it degraded)
    status: str = "ok"  # ok | degraded | failed (summary.json's run.status)


@dataclass
class Child:
    """One process the runner started (replica or client), with its stdout reader."""

    role: str
    node: int
    proc: subprocess.Popen[str]
    log_path: Path
    ready: threading.Event = field(default_factory=threading.Event)
    progress: ProgressReport | None = None
    stray: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_STRAY_LINES))
    expected_exit: bool = False  # a configured crash
    exit_noted: bool = False
    exited_at: float | None = None  # epoch s the runner noticed the exit
    stop_requested: bool = False  # the runner said "stop": exit code 0 is expected
    stopped: bool = False  # SIGSTOPped by a stall failure, not yet continued
    retired: bool = False  # SIGKILLed by a restart failure: a later Child is the same replica
    restarted: bool = False  # started again after a restart failure (--restart)
    start_sent: bool = False  # told "start <t0>"
    # (epoch_s, txns, seq, view) of every progress line, and the last /proc sample
    samples: deque[tuple[float, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_PROGRESS_SAMPLES)
    )
    resources: dict[str, float] | None = None

    @property
    def label(self) -> str:
        return f"{self.role} {self.node}"

    def start_reader(self) -> None:
        threading.Thread(target=self._read, name=f"read-{self.label}", daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                kind, prog = parse_child_line(line)
                if kind == "ready":
                    self.ready.set()
                elif kind == "progress" and prog is not None:
                    self.progress = prog
                    self.samples.append((prog.epoch_s, prog.txns, prog.seq, prog.view))
                    self.resources = self._sample_resources() or self.resources
                else:
                    self.stray.append(line.rstrip()[:300])
        except (OSError, ValueError):
            pass

    def _sample_resources(self) -> dict[str, float] | None:
        return process_resources_of(self.proc.pid)

    def say(self, line: str) -> bool:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(line + "\n")
            stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def close_stdin(self) -> None:
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except (OSError, ValueError):
            pass

    def signal_group(self, sig: int) -> None:
        """Signal this child's process group (it is the group leader: pgid == pid)."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def sampled_stats(self, t0: float, kind: str = "crash") -> dict[str, Any]:
        """Stats rebuilt from what the runner sampled while this replica ran (it wrote none)."""
        per_s: dict[int, int] = {}
        before = 0
        for epoch_s, txns, _, _ in self.samples:
            per_s[int(epoch_s)] = per_s.get(int(epoch_s), 0) + max(0, txns - before)
            before = txns
        last = self.samples[-1] if self.samples else (t0, 0, 0, 0)
        at = self.exited_at if self.exited_at is not None else last[0]
        return {
            "role": self.role,
            "node": self.node,
            "executed_per_s": [[sec, count] for sec, count in sorted(per_s.items())],
            "executed_seq": last[2],
            "executed_txns": last[1],
            "view": last[3],
            "resources": dict(self.resources or {}),
            "failure": {"kind": kind, "at": at, "at_s": round(at - t0, 3)},
            "stats_source": "runner",
        }

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        tail = text[-lines:]
        if self.stray:
            tail += ["(stdout)"] + list(self.stray)[-10:]
        return "\n".join(f"    | {line}" for line in tail) or "    | (empty log)"


@dataclass
class RemoteChild(Child):
    """A Child on an SSH host: ``proc`` is a fabric.harness.remote.RemoteProcess (the same
    surface as a Popen), signals go to its remote process group by the PID it reported, its
    label names the host (so every problem and log tail does), and the runner samples no
    /proc here (the process's own stats carry its CPU and memory)."""

    host: str = ""

    @property
    def label(self) -> str:
        return f"{self.role} {self.node} on {self.host}"

    def signal_group(self, sig: int) -> None:
        self.proc.signal_group(sig)  # type: ignore[attr-defined]

    def _sample_resources(self) -> dict[str, float] | None:
        return None


def _crypto_label(cfg: Any) -> str:
    sig = cfg.crypto.effective_client_signature
    mac = cfg.crypto.effective_link_mac
    if sig == "none" and mac == "none":
        return "off"
    return f"{sig} + {mac}"


def _unique_folder(results_root: Path, cfg: Any, label: str) -> RunPaths:
    for attempt in range(1, 100):
        suffix = label if attempt == 1 else (f"{label}-{attempt}" if label else str(attempt))
        name = run_folder_name(
            cfg.protocol.name, cfg.cluster.replicas, cfg.batching.batch_size, suffix
        )
        paths = RunPaths(results_root / name)
        if not paths.root.exists():
            return paths
    raise RuntimeError(f"no free run folder name under {results_root}")


class Runner:
    """One run's processes and bookkeeping (``run_experiment`` drives it)."""

    def __init__(
        self, cfg: Any, paths: RunPaths, progress: bool, network: Any = None, launcher: Any = None
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.progress = progress
        self.network = network  # fabric.harness.network.Network, or None (loopback)
        self.launcher = launcher  # fabric.harness.remote.Launcher, or None (this machine)
        self.key_files: dict[int, bytes] | None = None  # generated or named key files, by node
        # (epoch s, fabric.harness.network.Network.egress_counters()) at t0 + warm-up and at
        # the end of the measured window
        self.egress_samples: list[tuple[float, dict[int, dict[str, int]]]] = []
        self.children: list[Child] = []
        self.problems: list[str] = []
        self.events: list[str] = []
        self.dead_tails: list[str] = []
        self.t0 = 0.0
        self.crash_plan = {f.replica for f in cfg.failures if f.kind == "crash"}
        self.stall_plan = {f.replica: f for f in cfg.failures if f.kind == "stall"}
        self.stalls_done: dict[int, dict[str, Any]] = {}  # replica -> failure record
        self.restart_plan = {f.replica: f for f in cfg.failures if f.kind == "restart"}
        self.restarts: dict[int, dict[str, Any]] = {}  # replica -> failure record (so far)
        self._log_files: list[IO[bytes]] = []
        self._tty = sys.stderr.isatty()
        self._last_line = 0.0
        # (time, accepted) samples of the last seconds: clients report about once a second, so
        # a rate over one sample pair aliases (0 or 2x); a few seconds' window smooths it
        self._accepted_samples: deque[tuple[float, int]] = deque(maxlen=64)

    # processes ------------------------------------------------------------------------
    def _spawn(self, role: str, node: int, restart: bool = False) -> Child:
        log_path = (
            self.paths.replica_log(node) if role == "replica" else self.paths.client_log(node)
        )
        log = log_path.open("ab" if restart else "wb")  # a restart goes on in the same log
        if restart:
            log.write(b"--- restarted by the runner (failure kind restart) ---\n")
            log.flush()
        self._log_files.append(log)
        if self.launcher is not None:
            return self._spawn_remote(role, node, restart, log_path, log)
        argv = [
            sys.executable,
            "-m",
            "fabric",
            role,
            "--config",
            str(self.paths.config),
            "--id",
            str(node),
            "--run-dir",
            str(self.paths.root),
            *(["--restart"] if restart else []),
        ]
        if self.network is not None:  # inside the node's namespace (ip netns exec execs)
            argv = self.network.exec_prefix(node) + argv
        env = child_env(os.environ)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(REPO_ROOT),
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,  # own process group: signalled as a group, never by name
        )
        child = Child(role, node, proc, log_path, restarted=restart)
        child.start_reader()
        self.children.append(child)
        return child

    def _spawn_remote(
        self, role: str, node: int, restart: bool, log_path: Path, log: IO[bytes]
    ) -> Child:
        proc = self.launcher.start(node, role, restart, log)
        child = RemoteChild(
            role, node, proc, log_path, restarted=restart, host=self.launcher.host_entry(node)
        )  # type: ignore[arg-type]
        child.start_reader()
        self.children.append(child)
        return child

    def prepare_hosts(self) -> bool:
        """Log in to, check and ship to every SSH host (a run on SSH hosts only); False if a
        host failed (the problem names it, nothing was started)."""
        if self.launcher is None:
            return True
        from fabric.harness.remote import HostError

        try:
            self.launcher.prepare(self.paths.root, REPO_ROOT, self.key_files)
        except HostError as exc:
            self.problems.append(f"host check failed, nothing started: {exc}")
            return False
        self.events.append(
            "SSH hosts: "
            + ", ".join(
                f"{h['host']} (nodes {','.join(map(str, h['nodes']))}, clock "
                f"{h['clock_offset_s'] * 1000:+.3f} ms)"
                for h in self.launcher.record["hosts"]
            )
        )
        return True

    def collect_hosts(self) -> None:
        """Copy every SSH host's run folder into the local one, then log out."""
        if self.launcher is None:
            return
        self.problems.extend(self.launcher.collect(self.paths.root))
        self.launcher.close()

    def start_all(self) -> bool:
        """Start every replica, then every client; False if an SSH host could not start
        one (the problem names it; those already started are stopped with the rest)."""
        try:
            for i in self.cfg.replica_ids:
                self._spawn("replica", i)
            for c in self.cfg.client_ids:
                self._spawn("client", c)
        except HostError as exc:
            self.problems.append(f"a process did not start: {exc}")
            return False
        return True

    def check_deaths(self) -> bool:
        """Note processes that exited; True if one died unexpectedly (the run must stop)."""
        bad = False
        for child in self.children:
            rc = child.proc.poll()
            if rc is None or child.exit_noted:
                continue
            child.exit_noted = True
            child.exited_at = time.time()
            at = f"t={time.time() - self.t0:.1f} s" if self.t0 else "before the start"
            if child.retired:  # the runner's own SIGKILL (restart): expected
                continue
            if child.stop_requested:
                if rc != 0:
                    self.problems.append(f"{child.label} exited with code {rc} at stop")
                    self.dead_tails.append(
                        f"  {child.label} ({child.log_path}):\n{child.log_tail()}"
                    )
                continue
            if child.role == "replica" and child.node in self.crash_plan and rc == CRASH_EXIT_CODE:
                child.expected_exit = True
                self.events.append(f"replica {child.node} crashed as configured ({at})")
                continue
            bad = True
            self.problems.append(f"{child.label} exited unexpectedly with code {rc} ({at})")
            self.dead_tails.append(f"  {child.label} ({child.log_path}):\n{child.log_tail()}")
        return bad

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.check_deaths():
                return False
            if all(c.ready.is_set() for c in self.children):
                return True
            time.sleep(0.05)
        slow = [c.label for c in self.children if not c.ready.is_set()]
        self.problems.append(f"not ready after {timeout_s:.0f} s: {', '.join(slow)}")
        for child in self.children:
            if not child.ready.is_set():
                self.dead_tails.append(f"  {child.label} ({child.log_path}):\n{child.log_tail()}")
        return False

    def monitor(self, until: float) -> bool:
        """Watch the processes until ``until`` (epoch, then True); return False early if one
        dies unexpectedly."""
        while True:
            now = time.time()
            if now >= until:
                return True
            if self.check_deaths():
                return False
            self._apply_stalls(now)
            self._apply_restarts(now)
            self._show_progress(now)
            time.sleep(min(0.2, max(0.0, until - now)))

    def _apply_stalls(self, now: float) -> None:
        """SIGSTOP a replica whose stall begins, SIGCONT one whose stall is over."""
        for child in self.children:
            plan = self.stall_plan.get(child.node) if child.role == "replica" else None
            if plan is None or child.proc.poll() is not None:
                continue
            begin, end = self.t0 + plan.at_s, self.t0 + plan.at_s + plan.duration_s
            if not child.stopped and child.node not in self.stalls_done and now >= begin:
                child.signal_group(signal.SIGSTOP)
                child.stopped = True
                self.stalls_done[child.node] = {
                    "kind": "stall",
                    "at": now,
                    "at_s": round(now - self.t0, 3),
                    "duration_s": plan.duration_s,
                }
            elif child.stopped and now >= end:
                self._continue(child)
                self.events.append(
                    f"replica {child.node} stalled (SIGSTOP) from t={plan.at_s:g} s, "
                    f"continued (SIGCONT) at t={now - self.t0:.1f} s"
                )

    def _apply_restarts(self, now: float) -> None:
        """SIGKILL a replica whose restart begins (by its process group); start it again
        (same id, same ports, ``--restart``) ``down_s`` later; tell it the run's t0 once it
        is ready. Each step happens once per planned restart."""
        for node, plan in self.restart_plan.items():
            record = self.restarts.get(node)
            child = self._current("replica", node)
            if child is None:
                continue
            if record is None:
                if now < self.t0 + plan.at_s or child.proc.poll() is not None:
                    continue
                child.retired = True
                child.exited_at = now
                child.signal_group(signal.SIGKILL)
                try:
                    child.proc.wait(TERM_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.problems.append(f"{child.label} did not die of SIGKILL (restart)")
                last = child.samples[-1] if child.samples else (now, 0, 0, 0)
                self.restarts[node] = {
                    "kind": "restart",
                    "at": now,
                    "at_s": round(now - self.t0, 3),
                    "down_s": plan.down_s,
                    "seq_before": last[2],
                    "txns_before": last[1],
                }
                self.events.append(
                    f"replica {node} killed (SIGKILL) at t={now - self.t0:.1f} s, as configured "
                    f"(restart after {plan.down_s:g} s; seq {last[2]} when killed)"
                )
            elif child.retired:
                if now >= self.t0 + plan.at_s + plan.down_s and "not_started" not in record:
                    try:
                        self._spawn("replica", node, restart=True)
                    except HostError as exc:  # an SSH host that cannot start it again
                        record["not_started"] = str(exc)
                        self.problems.append(f"replica {node} was not started again: {exc}")
                        continue
                    record["started_at_s"] = round(now - self.t0, 3)
            elif child.restarted and not child.start_sent and child.ready.is_set():
                child.say(f"start {self.t0:.6f}")
                child.start_sent = True
                record["back_at_s"] = round(now - self.t0, 3)
                self.events.append(
                    f"replica {node} started again at t={record['started_at_s']:.1f} s, "
                    f"ready at t={now - self.t0:.1f} s (restart)"
                )

    def _current(self, role: str, node: int) -> Child | None:
        """The latest process of ``role`` ``node`` (a restart starts a second one)."""
        found = None
        for child in self.children:
            if child.role == role and child.node == node:
                found = child
        return found

    @staticmethod
    def _continue(child: Child) -> None:
        if child.stopped:
            child.signal_group(signal.SIGCONT)
            child.stopped = False

    def _show_progress(self, now: float) -> None:
        if not self.progress or now - self._last_line < 1.0 or now - self.t0 < 1.0:
            return
        self._last_line = now
        clients = [c for c in self.children if c.role == "client"]
        accepted = sum(c.progress.txns for c in clients if c.progress)
        samples = self._accepted_samples
        samples.append((now, accepted))
        while len(samples) > 2 and now - samples[1][0] >= PROGRESS_WINDOW_S:
            samples.popleft()
        then, before = samples[0] if len(samples) > 1 else (self.t0, 0)
        rate = (accepted - before) / (now - then) if now > then else 0.0
        seqs = " ".join(
            (str(c.progress.seq) if c.progress else "-") if c.proc.poll() is None else "down"
            for c in self.children
            if c.role == "replica" and not (c.retired and c.node in self._respawned())
        )
        elapsed = now - self.t0
        phase = "warm-up" if elapsed < self.cfg.run.warmup_s else "measure"
        text = (
            f"[{elapsed:5.1f}/{self.cfg.run.duration_s:g} s {phase}] "
            f"{rate:10,.0f} txn/s  accepted {accepted:,}  replica seqs: {seqs}"
        )
        if self._tty:
            sys.stderr.write("\r" + text.ljust(100))
        elif int(elapsed) % 5 == 0:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _respawned(self) -> set[int]:
        return {c.node for c in self.children if c.restarted}

    def drain(self, lag_seq: int, max_s: float = DRAIN_MAX_S) -> None:
        """Wait (bounded) until the honest replicas' reported seqs are within ``lag_seq``."""
        faulty = faulty_replicas({"replica": f.replica, "kind": f.kind} for f in self.cfg.failures)
        group = [
            c
            for c in self.children
            if c.role == "replica" and c.node not in faulty and c.proc.poll() is None
        ]
        deadline = time.monotonic() + max_s
        while lag_seq > 0 and group and time.monotonic() < deadline:
            seqs = [c.progress.seq if c.progress else 0 for c in group]
            if max(seqs) - min(seqs) <= lag_seq:
                return
            time.sleep(0.2)

    def stop_group(self, role: str, timeout_s: float) -> None:
        """Ask every live ``role`` process to stop; escalate to SIGTERM, then SIGKILL."""
        group = [c for c in self.children if c.role == role and c.proc.poll() is None]
        for child in group:
            self._continue(child)  # a stalled replica cannot hear "stop"
            child.stop_requested = True
            child.say("stop")
            child.close_stdin()
        self._wait(group, timeout_s)
        late = [c for c in group if c.proc.poll() is None]
        for child in late:
            self.problems.append(f"{child.label} did not stop within {timeout_s:.0f} s")
            self.dead_tails.append(f"  {child.label} ({child.log_path}):\n{child.log_tail()}")
            child.exit_noted = True  # reported here, not again as a bad exit code
            child.signal_group(signal.SIGTERM)
        self._wait(late, TERM_TIMEOUT_S)
        for child in late:
            if child.proc.poll() is None:
                child.signal_group(signal.SIGKILL)
        self._wait(late, TERM_TIMEOUT_S)

    @staticmethod
    def _wait(children: list[Child], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def kill_all(self) -> None:
        """Last resort (interrupts, errors): no process the runner started survives it."""
        for child in self.children:
            self._continue(child)
            child.close_stdin()
            child.signal_group(signal.SIGTERM)
        self._wait(self.children, TERM_TIMEOUT_S)
        for child in self.children:
            child.signal_group(signal.SIGKILL)
        self._wait(self.children, TERM_TIMEOUT_S)

    # the emulated network ------------------------------------------------------------------
    def build_network(self) -> bool:
        """Create the run's namespaces (if it has an emulated network); False if that failed
        (the problem is noted, nothing was started)."""
        if self.network is None:
            return True
        from fabric.harness.network import NetworkError, describe

        try:
            self.network.create()
        except NetworkError as exc:
            self.problems.append(f"the emulated network could not be built: {exc}")
            return False
        self.events.append(describe(self.cfg))
        return True

    def sample_egress(self) -> None:
        """Read every node's egress counters (an emulated network only)."""
        if self.network is not None and not self.problems:
            self.egress_samples.append((time.time(), self.network.egress_counters()))

    def egress(self) -> dict[str, Any] | None:
        """The measured window's egress per node, and its event line (None: not sampled)."""
        if len(self.egress_samples) < 2:
            return None
        from fabric.harness.network import egress_report

        (t_a, before), (t_b, after) = self.egress_samples[:2]
        report, line = egress_report(self.cfg, before, after, t_b - t_a)
        self.events.append(line)
        return report

    def remove_network(self) -> None:
        """Delete the run's namespaces, veths, bridge and qdiscs (after every process is gone)."""
        if self.network is None:
            return
        try:
            left = self.network.remove()
        except Exception as exc:  # say so; never lose the run's results for it
            left = [f"{type(exc).__name__}: {exc}"]
        if left:
            self.problems.append(f"network namespaces left behind: {', '.join(left)}")

    def close_logs(self) -> None:
        for log in self._log_files:
            try:
                log.close()
            except OSError:
                pass

    # stats ----------------------------------------------------------------------------------
    def read_stats(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        replicas: dict[int, dict[str, Any]] = {}
        clients: dict[int, dict[str, Any]] = {}
        before: dict[int, dict[str, Any]] = {}  # restarted replica -> its first life's figures
        for child in self.children:
            path = (
                self.paths.replica_stats(child.node)
                if child.role == "replica"
                else self.paths.client_stats(child.node)
            )
            if child.expected_exit:  # a configured crash writes nothing: what the runner sampled
                replicas[child.node] = child.sampled_stats(self.t0)
                continue
            if child.retired:  # a restart's first life: what the runner sampled until the kill
                before[child.node] = child.sampled_stats(self.t0, "restart")
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                self.problems.append(f"{child.label} wrote no stats ({type(exc).__name__})")
                continue
            if child.role == "replica" and child.node in self.stalls_done:
                data["failure"] = self.stalls_done[child.node]
            if child.role == "replica" and child.restarted and child.node in before:
                data = merge_restart(before.pop(child.node), data, self.restarts[child.node])
            for what in data.get("fatal", []) or []:
                self.problems.append(f"{child.label} stage failed: {what}")
            for what in data.get("errors", []) or []:
                self.problems.append(f"{child.label} failed: {what}")
            (replicas if child.role == "replica" else clients)[child.node] = data
        for node, first in before.items():  # killed, never back (or no stats after): keep these
            first["failure"] = {**first["failure"], **self.restarts.get(node, {})}
            replicas[node] = first
        return replicas, clients


def merge_restart(
    before: dict[str, Any], after: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    """One replica's figures over both lives of a restart: the runner's samples until the
    kill (``before``) and the stats the restarted process wrote (``after``). Per-second
    executed counts are summed per second (the down interval has none), CPU seconds add up,
    peak RSS is the larger; the rest is the restarted process's own (its ledger, threads,
    rings, messages). ``failure`` is the restart's record (kill and ready times, seq before);
    ``restart`` keeps both lives' own figures."""
    per_s: dict[int, int] = {}
    for sec, count in [*before.get("executed_per_s", []), *after.get("executed_per_s", [])]:
        per_s[int(sec)] = per_s.get(int(sec), 0) + int(count)
    res_b = before.get("resources") or {}
    res_a = after.get("resources") or {}
    resources = dict(res_a)
    if res_b.get("cpu_s") is not None and res_a.get("cpu_s") is not None:
        resources["cpu_s"] = round(float(res_b["cpu_s"]) + float(res_a["cpu_s"]), 3)
    rss = [float(r["peak_rss_mb"]) for r in (res_b, res_a) if r.get("peak_rss_mb") is not None]
    if rss:
        resources["peak_rss_mb"] = max(rss)
    base = after.get("ledger_base") or [0, ""]
    merged = dict(after)
    merged.update(
        {
            "executed_per_s": [[sec, count] for sec, count in sorted(per_s.items())],
            "executed_txns": int(before.get("executed_txns", 0) or 0)
            + int(after.get("executed_txns", 0) or 0),
            "resources": resources,
            "failure": {
                **record,
                "installed_seq": int(base[0]),
                "seq_after": after.get("executed_seq", 0),
            },
            "restart": {
                "before": {
                    k: before.get(k)
                    for k in ("executed_seq", "executed_txns", "resources", "stats_source")
                },
                "after": {
                    "executed_seq": after.get("executed_seq", 0),
                    "executed_txns": after.get("executed_txns", 0),
                    "resources": res_a,
                    "ledger_base_seq": int(base[0]),
                },
            },
        }
    )
    return merged


def _audit(cfg: Any, replicas: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    from fabric.analysis.audit import audit_ledgers

    failed = faulty_replicas({"replica": f.replica, "kind": f.kind} for f in cfg.failures)
    chains = {
        node: [(seq, h) for seq, h in st.get("ledger", [])]
        for node, st in replicas.items()
        if st.get("stats_source", "process") == "process"
    }
    honest = [node for node in chains if node not in failed]
    if not honest:
        return None
    # a replica whose state was installed from a snapshot holds no blocks below it
    bases = {
        node: (int(st["ledger_base"][0]), st["ledger_base"][1])
        for node, st in replicas.items()
        if node in chains and st.get("ledger_base") and int(st["ledger_base"][0]) > 0
    }
    result = audit_ledgers(chains, honest=honest, bases=bases)
    return {
        "ok": result.ok,
        "common_prefix": result.common_prefix,
        "heads": {str(k): [v[0], v[1]] for k, v in result.heads.items()},
        "first_divergence": (
            None
            if result.first_divergence is None
            else [
                result.first_divergence[0],
                {str(k): v for k, v in result.first_divergence[1].items()},
            ]
        ),
        "message": result.message,
        "honest": sorted(honest),
    }


def _emulated_network(cfg: Any) -> tuple[Any, Any]:
    """``cfg`` with each node's namespace address in cluster.hosts, and the Network to build
    (or ``cfg``, None without emulation). NetworkUnavailable names what this machine lacks."""
    from fabric.harness.hosts import is_remote

    if cfg.network.emulation == "none" or is_remote(cfg):  # SSH hosts: in the senders
        return cfg, None
    from fabric.harness import network

    network.check(cfg)
    hosts = network.addresses(cfg.node_count)
    return cfg.with_overrides([f"cluster.hosts={json.dumps(hosts)}"]), network.Network(
        cfg.node_count, cfg.network
    )


def _ssh_hosts(cfg: Any) -> tuple[Any, Any]:
    """``cfg`` with each node's SSH host address in cluster.hosts, and the Launcher that
    reaches those hosts (or ``cfg``, None on one machine)."""
    from fabric.harness import hosts, remote

    the_plan = hosts.plan(cfg)
    if the_plan is None:
        return cfg, None
    cfg = hosts.resolved(cfg, the_plan)
    return cfg, remote.Launcher(cfg, the_plan)


def _node_keys(cfg: Any, remote: bool) -> tuple[Any, dict[int, bytes] | None]:
    """``cfg`` with crypto.keys resolved (auto: generated on SSH hosts, else derived), and
    each node's key file (None: keys derived from crypto.cluster_secret). Generated keys are
    fresh for this run; ``files`` are read from crypto.key_dir and checked here, so a
    missing or unreadable one is a ConfigError naming it before anything starts."""
    from fabric.harness.config import ConfigError
    from transport import keyfiles

    mode = cfg.crypto.keys
    if mode == "auto":
        mode = "generated" if remote else "derived"
    crypto_off = cfg.crypto.effective_link_mac == cfg.crypto.effective_client_signature == "none"
    if mode == "derived":  # as configured (auto on one machine: the config is unchanged)
        return cfg, None
    if crypto_off:  # no key is used
        return cfg.with_overrides(["crypto.keys=derived", 'crypto.key_dir=""']), None
    if mode == "generated":
        mac = cfg.crypto.effective_link_mac
        files = keyfiles.generate(cfg.node_count, [] if mac == "none" else [mac])
        return cfg.with_overrides(["crypto.keys=generated"]), files
    folder = Path(cfg.crypto.key_dir)
    files = {}
    for node in range(cfg.node_count):
        path = folder / keyfiles.file_name(node)
        try:
            keyfiles.load(path, node, cfg.node_count)
            files[node] = path.read_bytes()
        except ValueError as exc:
            raise ConfigError("crypto.key_dir", f"node {node}: {exc}") from None
    return cfg, (files if remote else None)


def _with_free_ports(cfg: Any) -> Any:
    """``cfg``, moved to a free loopback port block if its tcp ports are taken right now.

    Another run (or anything else) holding transport.base_port would make every replica
    fail to bind; the port carries no meaning for the results, so take a free block, say
    so, and record it in the run's config.yaml.
    """
    from fabric.harness.ports import free_port_block, ports_free
    from transport.zmq_io import MAX_INPUTS

    transport = cfg.transport
    if transport.kind != "tcp" or any(h not in LOOPBACK for h in cfg.cluster.hosts):
        return cfg
    span = cfg.node_count * MAX_INPUTS
    if ports_free(transport.base_port, span):
        return cfg
    base = free_port_block(span)
    print(
        f"run-cluster: ports {transport.base_port}..{transport.base_port + span - 1} are in "
        f"use; this run takes transport.base_port={base}",
        file=sys.stderr,
    )
    return cfg.with_overrides([f"transport.base_port={base}"])


def run_experiment(
    cfg: Any,
    results_root: Path,
    label: str = "",
    progress: bool = False,
    report: bool = True,
    on_start: Callable[[Any, RunPaths, float], None] | None = None,
) -> RunOutcome:
    """Run one experiment with ``cfg``; write its folder under ``results_root``; never raise
    for a failed run (the outcome says why), only for a folder that cannot be written or an
    emulated network this machine cannot build (fabric.harness.network.NetworkUnavailable).
    ``report`` draws the run's figures and report.html at the end (also after a failure).
    ``on_start(cfg, paths, t0)`` is called once every process was told to start (with the
    config the run really uses, its folder and t0): the live fuzzer starts there, in its
    own thread (it must return at once)."""
    from fabric.harness.config import config_to_dict, dump_config

    draw = report  # the name is taken below by the report's text
    results_root = Path(results_root)
    cfg, network = _emulated_network(cfg)  # NetworkUnavailable before anything starts
    cfg, launcher = _ssh_hosts(cfg)
    cfg = _with_free_ports(cfg)
    cfg, key_files = _node_keys(cfg, remote=launcher is not None)  # ConfigError: nothing made
    paths = _unique_folder(results_root, cfg, label or cfg.run.label).make()
    if key_files is not None and launcher is None:  # this machine's nodes read them here
        from transport import keyfiles

        for node, data in key_files.items():
            keyfiles.write(paths.root / "keys", node, data)
        cfg = cfg.with_overrides(["crypto.keys=files", f"crypto.key_dir={paths.root / 'keys'}"])
    dump_config(cfg, paths.config)
    runner = Runner(cfg, paths, progress, network, launcher)
    runner.key_files = key_files
    lag_seq = _degraded_lag_seq(cfg)
    interrupted = False
    stopped_at: float | None = None
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_term(signum: int, frame: Any) -> None:
            raise RunInterrupted(signal.Signals(signum).name)

        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
    try:
        started = runner.build_network() and runner.prepare_hosts() and runner.start_all()
        if started and runner.wait_ready(READY_TIMEOUT_S):
            runner.t0 = time.time()
            for child in runner.children:
                child.say(f"start {runner.t0:.6f}")
            if on_start is not None:
                on_start(cfg, paths, runner.t0)
            if runner.network is None:
                runner.monitor(runner.t0 + cfg.run.duration_s)
            elif runner.monitor(runner.t0 + cfg.run.warmup_s):  # egress counters around
                runner.sample_egress()  # the measured window
                if runner.monitor(runner.t0 + cfg.run.duration_s):
                    runner.sample_egress()
        if runner.progress and runner._tty:
            sys.stderr.write("\n")
        runner.stop_group("client", STOP_TIMEOUT_S)
        runner.drain(lag_seq)
        runner.stop_group("replica", STOP_TIMEOUT_S)
        runner.check_deaths()
    except (KeyboardInterrupt, RunInterrupted) as exc:
        interrupted = True
        stopped_at = time.time()
        runner.problems.append(f"interrupted ({type(exc).__name__} {exc})".strip())
    finally:
        runner.kill_all()
        runner.collect_hosts()
        runner.remove_network()
        runner.close_logs()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    if not runner.t0:
        runner.t0 = time.time()
    replicas, clients = runner.read_stats() if not interrupted else _read_quietly(runner)
    audit = _audit(cfg, replicas) if replicas else None
    if audit is not None and not audit["ok"]:
        runner.problems.append(f"AUDIT FAILED: {audit['message']}")
    info = RunInfo(
        name=paths.root.name,
        protocol=cfg.protocol.name,
        replicas=cfg.cluster.replicas,
        clients=cfg.cluster.clients,
        batch_size=cfg.batching.batch_size,
        duration_s=cfg.run.duration_s,
        warmup_s=cfg.run.warmup_s,
        started_at=runner.t0,
        failures=tuple(
            {"replica": f.replica, "at_s": f.at_s, "kind": f.kind}
            | ({"duration_s": f.duration_s} if f.kind == "stall" else {})
            | ({"down_s": f.down_s} if f.kind == "restart" else {})
            | ({"delay_ms": f.delay_ms} if f.delay_ms else {})
            for f in cfg.failures
        ),
        crypto=_crypto_label(cfg),
        f=cfg.f,
        degraded_lag_seq=lag_seq,
        stopped_at=stopped_at if runner.t0 and stopped_at else None,
    )
    egress = runner.egress()
    summary, tables = build_summary(info, replicas, clients, audit, runner.problems, runner.events)
    if not runner.problems and (
        summary["throughput_txn_s"] <= 0 or summary["committed_batches"] <= 0
    ):
        runner.problems.append(
            "nothing committed: no transaction was accepted in the measured window"
        )
        summary, tables = build_summary(
            info, replicas, clients, audit, runner.problems, runner.events
        )
    if runner.network is not None:
        summary["network"] = {
            **{k: v for k, v in config_to_dict(cfg)["network"].items()},
            "egress": egress,
        }
    report = format_report(summary, tables)
    if runner.dead_tails:
        report += (
            "\nLog tails of the processes that failed:\n" + "\n".join(runner.dead_tails) + "\n"
        )
    write_tables(tables, paths)
    paths.summary.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    paths.res_out.write_text(report)
    if draw:
        _draw_report(paths)
    status = summary["run"]["status"]
    reason = "; ".join(runner.problems) or (summary["run"].get("degraded") or "")
    if interrupted:
        raise KeyboardInterrupt(reason)
    return RunOutcome(
        ok=status == "ok", folder=paths.root, summary=summary, reason=reason, status=status
    )


def _degraded_lag_seq(cfg: Any) -> int:
    """The DEGRADED bound, or 0 (no check) for a protocol that does not replicate: one whose
    clients accept a single reply (null: only replica 0 executes)."""
    from protocols import registry

    try:
        replicated = registry.get(cfg.protocol.name).reply_quorum(cfg.n, cfg.f) > 1
    except Exception:  # an unloadable protocol fails the run elsewhere; do not guess here
        replicated = True
    return cfg.degraded_lag_seq if replicated else 0


def _draw_report(paths: RunPaths) -> None:
    """The run's figures and report.html; a figure that cannot be drawn never fails the run."""
    try:
        from fabric.analysis.report import report_run

        report_run(paths.root)
    except Exception as exc:  # the run's files are written: say so, keep the outcome
        print(
            f"run-cluster: figures not drawn ({type(exc).__name__}: {exc}); "
            f"redraw with python -m fabric report {paths.root}",
            file=sys.stderr,
        )


def _read_quietly(runner: Runner) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    try:
        return runner.read_stats()
    except Exception:  # an interrupted run keeps whatever could be read
        return {}, {}


# --- the command line ------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from fabric.harness.config import add_config_args
    from protocols import registry

    parser = argparse.ArgumentParser(
        prog="./run-cluster.sh",
        description=(
            "Run one experiment: start the replicas and clients on this machine, show progress, "
            "print the ResilientDB-style report, audit the ledgers and write a results folder. "
            "Defaults: PBFT, 4 replicas, 1 client, batch 100, crypto on, 30 s."
        ),
    )
    parser.add_argument("--replicas", type=int, help="replica processes n (cluster.replicas)")
    parser.add_argument("--clients", type=int, help="client processes (cluster.clients)")
    parser.add_argument("--protocol", help=f"{registry.describe()} (protocol.name)")
    parser.add_argument(
        "--duration",
        type=float,
        help="run time in seconds (run.duration_s); unless --warmup or --set run.warmup_s "
        "says otherwise, the warm-up becomes min(run.warmup_s, 20%% of it)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up seconds excluded from the figures")
    parser.add_argument("--label", default=None, help="appended to the run folder's name")
    parser.add_argument(
        "--results-dir", default=None, help="where run folders go (run.results_dir)"
    )
    parser.add_argument(
        "--sweep",
        metavar="FILE",
        help="run a sweep YAML instead (python -m fabric sweep FILE ...; other options go to it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    add_config_args(parser)
    return parser


def overrides(args: argparse.Namespace, base: Any) -> list[str]:
    out: list[str] = []
    if args.replicas is not None:
        out.append(f"cluster.replicas={args.replicas}")
    if args.clients is not None:
        out.append(f"cluster.clients={args.clients}")
    if args.protocol is not None:
        out.append(f"protocol.name={args.protocol}")
    if args.duration is not None:
        out.append(f"run.duration_s={args.duration}")
        set_warmup = any(s.split("=", 1)[0] in ("run.warmup_s", "warmup_s") for s in args.set or [])
        if args.warmup is None and not set_warmup:
            out.append(f"run.warmup_s={min(base.run.warmup_s, 0.2 * args.duration):g}")
    if args.warmup is not None:
        out.append(f"run.warmup_s={args.warmup}")
    return out


def config_warnings(cfg: Any) -> list[str]:
    """Valid settings that will likely not measure what the user meant (said, not refused)."""
    out: list[str] = []
    if cfg.protocol.name == "rcc":
        m = cfg.protocol_config(0).params["rcc_instances"]
        if cfg.cluster.clients < m:
            out.append(
                f"RCC assigns clients to its {m} instances by client id; with "
                f"{cfg.cluster.clients} client(s), {m - cfg.cluster.clients} instance(s) only "
                f"propose no-ops (use --clients {m} for a fair comparison)"
            )
    return out


def run_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, rest: list[str]
) -> int:
    """Run the one experiment the parsed options name (``--sweep`` is dispatched before this,
    by fabric.harness.cli); the exit code: 0 ok, 3 degraded, 1 failed, 2 a usage error."""
    from fabric.harness.config import ConfigError, load_config
    from fabric.harness.network import NetworkUnavailable

    if args.sweep:
        parser.error("--sweep is dispatched by fabric.harness.cli, not by the runner")
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        base = load_config(args.config, args.set or [])
        cfg = base.with_overrides(overrides(args, base))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results_root = Path(args.results_dir or cfg.run.results_dir)
    label = args.label if args.label is not None else cfg.run.label
    print(
        f"run-cluster: {cfg.protocol.name}, {cfg.cluster.replicas} replicas, "
        f"{cfg.cluster.clients} client(s), batch {cfg.batching.batch_size}, "
        f"{cfg.run.duration_s:g} s ({cfg.run.warmup_s:g} s warm-up) ...",
        file=sys.stderr,
        flush=True,
    )
    for warning in config_warnings(cfg):
        print(f"run-cluster: note: {warning}", file=sys.stderr)
    try:
        outcome = run_experiment(cfg, results_root, label=label, progress=not args.quiet)
    except (NetworkUnavailable, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\nrun-cluster: interrupted; every process stopped. {exc}", file=sys.stderr)
        return 130
    print(RunPaths(outcome.folder).res_out.read_text(), end="")
    print(f"results: {outcome.folder} (report.html, figures)", file=sys.stderr)
    if outcome.status == "degraded":
        print(f"run-cluster: RUN DEGRADED: {outcome.reason}", file=sys.stderr)
        return DEGRADED_EXIT_CODE
    if not outcome.ok:
        print(f"run-cluster: RUN FAILED: {outcome.reason}", file=sys.stderr)
        return 1
    return 0
