"""Many machines: the runner's processes on SSH hosts (paramiko), one Child per process.

``plan(cfg)`` reads the SSH hosts (``user@host[:port]`` entries in ``cluster.hosts``, or the
YAML list in ``cluster.hosts_file``), places the nodes (round-robin, or ``cluster.placement``)
and refuses bad input before anything starts (ConfigError naming the entry): an entry that
does not parse, a host listed twice, a key file that does not exist, more nodes than the
hosts' ``slots``, a placement that names an unknown host or not one host per node.

``Launcher`` is what the runner drives for such a run: ``prepare`` logs in to every host
(known host keys only), checks it (Python 3.11 at the named path, the ports of its nodes free
on its address, the clock offset against this machine, recorded in hosts.json), ships the
project (a tar of the tree, once per content hash, over SFTP) and the run's resolved config
to the host's work directory; ``spawn`` starts one replica or client there and returns a
``RemoteChild``: the runner's Child with a ``RemoteProcess`` in place of a Popen. The remote
command prints its PID first (``pid N``, then it execs Python: the PID is the process's, and
sshd made it a session and group leader), so every signal goes to exactly that process group
(``kill -SIG -- -N`` over the same connection). Its stdout carries the control lines to the
runner unchanged; its stderr is copied into the local log as it comes. A lost connection
ends the process for the runner (exit code LOST_EXIT_CODE, said in its log with the host).
``collect`` copies each host's run folder (stats, ledgers) into the local one, so report,
audit and plots read one folder as for a local run.

Must not live here: the run's sequence (fabric.harness.runner), the config's rules
(fabric.harness.config), keys (transport.auth, transport.keyfiles).
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from fabric.harness.hosts import HostSpec, Plan

#: the parts of the project shipped to each host (with setup.cfg and pyproject.toml)
SHIPPED = ("fabric", "protocols", "transport", "workloads", "config")
SHIPPED_FILES = ("setup.cfg", "pyproject.toml")
#: exit code the runner sees for a process whose SSH connection was lost
LOST_EXIT_CODE = 255
#: exit code the runner sees for a remote process that ended by a signal (sshd says which,
#: in an exit-signal message paramiko does not read)
SIGNALLED_EXIT_CODE = -1
#: seconds a remote command of the launcher (check, kill, untar) may take
COMMAND_TIMEOUT_S = 30.0
#: clock round trips per host; the offset is taken from the fastest
CLOCK_PINGS = 5
#: seconds a started process gets to report its PID
PID_TIMEOUT_S = 20.0
#: bytes of one read from a channel's stderr
CHUNK_BYTES = 32 * 1024
#: seconds between SSH keepalives on every connection
KEEPALIVE_S = 5
#: the Python the nodes need on every host
PYTHON_VERSION = (3, 11)
#: hosts logged in to, checked and shipped to at once
MAX_PARALLEL_HOSTS = 32
T = TypeVar("T")


def project_tar(root: Path) -> tuple[bytes, str]:
    """The shipped tree as a gzip tar, and its content hash (a host keeps one copy per hash)."""
    buf = io.BytesIO()
    files: list[Path] = []
    for part in SHIPPED:
        for path in sorted((root / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    files += [root / name for name in SHIPPED_FILES if (root / name).is_file()]
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in files:
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            digest.update(rel.encode() + b"\0" + data)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), digest.hexdigest()[:16]


class HostError(RuntimeError):
    """A host could not be reached, checked or used; the message names it."""


_CHECK = """
import json, os, socket, sys, time
ports = json.loads(sys.argv[2])
busy = []
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], port))
    except OSError:
        busy.append(port)
    finally:
        s.close()
have = os.path.exists(os.path.join(sys.argv[3], ".complete"))
print(json.dumps({"version": list(sys.version_info[:3]), "busy": busy, "have_tree": have}))
sys.stdout.flush()
for line in sys.stdin:
    print(repr(time.time()))
    sys.stdout.flush()
"""


class HostSession:
    """One SSH connection to one host (paramiko): commands, SFTP, started processes."""

    def __init__(self, spec: HostSpec, ssh: Any) -> None:
        self.spec = spec
        self.ssh = ssh
        self.client, self.transport = self._connect()

    def _connect(self) -> tuple[Any, Any]:
        import paramiko

        spec, ssh = self.spec, self.ssh
        client = paramiko.SSHClient()
        known = ssh.known_hosts_file or "~/.ssh/known_hosts"
        try:
            client.load_host_keys(str(Path(known).expanduser()))
        except OSError as exc:
            raise HostError(f"{spec.entry}: known hosts file {known}: {exc}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                spec.address,
                port=spec.port,
                username=spec.user,
                key_filename=spec.key_file or None,
                look_for_keys=not spec.key_file,
                allow_agent=not spec.key_file,
                timeout=ssh.connect_timeout_s,
                banner_timeout=ssh.connect_timeout_s,
                auth_timeout=ssh.connect_timeout_s,
            )
        except Exception as exc:  # socket, auth, host key: all say the host is not usable
            client.close()
            raise HostError(f"{spec.entry} unreachable: {type(exc).__name__}: {exc}") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)
        return client, transport

    def run(self, command: str, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str]:
        try:
            _, out, err = self.client.exec_command(command, timeout=timeout_s)
            text, etext = out.read().decode(errors="replace"), err.read().decode(errors="replace")
            return out.channel.recv_exit_status(), text, etext
        except Exception as exc:
            raise HostError(f"{self.spec.entry}: {command[:60]!r}: {exc}") from None

    def check(self, ports: list[int], tree: str, run_dir: str) -> dict[str, Any]:
        """Make the work and run folders; Python version, busy ports of its nodes, whether
        the tree is there, and the clock offset (remote - local, s: the round trip of
        CLOCK_PINGS through the running check with the smallest delay)."""
        q = shlex.quote
        cmd = (
            f"mkdir -p {q(self.spec.work_dir)} {q(run_dir)}/logs && mkdir -p -m 700 "
            f"{q(run_dir)}/keys && {q(self.spec.python)} -c "
            f"{q(_CHECK)} {q(self.spec.address)} {q(json.dumps(ports))} {q(tree)}"
        )
        try:
            stdin, stdout, stderr = self.client.exec_command(cmd, timeout=COMMAND_TIMEOUT_S)
            first = stdout.readline()
            pings = []
            for _ in range(CLOCK_PINGS if first else 0):
                before = time.time()
                stdin.write("t\n")
                stdin.flush()
                remote_s = float(stdout.readline())
                after = time.time()
                pings.append((after - before, remote_s - (before + after) / 2))
            stdin.channel.shutdown_write()
            err = stderr.read().decode(errors="replace")
            rc = stdout.channel.recv_exit_status()
        except Exception as exc:
            raise HostError(f"{self.spec.entry}: the check did not run: {exc}") from None
        if rc != 0 or not first:
            raise HostError(
                f"{self.spec.entry}: {self.spec.python} does not run: {err.strip()[-300:]}"
            )
        info = json.loads(first)
        version = tuple(info["version"][:2])
        if version != PYTHON_VERSION:
            raise HostError(
                f"{self.spec.entry}: {self.spec.python} is Python "
                f"{'.'.join(map(str, info['version']))}; the nodes need "
                f"{'.'.join(map(str, PYTHON_VERSION))}"
            )
        if info["busy"]:
            raise HostError(
                f"{self.spec.entry}: ports in use on {self.spec.address}: {info['busy'][:10]}"
            )
        rtt, offset = min(pings)
        return {
            "python": ".".join(map(str, info["version"])),
            "clock_offset_s": round(offset, 6),
            "clock_rtt_s": round(rtt, 6),
            "have_tree": bool(info["have_tree"]),
        }

    def ship(self, tar: bytes, tree: str, run_dir: str, config_text: str, have: bool) -> None:
        """Unpack the tree at ``tree`` (unless ``have``: a host keeps one per hash) and write
        the run's config into ``run_dir`` (both made by ``check``)."""
        q = shlex.quote
        sftp = self.client.open_sftp()
        try:
            if not have:
                upload = f"{tree}.tgz"
                with sftp.open(upload, "wb") as fh:
                    fh.write(tar)
                rc, _, err = self.run(
                    f"mkdir -p {q(tree)} && tar -xzf {q(upload)} -C {q(tree)} && rm -f {q(upload)}"
                    f" && touch {q(tree)}/.complete"
                )
                if rc != 0:
                    raise HostError(
                        f"{self.spec.entry}: the tree did not unpack: {err.strip()[-300:]}"
                    )
            with sftp.open(f"{run_dir}/config.yaml", "w") as fh:
                fh.write(config_text)
        except OSError as exc:
            raise HostError(f"{self.spec.entry}: SFTP: {exc}") from None
        finally:
            sftp.close()

    def put_private(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` on the host, mode 0600 from the start."""
        sftp = self.client.open_sftp()
        try:
            with sftp.open(path, "wb") as fh:
                fh.chmod(0o600)
                fh.write(data)
        finally:
            sftp.close()

    def ensure(self) -> None:
        """Log in again if the connection was lost (HostError if that fails)."""
        if not self.transport.is_active():
            self.client.close()
            self.client, self.transport = self._connect()

    def kill_group(self, pid: int, sig: int) -> None:
        """Signal the process group ``pid`` on the host; after a lost connection, log in
        again once to do it (a process whose connection was cut may still run)."""
        try:
            self.ensure()
        except HostError:
            return
        try:
            self.run(f"kill -{int(sig)} -- -{int(pid)} 2>/dev/null", timeout_s=10)
        except HostError:
            pass

    def collect(self, run_dir: str, local: Path, skip: tuple[str, ...]) -> int:
        """Copy the host's run folder into ``local`` (not ``skip``); the files copied."""
        self.ensure()
        sftp = self.client.open_sftp()
        count = 0
        try:
            stack = [""]
            while stack:
                rel = stack.pop()
                for entry in sftp.listdir_attr(f"{run_dir}/{rel}" if rel else run_dir):
                    name = f"{rel}/{entry.filename}" if rel else entry.filename
                    if name in skip or ".." in Path(name).parts:
                        continue
                    if stat.S_ISDIR(entry.st_mode or 0):
                        stack.append(name)
                    elif stat.S_ISREG(entry.st_mode or 0):
                        (local / name).parent.mkdir(parents=True, exist_ok=True)
                        sftp.get(f"{run_dir}/{name}", str(local / name))
                        count += 1
        finally:
            sftp.close()
        return count

    def close(self) -> None:
        self.client.close()


class _Lines:
    """The remote stdout as text lines (what Child._read iterates)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.raw.readline()
            if not line:
                return
            yield line.decode(errors="replace") if isinstance(line, bytes) else line


class _Stdin:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            raise ValueError("stdin closed")
        self.channel.sendall(text.encode())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.channel.shutdown_write()
            except Exception:
                pass


class RemoteProcess:
    """A process on an SSH host, with the Popen surface the runner uses (pid, stdin, stdout,
    poll, wait) plus ``signal_group``."""

    def __init__(self, session: HostSession, command: str, log: IO[bytes]) -> None:
        self.session = session
        self.returncode: int | None = None
        self.lost = False
        self._log = log
        self._transport = session.transport  # this process's connection (a later one is not)
        channel = self._transport.open_session()
        channel.exec_command(command)
        channel.settimeout(PID_TIMEOUT_S)
        raw = channel.makefile("rb")
        try:
            first = raw.readline().decode(errors="replace").split()
        except Exception:
            first = []
        channel.settimeout(None)
        self.channel = channel
        if len(first) != 2 or first[0] != "pid" or not first[1].isdigit():
            err = channel.makefile_stderr("rb").read(4000).decode(errors="replace")
            channel.close()
            raise HostError(
                f"{session.spec.entry}: the process did not report its PID: {err.strip()}"
            )
        self.pid = int(first[1])
        self.stdout = _Lines(raw)
        self.stdin = _Stdin(channel)
        self.args = command
        threading.Thread(target=self._copy_stderr, name=f"stderr-{self.pid}", daemon=True).start()

    def _copy_stderr(self) -> None:
        try:
            while True:
                data = self.channel.recv_stderr(CHUNK_BYTES)
                if not data:
                    break
                self._log.write(data)
                self._log.flush()
        except (OSError, ValueError):
            pass

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if not self._transport.is_active():
            self._lost()
        elif self.channel.exit_status_ready():
            code = self.channel.recv_exit_status()
            if code >= 0:
                self.returncode = code
            elif self._connection_alive():  # sshd sent exit-signal, which paramiko drops
                self.returncode = SIGNALLED_EXIT_CODE
                self._note(
                    f"--- ssh: pid {self.pid} on {self.session.spec.entry} ended without "
                    "an exit status (killed by a signal) ---"
                )
            else:
                self._lost()
        return self.returncode

    def _connection_alive(self) -> bool:
        try:
            self._transport.open_session(timeout=COMMAND_TIMEOUT_S).close()
            return True
        except Exception:
            return False

    def _lost(self) -> None:
        self.lost = True
        self.returncode = LOST_EXIT_CODE
        self._note(f"--- ssh: connection to {self.session.spec.entry} lost (pid {self.pid}) ---")

    def _note(self, text: str) -> None:
        try:
            self._log.write(text.encode() + b"\n")
            self._log.flush()
        except (OSError, ValueError):
            pass

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: int) -> None:
        if self.poll() is None or self.lost:  # a lost connection's process may still run
            self.session.kill_group(self.pid, sig)


def _each(work: Callable[[int], T], items: list[int]) -> list[T]:
    """``work`` on every host at once (logins and transfers wait on the network); the
    results in order, or the first host's HostError (in host order) once all are done."""
    with ThreadPoolExecutor(max_workers=min(len(items), MAX_PARALLEL_HOSTS) or 1) as pool:
        futures = [pool.submit(work, i) for i in items]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


@dataclass
class Launcher:
    """The SSH side of one run: sessions, shipped trees, remote run folders."""

    cfg: Any  # the resolved config (cluster.hosts = node addresses)
    plan: Plan
    sessions: dict[int, HostSession] = field(default_factory=dict)
    trees: dict[int, str] = field(default_factory=dict)
    run_dirs: dict[int, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def prepare(self, root: Path, repo_root: Path, key_files: dict[int, bytes] | None) -> None:
        """Log in to, check and ship to every host (the tree, its config, the key files of
        its nodes only); HostError names the first host that fails."""
        from fabric.harness.config import config_to_yaml
        from transport.keyfiles import file_name
        from transport.zmq_io import MAX_INPUTS

        base = self.cfg.transport.base_port
        tar, digest = project_tar(repo_root)
        used = sorted(set(self.plan.placement))

        def login(i: int) -> dict[str, Any]:
            spec = self.plan.hosts[i]
            nodes = [j for j, k in enumerate(self.plan.placement) if k == i]
            self.sessions[i] = session = HostSession(spec, self.cfg.ssh)
            ports = [base + j * MAX_INPUTS + k for j in nodes for k in range(MAX_INPUTS)]
            run_dir = f"{spec.work_dir}/runs/{root.name}"
            tree = f"{spec.work_dir}/tree-{digest}"
            return {
                "host": spec.entry,
                "address": spec.address,
                "nodes": nodes,
                "work_dir": spec.work_dir,
                "run_dir": run_dir,
                "tree": tree,
                **session.check(ports, tree, run_dir),
            }

        hosts = _each(login, used)  # every host checked before any is used
        by_host = dict(zip(used, hosts, strict=True))

        def ship(i: int) -> None:
            row = by_host[i]
            cfg = self.cfg
            if key_files is not None:
                cfg = cfg.with_overrides(
                    ["crypto.keys=files", f"crypto.key_dir={row['run_dir']}/keys"]
                )
            session = self.sessions[i]
            session.ship(tar, row["tree"], row["run_dir"], config_to_yaml(cfg), row["have_tree"])
            for node in row["nodes"] if key_files is not None else ():
                session.put_private(f"{row['run_dir']}/keys/{file_name(node)}", key_files[node])

        _each(ship, used)
        for i in used:
            self.trees[i] = by_host[i]["tree"]
            self.run_dirs[i] = by_host[i]["run_dir"]
        self.record = {"tree_sha256_16": digest, "tree_bytes": len(tar), "hosts": hosts}
        (root / "hosts.json").write_text(json.dumps(self.record, indent=2) + "\n")

    def command(self, node: int, role: str, restart: bool) -> str:
        k = self.plan.placement[node]
        spec, tree, run_dir = self.plan.hosts[k], self.trees[k], self.run_dirs[k]
        q = shlex.quote
        argv = [
            spec.python,
            "-m",
            "fabric",
            role,
            "--config",
            f"{run_dir}/config.yaml",
            "--id",
            str(node),
            "--run-dir",
            run_dir,
            # its index among the nodes on its host: run.cpu_affinity's CPU there
            "--slot",
            str(sum(1 for j in range(node) if self.plan.placement[j] == k)),
            *(["--restart"] if restart else []),
        ]
        return (
            f"cd {q(tree)} && echo pid $$ && exec env PYTHONUNBUFFERED=1 PYTHONPATH={q(tree)} "
            + " ".join(q(a) for a in argv)
        )

    def start(self, node: int, role: str, restart: bool, log: IO[bytes]) -> RemoteProcess:
        session = self.sessions[self.plan.placement[node]]
        return RemoteProcess(session, self.command(node, role, restart), log)

    def host_entry(self, node: int) -> str:
        return self.plan.host_of(node).entry

    def collect(self, root: Path) -> list[str]:
        """Copy every host's run folder into ``root``; the problems (named by host)."""
        problems = []
        for k, session in self.sessions.items():
            if k not in self.run_dirs:
                continue
            try:
                session.collect(self.run_dirs[k], root, skip=("config.yaml", "logs", "keys"))
            except Exception as exc:
                problems.append(f"{session.spec.entry}: results not collected: {exc}")
        return problems

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
