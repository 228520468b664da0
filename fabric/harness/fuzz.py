"""``python -m fabric fuzz``: hostile frames into a live replica's input sockets while the
clients run, every frame accounted for against the replica's own drop counters.

The command takes the run command's options (``fabric.harness.runner.parser``) and its own
(``--frames``, ``--rate``, ``--target``, ``--peer``, ``--fuzz-seed``, ``--no-baseline``,
``--no-capture``).
It runs an undisturbed baseline of the same config first (same session, so the machine's
load is comparable), then the same run with the fuzzer: once every process was told to
start, a thread of this process (``LiveFuzzer``) captures genuine frames of the
compromised link during the warm-up, then sends bursts of frames from
``fabric.harness.fuzz_frames.FrameSource`` into the target replica's input sockets (plain
TCP sockets: the replica's Receiver reads raw streams), paced to ``--rate`` frames/s, until
``--frames`` are sent or the measured window is about to end. Stream frames go on one
long connection (``STREAM_CONNECTION_FRAMES``, then the next, round-robin over the
target's inputs), so TCP back-pressure holds the fuzzer to what the target reads; each
terminal frame (one that makes the target cut its connection) goes on a connection of
its own. A connection per burst let the fuzzer open connections faster than a loaded
target read them: past its 512 open connections the target cut new ones at open
(``cut_connections``), and every frame on them went uncounted. Afterwards it reads the
target's stats and writes the report (fabric.harness.fuzz_report: what it sent per class
and expected fate, what the target counted, where they differ, frames/s sustained, the
throughput cost) into the run's ``fuzz.json``, ``summary.json`` (key ``fuzz``), ``res.out``
and stdout. The exit code is 1 if the run failed (a crash, an audit failure,
nothing committed) or a counter differs from what the frames sent make it expect, 3 if
the run is DEGRADED (an honest replica ended behind, as ``run`` says), else 0.

Bounds: at most two connections open at a time (the stream one and a terminal one; the
target allows 512), one burst in memory, every socket call under a timeout, the frame
count and rate bounded by the options' rules, the thread stopped before the clients are.
Seeded: ``--fuzz-seed`` (default run.seed) replays the same frames (with ``--no-capture``;
captured genuine frames differ per run).

Must not live here: the frames themselves (fabric.harness.fuzz_frames), the report's
arithmetic and text (fabric.harness.fuzz_report), running a cluster
(fabric.harness.runner), anything inside a replica.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fabric.harness import fuzz_frames, runner
from fabric.harness.fuzz_report import format_fuzz, fuzz_report
from fabric.harness.paths import RunPaths

#: frames and rate the command accepts (a run is bounded in frames, frames/s and time)
FRAMES_RANGE = (1, 100_000_000)
RATE_RANGE = (100, 1_000_000)
DEFAULT_FRAMES = 1_000_000
DEFAULT_RATE = 20_000
#: seconds one connect or send may block (the target pushing back) before the burst is given up
SOCKET_TIMEOUT_S = 10.0
#: stream frames one connection carries before the fuzzer opens the next (on the next input)
STREAM_CONNECTION_FRAMES = 50_000
#: the fuzzer stops this long before the measured window ends (the clients stop then)
STOP_MARGIN_S = 1.0
#: without --duration, the run lasts warm-up + frames / rate + this
DURATION_MARGIN_S = 4.0
#: seconds the command waits for the fuzzer thread after the run returned
JOIN_TIMEOUT_S = 30.0
#: genuine frames are captured during the warm-up, for at most this long (a packet socket
#: sees all loopback traffic: capture costs this process CPU)
CAPTURE_MAX_S = 2.0
#: seconds one capture read waits, and the bytes it takes (a loopback segment is < 64 KiB)
CAPTURE_POLL_S = 0.1
CAPTURE_READ_BYTES = 70_000


class LiveFuzzer(threading.Thread):
    """Sends ``frames`` hostile frames to ``target``'s inputs at ``rate`` frames/s between
    ``start_at`` and ``stop_at`` (epoch s); counts what it sent by class and expected fate."""

    def __init__(
        self,
        target: fuzz_frames.FuzzTarget,
        genuine: list[Any],
        seed: int,
        endpoints: list[tuple[str, int]],
        frames: int,
        rate: float,
        start_at: float,
        stop_at: float,
        capture: bool = True,
    ) -> None:
        super().__init__(name="live-fuzzer", daemon=True)
        self.target = target
        self.genuine = genuine
        self.seed = seed
        self.capture = capture
        self.genuine_source = ""
        self.source: fuzz_frames.FrameSource | None = None
        self.endpoints = endpoints
        self.frames = frames
        self.rate = rate
        self.start_at = start_at
        self.stop_at = stop_at
        self.stop = threading.Event()
        self.sent_frames = 0
        self.sent_bytes = 0
        self.connections = 0
        # the connection stream frames go on, and how many it carried
        self._stream_conn: socket.socket | None = None
        self._stream_frames = 0
        self.by_class: Counter[str] = Counter()
        self.by_fate: Counter[str] = Counter()
        self.class_fate: Counter[tuple[str, str]] = Counter()
        # bursts a socket error cut short: their frames are not in the counts above
        self.aborted_bursts = 0
        self.aborted_frames = 0
        self.errors: Counter[str] = Counter()
        self.began = 0.0
        self.ended = 0.0
        self.cpu_s = 0.0
        # where the sending time went: connecting, handing bytes to the kernel (the target
        # pushing back shows here), waiting to keep to the rate
        self.connect_s = 0.0
        self.send_s = 0.0
        self.paced_s = 0.0

    def _make_source(self) -> fuzz_frames.FrameSource:
        """Capture genuine frames of the compromised link during the warm-up (bounded), else
        use the simulated ones; build the seeded source."""
        captured: list[bytes] = []
        why = "not asked (--no-capture)"
        if self.capture:
            t = self.target
            ports = {port for _, port in self.endpoints}
            until = min(self.start_at, time.time() + CAPTURE_MAX_S)
            captured, why = capture_link(
                ports, t.peer, t.tag_size, t.max_frame_bytes, until, self.stop
            )
        if captured:
            self.genuine_source = why
        else:
            self.genuine_source = (
                f"{len(self.genuine)} messages of a simulated run (live capture: {why})"
            )
        return fuzz_frames.FrameSource(self.target, self.genuine, self.seed, captured)

    def run(self) -> None:
        self.source = source = self._make_source()
        delay = self.start_at - time.time()
        if delay > 0 and self.stop.wait(delay):
            return
        cpu0 = time.thread_time()
        self.began = began = time.time()
        clock0 = time.monotonic()
        try:
            while self.sent_frames < self.frames and not self.stop.is_set():
                if time.time() >= self.stop_at:
                    break
                burst = source.burst(self.frames - self.sent_frames)
                if not burst:
                    break
                self._send(burst)
                ahead = self.sent_frames / self.rate - (time.monotonic() - clock0)
                if ahead > 0:
                    self.paced_s += ahead
                    self.stop.wait(ahead)
        finally:
            self._close_stream()
            self.ended = time.time() if self.sent_frames else began
            self.cpu_s = time.thread_time() - cpu0

    def _send(self, burst: list[fuzz_frames.Frame]) -> None:
        """A burst's stream frames on the stream connection (TCP back-pressure paces the
        fuzzer to what the target reads), its terminal frame on a connection of its own."""
        stream = [f for f in burst if f.cls in fuzz_frames.STREAM_CLASSES]
        terminal = burst[len(stream) :]
        if stream:
            conn = self._stream_conn
            if conn is None or self._stream_frames >= STREAM_CONNECTION_FRAMES:
                self._close_stream()
                conn = self._stream_conn = self._connect()
            if conn is not None and self._sendall(conn, stream):
                self._stream_frames += len(stream)
            else:
                self._close_stream()  # whatever was in flight on it is unknown: not counted
        if terminal:
            conn = self._connect()
            if conn is not None:
                with conn:
                    self._sendall(conn, terminal)

    def _connect(self) -> socket.socket | None:
        host, port = self.endpoints[self.connections % len(self.endpoints)]
        self.connections += 1
        t0 = time.monotonic()
        try:
            conn = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self.errors[f"connect:{type(exc).__name__}"] += 1
            return None
        finally:
            self.connect_s += time.monotonic() - t0
        return conn

    def _sendall(self, conn: socket.socket, frames: list[fuzz_frames.Frame]) -> bool:
        data = b"".join(f.data for f in frames)
        t0 = time.monotonic()
        try:
            conn.sendall(data)
        except OSError as exc:
            self.aborted_bursts += 1
            self.aborted_frames += len(frames)
            self.errors[type(exc).__name__] += 1
            return False
        finally:
            self.send_s += time.monotonic() - t0
        self.sent_frames += len(frames)
        self.sent_bytes += len(data)
        for frame in frames:
            self.by_class[frame.cls] += 1
            self.by_fate[frame.fate] += 1
            self.class_fate[(frame.cls, frame.fate)] += 1
        return True

    def _close_stream(self) -> None:
        if self._stream_conn is not None:
            self._stream_conn.close()
        self._stream_conn = None
        self._stream_frames = 0

    def report(self) -> dict[str, Any]:
        elapsed = max(1e-9, self.ended - self.began)
        return {
            "frames_sent": self.sent_frames,
            "bytes_sent": self.sent_bytes,
            "connections": self.connections,
            "seconds": round(elapsed, 3),
            "began": round(self.began, 3),
            "ended": round(self.ended, 3),
            "frames_per_s": round(self.sent_frames / elapsed, 1) if self.sent_frames else 0.0,
            "fuzzer_cpu_s": round(self.cpu_s, 3),
            "connect_s": round(self.connect_s, 3),
            "send_s": round(self.send_s, 3),
            "paced_s": round(self.paced_s, 3),
            "genuine_frames": self.genuine_source,
            "by_class": dict(sorted(self.by_class.items())),
            "by_fate": dict(sorted(self.by_fate.items())),
            "by_class_and_fate": {
                cls: {fate: n for (c, fate), n in sorted(self.class_fate.items()) if c == cls}
                for cls in sorted(self.by_class)
            },
            "aborted_bursts": self.aborted_bursts,
            "aborted_frames": self.aborted_frames,
            "errors": dict(self.errors),
        }


# --- capturing genuine frames -------------------------------------------------------------------

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4  # a loopback packet is seen leaving and arriving: keep the arrival
_ETH_HEADER_BYTES = 14
_TCP = 6


def capture_link(
    ports: set[int],
    sender: int,
    tag_size: int,
    max_frame_bytes: int,
    until: float,
    stop: threading.Event,
) -> tuple[list[bytes], str]:
    """Genuine sealed frames ``sender`` sent to the target's input ``ports``, read off the
    loopback interface with a packet socket until epoch ``until`` or MAX_GENUINE frames
    (needs CAP_NET_RAW); the frames and how they were obtained, or [] and why not."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
    except (OSError, AttributeError) as exc:
        return [], f"no capture ({type(exc).__name__}: {exc})"
    frames: list[bytes] = []
    segments = 0
    try:
        sock.bind(("lo", 0))
        sock.settimeout(CAPTURE_POLL_S)
        while time.time() < until and len(frames) < fuzz_frames.MAX_GENUINE:
            if stop.is_set():
                break
            try:
                packet, address = sock.recvfrom(CAPTURE_READ_BYTES)
            except TimeoutError:
                continue
            if address[2] == _PACKET_OUTGOING:
                continue
            ip = _ETH_HEADER_BYTES
            if len(packet) < ip + 20 or packet[ip + 9] != _TCP:
                continue
            tcp = ip + (packet[ip] & 0x0F) * 4
            if len(packet) < tcp + 20:
                continue
            if int.from_bytes(packet[tcp + 2 : tcp + 4], "big") not in ports:
                continue
            total = int.from_bytes(packet[ip + 2 : ip + 4], "big")
            payload = packet[tcp + (packet[tcp + 12] >> 4) * 4 : ip + total]
            if payload:
                segments += 1
                frames += fuzz_frames.whole_frames(payload, sender, tag_size, max_frame_bytes)
    except OSError as exc:
        return [], f"no capture ({type(exc).__name__}: {exc})"
    finally:
        sock.close()
    frames = frames[: fuzz_frames.MAX_GENUINE]
    return (
        frames,
        f"captured on lo: {len(frames)} frames of replica {sender} in {segments} segments",
    )


# --- what the target knows ------------------------------------------------------------------


def target_kinds(protocol: str) -> frozenset[int]:
    """The wire kinds a replica process of ``protocol`` registers: asked of a fresh
    interpreter that imports what a replica imports (this process may hold more
    protocols' messages, and a kind the target does not know it drops as unknown_kind)."""
    script = (
        "import fabric.runtime.replica, fabric.runtime.execute, transport.zmq_io\n"
        "from protocols import codec, registry\n"
        f"registry.get({protocol!r})\n"
        "print(' '.join(str(k) for k in sorted(codec.registered_kinds())))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=str(runner.REPO_ROOT),
    ).stdout
    return frozenset(int(k) for k in out.split())


def fuzz_target(cfg: Any, target: int, peer: int, kinds: frozenset[int]) -> fuzz_frames.FuzzTarget:
    """The FuzzTarget of a run's config: the link key of ``peer`` <-> ``target`` only."""
    from fabric.runtime.replica import replica_frame_policy
    from transport.keyfiles import keys_for

    mac = cfg.crypto.effective_link_mac
    key = None
    if mac != "none":  # the target's own keys (its key file on a run with crypto.keys files)
        keys = keys_for(target, cfg.node_count, cfg.crypto.cluster_secret, cfg.crypto.key_dir)
        key = keys.link_key(mac, peer, target)
    return fuzz_frames.FuzzTarget(
        n=cfg.cluster.replicas,
        node_count=cfg.node_count,
        target=target,
        peer=peer,
        mac=mac,
        link_key=key,
        max_frame_bytes=cfg.transport.max_frame_bytes,
        policy=replica_frame_policy(cfg),
        kinds=kinds,
    )


def target_endpoints(cfg: Any, target: int) -> list[tuple[str, int]]:
    """(host, port) of every input socket of ``target`` (tcp only)."""
    from fabric.harness.config import config_to_dict
    from transport.zmq_io import Addressing

    addressing = Addressing.from_config(config_to_dict(cfg))
    out = []
    for k in range(addressing.inputs_of(target)):
        host, port = addressing.address(target, k).removeprefix("tcp://").rsplit(":", 1)
        out.append((host, int(port)))
    return out


# --- the command ----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = runner.parser()
    p.prog = "python -m fabric fuzz"
    p.description = (
        "Run an undisturbed baseline, then the same run while hostile frames flood one "
        "replica's input sockets; compare every frame sent with the replica's drop counters "
        "and report frames/s and the throughput cost. Takes the run command's options."
    )
    g = p.add_argument_group("fuzzing")
    g.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help=f"hostile frames to send ({FRAMES_RANGE[0]}..{FRAMES_RANGE[1]:,}; default "
        f"{DEFAULT_FRAMES:,})",
    )
    g.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"frames per second at most ({RATE_RANGE[0]}..{RATE_RANGE[1]:,}; default "
        f"{DEFAULT_RATE:,})",
    )
    g.add_argument("--target", type=int, default=0, help="replica fuzzed (default 0)")
    g.add_argument(
        "--peer",
        type=int,
        default=None,
        help="replica whose link key to the target is compromised (default target+1 mod n)",
    )
    g.add_argument("--fuzz-seed", type=int, default=None, help="frames' seed (default run.seed)")
    g.add_argument(
        "--no-baseline", action="store_true", help="skip the undisturbed run (no cost figure)"
    )
    g.add_argument(
        "--no-capture",
        action="store_true",
        help="replay genuine frames of a seeded simulated run instead of capturing the "
        "peer's real frames off loopback during the warm-up (capturing needs root); every "
        "frame is then a function of the seed",
    )
    return p


def _check_options(args: argparse.Namespace, cfg: Any) -> str | None:
    n = cfg.cluster.replicas
    if not FRAMES_RANGE[0] <= args.frames <= FRAMES_RANGE[1]:
        return f"--frames {args.frames}: allowed {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]}"
    if not RATE_RANGE[0] <= args.rate <= RATE_RANGE[1]:
        return f"--rate {args.rate:g}: allowed {RATE_RANGE[0]}..{RATE_RANGE[1]}"
    if not 0 <= args.target < n:
        return f"--target {args.target}: allowed 0..{n - 1} (cluster.replicas={n})"
    if args.peer is not None and not (0 <= args.peer < n and args.peer != args.target):
        return f"--peer {args.peer}: allowed 0..{n - 1} except the target {args.target}"
    if n < 2 and args.peer is None:
        return "fuzzing needs cluster.replicas >= 2 (a compromised peer replica)"
    if cfg.transport.kind != "tcp":
        return f"transport.kind={cfg.transport.kind}: the fuzzer speaks tcp only (choose tcp)"
    if cfg.network.emulation != "none":
        return (
            f"network.emulation={cfg.network.emulation}: the fuzzer reaches replicas on this "
            "machine's loopback only (choose none)"
        )
    if any(host not in runner.LOOPBACK for host in cfg.cluster.hosts):
        return f"cluster.hosts={list(cfg.cluster.hosts)}: the fuzzer sends to loopback only"
    return None


def main(argv: list[str] | None = None) -> int:
    from fabric.harness.config import ConfigError, load_config

    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    if args.sweep:
        p.error("--sweep does not apply to fuzz")
    try:
        base = load_config(args.config, args.set or [])
        cfg = base.with_overrides(runner.overrides(args, base))
        problem = _check_options(args, cfg)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if args.duration is None:  # long enough for every frame after the warm-up
            duration = cfg.run.warmup_s + args.frames / args.rate + DURATION_MARGIN_S
            cfg = cfg.with_overrides([f"run.duration_s={duration:.1f}"])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = args.target
    peer = args.peer if args.peer is not None else (target + 1) % cfg.cluster.replicas
    seed = args.fuzz_seed if args.fuzz_seed is not None else cfg.run.seed
    results_root = Path(args.results_dir or cfg.run.results_dir)
    label = args.label if args.label is not None else cfg.run.label
    label = f"{label}-fuzz" if label else "fuzz"
    try:
        kinds = target_kinds(cfg.protocol.name)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"error: could not learn the target's wire kinds: {exc}", file=sys.stderr)
        return 1
    genuine = fuzz_frames.genuine_messages(
        cfg.protocol.name, cfg.cluster.replicas, peer, target, seed
    )
    options = {"frames": args.frames, "rate": args.rate, "target": target, "peer": peer}
    options |= {"seed": seed, "genuine_messages": len(genuine), "command": ["fuzz", *argv]}
    print(
        f"fuzz: {cfg.protocol.name}, {cfg.cluster.replicas} replicas, "
        f"{cfg.run.duration_s:g} s per run; {args.frames:,} frames at up to "
        f"{args.rate:,.0f}/s into replica {target} (compromised link: replica {peer})",
        file=sys.stderr,
        flush=True,
    )
    try:
        base_outcome = None
        if not args.no_baseline:
            print("fuzz: the undisturbed baseline run ...", file=sys.stderr, flush=True)
            base_outcome = runner.run_experiment(
                cfg, results_root, label=f"{label}-baseline", progress=not args.quiet
            )
        fuzzers: list[LiveFuzzer] = []

        def on_start(run_cfg: Any, paths: RunPaths, t0: float) -> None:
            fuzzer = LiveFuzzer(
                fuzz_target(run_cfg, target, peer, kinds),
                genuine,
                seed,
                target_endpoints(run_cfg, target),
                args.frames,
                args.rate,
                start_at=t0 + run_cfg.run.warmup_s,
                stop_at=t0 + run_cfg.run.duration_s - STOP_MARGIN_S,
                capture=not args.no_capture,
            )
            fuzzers.append(fuzzer)
            fuzzer.start()

        print("fuzz: the run with the fuzzer ...", file=sys.stderr, flush=True)
        try:
            outcome = runner.run_experiment(
                cfg, results_root, label=label, progress=not args.quiet, on_start=on_start
            )
        finally:
            for fuzzer in fuzzers:
                fuzzer.stop.set()
                fuzzer.join(JOIN_TIMEOUT_S)
    except KeyboardInterrupt as exc:
        print(f"\nfuzz: interrupted; every process stopped. {exc}", file=sys.stderr)
        return 130
    if not fuzzers:
        print(f"fuzz: RUN FAILED before the fuzzer started: {outcome.reason}", file=sys.stderr)
        return 1
    paths = RunPaths(outcome.folder)
    target_stats = _read_json(paths.replica_stats(target))
    base_target = (
        None
        if base_outcome is None
        else _read_json(RunPaths(base_outcome.folder).replica_stats(target))
    )
    report = fuzz_report(
        fuzzers[0].report(),
        outcome.summary,
        target_stats,
        None if base_outcome is None else base_outcome.summary,
        base_target,
        options,
    )
    if outcome.status == "failed":
        report["problems"].insert(0, f"the run failed: {outcome.reason}")
    # DEGRADED (an honest replica ended behind) is the run's verdict, said as run says it;
    # the fuzzer's own check is the counters
    report["run_status"] = outcome.status
    report["run_degraded"] = outcome.reason if outcome.status == "degraded" else None
    text = format_fuzz(report)
    paths.fuzz.write_text(json.dumps(report, indent=2) + "\n")
    _draw(paths, report, target_stats, base_target)
    summary = dict(outcome.summary)
    summary["fuzz"] = report
    paths.summary.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    with paths.res_out.open("a") as res_out:
        res_out.write(text)
    print(paths.res_out.read_text(), end="")
    print(f"results: {outcome.folder} (fuzz.json)", file=sys.stderr)
    if report["problems"]:
        print("fuzz: FAILED: " + "; ".join(report["problems"]), file=sys.stderr)
        return 1
    if outcome.status == "degraded":
        print(f"fuzz: RUN DEGRADED: {outcome.reason}", file=sys.stderr)
        return runner.DEGRADED_EXIT_CODE
    return 0


def _per_s(stats: dict[str, Any] | None) -> list[tuple[float, int]]:
    """A replica's executed transactions per whole second, t from its t0."""
    if not stats or stats.get("t0") is None:
        return []
    t0 = float(stats["t0"])
    return [(sec - t0, int(n)) for sec, n in sorted(stats.get("executed_per_s", []))]


def _draw(
    paths: RunPaths,
    report: dict[str, Any],
    target_stats: dict[str, Any] | None,
    base_target: dict[str, Any] | None,
) -> None:
    """fuzz-throughput.png in the run folder; a figure that cannot be drawn fails nothing."""
    window = report.get("fuzzed_window") or {}
    if not target_stats or window.get("from_s") is None:
        return
    sent = report["sent"]
    title = (
        f"replica {report['options']['target']}: {sent['frames_sent']:,} hostile frames at "
        f"{sent['frames_per_s']:,.0f}/s"
        + ("" if window.get("cost") is None else f", throughput cost {100 * window['cost']:.0f} %")
    )
    try:
        from fabric.analysis import plots

        fig = plots.fuzz_timeline(
            _per_s(target_stats), _per_s(base_target), (window["from_s"], window["to_s"]), title
        )
        plots.save(fig, paths.fuzz_figure)
    except Exception as exc:  # the run's files are written: say so, keep the outcome
        print(f"fuzz: figure not drawn ({type(exc).__name__}: {exc})", file=sys.stderr)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
