"""Emulated networks for real runs: Linux network namespaces, veth pairs into a bridge, and
link shaping (``network.emulation: netem | transport``), plus the capability probe that
refuses a run before anything starts.

The layout of one run (``Network``): a hub namespace holding a bridge ``br0``, and one
namespace per node (replicas, then clients) whose ``eth0`` is one end of a veth pair whose
other end (``v<node>``) sits in the hub, enslaved to the bridge. Node j gets ``address(j)``
(10.77.x.y/16), an address that exists only inside these namespaces: nothing of the run
touches the host's own namespace, and nothing is sent anywhere else. Processes are started
with ``exec_prefix(node)`` (``ip netns exec <ns>``, which execs: the pid and process group
are the child's own). ``remove()`` deletes every namespace carrying the run's tag (the
veths, the bridge and every qdisc go with them); it is safe to call after a partial
``create()`` and twice. Namespace names carry the creating process's pid
(``bftf<pid>x<k>-...``), so ``remove_stale()`` removes what a killed runner left behind and
never touches a live run's.

Shaping, on each node's egress (``eth0`` in its namespace):
- ``netem``: ``tc netem`` does delay, jitter, loss and rate; with regions, an htb root with
  one class per destination region, a netem leaf each, and u32 filters on destination
  addresses (needs sch_netem, sch_htb and cls_u32);
- ``transport``: ``tc tbf`` caps the rate (``rate_mbit``); delay, jitter and loss are added
  in the sending process (``shaped_sender``: transport.delay_line, one DelayedSender per
  Sender) from the same per-link numbers (``link_shapes``).

The SSH launcher (fabric.harness.remote) does not use ``Network``: on SSH hosts only the
``transport`` mode without a rate cap applies (its shaping is in the senders).

Must not live here: the config's rules (fabric.harness.config), the delay line itself
(transport.delay_line), starting or stopping processes (fabric.harness.runner).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from transport.delay_line import LinkShape

#: the subnet of every run's nodes (inside the run's namespaces only)
SUBNET = ipaddress.ip_network("10.77.0.0/16")
#: prefix of every namespace this module creates
NS_PREFIX = "bftf"
#: seconds one ip/tc command may take
COMMAND_TIMEOUT_S = 20.0
#: tbf: the queue a node's egress may hold before the kernel drops (TCP backs off), ms
TBF_LATENCY_MS = 100
#: tbf burst: at least this many bytes, or 4 ms at the configured rate
TBF_MIN_BURST_BYTES = 32 * 1024
#: netem queue limit, packets (the default 1000 is below a WAN link's bandwidth-delay product)
NETEM_LIMIT_PACKETS = 100_000
#: htb class rate when no rate_mbit caps it (netem with regions needs a rate on each class)
HTB_UNCAPPED_MBIT = 10_000
_NS_NAME = re.compile(rf"^{NS_PREFIX}(\d+)x(\d+)-")
_counter = itertools.count()


class NetworkUnavailable(RuntimeError):
    """This machine cannot emulate the configured network; the message names what is missing."""


class NetworkError(RuntimeError):
    """An ip/tc command failed while building or removing a network."""


def address(node_id: int) -> str:
    """The address of node ``node_id`` inside a run's namespaces."""
    host = node_id + 1  # .0.0 is the network
    if not 0 <= node_id < SUBNET.num_addresses - 2:
        raise ValueError(f"node id {node_id} does not fit in {SUBNET}")
    return str(SUBNET.network_address + host)


def addresses(node_count: int) -> list[str]:
    return [address(j) for j in range(node_count)]


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"{' '.join(argv)}: {exc}") from None
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise NetworkError(f"{' '.join(argv)}: {said[-1] if said else f'exit {done.returncode}'}")
    return done


def namespaces() -> list[str]:
    """Every network namespace on this machine (``ip netns list``)."""
    if shutil.which("ip") is None:
        return []
    done = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete the namespaces of runners that are gone (their pid is dead); their names."""
    gone = []
    for name in namespaces():
        match = _NS_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _run(["ip", "netns", "del", name], check=False)
            gone.append(name)
    return gone


# --- what this machine can do ----------------------------------------------------------


def probe(emulation: str, rate_mbit: float = 0.0, regions: bool = False) -> list[str]:
    """What is missing to run ``emulation`` here (empty: it can run). Tries each piece for
    real in a scratch namespace (removed before returning)."""
    if emulation == "none":
        return []
    return list(_probe(emulation, bool(rate_mbit), bool(regions)))


@functools.lru_cache(maxsize=8)
def _probe(emulation: str, rate: bool, regions: bool) -> tuple[str, ...]:
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append(
            f"root (this runs as uid {os.geteuid()}; network namespaces, veth and tc need "
            "CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (install iproute2)")
    if missing:
        return tuple(missing)
    scratch = f"{NS_PREFIX}{os.getpid()}x{next(_counter)}-probe"
    try:
        try:
            _run(["ip", "netns", "add", scratch])
        except NetworkError as exc:
            return (f"network namespaces ({exc})",)
        tries: list[tuple[str, list[str]]] = [
            (
                "veth pairs",
                ["ip", "-n", scratch, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
            ),
            ("bridges", ["ip", "-n", scratch, "link", "add", "pbr", "type", "bridge"]),
        ]
        if rate and emulation == "transport":
            tries.append(
                (
                    "the tbf qdisc (sch_tbf)",
                    [
                        "tc",
                        "-n",
                        scratch,
                        "qdisc",
                        "add",
                        "dev",
                        "p0",
                        "root",
                        "tbf",
                        "rate",
                        "10mbit",
                        "burst",
                        "32k",
                        "latency",
                        "50ms",
                    ],
                )
            )
        if emulation == "netem":
            tries.append(
                (
                    "the netem qdisc (sch_netem in this kernel)",
                    [
                        "tc",
                        "-n",
                        scratch,
                        "qdisc",
                        "add",
                        "dev",
                        "p1",
                        "root",
                        "netem",
                        "delay",
                        "1ms",
                    ],
                )
            )
            if regions:
                tries += [
                    (
                        "the htb qdisc (sch_htb)",
                        [
                            "tc",
                            "-n",
                            scratch,
                            "qdisc",
                            "add",
                            "dev",
                            "p0",
                            "root",
                            "handle",
                            "1:",
                            "htb",
                        ],
                    ),
                    (
                        "the u32 classifier (cls_u32)",
                        [
                            "tc",
                            "-n",
                            scratch,
                            "filter",
                            "add",
                            "dev",
                            "p0",
                            "parent",
                            "1:",
                            "protocol",
                            "ip",
                            "u32",
                            "match",
                            "ip",
                            "dst",
                            "10.77.0.1/32",
                            "flowid",
                            "1:1",
                        ],
                    ),
                ]
        for what, argv in tries:
            try:
                _run(argv)
            except NetworkError as exc:
                missing.append(f"{what}: {str(exc).rsplit(': ', 1)[-1]}")
                if what in ("veth pairs", "bridges"):
                    break
    finally:
        _run(["ip", "netns", "del", scratch], check=False)
    return tuple(missing)


def check(cfg: Any) -> None:
    """Refuse (NetworkUnavailable) a config whose network this machine cannot emulate."""
    net = cfg.network
    missing = probe(net.emulation, net.rate_mbit, len(set(net.regions)) > 1)
    if missing:
        raise NetworkUnavailable(
            f"network.emulation={net.emulation} cannot run on this machine; missing: "
            + "; ".join(m.rstrip(".") for m in missing)
            + (
                ". network.emulation=transport emulates delay, jitter and loss without sch_netem"
                if net.emulation == "netem"
                else ""
            )
        )


# --- per-link numbers ----------------------------------------------------------------------


def link_shape(net: Any, source: int, target: int) -> LinkShape:
    """The shape of the link ``source`` -> ``target`` (a NetworkSection's numbers)."""
    return LinkShape(
        delay_s=net.link_delay_ms(source, target) / 1000.0,
        jitter_s=net.jitter_ms / 1000.0,
        loss=net.loss_pct / 100.0,
    )


def link_shapes(cfg: Any, node_id: int) -> dict[int, LinkShape]:
    """Every link out of ``node_id`` (to each other node)."""
    return {
        to: link_shape(cfg.network, node_id, to) for to in range(cfg.node_count) if to != node_id
    }


def shaped_sender(cfg: Any, sender: Any, node_id: int, name: str = "delay-line") -> Any:
    """``sender`` itself, or (``network.emulation: transport``) a DelayedSender around it."""
    if cfg.network.emulation != "transport":
        return sender
    from transport.delay_line import DelayedSender

    net = cfg.network
    if not (net.delay_ms or net.jitter_ms or net.loss_pct or net.region_delay_ms):
        return sender  # a rate cap only: tbf does it all
    return DelayedSender(
        sender,
        link_shapes(cfg, node_id),
        seed=cfg.run.seed * 1_000_003 + node_id,
        max_frames=cfg.transport.send_hwm,
        name=name,
    )


def egress_report(
    cfg: Any, before: dict[int, dict[str, int]], after: dict[int, dict[str, int]], seconds: float
) -> tuple[dict[str, Any], str]:
    """Each node's egress over a window (Mbit/s, qdisc drops) from two egress_counters
    samples: the summary's ``network.egress`` and one line for res.out's events."""
    nodes: dict[str, Any] = {}
    words = []
    for j in sorted(set(before) & set(after)):
        sent = after[j]["tx_bytes"] - before[j]["tx_bytes"]
        mbit = sent * 8 / 1e6 / seconds if seconds > 0 else 0.0
        drops = after[j]["qdisc_drops"] - before[j]["qdisc_drops"]
        name = f"r{j}" if j < cfg.cluster.replicas else f"c{j}"
        nodes[name] = {"mbit_s": round(mbit, 3), "qdisc_drops": drops}
        words.append(f"{name} {mbit:.1f}" + (f" ({drops} dropped)" if drops else ""))
    cap = f", cap {cfg.network.rate_mbit:g}" if cfg.network.rate_mbit else ""
    line = f"egress in the measured window (Mbit/s per node{cap}): " + ", ".join(words)
    return {"window_s": round(seconds, 3), "nodes": nodes}, line


def describe(cfg: Any) -> str:
    """One line on the emulated network (for res.out's events)."""
    net = cfg.network
    parts = [f"network.emulation={net.emulation}: {cfg.node_count} nodes in namespaces"]
    if net.regions:
        regions = sorted(set(net.regions))
        parts.append(f"regions {', '.join(regions)}")
        parts += [f"{a}-{b} {ms:g} ms" for a, b, ms in net.region_delay_ms]
    parts.append(f"delay {net.delay_ms:g} ms one-way" + (" inside a region" if net.regions else ""))
    if net.jitter_ms:
        parts.append(f"jitter {net.jitter_ms:g} ms")
    if net.loss_pct:
        parts.append(f"loss {net.loss_pct:g} %")
    if net.rate_mbit:
        parts.append(f"rate {net.rate_mbit:g} Mbit/s per node")
    return ", ".join(parts)


# --- the namespaces of one run --------------------------------------------------------------


class Network:
    """The namespaces, veths, bridge and qdiscs of one run (module note)."""

    def __init__(self, node_count: int, net: Any) -> None:
        if node_count < 1:
            raise ValueError("a network needs at least one node")
        self.node_count = node_count
        self.net = net
        self.tag = f"{NS_PREFIX}{os.getpid()}x{next(_counter)}"
        self.hub = f"{self.tag}-hub"
        self.created = False

    def namespace(self, node_id: int) -> str:
        return f"{self.tag}-n{node_id}"

    def address(self, node_id: int) -> str:
        return address(node_id)

    def exec_prefix(self, node_id: int) -> list[str]:
        """argv prefix that runs a command inside node ``node_id``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(node_id)]

    def owned(self) -> list[str]:
        """This run's namespaces that exist now."""
        return [name for name in namespaces() if name.startswith(self.tag + "-")]

    def create(self) -> None:
        """Build the whole network; on any failure remove what was built and raise."""
        remove_stale()
        self.created = True
        try:
            hub = self.hub
            _run(["ip", "netns", "add", hub])
            _run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", hub, "link", "set", "br0", "up"])
            prefix = SUBNET.prefixlen
            for j in range(self.node_count):
                ns = self.namespace(j)
                _run(["ip", "netns", "add", ns])
                _run(
                    [
                        "ip",
                        "-n",
                        hub,
                        "link",
                        "add",
                        f"v{j}",
                        "type",
                        "veth",
                        "peer",
                        "name",
                        "eth0",
                        "netns",
                        ns,
                    ]
                )
                _run(["ip", "-n", hub, "link", "set", f"v{j}", "master", "br0", "up"])
                _run(["ip", "-n", ns, "addr", "add", f"{address(j)}/{prefix}", "dev", "eth0"])
                _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                for argv in self.qdisc_commands(j):
                    _run(argv)
        except BaseException:
            self.remove()
            raise

    def qdisc_commands(self, node_id: int) -> list[list[str]]:
        """The tc commands that shape node ``node_id``'s egress."""
        net = self.net
        tc = ["tc", "-n", self.namespace(node_id)]
        if net.emulation == "transport":
            if not net.rate_mbit:
                return []
            rate_bytes = net.rate_mbit * 1e6 / 8
            burst = max(TBF_MIN_BURST_BYTES, int(rate_bytes * 0.004))
            return [
                tc
                + [
                    "qdisc",
                    "add",
                    "dev",
                    "eth0",
                    "root",
                    "tbf",
                    "rate",
                    f"{net.rate_mbit:g}mbit",
                    "burst",
                    str(burst),
                    "latency",
                    f"{TBF_LATENCY_MS}ms",
                ]
            ]
        if net.emulation != "netem":
            return []
        regions = sorted({net.region_of(j) for j in range(self.node_count)})
        if len(regions) <= 1:
            return [
                tc
                + ["qdisc", "add", "dev", "eth0", "root", "handle", "1:"]
                + self._netem_args(net.delay_ms)
            ]
        rate = f"{net.rate_mbit or HTB_UNCAPPED_MBIT:g}mbit"
        out = [
            tc + ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb"],
            tc
            + [
                "class",
                "add",
                "dev",
                "eth0",
                "parent",
                "1:",
                "classid",
                "1:1",
                "htb",
                "rate",
                rate,
                "ceil",
                rate,
            ],
        ]
        for k, region in enumerate(regions, start=10):
            targets = [
                j for j in range(self.node_count) if net.region_of(j) == region and j != node_id
            ]
            if not targets:
                continue
            delay = net.link_delay_ms(node_id, targets[0])
            out.append(
                tc
                + [
                    "class",
                    "add",
                    "dev",
                    "eth0",
                    "parent",
                    "1:1",
                    "classid",
                    f"1:{k}",
                    "htb",
                    "rate",
                    rate,
                    "ceil",
                    rate,
                ]
            )
            out.append(
                tc
                + ["qdisc", "add", "dev", "eth0", "parent", f"1:{k}", "handle", f"{k}:"]
                + self._netem_args(delay, rate=False)
            )
            for j in targets:
                out.append(
                    tc
                    + [
                        "filter",
                        "add",
                        "dev",
                        "eth0",
                        "parent",
                        "1:",
                        "protocol",
                        "ip",
                        "prio",
                        "1",
                        "u32",
                        "match",
                        "ip",
                        "dst",
                        f"{address(j)}/32",
                        "flowid",
                        f"1:{k}",
                    ]
                )
        return out

    def _netem_args(self, delay_ms: float, rate: bool = True) -> list[str]:
        net = self.net
        args = ["netem", "limit", str(NETEM_LIMIT_PACKETS), "delay", f"{delay_ms:g}ms"]
        if net.jitter_ms:
            args.append(f"{net.jitter_ms:g}ms")
        if net.loss_pct:
            args += ["loss", f"{net.loss_pct:g}%"]
        if rate and net.rate_mbit:
            args += ["rate", f"{net.rate_mbit:g}mbit"]
        return args

    def egress_counters(self) -> dict[int, dict[str, int]]:
        """Per node: bytes its eth0 sent so far and packets its root qdisc dropped (a full
        tbf or netem queue); a node whose counters cannot be read is left out."""
        import json

        out: dict[int, dict[str, int]] = {}
        for j in range(self.node_count):
            ns = self.namespace(j)
            try:
                link = json.loads(
                    _run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", "eth0"]).stdout
                )
                qdiscs = json.loads(
                    _run(["tc", "-n", ns, "-s", "-j", "qdisc", "show", "dev", "eth0"]).stdout
                )
            except (NetworkError, ValueError):
                continue
            drops = sum(int(q.get("drops", 0)) for q in qdiscs if q.get("root"))
            out[j] = {"tx_bytes": int(link[0]["stats64"]["tx"]["bytes"]), "qdisc_drops": drops}
        return out

    def remove(self) -> list[str]:
        """Delete every namespace of this run (veths, bridge and qdiscs go with them); what
        could not be deleted (normally nothing)."""
        if not self.created:
            return []
        left = []
        for name in sorted(self.owned(), key=lambda n: n == self.hub):  # the hub last
            if _run(["ip", "netns", "del", name], check=False).returncode != 0:
                left.append(name)
        return [name for name in left if name in self.owned()]

    def __enter__(self) -> Network:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# --- python -m fabric network ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fabric network [--cleanup]``: what this machine can emulate (each mode
    probed for real, with rate caps and regions), and with ``--cleanup`` remove the
    namespaces of runners that are gone. Exit 0 if some emulation works, 1 if none does."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fabric network",
        description="Probe which network.emulation modes this machine can run (root, "
        "iproute2, namespaces, veth, bridge, tbf, netem, htb, u32), and remove namespaces "
        "that killed runners left behind.",
    )
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help=f"delete the {NS_PREFIX}<pid>x... namespaces whose runner process is gone",
    )
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.cleanup:
        gone = remove_stale() if shutil.which("ip") else []
        print(f"removed {len(gone)} stale namespace(s)" + (f": {', '.join(gone)}" if gone else ""))
    works = False
    for mode in ("transport", "netem"):
        missing = probe(mode, rate_mbit=1.0, regions=True)
        works = works or not missing
        state = "available" if not missing else "missing: " + "; ".join(missing)
        print(f"network.emulation={mode} (with rate_mbit and regions): {state}")
    return 0 if works else 1
