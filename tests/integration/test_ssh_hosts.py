"""Many machines over SSH (fabric.harness.remote), on real hosts made here by
fabric.harness.ssh_lab: network namespaces, each with its own address and Debian's ``sshd``
inside it. A 4-replica cluster runs across three hosts through the launcher (shipped tree,
remote PIDs, streamed control lines, collected folder, audit); a run naming a host nobody
answers fails before anything starts, naming it.

Skips, with the lab's reason, without root, iproute2, sshd (``.ci/run`` installs
openssh-server) or paramiko. Everything made here is removed in finally blocks (the lab's
``down``, then the temp dir with the keys).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric.harness import remote, runner
from fabric.harness.config import load_config
from fabric.harness.ssh_lab import HOSTS, PREFIX
from fabric.harness.ssh_lab import SshHosts as Hosts
from fabric.harness.ssh_lab import skip_reason as _skip_reason
from transport import keyfiles
from transport.auth import derive_keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="bft-ssh-"))
    made = Hosts(tmp)
    try:
        made.up()
        yield made
    finally:
        made.down()
        shutil.rmtree(tmp, ignore_errors=True)


def _cfg(hosts: Hosts, entries: list[str], *extra: str) -> object:
    return load_config(
        None,
        [
            f"cluster.hosts_file={hosts.hosts_file(entries)}",
            f"ssh.known_hosts_file={hosts.known_hosts}",
            "ssh.connect_timeout_s=3",
            "run.duration_s=3",
            "run.warmup_s=0.5",
            "transport.base_port=21000",
            *extra,
        ],
    )


def test_cluster_across_ssh_hosts(hosts: Hosts, tmp_path: Path) -> None:
    """A geo run too: two regions 25 ms apart (one way), delayed in each sending process
    (network.emulation transport), through the same launcher."""
    cfg = _cfg(
        hosts,
        [f"root@{a}" for a in hosts.addresses],
        "network.emulation=transport",
        'network.regions=["east", "west"]',
        "network.region_delay_ms={east: {west: 25}}",
    )
    out = runner.run_experiment(cfg, tmp_path, label="ssh", report=False)
    assert out.ok, out.reason + "\n" + (out.folder / "res.out").read_text()
    # the client (node 4, east) needs 2f+1 = 3 replies: at least one from west (nodes 1, 3)
    assert out.summary["latency_ms"]["p50"] >= 50, out.summary["latency_ms"]
    assert out.summary["audit"]["ok"]
    assert out.summary["audit"]["honest"] == [0, 1, 2, 3]
    record = json.loads((out.folder / "hosts.json").read_text())
    placed = {h["address"]: h["nodes"] for h in record["hosts"]}
    assert placed == {
        hosts.addresses[0]: [0, 3],
        hosts.addresses[1]: [1, 4],
        hosts.addresses[2]: [2],
    }
    assert all(
        abs(h["clock_offset_s"]) < 1.0 and h["python"].startswith("3.11") for h in record["hosts"]
    )
    for node in range(4):  # collected from the hosts' work dirs into the one folder
        assert json.loads((out.folder / "stats" / f"replica-{node}.json").read_text())["ledger"]
        assert (out.folder / "logs" / f"replica-{node}.log").exists()
    assert (out.folder / "stats" / "client-4.json").exists()
    for k in range(HOSTS):  # each host got its own copy of the tree and its run folder
        work = hosts.tmp / f"work-{k}"
        assert any(p.name.startswith("tree-") for p in work.iterdir())
        assert (work / "runs" / out.folder.name / "config.yaml").exists()
        # generated keys (crypto.keys auto on SSH hosts): only its own nodes' files, 0600
        keys = work / "runs" / out.folder.name / "keys"
        assert sorted(p.name for p in keys.iterdir()) == [
            f"node-{j}.keys" for j in placed[hosts.addresses[k]]
        ]
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in keys.iterdir())
    assert load_config(out.folder / "config.yaml").crypto.keys == "generated"
    assert not (out.folder / "keys").exists()  # the private keys stay on their hosts
    mine = keyfiles.load(
        hosts.tmp / "work-0" / "runs" / out.folder.name / "keys" / "node-0.keys", 0, 5
    )
    derived = derive_keys(cfg.crypto.cluster_secret, 5, only_node=0)
    assert mine.public_key_bytes(1) != derived.public_key_bytes(1)
    leftover = subprocess.run(
        ["pgrep", "-f", f"--run-dir {hosts.tmp}"], capture_output=True, text=True
    )
    assert leftover.stdout == "", "remote processes left running"


def test_unreachable_host_fails_before_start(hosts: Hosts, tmp_path: Path) -> None:
    dead = f"root@{PREFIX}.99"  # on the bridge's subnet, nobody there
    cfg = _cfg(hosts, [f"root@{hosts.addresses[0]}", dead], "ssh.connect_timeout_s=1")
    out = runner.run_experiment(cfg, tmp_path, label="dead", report=False)
    assert not out.ok
    assert dead in out.reason and "nothing started" in out.reason
    assert not list((out.folder / "logs").glob("*.log"))  # no process was started


def _remote_pid(hosts: Hosts, node: int) -> int:
    found = subprocess.run(
        ["pgrep", "-f", "--", f"--id {node} --run-dir {hosts.tmp}/"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def test_dead_process_and_lost_connection_fail_naming_the_host(
    hosts: Hosts, tmp_path: Path
) -> None:
    """Mid-run, replica 1's process is SIGKILLed and the SSH connection serving replica 2 is
    cut (its sshd session process killed): the run fails naming both hosts with log tails,
    and the launcher logs in again to stop replica 2 by its PID (nothing is left running)."""
    a = [f"root@{x}" for x in hosts.addresses]
    cfg = _cfg(hosts, a)
    errors: list[BaseException] = []

    def strike() -> None:
        try:
            time.sleep(1.0)
            os.kill(_remote_pid(hosts, 1), signal.SIGKILL)
            pid2 = _remote_pid(hosts, 2)
            session = int(Path(f"/proc/{pid2}/stat").read_text().rsplit(")", 1)[1].split()[1])
            os.kill(session, signal.SIGKILL)  # sshd's process for this connection
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    def on_start(*_: object) -> None:
        threading.Thread(target=strike, daemon=True).start()

    out = runner.run_experiment(cfg, tmp_path, label="die", report=False, on_start=on_start)
    assert not errors, errors
    assert not out.ok
    assert f"replica 1 on {a[1]} exited unexpectedly with code -1" in out.reason, out.reason
    assert f"replica 2 on {a[2]} exited unexpectedly with code 255" in out.reason, out.reason
    res = (out.folder / "res.out").read_text()
    assert f"connection to {a[2]} lost" in res  # the log tails say so
    assert "killed by a signal" in res
    assert (out.folder / "stats" / "replica-0.json").exists()  # collected after a new login
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = subprocess.run(
            ["pgrep", "-f", "--", f"--run-dir {hosts.tmp}/"], capture_output=True, text=True
        ).stdout
        if not left:
            break
        time.sleep(0.2)
    assert left == "", "remote processes left running"


def test_ctrl_c_stops_every_remote_process(hosts: Hosts, tmp_path: Path) -> None:
    """Ctrl-C once every process runs: each is stopped on its host by its PID, and the run
    folder still gets what the hosts wrote."""
    cfg = _cfg(hosts, [f"root@{a}" for a in hosts.addresses], "run.duration_s=30")
    started: list[int] = []

    def on_start(*_: object) -> None:
        started.append(_remote_pid(hosts, 0))
        raise KeyboardInterrupt  # as Ctrl-C in the runner's main thread

    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(cfg, tmp_path, label="intr", report=False, on_start=on_start)
    assert started
    left = subprocess.run(
        ["pgrep", "-f", "--", f"--run-dir {hosts.tmp}/"], capture_output=True, text=True
    ).stdout
    assert left == "", "remote processes left running"
    (folder,) = tmp_path.iterdir()
    assert "interrupted" in (folder / "res.out").read_text()


def test_process_that_cannot_start_fails_the_run_naming_the_host(
    hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote command that never reports its PID (here: it exits at once) fails the run
    with the host named, instead of raising out of the runner."""
    monkeypatch.setattr(remote.Launcher, "command", lambda self, node, role, restart: "exit 3")
    entry = f"root@{hosts.addresses[0]}"
    out = runner.run_experiment(_cfg(hosts, [entry]), tmp_path, label="nopid", report=False)
    assert not out.ok
    assert f"a process did not start: {entry}: the process did not report its PID" in out.reason
