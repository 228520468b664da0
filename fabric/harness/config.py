"""The config: config/default.yaml + an experiment file + ``--set`` overrides -> one frozen Config.

How it works: YAML is read into plain dicts; the experiment file, then each ``--set
section.key=value``, is merged over config/default.yaml (the one place defaults live). ``_build``
then checks every name against the section dataclasses below (keys and types) and every value
against the table ``_RULES`` (what is allowed per key); ``_check_relations`` checks the few rules
that span keys. Values that follow from others (f, checkpoint period, the ProtocolConfig a
protocol instance gets) are properties of ``Config``. Every error is a ``ConfigError`` naming
the dotted key, the bad value and what is allowed.

Must not live here: default values (they are in config/default.yaml only), IO other than
reading and writing config YAML, anything a running replica or client does.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import math
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from fabric.harness.errors import ConfigError
from protocols import limits, registry
from protocols.base import ProtocolConfig
from transport.zmq_io import MAX_INPUTS

DEFAULT_CONFIG_PATH: Path = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


# --- the sections (names and types; defaults live in config/default.yaml) ---------------


@dataclass(frozen=True, slots=True)
class ClusterSection:
    replicas: int
    clients: int
    hosts: tuple[str, ...]
    hosts_file: str  # "" or a YAML list of SSH hosts (fabric.harness.remote)
    placement: tuple[str, ...]  # () = round-robin, else the SSH host of each node


@dataclass(frozen=True, slots=True)
class ReplicaSection:
    input_threads: int
    output_threads: int
    batch_threads: int
    worker_threads: int
    ring_capacity: int
    execute_threads: int
    checkpoint_threads: int


@dataclass(frozen=True, slots=True)
class ClientSection:
    threads: int
    max_txn_in_flight: int
    txns_per_request: int  # 0 = batching.batch_size (Config.txns_per_request)
    mode: str
    rate_txn_s: float
    request_timeout_ms: float
    max_retries: int


@dataclass(frozen=True, slots=True)
class BatchingSection:
    batch_size: int
    batch_timeout_ms: float


@dataclass(frozen=True, slots=True)
class CheckpointSection:
    txn_per_chkpt: int


@dataclass(frozen=True, slots=True)
class CryptoSection:
    enabled: bool
    client_signature: str
    link_mac: str
    cluster_secret: str
    keys: str  # auto | derived | generated | files (fabric.harness.runner, transport.keyfiles)
    key_dir: str  # files: the folder of node-<id>.keys files

    @property
    def effective_client_signature(self) -> str:
        """The signature scheme in force: ``none`` whenever crypto is disabled."""
        return self.client_signature if self.enabled else "none"

    @property
    def effective_link_mac(self) -> str:
        """The link MAC in force: ``none`` whenever crypto is disabled."""
        return self.link_mac if self.enabled else "none"


@dataclass(frozen=True, slots=True)
class ProtocolSection:
    name: str
    tick_ms: float
    view_change_timeout_ms: float
    watermark_window: int
    max_buffered_msgs: int
    pbft_signed_votes: bool
    poe_certificate: str
    rcc_instances: int
    rcc_permute_rounds: bool
    rcc_noop_timeout_ms: float
    rcc_max_lag_rounds: int
    zyzzyva_commit_wait_ms: float
    hotstuff_batches_per_block: int
    allow_unsafe: bool


@dataclass(frozen=True, slots=True)
class ExecutionSection:
    engine: tuple[str, ...]  # one name (applies to every replica) or one per replica
    threads: int
    txn_cost_us: float
    pipeline: str  # decoupled (an execute thread) | inline (the worker executes what it delivers)

    def engine_for(self, replica_id: int) -> str:
        """The engine replica ``replica_id`` runs."""
        return self.engine[0] if len(self.engine) == 1 else self.engine[replica_id]


@dataclass(frozen=True, slots=True)
class LedgerSection:
    storage: str  # memory | sqlite | lmdb (fabric.runtime.storage)
    sync: str  # none | batch | every_block
    max_blocks_per_txn: int
    max_file_mb: int
    persist_ring_blocks: int  # the persist ring: final blocks executed, not yet written
    compact_blocks: int  # 0 = never; else blocks past the stored base before a compaction


@dataclass(frozen=True, slots=True)
class WorkloadSection:
    kind: str
    record_count: int
    value_size: int
    key_chooser: str
    zipf_theta: float
    mix: str
    read_proportion: float
    update_proportion: float
    insert_proportion: float
    scan_proportion: float
    rmw_proportion: float
    max_scan_length: int
    smallbank_accounts: int
    smallbank_hot_accounts: int
    smallbank_hotspot: float
    smallbank_balance: float
    smallbank_deposit_checking: float
    smallbank_transact_savings: float
    smallbank_amalgamate: float
    smallbank_write_check: float
    smallbank_send_payment: float


@dataclass(frozen=True, slots=True)
class TransportSection:
    kind: str
    base_port: int
    send_hwm: int
    recv_hwm: int
    max_frame_bytes: int


#: one-way delays between two regions: (region, other region, ms) triples, each pair once
RegionDelays = tuple[tuple[str, str, float], ...]


@dataclass(frozen=True, slots=True)
class NetworkSection:
    """WAN emulation (fabric.harness.network): how links between nodes are shaped."""

    emulation: str  # none | netem | transport
    delay_ms: float  # one-way, every link inside a region (or every link without regions)
    jitter_ms: float
    loss_pct: float
    rate_mbit: float  # each node's egress cap, 0 = none
    regions: tuple[str, ...]  # node j is in regions[j % len(regions)]; () = one region
    region_delay_ms: RegionDelays  # one-way delay between two distinct regions

    def region_of(self, node_id: int) -> str:
        """The region of node ``node_id`` ("" without regions)."""
        return self.regions[node_id % len(self.regions)] if self.regions else ""

    def link_delay_ms(self, source: int, target: int) -> float:
        """The one-way delay configured from node ``source`` to node ``target``."""
        a, b = self.region_of(source), self.region_of(target)
        if a == b:
            return self.delay_ms
        for x, y, ms in self.region_delay_ms:
            if {x, y} == {a, b}:
                return ms
        raise ValueError(f"no network.region_delay_ms entry between {a} and {b}")


@dataclass(frozen=True, slots=True)
class SshSection:
    """How the runner reaches SSH hosts (fabric.harness.remote); unused on one machine."""

    key_file: str  # "" = the SSH agent / ~/.ssh default keys
    python: str
    work_dir: str
    known_hosts_file: str  # "" = ~/.ssh/known_hosts
    connect_timeout_s: float


@dataclass(frozen=True, slots=True)
class RunSection:
    duration_s: float
    warmup_s: float
    seed: int
    results_dir: str
    label: str
    degraded_lag_seq: int
    scheduler: str  # batch | normal: fabric.runtime.sched
    cpu_affinity: str  # auto | process | none: fabric.runtime.sched


@dataclass(frozen=True, slots=True)
class Failure:
    """A fault injected into a real run: ``replica`` crashes or goes silent at ``at_s``, or
    (``stall``) the runner freezes its process (SIGSTOP) at ``at_s`` for ``duration_s`` seconds
    (SIGCONT after): a slow, honest replica, not a faulty one; or (``restart``) the runner
    SIGKILLs it at ``at_s`` and starts it again (same id, same ports, flagged as a restart)
    ``down_s`` seconds later: it reloads its durable state and rejoins. A Byzantine kind
    (BYZANTINE_KINDS) makes its honest protocol instance's output lie from ``at_s`` on
    (fabric.runtime.byzantine)."""

    replica: int
    at_s: float
    kind: str
    duration_s: float = 0.0  # stall only: seconds frozen; optional in YAML (0 for crash/silent)
    down_s: float = 0.0  # restart only: seconds between the kill and the new start; optional
    delay_ms: float = 0.0  # throttle, slow only: ms each proposal / frame is held; optional


_SECTIONS: dict[str, type] = {
    "cluster": ClusterSection,
    "replica": ReplicaSection,
    "client": ClientSection,
    "batching": BatchingSection,
    "checkpoint": CheckpointSection,
    "crypto": CryptoSection,
    "protocol": ProtocolSection,
    "execution": ExecutionSection,
    "ledger": LedgerSection,
    "workload": WorkloadSection,
    "transport": TransportSection,
    "network": NetworkSection,
    "ssh": SshSection,
    "run": RunSection,
}
_FAILURES = "failures"  # the one section that is a list (of Failure), not a mapping


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


#: section -> key -> type, in file order
_SCHEMA: dict[str, dict[str, Any]] = {name: _field_types(cls) for name, cls in _SECTIONS.items()}
_FAILURE_SCHEMA: dict[str, Any] = _field_types(Failure)
#: failure keys a YAML entry may leave out (their dataclass default applies)
_FAILURE_OPTIONAL = frozenset({"duration_s", "down_s", "delay_ms"})
#: Byzantine failure kinds (fabric.runtime.byzantine plays them around the honest protocol)
#: -> the Protocol class attribute (a declared tuple of message classes) the kind needs
#: non-empty; "" = any protocol can play it
BYZANTINE_KINDS: dict[str, str] = {
    "equivocate": "proposal_messages",  # as primary: batch A to one half, batch B to the other
    "bad_mac": "",  # corrupts the MAC of every frame it sends
    "wrong_digest": "vote_messages",  # votes for a wrong digest
    "throttle": "proposal_messages",  # as primary: each proposal held delay_ms
    "slow": "",  # every frame held delay_ms
}
#: kinds that take delay_ms (> 0); the others must leave it out
DELAY_KINDS = ("throttle", "slow")
#: failure kinds the replica itself carries out; the others (stall, restart) the runner does to it
REPLICA_FAILURE_KINDS = ("crash", "silent", *BYZANTINE_KINDS)
#: protocol keys every protocol reads; the others (poe_*, rcc_*, ...) go to ProtocolConfig.params
_GENERIC_PROTOCOL_KEYS = frozenset(
    {
        "name",
        "tick_ms",
        "view_change_timeout_ms",
        "watermark_window",
        "max_buffered_msgs",
        "allow_unsafe",
    }
)


# --- the whole config --------------------------------------------------------------------


def _ticks(ms: float, tick_ms: float) -> int:
    """Whole ticks covering ``ms`` (at least 1); the epsilon absorbs float noise like 1.1/0.1."""
    return max(1, math.ceil(ms / tick_ms - 1e-9))


@dataclass(frozen=True, slots=True)
class Config:
    cluster: ClusterSection
    replica: ReplicaSection
    client: ClientSection
    batching: BatchingSection
    checkpoint: CheckpointSection
    crypto: CryptoSection
    protocol: ProtocolSection
    execution: ExecutionSection
    ledger: LedgerSection
    workload: WorkloadSection
    transport: TransportSection
    network: NetworkSection
    ssh: SshSection
    run: RunSection
    failures: tuple[Failure, ...]

    @property
    def n(self) -> int:
        """Replicas in the cluster."""
        return self.cluster.replicas

    @property
    def f(self) -> int:
        """Faults tolerated: (n-1)//3."""
        return (self.cluster.replicas - 1) // 3

    @property
    def txns_per_request(self) -> int:
        """Transactions in one client request (client.txns_per_request, 0 = one whole
        proposal: batching.batch_size)."""
        return self.client.txns_per_request or self.batching.batch_size

    @property
    def checkpoint_period(self) -> int:
        """Batches (sequence numbers) between checkpoints."""
        return max(1, self.checkpoint.txn_per_chkpt // self.batching.batch_size)

    @property
    def degraded_lag_seq(self) -> int:
        """How far behind (sequence numbers) an honest replica may end before the run is
        DEGRADED: run.degraded_lag_seq, 0 = one checkpoint interval."""
        return self.run.degraded_lag_seq or self.checkpoint_period

    @property
    def watermark_window(self) -> int:
        """High minus low watermark in sequence numbers (protocol.watermark_window, 0 = 2 periods)."""
        return self.protocol.watermark_window or 2 * self.checkpoint_period

    @property
    def node_count(self) -> int:
        """Replicas plus client processes."""
        return self.cluster.replicas + self.cluster.clients

    @property
    def replica_ids(self) -> range:
        return range(self.cluster.replicas)

    @property
    def client_ids(self) -> range:
        """Client node ids: replicas are 0..n-1, clients n..n+clients-1."""
        return range(self.cluster.replicas, self.node_count)

    def node_host(self, node_id: int) -> str:
        """The host of a node: hosts are assigned round-robin over replicas, then clients."""
        self._check_node(node_id)
        return self.cluster.hosts[node_id % len(self.cluster.hosts)]

    def _check_node(self, node_id: int) -> None:
        if not 0 <= node_id < self.node_count:
            raise ValueError(f"node id {node_id} not in 0..{self.node_count - 1}")

    def protocol_config(self, replica_id: int) -> ProtocolConfig:
        """What a protocol instance at ``replica_id`` needs, with timeouts converted to ticks."""
        proto = self.protocol
        params: dict[str, Any] = {
            f.name: getattr(proto, f.name)
            for f in fields(proto)
            if f.name not in _GENERIC_PROTOCOL_KEYS
        }
        params["rcc_instances"] = proto.rcc_instances or self.cluster.replicas
        params["tick_ms"] = proto.tick_ms
        params["rcc_noop_ticks"] = _ticks(proto.rcc_noop_timeout_ms, proto.tick_ms)
        params["zyzzyva_commit_wait_ticks"] = _ticks(proto.zyzzyva_commit_wait_ms, proto.tick_ms)
        return ProtocolConfig(
            replica_id=replica_id,
            n=self.cluster.replicas,
            checkpoint_period=self.checkpoint_period,
            watermark_window=self.watermark_window,
            view_change_ticks=_ticks(proto.view_change_timeout_ms, proto.tick_ms),
            max_buffered=proto.max_buffered_msgs,
            params=params,
        )

    def with_overrides(self, overrides: Sequence[str]) -> Config:
        """A new Config with ``section.key=value`` overrides applied (validated like --set)."""
        return _build(_apply_overrides(config_to_dict(self), overrides))


# --- what is allowed per key ---------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    ok: Callable[[Any], bool]
    allowed: Callable[[], str]  # a callable so protocol names are looked up when needed


def _between(low: float, high: float, why: str = "") -> _Rule:
    suffix = f" ({why})" if why else ""
    return _Rule(lambda v: low <= v <= high, lambda: f"{low}..{high}{suffix}")


def _positive(high: float) -> _Rule:
    return _Rule(lambda v: 0 < v <= high, lambda: f"> 0 and <= {high}")


def _exactly(value: int) -> _Rule:
    return _Rule(lambda v: v == value, lambda: f"exactly {value}")


def _inside(low: float, high: float) -> _Rule:
    return _Rule(lambda v: low < v < high, lambda: f"strictly between {low} and {high}")


def _one_of(*choices: str, lookup: Callable[[], Sequence[str]] | None = None) -> _Rule:
    names = lookup or (lambda: choices)
    return _Rule(lambda v: v in names(), lambda: " | ".join(names()))


def _power_of_two(low: int, high: int) -> _Rule:
    return _Rule(
        lambda v: low <= v <= high and v & (v - 1) == 0,
        lambda: f"a power of two in {low}..{high}",
    )


#: fabric.runtime.engines.ENGINES (not imported: the config must not pull in the runtime)
_ENGINE_NAMES = ("serial", "block-stm", "conflict-dag")
#: workloads.smallbank.MIX_NAMES
_SMALLBANK_MIX = (
    "balance",
    "deposit_checking",
    "transact_savings",
    "amalgamate",
    "write_check",
    "send_payment",
)
#: keys that take one string or a list of strings (one string means a list of one)
_ONE_OR_LIST = frozenset({"execution.engine"})
_NON_EMPTY = _Rule(lambda v: len(v) > 0 and all(v), lambda: "non-empty")
_THREADS = _between(1, 64)
_HOUR_MS = 3_600_000
_DAY_S = 86_400
#: the longest one-way delay (and jitter) a link may be given, ms
_MAX_DELAY_MS = 10_000
#: the most loss a link may be given, percent (TCP over more than this barely moves)
_MAX_LOSS_PCT = 50

_RULES: dict[str, _Rule] = {
    "cluster.replicas": _between(4, 1024, "n >= 3f+1 with f >= 1"),
    "cluster.clients": _between(1, 1024),
    "cluster.hosts": _NON_EMPTY,
    "ssh.python": _NON_EMPTY,
    "ssh.work_dir": _NON_EMPTY,
    "ssh.connect_timeout_s": _positive(600),
    "replica.input_threads": _THREADS,
    "replica.output_threads": _THREADS,
    "replica.batch_threads": _THREADS,
    "replica.worker_threads": _THREADS,
    "replica.ring_capacity": _power_of_two(64, 1 << 24),
    "replica.execute_threads": _exactly(1),
    "replica.checkpoint_threads": _exactly(1),
    "client.threads": _THREADS,
    "client.max_txn_in_flight": _between(1, 1_000_000),
    # and <= batching.batch_size, and enough per request for a proposal: checked with it
    "client.txns_per_request": _between(0, 100_000),
    "client.mode": _one_of("closed", "open"),
    "client.rate_txn_s": _between(0, 10_000_000),
    "client.request_timeout_ms": _positive(_HOUR_MS),
    "client.max_retries": _between(0, 100),
    "batching.batch_size": _between(1, 100_000),
    "batching.batch_timeout_ms": _positive(_HOUR_MS),
    "checkpoint.txn_per_chkpt": _between(1, 1_000_000_000),
    "crypto.client_signature": _one_of("ed25519", "none"),
    "crypto.link_mac": _one_of("cmac-aes", "hmac-sha256", "none"),
    "crypto.cluster_secret": _NON_EMPTY,
    "crypto.keys": _one_of("auto", "derived", "generated", "files"),
    "protocol.name": _one_of(lookup=registry.available),
    "protocol.tick_ms": _positive(60_000),
    "protocol.view_change_timeout_ms": _positive(_HOUR_MS),
    "protocol.watermark_window": _between(0, 10_000_000),
    "protocol.max_buffered_msgs": _between(1, 10_000_000),
    "protocol.poe_certificate": _one_of("signatures", "macs"),
    "protocol.rcc_instances": _between(0, 1024),  # and <= n: checked with the cluster
    "protocol.rcc_noop_timeout_ms": _positive(_HOUR_MS),
    "protocol.rcc_max_lag_rounds": _between(0, 1_000_000),
    "protocol.zyzzyva_commit_wait_ms": _positive(_HOUR_MS),
    "protocol.hotstuff_batches_per_block": _between(1, 4096),
    "execution.engine": _Rule(
        lambda v: len(v) > 0 and all(name in _ENGINE_NAMES for name in v),
        lambda: f"{' | '.join(_ENGINE_NAMES)}, or a list of them with one per replica",
    ),
    "execution.threads": _THREADS,
    "execution.txn_cost_us": _between(0, 100_000),
    "execution.pipeline": _one_of("decoupled", "inline"),
    # fabric.runtime.storage.BACKENDS / SYNC_POLICIES (not imported: no runtime in the config)
    "ledger.storage": _one_of("memory", "sqlite", "lmdb"),
    "ledger.sync": _one_of("none", "batch", "every_block"),
    "ledger.max_blocks_per_txn": _between(1, 4096),
    "ledger.max_file_mb": _between(1, 1 << 20),
    "ledger.persist_ring_blocks": _power_of_two(64, 1 << 24),
    "ledger.compact_blocks": _between(0, 1_000_000_000),
    "workload.kind": _one_of("ycsb", "smallbank"),
    "workload.record_count": _between(1, 1_000_000_000),
    "workload.value_size": _between(1, 1 << 20),
    "workload.key_chooser": _one_of("uniform", "zipfian", "latest"),
    "workload.zipf_theta": _inside(0, 1),
    "workload.mix": _one_of("a", "b", "c", "d", "e", "f", "custom"),
    "workload.read_proportion": _between(0, 1),
    "workload.update_proportion": _between(0, 1),
    "workload.insert_proportion": _between(0, 1),
    "workload.scan_proportion": _between(0, 1),
    "workload.rmw_proportion": _between(0, 1),
    "workload.max_scan_length": _between(1, 100_000),
    "workload.smallbank_accounts": _between(2, 2**61),
    "workload.smallbank_hot_accounts": _between(1, 2**61),  # and <= accounts: checked below
    "workload.smallbank_hotspot": _between(0, 1),
    **{f"workload.smallbank_{name}": _between(0, 1) for name in _SMALLBANK_MIX},
    "transport.kind": _one_of("tcp", "ipc"),
    "transport.base_port": _between(1024, 65535),
    "transport.send_hwm": _between(1, 10_000_000),
    "transport.recv_hwm": _between(1, 10_000_000),
    "transport.max_frame_bytes": _between(1024, 1 << 30),
    "network.emulation": _one_of("none", "netem", "transport"),
    "network.delay_ms": _between(0, _MAX_DELAY_MS),
    "network.jitter_ms": _between(0, _MAX_DELAY_MS),
    "network.loss_pct": _between(0, _MAX_LOSS_PCT),
    "network.rate_mbit": _between(0, 100_000, "0 = no cap"),
    "network.regions": _Rule(lambda v: all(v), lambda: "a list of non-empty region names"),
    "network.region_delay_ms": _Rule(
        lambda v: all(0 <= ms <= _MAX_DELAY_MS for _, _, ms in v),
        lambda: f"one-way delays 0..{_MAX_DELAY_MS} ms",
    ),
    "run.duration_s": _positive(_DAY_S),
    "run.warmup_s": _between(0, _DAY_S),
    "run.seed": _between(0, 2**63 - 1),
    "run.results_dir": _NON_EMPTY,
    "failures.replica": _between(0, 1023),  # and < n: checked with the cluster
    "failures.at_s": _between(0, _DAY_S),  # and < run.duration_s: checked with the run
    "failures.kind": _one_of("crash", "silent", "stall", "restart", *BYZANTINE_KINDS),
    "failures.duration_s": _between(0, _DAY_S),  # > 0 for stall, 0 otherwise: checked below
    "failures.down_s": _between(0, _DAY_S),  # > 0 for restart, 0 otherwise: checked below
    # > 0 for throttle/slow, 0 otherwise; throttle < protocol.view_change_timeout_ms: below
    "failures.delay_ms": _between(0, 60_000),
    "run.degraded_lag_seq": _between(0, 1_000_000_000),
    "run.scheduler": _one_of("batch", "normal"),
    "run.cpu_affinity": _one_of("auto", "process", "none"),
}
_PROPORTIONS = ("read", "update", "insert", "scan", "rmw")

_TYPE_NAMES: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple[str, ...]: "a list of strings",
    RegionDelays: "a mapping region -> {other region: one-way ms}",
}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """``value`` as ``typ``, or a ConfigError. bool is not an int; an int is a fine float."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if typ is bool and isinstance(value, bool):
        return value
    if typ is int and number and isinstance(value, int):
        return value
    if typ is float and number and math.isfinite(_as_float(value)):
        return float(value)
    if typ is str and isinstance(value, str):
        return value
    if typ == tuple[str, ...] and isinstance(value, str) and key in _ONE_OR_LIST:
        return (value,)
    if typ == tuple[str, ...] and isinstance(value, list | tuple):
        if all(isinstance(item, str) for item in value):
            return tuple(value)
    if typ == RegionDelays and isinstance(value, Mapping):
        return _region_delays(key, value)
    rule = _RULES.get(_rule_name(key))
    allowed = _TYPE_NAMES[typ] + (f", {rule.allowed()}" if rule else "")
    hint = ""
    if typ in (int, float) and isinstance(value, str) and _looks_numeric(value):
        hint = " (a quoted number, or an exponent without a sign such as 1e3: write 1000)"
    raise ConfigError(key, f"{value!r} is not {_TYPE_NAMES[typ]}{hint}; allowed: {allowed}")


def _region_delays(key: str, value: Mapping[Any, Any]) -> RegionDelays:
    """``{a: {b: ms}}`` -> ((a, b, ms), ...), each unordered pair once (a symmetric matrix)."""
    seen: dict[frozenset[str], float] = {}
    out: list[tuple[str, str, float]] = []
    for a, row in value.items():
        if not isinstance(a, str) or not isinstance(row, Mapping):
            raise ConfigError(
                key,
                f"{a!r}: {row!r} is not region: {{other region: ms}}; allowed: "
                f"{_TYPE_NAMES[RegionDelays]}",
            )
        for b, ms in row.items():
            where = f"{key}.{a}.{b}"
            if not isinstance(b, str) or isinstance(ms, bool) or not isinstance(ms, int | float):
                raise ConfigError(
                    where, f"{ms!r} is not a number of ms; allowed: 0..{_MAX_DELAY_MS}"
                )
            if a == b:
                raise ConfigError(
                    where,
                    "a region to itself; allowed: distinct regions (inside one region "
                    "every link takes network.delay_ms)",
                )
            pair = frozenset((a, b))
            if pair in seen and seen[pair] != ms:
                raise ConfigError(
                    where,
                    f"{ms} but {b} -> {a} says {seen[pair]}; allowed: one delay per "
                    "pair (links are symmetric)",
                )
            if pair not in seen:
                seen[pair] = float(ms)
                out.append((a, b, float(ms)))
    return tuple(out)


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rule_name(key: str) -> str:
    """``failures[2].kind`` -> ``failures.kind``: the _RULES entry for a dotted key."""
    head, _, tail = key.partition(".")
    return f"{head.partition('[')[0]}.{tail}"


def _check(key: str, value: Any, typ: Any) -> Any:
    value = _coerce(key, value, typ)
    rule = _RULES.get(_rule_name(key))
    if rule is not None and not rule.ok(value):
        raise ConfigError(key, f"{value!r} is not allowed; allowed: {rule.allowed()}")
    return value


def _unknown(key: str, name: str, candidates: Sequence[str], what: str) -> ConfigError:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    guess = f"did you mean {close[0]}? " if close else ""
    return ConfigError(key, f"unknown {what}; {guess}allowed: {', '.join(candidates)}")


# --- building a Config from plain data -----------------------------------------------------


def _build_section(prefix: str, cls: type, schema: Mapping[str, Any], raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        allowed = f"a mapping of {', '.join(schema)}"
        raise ConfigError(prefix, f"{raw!r} is not a mapping; allowed: {allowed}")
    for key in raw:
        if key not in schema:
            raise _unknown(f"{prefix}.{key}", str(key), list(schema), "key")
    values = {}
    for key, typ in schema.items():
        if key not in raw:
            raise ConfigError(f"{prefix}.{key}", f"missing; allowed: {_TYPE_NAMES[typ]}")
        values[key] = _check(f"{prefix}.{key}", raw[key], typ)
    return cls(**values)


def _build_failures(raw: Any) -> tuple[Failure, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        example = "[{replica: 1, at_s: 10, kind: crash}]"
        raise ConfigError(_FAILURES, f"{raw!r} is not a list; allowed: a list such as {example}")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, Mapping):
            defaults = {k: 0.0 for k in _FAILURE_OPTIONAL if k not in entry}
            entry = {**entry, **defaults}
        out.append(_build_section(f"{_FAILURES}[{i}]", Failure, _FAILURE_SCHEMA, entry))
    return tuple(out)


def _build(data: Any) -> Config:
    """Plain data (already merged over the defaults) -> a checked Config."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"{data!r} is not a mapping; allowed: a mapping of sections")
    names = [*_SECTIONS, _FAILURES]
    for name in data:
        if name not in names:
            raise _unknown(str(name), str(name), names, "section")
    sections = {}
    for name, cls in _SECTIONS.items():
        if name not in data:
            raise ConfigError(
                name, f"missing section; allowed: a mapping of {', '.join(_SCHEMA[name])}"
            )
        sections[name] = _build_section(name, cls, _SCHEMA[name], data[name])
    cfg = Config(**sections, failures=_build_failures(data.get(_FAILURES)))
    _check_relations(cfg)
    return cfg


def _check_relations(cfg: Config) -> None:
    """Rules that span keys. Each names the key to change and the bound it broke."""
    n, batch = cfg.cluster.replicas, cfg.batching.batch_size
    per_request = cfg.client.txns_per_request
    if per_request > batch:
        raise ConfigError(
            "client.txns_per_request",
            f"{per_request} exceeds one proposal; allowed: 0 (= batching.batch_size) or "
            f"1..{batch} (batching.batch_size)",
        )
    fewest = -(-batch // limits.MAX_BATCH_REQUESTS)
    if per_request and per_request < fewest:
        raise ConfigError(
            "client.txns_per_request",
            f"{per_request} cannot fill a proposal of batching.batch_size={batch} within "
            f"{limits.MAX_BATCH_REQUESTS} requests (protocols.limits.MAX_BATCH_REQUESTS); "
            f"allowed: 0 or {fewest}..{batch}",
        )
    if cfg.client.max_txn_in_flight < cfg.txns_per_request:
        bound = (
            f"client.txns_per_request ({per_request})"
            if per_request
            else f"batching.batch_size ({batch}), as client.txns_per_request is 0"
        )
        raise ConfigError(
            "client.max_txn_in_flight",
            f"{cfg.client.max_txn_in_flight} is below one request; allowed: >= {bound}",
        )
    if cfg.client.mode == "open" and cfg.client.rate_txn_s <= 0:
        raise ConfigError(
            "client.rate_txn_s", f"{cfg.client.rate_txn_s} with client.mode=open; allowed: > 0"
        )
    if cfg.run.warmup_s >= cfg.run.duration_s:
        raise ConfigError(
            "run.warmup_s",
            f"{cfg.run.warmup_s} leaves nothing to measure; "
            f"allowed: < run.duration_s ({cfg.run.duration_s})",
        )
    window = cfg.protocol.watermark_window
    if window and window < 2 * cfg.checkpoint_period:
        raise ConfigError(
            "protocol.watermark_window",
            f"{window} is under two checkpoint periods; allowed: 0 (= two periods) or "
            f">= 2 * checkpoint period ({2 * cfg.checkpoint_period} = 2 * "
            f"checkpoint.txn_per_chkpt // batching.batch_size)",
        )
    unsafe = registry.get(cfg.protocol.name).unsafe
    if unsafe and not cfg.protocol.allow_unsafe:
        raise ConfigError(
            "protocol.allow_unsafe",
            f"false with protocol.name={cfg.protocol.name}, a protocol known to be unsafe "
            f"({unsafe}); allowed: true, to run it anyway",
        )
    if cfg.protocol.rcc_instances > n:
        raise ConfigError(
            "protocol.rcc_instances",
            f"{cfg.protocol.rcc_instances} exceeds the replicas; allowed: 0 (= n) or "
            f"1..{n} (cluster.replicas)",
        )
    # transport.zmq_io.Addressing: node j's input k listens on base_port + j*MAX_INPUTS + k
    span = cfg.node_count * MAX_INPUTS
    last_port = cfg.transport.base_port + span - 1
    if last_port > 65535:
        raise ConfigError(
            "transport.base_port",
            f"{cfg.transport.base_port} leaves no room for {cfg.node_count} nodes "
            f"({MAX_INPUTS} ports each, last port {last_port}); allowed: 1024..{65536 - span}",
        )
    payload = batch * cfg.workload.value_size
    if cfg.transport.max_frame_bytes < payload:
        raise ConfigError(
            "transport.max_frame_bytes",
            f"{cfg.transport.max_frame_bytes} cannot hold one batch of values; allowed: "
            f">= batching.batch_size * workload.value_size ({payload}) plus headroom",
        )
    _check_mix(cfg.workload)
    _check_execution(cfg)
    _check_failures(cfg)
    _check_network(cfg)
    _check_remote(cfg)


def _check_network(cfg: Config) -> None:
    net = cfg.network
    if net.emulation == "none":
        for key in ("delay_ms", "jitter_ms", "loss_pct", "rate_mbit"):
            if getattr(net, key):
                raise ConfigError(
                    f"network.{key}",
                    f"{getattr(net, key)} with network.emulation=none does nothing; allowed: 0, "
                    "or network.emulation: netem | transport",
                )
        for key in ("regions", "region_delay_ms"):
            if getattr(net, key):
                raise ConfigError(
                    f"network.{key}",
                    "set with network.emulation=none does nothing; allowed: empty, or "
                    "network.emulation: netem | transport",
                )
        return
    if cfg.transport.kind != "tcp":
        raise ConfigError(
            "transport.kind",
            f"{cfg.transport.kind} with network.emulation={net.emulation}; allowed: tcp (the "
            "emulated links carry TCP between network namespaces)",
        )
    from fabric.harness import hosts
    from fabric.harness.network import addresses

    in_sender = net.emulation == "transport" and not net.rate_mbit  # no namespace needed
    # one address per node: the layout the SSH launcher writes (fabric.harness.hosts.resolved)
    per_node = in_sender and len(cfg.cluster.hosts) == cfg.node_count
    if hosts.is_remote(cfg) and not in_sender:
        raise ConfigError(
            "network.emulation",
            f"{net.emulation} (rate_mbit {net.rate_mbit:g}) on SSH hosts; allowed there: "
            "transport with network.rate_mbit 0 (delay, jitter, loss and regions in each "
            "sending process; tc on the hosts' own interfaces is not the launcher's to set)",
        )
    if not (per_node or hosts.is_remote(cfg)) and list(cfg.cluster.hosts) not in (
        ["127.0.0.1"],
        addresses(cfg.node_count),
    ):
        raise ConfigError(
            "cluster.hosts",
            f"{list(cfg.cluster.hosts)} with network.emulation={net.emulation}; allowed: "
            "[127.0.0.1] (every node runs in its own namespace on this machine, and the runner "
            "writes each node's namespace address here)",
        )
    used = sorted({net.region_of(node) for node in range(cfg.node_count)})
    named = {r for x, y, _ in net.region_delay_ms for r in (x, y)}
    for region in sorted(named - set(net.regions)):
        raise ConfigError(
            "network.region_delay_ms",
            f"region {region!r} is in no node's network.regions; allowed: "
            f"{', '.join(sorted(set(net.regions))) or 'no entries without regions'}",
        )
    pairs = {frozenset((x, y)) for x, y, _ in net.region_delay_ms}
    for i, a in enumerate(used):
        for b in used[i + 1 :]:
            if frozenset((a, b)) not in pairs:
                raise ConfigError(
                    "network.region_delay_ms",
                    f"no delay between regions {a} and {b}; allowed: a mapping naming every "
                    f"pair of regions that have nodes, e.g. {{{a}: {{{b}: 40}}}}",
                )


def _check_remote(cfg: Config) -> None:
    """SSH hosts (an ``@`` entry in cluster.hosts, or cluster.hosts_file): every entry
    parses, no host twice, every key file exists, the placement fits (fabric.harness.hosts)."""
    from fabric.harness import hosts

    hosts.plan(cfg)  # raises ConfigError naming the entry
    if (cfg.crypto.keys == "files") != bool(cfg.crypto.key_dir):
        raise ConfigError(
            "crypto.key_dir",
            f"{cfg.crypto.key_dir!r} with crypto.keys={cfg.crypto.keys}; allowed: a folder of "
            'node-<id>.keys files with crypto.keys=files, else ""',
        )


def _check_mix(workload: WorkloadSection) -> None:
    if workload.mix != "custom":
        return
    total = sum(getattr(workload, f"{name}_proportion") for name in _PROPORTIONS)
    if abs(total - 1.0) > 1e-9:
        keys = " + ".join(f"{name}_proportion" for name in _PROPORTIONS)
        raise ConfigError(
            "workload.read_proportion",
            f"the custom mix proportions sum to {total!r}; allowed: workload.{keys} = 1",
        )


def _check_execution(cfg: Config) -> None:
    engines = cfg.execution.engine
    if len(engines) not in (1, cfg.cluster.replicas):
        raise ConfigError(
            "execution.engine",
            f"{len(engines)} engines for {cfg.cluster.replicas} replicas; allowed: one engine, "
            f"or a list of exactly cluster.replicas ({cfg.cluster.replicas}) engines",
        )
    wl = cfg.workload
    if wl.smallbank_hot_accounts > wl.smallbank_accounts:
        raise ConfigError(
            "workload.smallbank_hot_accounts",
            f"{wl.smallbank_hot_accounts} exceeds the accounts; allowed: "
            f"1..workload.smallbank_accounts ({wl.smallbank_accounts})",
        )
    total = sum(getattr(wl, f"smallbank_{name}") for name in _SMALLBANK_MIX)
    if wl.kind == "smallbank" and abs(total - 1.0) > 1e-9:
        keys = " + ".join(f"smallbank_{name}" for name in _SMALLBANK_MIX)
        raise ConfigError(
            "workload.smallbank_balance",
            f"the SmallBank mix shares sum to {total!r}; allowed: workload.{keys} = 1",
        )


def _check_failures(cfg: Config) -> None:
    n, f = cfg.cluster.replicas, cfg.f
    if len(cfg.failures) > f:
        raise ConfigError(
            _FAILURES,
            f"{len(cfg.failures)} failures with n={n}; allowed: at most f = (n-1)//3 = {f}",
        )
    seen: set[int] = set()
    for i, failure in enumerate(cfg.failures):
        if failure.replica >= n:
            raise ConfigError(
                f"{_FAILURES}[{i}].replica",
                f"{failure.replica} is not a replica; allowed: 0..{n - 1}",
            )
        if failure.replica in seen:
            raise ConfigError(
                f"{_FAILURES}[{i}].replica",
                f"{failure.replica} fails twice; allowed: each replica fails at most once",
            )
        seen.add(failure.replica)
        if failure.at_s >= cfg.run.duration_s:
            raise ConfigError(
                f"{_FAILURES}[{i}].at_s",
                f"{failure.at_s} is after the run; allowed: 0 <= at_s < run.duration_s "
                f"({cfg.run.duration_s})",
            )
        if failure.kind == "stall":
            end = failure.at_s + failure.duration_s
            if failure.duration_s <= 0 or end >= cfg.run.duration_s:
                raise ConfigError(
                    f"{_FAILURES}[{i}].duration_s",
                    f"{failure.duration_s} with kind stall at {failure.at_s} s; allowed: > 0 "
                    f"and at_s + duration_s < run.duration_s ({cfg.run.duration_s})",
                )
        elif failure.duration_s:
            raise ConfigError(
                f"{_FAILURES}[{i}].duration_s",
                f"{failure.duration_s} with kind {failure.kind}; allowed: only kind stall "
                f"has a duration (leave it out)",
            )
        if failure.kind == "restart":
            end = failure.at_s + failure.down_s
            if failure.down_s <= 0 or end >= cfg.run.duration_s:
                raise ConfigError(
                    f"{_FAILURES}[{i}].down_s",
                    f"{failure.down_s} with kind restart at {failure.at_s} s; allowed: > 0 "
                    f"and at_s + down_s < run.duration_s ({cfg.run.duration_s})",
                )
        elif failure.down_s:
            raise ConfigError(
                f"{_FAILURES}[{i}].down_s",
                f"{failure.down_s} with kind {failure.kind}; allowed: only kind restart "
                f"has a down time (leave it out)",
            )
        if failure.kind in BYZANTINE_KINDS:
            _check_byzantine(cfg, i, failure)
        elif failure.delay_ms:
            raise ConfigError(
                f"{_FAILURES}[{i}].delay_ms",
                f"{failure.delay_ms} with kind {failure.kind}; allowed: only kinds "
                f"{' and '.join(DELAY_KINDS)} take a delay (leave it out)",
            )


def _check_byzantine(cfg: Config, i: int, failure: Failure) -> None:
    """A Byzantine kind the protocol can play (its declared capability), with its delay."""
    key = f"{_FAILURES}[{i}]"
    need = BYZANTINE_KINDS[failure.kind]
    cls = registry.get(cfg.protocol.name)
    if need and not getattr(cls, need, ()):
        playable = [k for k, attr in BYZANTINE_KINDS.items() if not attr or getattr(cls, attr, ())]
        raise ConfigError(
            f"{key}.kind",
            f"{failure.kind} cannot be played by protocol {cfg.protocol.name} (it declares no "
            f"{need}); allowed for {cfg.protocol.name}: crash, silent, stall, restart, "
            f"{', '.join(playable)}",
        )
    if failure.kind == "bad_mac" and cfg.crypto.effective_link_mac == "none":
        raise ConfigError(
            f"{key}.kind",
            "bad_mac with no link MACs (crypto.link_mac none or crypto off); allowed: "
            "crypto.link_mac cmac-aes | hmac-sha256 with crypto enabled",
        )
    if failure.kind not in DELAY_KINDS:
        if failure.delay_ms:
            raise ConfigError(
                f"{key}.delay_ms",
                f"{failure.delay_ms} with kind {failure.kind}; allowed: only kinds "
                f"{' and '.join(DELAY_KINDS)} take a delay (leave it out)",
            )
        return
    timeout = cfg.protocol.view_change_timeout_ms
    if failure.delay_ms <= 0:
        raise ConfigError(
            f"{key}.delay_ms",
            f"{failure.delay_ms} with kind {failure.kind}; allowed: > 0 ms",
        )
    if failure.kind == "throttle" and failure.delay_ms >= timeout:
        raise ConfigError(
            f"{key}.delay_ms",
            f"{failure.delay_ms} with kind throttle; allowed: 0 < delay_ms < "
            f"protocol.view_change_timeout_ms ({timeout:g}): a throttling primary stays just "
            f"inside the view-change timeout",
        )


# --- reading, merging, overriding ------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read ({exc.strerror}); allowed: a YAML file"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None


@functools.lru_cache(maxsize=1)
def _default_data() -> dict[str, Any]:
    data = _read_yaml(DEFAULT_CONFIG_PATH)
    if not isinstance(data, dict):
        raise ConfigError(str(DEFAULT_CONFIG_PATH), "allowed: a mapping of sections")
    return data


def _defaults() -> dict[str, Any]:
    return copy.deepcopy(_default_data())


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_bare_key(key: str, schema: Mapping[str, Mapping[str, Any]]) -> str:
    """The section owning bare ``key``; an error if none or several do."""
    owners = [section for section, keys in schema.items() if key in keys]
    if len(owners) == 1:
        return owners[0]
    if owners:
        spelled = ", ".join(f"{section}.{key}" for section in owners)
        raise ConfigError(key, f"ambiguous key, it is in several sections; allowed: {spelled}")
    every = sorted({k for keys in schema.values() for k in keys})
    close = difflib.get_close_matches(key, every, n=1, cutoff=0.5)
    if close:
        spelled = " or ".join(f"{s}.{close[0]}" for s, keys in schema.items() if close[0] in keys)
        raise ConfigError(key, f"unknown key; did you mean {spelled}? allowed: section.key")
    raise ConfigError(
        key, f"unknown key; allowed: section.key with a section among {', '.join(schema)}"
    )


def _parse_override(text: str) -> tuple[str, str | None, Any]:
    """``section.key=value`` or ``key=value`` -> (section, key or None for a whole section, value)."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(str(text), "not an override; allowed: KEY=VALUE, e.g. batch_size=100")
    name, raw = text.split("=", 1)
    name = name.strip()
    parts = name.split(".")
    if len(parts) == 2 and all(parts):
        section, key = parts
    elif len(parts) == 1 and name in (*_SCHEMA, _FAILURES):
        section, key = name, None
    elif len(parts) == 1 and name:
        section, key = _resolve_bare_key(name, _SCHEMA), name
    else:
        raise ConfigError(name or text, "not a key; allowed: section.key or a bare key name")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(name, f"{raw!r} is not a YAML value ({exc})") from None
    if key is not None and _SCHEMA.get(section, {}).get(key) is str and not isinstance(value, str):
        value = raw.strip()  # a string knob takes the text as written (label=2024, label=)
    return section, key, value


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    if isinstance(overrides, str):
        raise TypeError("overrides is a sequence of 'key=value' strings, not one string")
    for text in overrides:
        section, key, value = _parse_override(text)
        if key is None:
            current = data.get(section)
            merge = isinstance(current, dict) and isinstance(value, Mapping)
            data[section] = _merge(current, value) if merge else value
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(
                f"{section}.{key}",
                f"{section} is a list; allowed: set it whole, e.g. "
                f"{_FAILURES}=[{{replica: 1, at_s: 10, kind: crash}}]",
            )
        target[key] = value
    return data


# --- public API ------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """default.yaml, then the YAML at ``path`` merged over it, then ``--set`` overrides."""
    data = _defaults()
    if path is not None:
        over = _read_yaml(Path(path))
        if over is None:
            over = {}
        if not isinstance(over, Mapping):
            raise ConfigError(
                str(path), f"top level is {type(over).__name__}; allowed: a mapping of sections"
            )
        data = _merge(data, over)
    return _build(_apply_overrides(data, overrides))


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """``data`` (section -> key -> value, possibly partial) merged over the defaults."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"{data!r} is not a mapping; allowed: a mapping of sections")
    return _build(_merge(_defaults(), data))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data (dicts, lists, scalars) that config_from_mapping turns back into ``cfg``."""
    out: dict[str, Any] = {}
    for name in _SECTIONS:
        section = getattr(cfg, name)
        out[name] = {key: _plain(getattr(section, key)) for key in _SCHEMA[name]}
        for key in _SCHEMA[name]:
            value = getattr(section, key)
            if f"{name}.{key}" in _ONE_OR_LIST and len(value) == 1:
                out[name][key] = value[0]  # written as the one name it was given
    out["network"]["region_delay_ms"] = _region_matrix(cfg.network.region_delay_ms)
    out[_FAILURES] = [
        {key: getattr(failure, key) for key in _FAILURE_SCHEMA} for failure in cfg.failures
    ]
    return out


def _region_matrix(delays: RegionDelays) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for a, b, ms in delays:
        out.setdefault(a, {})[b] = ms
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (sections in file order)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as YAML that ``load_config(path)`` reads back to an equal Config."""
    header = "# resolved config (python -m fabric config); rerun with --config this-file\n"
    Path(path).write_text(header + config_to_yaml(cfg), encoding="utf-8")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (read back by config_from_args)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="experiment YAML merged over config/default.yaml (partial or whole)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one knob, e.g. --set batching.batch_size=100 or --set batch_size=100 "
        "(repeatable; values are YAML: true, 100, [a,b])",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config named by ``--config`` and ``--set`` (see add_config_args)."""
    return load_config(getattr(args, "config", None), getattr(args, "set", None) or ())


def _derived_comment(cfg: Config) -> str:
    pc = cfg.protocol_config(0)
    return (
        f"# derived: f={cfg.f} checkpoint_period={cfg.checkpoint_period} "
        f"watermark_window={cfg.watermark_window} view_change_ticks={pc.view_change_ticks} "
        f"rcc_instances={pc.params['rcc_instances']} nodes={cfg.node_count} "
        f"signature={cfg.crypto.effective_client_signature} mac={cfg.crypto.effective_link_mac}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fabric config [--config F] [--set K=V ...]``: print the resolved YAML."""
    parser = argparse.ArgumentParser(
        prog="python -m fabric config",
        description="Load, validate and print the resolved config (default.yaml + FILE + --set).",
    )
    add_config_args(parser)
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(config_to_yaml(cfg) + _derived_comment(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
