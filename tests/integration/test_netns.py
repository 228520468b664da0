"""WAN emulation in network namespaces (fabric.harness.network), for real: two namespaces and
the configured delay measured on a real round trip, a short cluster run in namespaces with
its audit, and cleanup checked (no namespace, so no veth, bridge or qdisc, of the run left)
after a good run, a failed one and an interrupted one.

The path that works on this kernel is ``network.emulation: transport`` (namespaces, veth,
bridge, tbf, and the delay line in the sender); the netem path is the same test through
``tc netem`` and skips with the probe's reason where the kernel lacks sch_netem. Everything
skips with the probe's reason without root or iproute2. Processes started here are killed
by PID in finally blocks; namespaces are removed by the Network that made them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fabric.harness import network, runner
from fabric.harness.config import load_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: round trips measured after the first (which also opens the connections)
PINGS = 15

# node 0 echoes every Request back to node 1 (until killed); node 1 sends PINGS + 1 Requests one at a time
# and prints the round trips (ms) of all but the first. argv: node, emulation, delay_ms.
PEER_SCRIPT = r"""
import json, sys, time
from fabric.harness.network import addresses
from protocols.common import Request
from transport import auth, zmq_io
from transport.delay_line import DelayedSender, LinkShape

me, emulation, delay_ms, pings = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
peer = 1 - me
keys = auth.derive_keys("netns-secret", 2, only_node=me)
link = auth.LinkAuth("cmac-aes", me, keys)
addressing = zmq_io.Addressing("tcp", tuple(addresses(2)), 17000, "", 1)
ctx = zmq_io.new_context()
rx = zmq_io.Receiver(ctx, addressing.address(me, 0), link)
tx = zmq_io.Sender(ctx, addressing, me, link)
if emulation == "transport":
    tx = DelayedSender(tx, {peer: LinkShape(delay_s=delay_ms / 1000.0)})
print("ready", flush=True)
deadline = time.monotonic() + 60
if me == 0:
    while time.monotonic() < deadline:
        for sender, msg in rx.recv_batch(64, 100):
            tx.send(peer, msg)  # until the test kills it (a delayed echo must not be cut)
else:
    time.sleep(0.3)  # the echo side is bound (it printed ready before this one started)
    rtts = []
    for k in range(pings + 1):
        start = time.monotonic()
        tx.send(peer, Request(me, k, b"ping", b""))
        got = []
        while not got and time.monotonic() < deadline:
            got = rx.recv_batch(1, 100)
        rtts.append((time.monotonic() - start) * 1000.0)
    print(json.dumps({"rtt_ms": rtts[1:]}), flush=True)
rx.close()
tx.close()
zmq_io.close_context(ctx)
"""


def _skip_unless(emulation: str) -> None:
    missing = network.probe(emulation)
    if missing:
        pytest.skip(f"network.emulation={emulation} cannot run here: {'; '.join(missing)}")


def _owned_by_this_process() -> list[str]:
    mine = f"{network.NS_PREFIX}{os.getpid()}x"
    return [name for name in network.namespaces() if name.startswith(mine)]


def _round_trip(emulation: str, delay_ms: float) -> list[float]:
    cfg = load_config(None, [f"network.emulation={emulation}", f"network.delay_ms={delay_ms}"])
    procs: list[subprocess.Popen[str]] = []
    net = network.Network(2, cfg.network)
    try:
        net.create()
        assert sorted(net.owned()) == sorted([net.hub, net.namespace(0), net.namespace(1)])
        for node in (0, 1):
            procs.append(
                subprocess.Popen(
                    net.exec_prefix(node)
                    + [
                        sys.executable,
                        "-c",
                        PEER_SCRIPT,
                        str(node),
                        emulation,
                        str(delay_ms),
                        str(PINGS),
                    ],
                    cwd=ROOT,
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
            assert procs[-1].stdout.readline().strip() == "ready"
        out, _ = procs[1].communicate(timeout=90)
        return json.loads(out.strip().splitlines()[-1])["rtt_ms"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert net.remove() == []
        assert net.owned() == []


@pytest.mark.parametrize("emulation", ["transport", "netem"])
def test_two_namespaces_see_the_configured_delay_on_a_real_round_trip(emulation: str) -> None:
    _skip_unless(emulation)
    delay_ms = 25.0
    rtts = _round_trip(emulation, delay_ms)
    assert len(rtts) == PINGS
    # one delay each way; the machine's own round trip is well under a millisecond
    assert min(rtts) >= 2 * delay_ms * 0.98, rtts
    assert statistics.median(rtts) < 2 * delay_ms + 40, rtts  # loose: a loaded machine


def _root_links() -> set[str]:
    """The interfaces of the host's own namespace (a run must never add one)."""
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()}


@pytest.fixture
def no_leftovers():
    """After the test: none of this process's namespaces, no interface in the host's own
    namespace that was not there before, and no child process, is left."""
    before = set(_owned_by_this_process())
    links_before = _root_links()
    children: list[runner.Child] = []
    original = runner.Runner._spawn

    def spawn(self, role, node):
        child = original(self, role, node)
        children.append(child)
        return child

    runner.Runner._spawn = spawn
    try:
        yield children
    finally:
        runner.Runner._spawn = original
        for child in children:
            if child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
    left = set(_owned_by_this_process()) - before
    for name in left:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert not left, f"namespaces left behind: {sorted(left)}"
    added = {name for name in _root_links() - links_before if name.startswith(("v", "br", "eth"))}
    assert not added, f"interfaces added to the host's namespace: {sorted(added)}"


def _cluster(*extra: str):
    return load_config(
        None,
        [
            "network.emulation=transport",
            "network.delay_ms=5",
            "network.rate_mbit=2",
            "run.duration_s=4",
            "run.warmup_s=1",
            *extra,
        ],
    )


def test_a_cluster_in_namespaces_commits_and_its_audit_passes(tmp_path, no_leftovers) -> None:
    _skip_unless("transport")
    outcome = runner.run_experiment(_cluster(), tmp_path, label="netns", report=False)
    assert outcome.ok, outcome.reason
    summary = outcome.summary
    assert summary["audit"]["ok"]
    assert any("network.emulation=transport" in e for e in summary["run"]["events"])
    # every child ran in its own namespace, under its namespace address
    assert no_leftovers and all(c.proc.args[:3] == ["ip", "netns", "exec"] for c in no_leftovers)
    written = (outcome.folder / "config.yaml").read_text()
    assert "10.77.0.1" in written
    stats = json.loads((outcome.folder / "stats" / "replica-0.json").read_text())
    assert stats["delay_line"]["delayed_frames"] > 0
    # the client waits at least the four one-way hops of PBFT's normal case (request,
    # pre-prepare, prepare, commit) and the reply: 5 x 5 ms
    assert summary["latency_ms"]["p50"] >= 25
    # the primary's egress (a pre-prepare per batch to every backup) runs into the tbf cap,
    # the backups' (small votes) stay far below it
    egress = summary["network"]["egress"]["nodes"]
    assert 0.5 < egress["r0"]["mbit_s"] <= 2 * 1.1, egress
    assert egress["r1"]["mbit_s"] < egress["r0"]["mbit_s"], egress


def test_the_network_is_removed_when_a_replica_dies(tmp_path, no_leftovers, monkeypatch) -> None:
    _skip_unless("transport")
    original = runner.Runner.monitor

    def monitor_then_kill(self, until):
        replica = next(c for c in self.children if c.role == "replica" and c.node == 2)
        os.killpg(replica.proc.pid, signal.SIGKILL)
        return original(self, until)

    monkeypatch.setattr(runner.Runner, "monitor", monitor_then_kill)
    outcome = runner.run_experiment(_cluster(), tmp_path, report=False)
    assert not outcome.ok and "replica 2 exited unexpectedly" in outcome.reason


def test_the_network_is_removed_when_the_runner_fails(tmp_path, no_leftovers, monkeypatch) -> None:
    _skip_unless("transport")

    def broken(self, timeout_s):
        raise RuntimeError("a bug in the runner")

    monkeypatch.setattr(runner.Runner, "wait_ready", broken)
    with pytest.raises(RuntimeError, match="a bug in the runner"):
        runner.run_experiment(_cluster(), tmp_path, report=False)


def test_the_network_is_removed_on_ctrl_c(tmp_path, no_leftovers, monkeypatch) -> None:
    _skip_unless("transport")

    def interrupted(self, until):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Runner, "monitor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(_cluster(), tmp_path, report=False)


def test_netem_is_refused_before_anything_starts_where_the_kernel_lacks_it(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to probe the kernel")
    missing = network.probe("netem")
    if not missing:
        pytest.skip("this kernel has sch_netem")
    cfg = load_config(None, ["network.emulation=netem", "network.delay_ms=10"])
    with pytest.raises(network.NetworkUnavailable, match="sch_netem") as err:
        runner.run_experiment(cfg, tmp_path, report=False)
    assert "network.emulation=transport" in str(err.value)  # and says what works instead
    assert list(tmp_path.iterdir()) == []  # no folder, no process
