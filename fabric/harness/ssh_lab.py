"""A lab of SSH hosts on this machine, for the tests and benchmarks of the SSH launcher
(fabric.harness.remote): network namespaces on one bridge, each with its own address and
Debian's ``sshd`` started inside it on that address, with a throw-away host key and user key
pair in a temp dir. This process (in the root namespace) reaches them through a veth into
the hosts' bridge. ``skip_reason`` says why the lab cannot run here (not root, no iproute2,
no sshd, no paramiko); ``SshHosts.down`` removes everything ``up`` made: the sshd processes
by PID, every process left inside the namespaces by PID, the namespaces (their veths and
bridge go with them). Used by tests/integration/test_ssh_hosts.py and ``python -m bench ssh``.

Must not live here: the launcher itself (fabric.harness.remote), anything a run needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
#: the hosts' /24 (the root namespace's end is .1), one per test process (pid), so two
#: sessions running this test at once do not route each other's hosts
PREFIX = f"10.79.{os.getpid() % 250 + 1}"
HOSTS = 3


def skip_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if not Path(SSHD).is_file() or shutil.which("ssh-keygen") is None:
        return "needs openssh-server (sshd, ssh-keygen): .ci/run installs it"
    try:
        import paramiko  # noqa: F401
    except ImportError:
        return "needs paramiko (setup.cfg)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class SshHosts:
    """HOSTS namespaces on one bridge, each running sshd on its own address."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = f"bfts{os.getpid()}"
        self.namespaces: list[str] = []
        self.sshd: list[subprocess.Popen[bytes]] = []
        self.addresses = [f"{PREFIX}.{k + 2}" for k in range(HOSTS)]
        self.user_key = tmp / "user_key"
        self.known_hosts = tmp / "known_hosts"

    @staticmethod
    def remove_stale() -> None:
        """Namespaces a killed test process left behind (its pid is gone)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20)
        for line in listed.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            match = re.match(r"^bfts(\d+)-", name)
            if match and not Path(f"/proc/{match[1]}").exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)

    def up(self) -> None:
        self.remove_stale()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(self.user_key)], check=True, timeout=20)
        subprocess.run([*keygen, "-f", str(self.tmp / "host_key")], check=True, timeout=20)
        (self.tmp / "authorized_keys").write_text((self.tmp / "user_key.pub").read_text())
        host_pub = (self.tmp / "host_key.pub").read_text().split()[:2]
        self.known_hosts.write_text("".join(f"{a} {' '.join(host_pub)}\n" for a in self.addresses))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        hub = f"{self.tag}-hub"
        _ip("netns", "add", hub)
        self.namespaces.append(hub)
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        root_if = f"{self.tag[:10]}r"
        _ip("link", "add", root_if, "type", "veth", "peer", "name", "up0", "netns", hub)
        _ip("-n", hub, "link", "set", "up0", "master", "br0", "up")
        _ip("addr", "add", f"{PREFIX}.1/24", "dev", root_if)
        _ip("link", "set", root_if, "up")
        for k, address in enumerate(self.addresses):
            ns = f"{self.tag}-h{k}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip(
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"h{k}",
                "netns",
                hub,
            )
            _ip("-n", hub, "link", "set", f"h{k}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            conf = self.tmp / f"sshd_{k}.conf"
            conf.write_text(
                f"ListenAddress {address}:22\nHostKey {self.tmp}/host_key\n"
                f"AuthorizedKeysFile {self.tmp}/authorized_keys\nPidFile none\nUsePAM no\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nStrictModes no\nMaxSessions 64\n"
                "MaxStartups 64\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            )
            log = (self.tmp / f"sshd_{k}.log").open("wb")
            self.sshd.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 15
        for address in self.addresses:
            while True:
                try:
                    socket.create_connection((address, 22), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd on {address} does not answer") from None
                    time.sleep(0.1)

    def down(self) -> None:
        for proc in self.sshd:  # by PID: ip netns exec execs sshd
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.sshd:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # sshd's per-connection processes outlive the listener and take a moment to see a
        # closed connection: stop every process left in the hosts' namespaces (by PID)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self._pids_inside()
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = self._pids_inside()
            if not left:
                break
        for ns in reversed(self.namespaces):  # the veths and the bridge go with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    def _pids_inside(self) -> list[int]:
        """Live processes in the hosts' namespaces (zombies excluded)."""
        pids = []
        for ns in self.namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for word in out.stdout.split():
                try:
                    state = Path(f"/proc/{word}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    pids.append(int(word))
        return pids

    def hosts_file(self, entries: list[str]) -> Path:
        path = self.tmp / "hosts.yaml"
        rows = [
            {
                "host": entry,
                "key_file": str(self.user_key),
                "python": sys.executable,
                "work_dir": str(self.tmp / f"work-{k}"),
            }
            for k, entry in enumerate(entries)
        ]
        path.write_text(json.dumps(rows))
        return path
