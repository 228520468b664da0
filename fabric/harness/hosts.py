"""SSH hosts as the config names them: parsing ``user@host[:port]`` entries (in
``cluster.hosts`` or the YAML list of ``cluster.hosts_file``), placing the nodes (round-robin,
or ``cluster.placement``), and refusing bad input before anything starts (ConfigError naming
the entry): an entry that does not parse, a host listed twice, a key file that does not exist,
more nodes than the hosts' ``slots``, a placement that names an unknown host or not one host
per node.

Pure functions of the config (no connection is made here), so both the config's checks
(fabric.harness.config) and the launcher (fabric.harness.remote) read them without importing
each other.

Must not live here: SSH sessions, shipping, processes (fabric.harness.remote).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric.harness.errors import ConfigError

_ENTRY = re.compile(
    r"^(?P<user>[A-Za-z0-9_.][A-Za-z0-9_.-]*)@(?:\[(?P<v6>[0-9A-Fa-f:]+)\]|(?P<host>[A-Za-z0-9_.-]+))"
    r"(?::(?P<port>\d+))?$"
)
_HOST_KEYS = ("host", "key_file", "python", "work_dir", "slots")


@dataclass(frozen=True)
class HostSpec:
    """One SSH host as the config names it."""

    entry: str  # as written: user@host[:port]
    user: str
    address: str  # what the nodes placed here bind and peers connect to
    port: int
    key_file: str
    python: str
    work_dir: str
    slots: int  # most nodes it takes; 0 = no limit


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostSpec, ...]
    placement: tuple[int, ...]  # node id -> index into hosts

    def host_of(self, node: int) -> HostSpec:
        return self.hosts[self.placement[node]]


def is_remote(cfg: Any) -> bool:
    """True if this run's nodes go to SSH hosts."""
    return bool(cfg.cluster.hosts_file) or any("@" in h for h in cfg.cluster.hosts)


def parse_entry(entry: str, key: str, ssh: Any, extra: dict[str, Any] | None = None) -> HostSpec:
    """``user@host[:port]`` (and a hosts file's per-host keys) -> HostSpec, or ConfigError."""
    match = _ENTRY.match(entry.strip()) if isinstance(entry, str) else None
    if match is None:
        raise ConfigError(key, f"{entry!r} does not parse; allowed: user@host or user@host:port")
    port = int(match["port"] or 22)
    if not 0 < port < 65536:
        raise ConfigError(key, f"{entry!r}: SSH port {port}; allowed: 1..65535")
    extra = extra or {}
    key_file = str(extra.get("key_file", ssh.key_file) or "")
    if key_file and not Path(key_file).expanduser().is_file():
        raise ConfigError(key, f"{entry!r}: key file {key_file} does not exist")
    slots = extra.get("slots", 0)
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
        raise ConfigError(
            key, f"{entry!r}: slots {slots!r}; allowed: an integer >= 0 (0 = no limit)"
        )
    return HostSpec(
        entry=entry.strip(),
        user=match["user"],
        address=match["host"] or match["v6"],
        port=port,
        key_file=str(Path(key_file).expanduser()) if key_file else "",
        python=str(extra.get("python", ssh.python)),
        work_dir=str(extra.get("work_dir", ssh.work_dir)),
        slots=slots,
    )


def _read_hosts_file(cfg: Any) -> list[HostSpec]:
    import yaml

    path = Path(cfg.cluster.hosts_file).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("cluster.hosts_file", f"{path} cannot be read: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(
            "cluster.hosts_file",
            f"{path}: allowed: a non-empty list of {{host: user@host[:port], ...}}",
        )
    out = []
    for i, item in enumerate(data):
        key = f"cluster.hosts_file {path} entry {i}"
        if isinstance(item, str):
            item = {"host": item}
        if not isinstance(item, dict) or "host" not in item:
            raise ConfigError(key, f"{item!r}; allowed: user@host[:port] or a mapping with host")
        unknown = sorted(set(map(str, item)) - set(_HOST_KEYS))
        if unknown:
            raise ConfigError(key, f"unknown key {unknown[0]!r}; allowed: {', '.join(_HOST_KEYS)}")
        out.append(parse_entry(item["host"], key, cfg.ssh, item))
    return out


def plan(cfg: Any) -> Plan | None:
    """The run's SSH hosts and placement (None: a one-machine run); ConfigError on bad input."""
    if not is_remote(cfg):
        if cfg.cluster.placement:
            raise ConfigError(
                "cluster.placement",
                "set without SSH hosts does nothing; allowed: [] or "
                "user@host entries in cluster.hosts / cluster.hosts_file",
            )
        return None
    if cfg.cluster.hosts_file:
        if list(cfg.cluster.hosts) != ["127.0.0.1"]:
            raise ConfigError(
                "cluster.hosts", "set together with cluster.hosts_file; allowed: one of them"
            )
        hosts = _read_hosts_file(cfg)
    else:
        hosts = [parse_entry(h, "cluster.hosts", cfg.ssh) for h in cfg.cluster.hosts]
    seen: dict[tuple[str, int], str] = {}
    for spec in hosts:
        where = (spec.address, spec.port)
        if where in seen:
            raise ConfigError(
                "cluster.hosts",
                f"{spec.entry!r} is listed twice (as {seen[where]!r}: same host and SSH port); "
                "allowed: each host once (it takes several nodes, each on its own ports)",
            )
        seen[where] = spec.entry
    n = cfg.node_count
    if cfg.cluster.placement:
        names = {spec.entry: i for i, spec in enumerate(hosts)}
        if len(cfg.cluster.placement) != n:
            raise ConfigError(
                "cluster.placement",
                f"{len(cfg.cluster.placement)} entries for {n} nodes; allowed: one host per node "
                "(replicas, then clients), or [] for round-robin",
            )
        for entry in cfg.cluster.placement:
            if entry not in names:
                raise ConfigError(
                    "cluster.placement", f"{entry!r} is no listed host; allowed: {', '.join(names)}"
                )
        placement = tuple(names[e] for e in cfg.cluster.placement)
    else:
        placement = tuple(_round_robin(hosts, n))
    return Plan(tuple(hosts), placement)


def _round_robin(hosts: list[HostSpec], n: int) -> Iterator[int]:
    used = [0] * len(hosts)
    k = 0
    for node in range(n):
        for _ in range(len(hosts)):
            if not hosts[k].slots or used[k] < hosts[k].slots:
                break
            k = (k + 1) % len(hosts)
        else:
            total = sum(h.slots for h in hosts)
            raise ConfigError(
                "cluster.hosts",
                f"{n} nodes ({n - node} left over) but the hosts hold {total} (their slots); "
                "allowed: more hosts or slots, or fewer nodes",
            )
        used[k] += 1
        yield k
        k = (k + 1) % len(hosts)


def resolved(cfg: Any, the_plan: Plan) -> Any:
    """``cfg`` as the nodes run it: cluster.hosts = each node's host address."""
    hosts = [the_plan.host_of(j).address for j in range(cfg.node_count)]
    return cfg.with_overrides(
        [f"cluster.hosts={json.dumps(hosts)}", 'cluster.hosts_file=""', "cluster.placement=[]"]
    )
