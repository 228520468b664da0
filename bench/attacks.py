"""Attack benchmark (issue 19): an undisturbed PBFT run, then one run per attack recipe sent
by an attacker thread with one compromised identity (the cluster's derived keys of one
client or one backup), at a bounded rate during the measured window.

Printed per run: throughput against the undisturbed run (target: within 20%), the largest
replica peak RSS against the undisturbed one (target: within 2x), what the attacker sent,
and the replicas' drops and protocol ignores by reason (every hostile frame counted).
Figures are printed, never asserted.

Recipes (one per finding of issue 19; ``python -m bench attacks``):
  client_batch    a compromised client sends a ~16 MB Batch (kind 2) of 2.4 million minimal
                  Requests, sealed with its own link keys, to every replica, 1/s
  junk_proposal   a compromised backup (replica 1) sends the primary PrePrepares for the
                  current view carrying 900 requests with junk 64-byte signatures, 10/s
  future_commits  replica 1 sends replica 2 Commits for a far view with an 8 MiB digest, 5/s
  fetch_flood     replica 1 sends replica 0 Fetch(0, 1, 2**62), 100/s
The raw-ZMTP multipart attack (finding 5) is not in the list: the stream framing cuts it at
its greeting, before it can cost anything (tests/integration/test_hostile_sockets.py).

Environment: BENCH_ATTACK_DURATION_S (default 10), BENCH_ATTACK_WARMUP_S (default 3),
BENCH_ATTACKS (comma-separated subset of the recipe names).

Must not live here: anything the runner does (runs go through fabric.harness.runner.run_experiment)
or attack code inside protocols (the attacker only builds frames from the wire format).
"""

from __future__ import annotations

import csv
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from fabric.harness.ports import free_port_block

RATES = {"client_batch": 1.0, "junk_proposal": 10.0, "future_commits": 5.0, "fetch_flood": 100.0}


class Attacker(threading.Thread):
    """Sends ``frames()`` (destination, plain frame) sealed as ``node`` at ``rate`` per
    second from ``start_s`` for ``length_s`` seconds after it is started."""

    def __init__(
        self,
        cfg: Any,
        node: int,
        make: Callable[[int], list[tuple[int, bytes]]],
        rate: float,
        start_s: float,
        length_s: float,
    ) -> None:
        super().__init__(name="attacker", daemon=True)
        self.cfg = cfg
        self.node = node
        self.make = make
        self.rate = rate
        self.start_s = start_s
        self.length_s = length_s
        self.sent = 0
        self.sent_bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from fabric.harness.config import config_to_dict
        from transport.auth import LinkAuth, derive_keys
        from transport.zmq_io import Addressing, Sender

        cfg = self.cfg
        keys = derive_keys(cfg.crypto.cluster_secret, cfg.node_count, only_node=self.node)
        link = LinkAuth(cfg.crypto.effective_link_mac, self.node, keys)
        addressing = Addressing.from_config(config_to_dict(cfg))
        ctx = zmq.Context()
        # the runtime's own Sender: the links are wire frames on raw streams (zmq_io)
        sender = Sender(ctx, addressing, self.node, link, send_hwm=1000)
        try:
            if self.stop.wait(self.start_s):
                return
            t0 = time.monotonic()
            i = 0
            while not self.stop.is_set() and time.monotonic() - t0 < self.length_s:
                for to, frame in self.make(i):
                    if sender.send_frame(to, frame):
                        self.sent += 1
                self.sent_bytes = sender.sent_bytes
                i += 1
                wait = t0 + i / self.rate - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
        finally:
            sender.close()
            ctx.term()


def _recipes(cfg: Any) -> dict[str, tuple[int, Callable[[int], list[tuple[int, bytes]]]]]:
    """name -> (the compromised node, frames for step i)."""
    from protocols.common import Request, make_batch
    from protocols.pbft.messages import Commit, Fetch, PrePrepare
    from transport import wire

    n = cfg.cluster.replicas
    client = n  # the first client's identity
    count = (cfg.transport.max_frame_bytes - 256) // 7
    item = b"\x94\x00\x00\xc4\x00\xc4\x00"  # a minimal Request [0, 0, b"", b""]
    body = b"\x92\xdd" + struct.pack("!I", count) + item * count + b"\xc4\x20" + b"d" * 32
    big_batch = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 2, client, len(body)) + body

    def client_batch(i: int) -> list[tuple[int, bytes]]:
        return [(r, big_batch) for r in range(n)]

    def junk_proposal(i: int) -> list[tuple[int, bytes]]:
        reqs = tuple(
            Request(client, 10**9 + i * 1000 + k, b"junk%d" % k, os.urandom(64)) for k in range(900)
        )
        return [(0, wire.encode(PrePrepare(0, 0, 1 + i % 50, make_batch(reqs)), 1))]

    commit = wire.encode(Commit(0, 1000, 1, b"d" * (8 * 1024 * 1024), 1), 1)

    def future_commits(i: int) -> list[tuple[int, bytes]]:
        return [(2, commit)]

    fetch = wire.encode(Fetch(0, 1, 2**62, 1), 1)

    def fetch_flood(i: int) -> list[tuple[int, bytes]]:
        return [(0, fetch)]

    return {
        "client_batch": (client, client_batch),
        "junk_proposal": (1, junk_proposal),
        "future_commits": (1, future_commits),
        "fetch_flood": (1, fetch_flood),
    }


def _drops(folder: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    path = folder / "drops.csv"
    if path.exists():
        with path.open() as f:
            for row in csv.DictReader(f):
                out[row["reason"]] = out.get(row["reason"], 0) + int(row["count"])
    return out


def _ignored(folder: Path, n: int) -> dict[str, int]:
    """Protocol ignores and pre-verification outcomes, summed over replicas."""
    out: dict[str, int] = {}
    for r in range(n):
        path = folder / "stats" / f"replica-{r}.json"
        if not path.exists():
            continue
        st = json.loads(path.read_text())
        ignored = st.get("protocol_status", {}).get("ignored", {}) or {}
        for reason, count in ignored.items():
            out[reason] = out.get(reason, 0) + int(count)
        for reason, count in (st.get("verify", {}).get("preverify", {}) or {}).items():
            out[f"preverify:{reason}"] = out.get(f"preverify:{reason}", 0) + int(count)
        rem = st.get("verify", {}).get("failures_remembered", 0)
        if rem:
            out["verify:failures_remembered"] = out.get("verify:failures_remembered", 0) + rem
    return out


def _peak_rss(summary: dict[str, Any], n: int) -> float:
    rows = [v for k, v in summary["per_node"].items() if int(k) < n]
    return max((row.get("peak_rss_mb") or 0) for row in rows) if rows else 0.0


def main() -> None:
    from fabric.harness.config import load_config
    from fabric.harness.runner import run_experiment

    duration = float(os.environ.get("BENCH_ATTACK_DURATION_S", "10"))
    warmup = float(os.environ.get("BENCH_ATTACK_WARMUP_S", "3"))
    chosen = [a for a in os.environ.get("BENCH_ATTACKS", ",".join(RATES)).split(",") if a]
    base = load_config(None, [f"run.duration_s={duration}", f"run.warmup_s={warmup}"])
    results = Path(base.run.results_dir)
    n = base.cluster.replicas
    print(
        f"   PBFT, {n} replicas, {base.cluster.clients} client(s), batch "
        f"{base.batching.batch_size}, crypto {base.crypto.effective_client_signature} + "
        f"{base.crypto.effective_link_mac}, {duration:g} s runs ({warmup:g} s warm-up); "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    baseline: dict[str, float] = {}
    for name in ["none", *chosen]:
        cfg = base.with_overrides(
            ["protocol.name=pbft", f"transport.base_port={free_port_block(200)}"]
        )
        attacker = None
        if name != "none":
            node, make = _recipes(cfg)[name]
            # the replicas start, then warm up: attack through the measured window
            attacker = Attacker(cfg, node, make, RATES[name], 2.0 + warmup, duration - warmup)
            attacker.start()
        outcome = run_experiment(cfg, results, label=f"attack-{name}", report=False)
        if attacker is not None:
            attacker.stop.set()
            attacker.join(10)
        s = outcome.summary
        tput = s["throughput_txn_s"]
        rss = _peak_rss(s, n)
        if name == "none":
            baseline = {"tput": tput, "rss": rss}
        ratio = tput / baseline["tput"] if baseline.get("tput") else 0.0
        rss_ratio = rss / baseline["rss"] if baseline.get("rss") else 0.0
        status = "ok" if outcome.ok else f"FAILED ({outcome.reason})"
        sent = (
            ""
            if attacker is None
            else f"  sent {attacker.sent} ({attacker.sent_bytes / 1e6:.0f} MB)"
        )
        print(
            f"   {name:<15} {tput:>9,.0f} txn/s ({ratio:4.2f}x)  peak RSS {rss:6.1f} MB "
            f"({rss_ratio:4.2f}x)  {status}{sent}",
            flush=True,
        )
        drops = _drops(Path(outcome.folder))
        ignored = _ignored(Path(outcome.folder), n)
        if drops:
            print("      drops: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
        if ignored and name != "none":
            print("      ignored: " + ", ".join(f"{k} {v}" for k, v in sorted(ignored.items())))
        print(f"      {outcome.folder}  load {os.getloadavg()[0]:.2f}", flush=True)
