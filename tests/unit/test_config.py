"""fabric.harness.config: defaults, overrides, experiment files, validation messages, round trips, CLI.

Validation tests assert on the dotted key and on the allowed values named in the message,
so a message that stops telling the user what to write fails here.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.harness import config as config_module
from fabric.harness.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    Failure,
    add_config_args,
    config_from_args,
    config_from_mapping,
    config_to_dict,
    dump_config,
    load_config,
    main,
)
from protocols import registry

# --- defaults ----------------------------------------------------------------------------


def test_defaults_load_and_match_the_yaml_file() -> None:
    cfg = load_config()
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert config_to_dict(cfg) == raw  # every knob of default.yaml reached the dataclasses
    assert cfg.cluster.replicas == raw["cluster"]["replicas"]
    assert cfg.cluster.hosts == tuple(raw["cluster"]["hosts"])
    assert cfg.failures == ()


def test_default_types_follow_the_dataclasses() -> None:
    cfg = load_config()
    assert isinstance(cfg.protocol.tick_ms, float)  # an int in YAML is accepted for a float
    assert isinstance(cfg.run.duration_s, float)
    assert isinstance(cfg.batching.batch_size, int)
    assert isinstance(cfg.crypto.enabled, bool)
    assert isinstance(cfg.cluster.hosts, tuple)


def test_default_path_is_independent_of_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_CONFIG_PATH.is_absolute() and DEFAULT_CONFIG_PATH.is_file()
    assert load_config().cluster.replicas >= 4


def test_config_is_frozen_and_hashable() -> None:
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.batching.batch_size = 7  # type: ignore[misc]
    assert hash(cfg) == hash(load_config())


# --- derived values -------------------------------------------------------------------------


def test_derived_values() -> None:
    cfg = load_config(overrides=["cluster.replicas=7", "clients=3", "batch_size=300"])
    assert cfg.n == 7
    assert cfg.f == 2
    assert cfg.node_count == 10
    assert list(cfg.replica_ids) == list(range(7))
    assert list(cfg.client_ids) == [7, 8, 9]
    assert cfg.checkpoint_period == 10_000 // 300
    assert cfg.watermark_window == 2 * (10_000 // 300)
    assert cfg.node_host(8) == "127.0.0.1"
    with pytest.raises(ValueError):
        cfg.node_host(10)


def test_checkpoint_period_is_at_least_one() -> None:
    cfg = load_config(overrides=["batch_size=1000", "txn_per_chkpt=10"])
    assert cfg.checkpoint_period == 1
    assert cfg.watermark_window == 2


def test_explicit_watermark_window_is_kept() -> None:
    cfg = load_config(overrides=["protocol.watermark_window=500"])
    assert cfg.watermark_window == 500


def test_hosts_round_robin_over_replicas_then_clients() -> None:
    cfg = load_config(overrides=["hosts=[a, b, c]", "clients=2"])
    assert [cfg.node_host(i) for i in range(cfg.node_count)] == ["a", "b", "c", "a", "b", "c"]


def test_protocol_config() -> None:
    cfg = load_config(overrides=["tick_ms=3", "view_change_timeout_ms=10", "rcc_noop_timeout_ms=7"])
    pc = cfg.protocol_config(2)
    assert pc.replica_id == 2 and pc.n == cfg.n
    assert pc.view_change_ticks == 4  # ceil(10 / 3)
    assert pc.checkpoint_period == cfg.checkpoint_period
    assert pc.watermark_window == cfg.watermark_window
    assert pc.max_buffered == cfg.protocol.max_buffered_msgs
    assert pc.params["rcc_noop_ticks"] == 3  # ceil(7 / 3)
    assert pc.params["tick_ms"] == 3.0
    assert pc.params["rcc_instances"] == cfg.n  # 0 resolves to n
    assert pc.params["poe_certificate"] == cfg.protocol.poe_certificate
    assert pc.params["rcc_permute_rounds"] is cfg.protocol.rcc_permute_rounds
    assert "name" not in pc.params and "max_buffered_msgs" not in pc.params


def test_protocol_config_ticks_survive_float_noise() -> None:
    cfg = load_config(overrides=["tick_ms=0.3", "view_change_timeout_ms=2.1"])
    assert 2.1 / 0.3 > 7  # float noise: 7.000000000000001
    assert cfg.protocol_config(0).view_change_ticks == 7


def test_rcc_instances_kept_when_set() -> None:
    cfg = load_config(overrides=["protocol.rcc_instances=2"])
    assert cfg.protocol_config(0).params["rcc_instances"] == 2


def test_crypto_disabled_turns_off_signatures_and_macs() -> None:
    on = load_config(overrides=["link_mac=hmac-sha256"])
    assert on.crypto.effective_client_signature == "ed25519"
    assert on.crypto.effective_link_mac == "hmac-sha256"
    off = on.with_overrides(["crypto.enabled=false"])
    assert off.crypto.effective_client_signature == "none"
    assert off.crypto.effective_link_mac == "none"
    # the configured schemes are kept, so turning crypto back on restores them
    assert off.with_overrides(["enabled=true"]).crypto.effective_link_mac == "hmac-sha256"


# --- overrides ------------------------------------------------------------------------------


def test_dotted_and_bare_overrides_reach_the_dataclass() -> None:
    cfg = load_config(
        overrides=[
            "batching.batch_size=250",
            "max_txn_in_flight=5000",
            "crypto.enabled=false",
            "hosts=[10.0.0.1, 10.0.0.2]",
            "protocol.name=null",
            "duration_s=60",
        ]
    )
    assert cfg.batching.batch_size == 250
    assert cfg.client.max_txn_in_flight == 5000
    assert cfg.crypto.enabled is False
    assert cfg.cluster.hosts == ("10.0.0.1", "10.0.0.2")
    assert cfg.protocol.name == "null"
    assert cfg.run.duration_s == 60.0 and isinstance(cfg.run.duration_s, float)
    assert cfg.txns_per_request == 250  # client.txns_per_request 0: one request = one batch


def test_txns_per_request_is_its_own_knob() -> None:
    cfg = load_config(overrides=["batch_size=100", "client.txns_per_request=10"])
    assert cfg.txns_per_request == 10 and cfg.batching.batch_size == 100


def test_string_knob_takes_the_text_as_written() -> None:
    cfg = load_config(overrides=["label=2024", "cluster_secret=yes"])
    assert cfg.run.label == "2024"  # YAML would read an int
    assert cfg.crypto.cluster_secret == "yes"  # YAML 1.1 would read true
    assert load_config(overrides=["run.label="]).run.label == ""


def test_later_override_wins() -> None:
    assert load_config(overrides=["batch_size=10", "batch_size=20"]).batching.batch_size == 20


def test_failures_set_whole_from_the_command_line() -> None:
    cfg = load_config(overrides=["failures=[{replica: 2, at_s: 10, kind: silent}]"])
    assert cfg.failures == (Failure(replica=2, at_s=10.0, kind="silent"),)


def test_a_whole_section_merges_from_the_command_line() -> None:
    cfg = load_config(overrides=["cluster={replicas: 7}"])
    assert cfg.cluster.replicas == 7
    assert cfg.cluster.clients == load_config().cluster.clients


def test_with_overrides_returns_a_new_config() -> None:
    base = load_config()
    changed = base.with_overrides(["batch_size=50"])
    assert changed.batching.batch_size == 50
    assert base.batching.batch_size == load_config().batching.batch_size
    assert changed.with_overrides([]) == changed


def test_overrides_must_be_a_sequence_of_strings() -> None:
    with pytest.raises(TypeError):
        load_config(overrides="batch_size=5")


def test_ambiguous_bare_key_names_the_candidates() -> None:
    # no key of default.yaml is in two sections today, so resolve against a schema that has one
    schema = {"replica": {"threads": int}, "client": {"threads": int, "mode": str}}
    with pytest.raises(ConfigError) as err:
        config_module._resolve_bare_key("threads", schema)
    assert err.value.key == "threads"
    assert "replica.threads" in str(err.value) and "client.threads" in str(err.value)
    assert config_module._resolve_bare_key("mode", schema) == "client"


def test_every_bare_key_of_the_real_schema_resolves() -> None:
    # a bare key in one section resolves to it; one in several (issue 11's execution.threads
    # beside client.threads, workload.kind beside transport.kind) is an error naming them all
    schema = config_module._SCHEMA
    for section, keys in schema.items():
        for key in keys:
            owners = [s for s, k in schema.items() if key in k]
            if len(owners) == 1:
                assert config_module._resolve_bare_key(key, schema) == section
                continue
            with pytest.raises(ConfigError) as err:
                config_module._resolve_bare_key(key, schema)
            for owner in owners:
                assert f"{owner}.{key}" in str(err.value)
    assert sorted(
        k
        for k in {k for keys in schema.values() for k in keys}
        if sum(k in keys for keys in schema.values()) > 1
    ) == ["kind", "threads"]


@pytest.mark.parametrize(
    ("override", "key", "fragments"),
    [
        ("batch_size", "batch_size", ["KEY=VALUE"]),
        ("a.b.c=1", "a.b.c", ["section.key"]),
        ("=5", "=5", ["section.key"]),
        ("batch_sise=3", "batch_sise", ["batching.batch_size"]),
        ("frobnicate=3", "frobnicate", ["section.key", "cluster"]),
        ("batching.batch_sise=3", "batching.batch_sise", ["batch_size", "batch_timeout_ms"]),
        ("batchin.batch_size=3", "batchin", ["batching"]),
        ("failures.kind=crash", "failures.kind", ["failures=["]),
        ("batch_size=[1", "batch_size", ["YAML"]),
    ],
)
def test_malformed_overrides(override: str, key: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert err.value.key == key
    for fragment in fragments:
        assert fragment in str(err.value)


# --- validation: one specific message per kind of bad input ------------------------------


def _error(overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    return err.value


@pytest.mark.parametrize(
    ("overrides", "key", "fragments"),
    [
        # types: bool is not an int, a string is not a number, a float is not an int
        (["batch_size=true"], "batching.batch_size", ["an integer", "1..100000"]),
        (["batch_size=ten"], "batching.batch_size", ["an integer"]),
        (["batch_size=100.0"], "batching.batch_size", ["an integer"]),
        (["run.duration_s=soon"], "run.duration_s", ["a number"]),
        (["run.duration_s=1e3"], "run.duration_s", ["a number", "1000"]),
        (["run.duration_s=.inf"], "run.duration_s", ["a number"]),
        (["crypto.enabled=1"], "crypto.enabled", ["true or false"]),
        (["cluster.hosts=localhost"], "cluster.hosts", ["a list of strings"]),
        (["cluster.hosts=[1, 2]"], "cluster.hosts", ["a list of strings"]),
        (["cluster.hosts=[]"], "cluster.hosts", ["non-empty"]),
        # ranges
        (["replicas=3"], "cluster.replicas", ["4..1024", "3f+1"]),
        (["clients=0"], "cluster.clients", ["1..1024"]),
        (["batch_size=0"], "batching.batch_size", ["1..100000"]),
        (["batch_size=100001"], "batching.batch_size", ["1..100000"]),
        (["replica.worker_threads=0"], "replica.worker_threads", ["1..64"]),
        (["replica.input_threads=65"], "replica.input_threads", ["1..64"]),
        (["client.threads=65"], "client.threads", ["1..64"]),
        (["execute_threads=2"], "replica.execute_threads", ["exactly 1"]),
        (["checkpoint_threads=0"], "replica.checkpoint_threads", ["exactly 1"]),
        (["ring_capacity=1000"], "replica.ring_capacity", ["power of two", "64"]),
        (["ring_capacity=32"], "replica.ring_capacity", ["power of two", "64"]),
        (["max_retries=-1"], "client.max_retries", ["0..100"]),
        (["tick_ms=0"], "protocol.tick_ms", ["> 0"]),
        (["batch_timeout_ms=-1"], "batching.batch_timeout_ms", ["> 0"]),
        (["request_timeout_ms=0"], "client.request_timeout_ms", ["> 0"]),
        (["duration_s=0"], "run.duration_s", ["> 0"]),
        (["zipf_theta=1"], "workload.zipf_theta", ["strictly between 0 and 1"]),
        (["zipf_theta=0"], "workload.zipf_theta", ["strictly between 0 and 1"]),
        (["base_port=80"], "transport.base_port", ["1024..65535"]),
        (["read_proportion=1.5"], "workload.read_proportion", ["0..1"]),
        # enums
        (["client.mode=half"], "client.mode", ["closed | open"]),
        (["client_signature=rsa"], "crypto.client_signature", ["ed25519 | none"]),
        (["link_mac=md5"], "crypto.link_mac", ["cmac-aes | hmac-sha256 | none"]),
        (["key_chooser=normal"], "workload.key_chooser", ["uniform | zipfian | latest"]),
        (["mix=g"], "workload.mix", ["a | b | c | d | e | f | custom"]),
        (["transport.kind=udp"], "transport.kind", ["tcp | ipc"]),
        (["poe_certificate=both"], "protocol.poe_certificate", ["signatures | macs"]),
        (["ledger.storage=rocksdb"], "ledger.storage", ["memory | sqlite | lmdb"]),
        (["ledger.sync=always"], "ledger.sync", ["none | batch | every_block"]),
        (["max_blocks_per_txn=0"], "ledger.max_blocks_per_txn", ["1..4096"]),
        (["max_file_mb=0"], "ledger.max_file_mb", ["1..1048576"]),
        (
            ["persist_ring_blocks=100"],
            "ledger.persist_ring_blocks",
            ["a power of two in 64..16777216"],
        ),
        # relations between keys
        (["max_txn_in_flight=50"], "client.max_txn_in_flight", ["batching.batch_size (100)"]),
        (
            ["txns_per_request=20", "max_txn_in_flight=10"],
            "client.max_txn_in_flight",
            ["client.txns_per_request (20)"],
        ),
        (
            ["txns_per_request=101"],
            "client.txns_per_request",
            ["0 (= batching.batch_size)", "1..100"],
        ),
        (["txns_per_request=-1"], "client.txns_per_request", ["0..100000"]),
        (
            ["batch_size=10000", "txns_per_request=2"],
            "client.txns_per_request",
            ["MAX_BATCH_REQUESTS", "allowed: 0 or 3..10000"],
        ),
        (["mode=open", "rate_txn_s=0"], "client.rate_txn_s", ["> 0"]),
        (["warmup_s=30", "duration_s=30"], "run.warmup_s", ["< run.duration_s (30.0)"]),
        (["watermark_window=100"], "protocol.watermark_window", [">= 2 * checkpoint", "200"]),
        (["rcc_instances=5"], "protocol.rcc_instances", ["1..4"]),
        (["base_port=65500"], "transport.base_port", ["1024..65496", "8 ports each"]),
        (["value_size=200000"], "transport.max_frame_bytes", ["batching.batch_size * workload"]),
        (["mix=custom", "read_proportion=0.7"], "workload.read_proportion", ["= 1", "sum to 1.2"]),
        (["mix=custom", "rmw_proportion=0.000001"], "workload.read_proportion", ["sum to 1.00000"]),
    ],
)
def test_bad_value_names_key_and_allowed(
    overrides: list[str], key: str, fragments: list[str]
) -> None:
    err = _error(overrides)
    assert err.key == key
    message = str(err)
    assert message.startswith(f"{key}: ")
    for fragment in fragments:
        assert fragment in message, message


def test_bad_protocol_name_lists_the_registry() -> None:
    err = _error(["protocol.name=raft"])
    assert err.key == "protocol.name"
    assert "'raft'" in str(err)
    for name in registry.available():
        assert name in str(err)


def test_custom_mix_summing_to_one_is_accepted() -> None:
    cfg = load_config(
        overrides=["mix=custom", "read_proportion=0.1", "update_proportion=0.2"]
        + ["insert_proportion=0.3", "scan_proportion=0.3", "rmw_proportion=0.1"]
    )
    assert cfg.workload.mix == "custom"


def test_proportions_need_not_sum_to_one_unless_custom() -> None:
    assert load_config(overrides=["read_proportion=0.7"]).workload.read_proportion == 0.7


def test_int_accepted_for_float() -> None:
    assert load_config(overrides=["zipf_theta=0.5", "tick_ms=5"]).protocol.tick_ms == 5.0


# --- failures --------------------------------------------------------------------------------


def _failures(entries: str, *extra: str) -> list[str]:
    return [f"failures={entries}", *extra]


@pytest.mark.parametrize(
    ("overrides", "key", "fragments"),
    [
        (_failures("[{replica: 4, at_s: 1, kind: crash}]"), "failures[0].replica", ["0..3"]),
        (
            _failures("[{replica: 1, at_s: 1, kind: crash}, {replica: 2, at_s: 1, kind: crash}]"),
            "failures",
            ["at most f", "= 1"],
        ),
        (
            _failures(
                "[{replica: 1, at_s: 1, kind: crash}, {replica: 1, at_s: 2, kind: silent}]",
                "replicas=7",
            ),
            "failures[1].replica",
            ["at most once"],
        ),
        (
            _failures("[{replica: 1, at_s: 31, kind: crash}]"),
            "failures[0].at_s",
            ["run.duration_s"],
        ),
        (_failures("[{replica: 1, at_s: -1, kind: crash}]"), "failures[0].at_s", ["0.."]),
        (
            _failures("[{replica: 1, at_s: 1, kind: byzantine}]"),
            "failures[0].kind",
            ["crash | silent"],
        ),
        (_failures("[{replcia: 1, at_s: 1, kind: crash}]"), "failures[0].replcia", ["replica"]),
        (_failures("[{replica: 1, kind: crash}]"), "failures[0].at_s", ["missing", "a number"]),
        (_failures("[{replica: true, at_s: 1, kind: crash}]"), "failures[0].replica", ["integer"]),
        (_failures("crash"), "failures", ["a list"]),
        (_failures("[crash]"), "failures[0]", ["a mapping"]),
    ],
)
def test_bad_failures(overrides: list[str], key: str, fragments: list[str]) -> None:
    err = _error(overrides)
    assert err.key == key
    for fragment in fragments:
        assert fragment in str(err), str(err)


def test_f_failures_are_accepted() -> None:
    cfg = load_config(
        overrides=_failures(
            "[{replica: 0, at_s: 10, kind: crash}, {replica: 5, at_s: 0, kind: silent}]",
            "replicas=7",
        )
    )
    assert [(x.replica, x.kind) for x in cfg.failures] == [(0, "crash"), (5, "silent")]


def test_restart_takes_a_down_time() -> None:
    cfg = load_config(overrides=_failures("[{replica: 2, at_s: 5, kind: restart, down_s: 3}]"))
    assert cfg.failures == (Failure(replica=2, at_s=5.0, kind="restart", down_s=3.0),)
    # the resolved config (config.yaml of a run) round-trips the down time
    assert config_from_mapping(config_to_dict(cfg)).failures == cfg.failures


@pytest.mark.parametrize(
    ("entry", "key", "fragments"),
    [
        ("{replica: 1, at_s: 5, kind: restart}", "failures[0].down_s", ["> 0"]),
        ("{replica: 1, at_s: 5, kind: restart, down_s: 0}", "failures[0].down_s", ["> 0"]),
        ("{replica: 1, at_s: 20, kind: restart, down_s: 10}", "failures[0].down_s", ["< run"]),
        ("{replica: 1, at_s: 5, kind: restart, down_s: -1}", "failures[0].down_s", ["0.."]),
        ("{replica: 1, at_s: 5, kind: crash, down_s: 2}", "failures[0].down_s", ["restart"]),
        (
            "{replica: 1, at_s: 5, kind: restart, down_s: 2, duration_s: 1}",
            "failures[0].duration_s",
            ["stall"],
        ),
    ],
)
def test_bad_restart(entry: str, key: str, fragments: list[str]) -> None:
    err = _error(_failures(f"[{entry}]"))
    assert err.key == key
    for fragment in fragments:
        assert fragment in str(err), str(err)


# Byzantine kinds (fabric/runtime/byzantine.py): refused before anything starts, by key
@pytest.mark.parametrize(
    ("overrides", "key", "fragments"),
    [
        (  # the null protocol declares no proposals and no votes
            _failures("[{replica: 0, at_s: 1, kind: equivocate}]", "protocol.name=null"),
            "failures[0].kind",
            ["equivocate cannot be played by protocol null", "proposal_messages", "bad_mac, slow"],
        ),
        (
            _failures("[{replica: 0, at_s: 1, kind: wrong_digest}]", "protocol.name=null"),
            "failures[0].kind",
            ["vote_messages"],
        ),
        (
            _failures(
                "[{replica: 0, at_s: 1, kind: throttle, delay_ms: 50}]", "protocol.name=null"
            ),
            "failures[0].kind",
            ["throttle cannot be played"],
        ),
        (
            _failures(
                "[{replica: 0, at_s: 1, kind: throttle, delay_ms: 2000}]",
                "protocol.view_change_timeout_ms=2000",
            ),
            "failures[0].delay_ms",
            ["protocol.view_change_timeout_ms (2000)"],
        ),
        (
            _failures("[{replica: 0, at_s: 1, kind: throttle}]"),
            "failures[0].delay_ms",
            ["> 0 ms"],
        ),
        (_failures("[{replica: 2, at_s: 1, kind: slow}]"), "failures[0].delay_ms", ["> 0 ms"]),
        (
            _failures("[{replica: 2, at_s: 1, kind: crash, delay_ms: 5}]"),
            "failures[0].delay_ms",
            ["throttle and slow"],
        ),
        (
            _failures("[{replica: 2, at_s: 1, kind: equivocate, delay_ms: 5}]"),
            "failures[0].delay_ms",
            ["throttle and slow"],
        ),
        (
            _failures("[{replica: 2, at_s: 1, kind: bad_mac}]", "crypto.link_mac=none"),
            "failures[0].kind",
            ["crypto.link_mac"],
        ),
        (
            _failures("[{replica: 2, at_s: 1, kind: bad_mac}]", "crypto.enabled=false"),
            "failures[0].kind",
            ["crypto.link_mac"],
        ),
        (
            _failures(
                "[{replica: 0, at_s: 1, kind: equivocate}, {replica: 1, at_s: 1, kind: slow,"
                " delay_ms: 5}]"
            ),
            "failures",
            ["at most f", "= 1"],
        ),
        (
            _failures("[{replica: 1, at_s: 1, kind: lie}]"),
            "failures[0].kind",
            ["equivocate | bad_mac | wrong_digest | throttle | slow"],
        ),
        (
            _failures("[{replica: 1, at_s: 1, kind: slow, delay_ms: 70000}]"),
            "failures[0].delay_ms",
            ["0..60000"],
        ),
    ],
)
def test_bad_byzantine_failures(overrides: list[str], key: str, fragments: list[str]) -> None:
    err = _error(overrides)
    assert err.key == key
    for fragment in fragments:
        assert fragment in str(err), str(err)


def test_a_restart_counts_against_f() -> None:
    err = _error(
        _failures(
            "[{replica: 1, at_s: 5, kind: restart, down_s: 2}, {replica: 2, at_s: 1, kind: crash}]"
        )
    )
    assert err.key == "failures" and "at most f" in str(err)


def test_pipeline_knob() -> None:
    assert load_config().execution.pipeline == "decoupled"
    assert load_config(overrides=["execution.pipeline=inline"]).execution.pipeline == "inline"
    err = _error(["execution.pipeline=monolithic"])
    assert err.key == "execution.pipeline"
    assert "decoupled" in str(err) and "inline" in str(err)


@pytest.mark.parametrize("protocol", ["pbft", "poe", "rcc"])
def test_every_byzantine_kind_is_accepted_where_the_protocol_can_play_it(protocol: str) -> None:
    for kind, delay in [
        ("equivocate", ""),
        ("bad_mac", ""),
        ("wrong_digest", ""),
        ("throttle", ", delay_ms: 500"),
        ("slow", ", delay_ms: 20"),
    ]:
        cfg = load_config(
            overrides=_failures(
                f"[{{replica: 0, at_s: 1, kind: {kind}{delay}}}]", f"protocol.name={protocol}"
            )
        )
        assert cfg.failures[0].kind == kind
    null = load_config(
        overrides=_failures(
            "[{replica: 0, at_s: 1, kind: slow, delay_ms: 5}]", "protocol.name=null"
        )
    )
    assert null.failures[0].delay_ms == 5.0


# --- experiment files ------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_partial_experiment_file_merges_over_defaults(tmp_path: Path) -> None:
    exp = _write(
        tmp_path / "exp.yaml",
        "cluster: {replicas: 7}\nbatching:\n  batch_size: 50\n"
        "failures:\n  - {replica: 3, at_s: 12.5, kind: crash}\n",
    )
    cfg = load_config(exp)
    default = load_config()
    assert cfg.cluster.replicas == 7 and cfg.batching.batch_size == 50
    assert cfg.cluster.clients == default.cluster.clients  # untouched keys of a named section
    assert cfg.batching.batch_timeout_ms == default.batching.batch_timeout_ms
    assert cfg.workload == default.workload  # unnamed sections
    assert cfg.failures == (Failure(3, 12.5, "crash"),)


def test_set_overrides_the_file(tmp_path: Path) -> None:
    exp = _write(tmp_path / "exp.yaml", "batching: {batch_size: 50}\n")
    assert load_config(str(exp), ["batch_size=60"]).batching.batch_size == 60


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path / "empty.yaml", "")) == load_config()


def test_unknown_key_in_file(tmp_path: Path) -> None:
    exp = _write(tmp_path / "exp.yaml", "workload:\n  zipf_teta: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(exp)
    assert err.value.key == "workload.zipf_teta"
    assert "did you mean zipf_theta?" in str(err.value)


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    exp = _write(tmp_path / "exp.yaml", "batching: 100\n")
    with pytest.raises(ConfigError) as err:
        load_config(exp)
    assert err.value.key == "batching"
    assert "batch_size" in str(err.value)


def test_quoted_number_in_file_is_a_string(tmp_path: Path) -> None:
    exp = _write(tmp_path / "exp.yaml", "batching: {batch_size: '100'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(exp)
    assert err.value.key == "batching.batch_size"
    assert "quoted" in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("[1, 2]\n", "a mapping of sections"), ("cluster: [\n", "not valid YAML")],
)
def test_bad_files(tmp_path: Path, text: str, fragment: str) -> None:
    exp = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(exp)
    assert err.value.key == str(exp)
    assert fragment in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "absent.yaml")
    assert err.value.key == str(tmp_path / "absent.yaml")
    assert "cannot read" in str(err.value)


# --- mappings and round trips ------------------------------------------------------------------


def test_config_from_mapping_merges_over_defaults() -> None:
    cfg = config_from_mapping({"batching": {"batch_size": 400}, "protocol": {"name": "null"}})
    assert cfg.batching.batch_size == 400 and cfg.protocol.name == "null"
    assert cfg.cluster == load_config().cluster
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"batching": {"batch_size": 0}})
    assert err.value.key == "batching.batch_size"
    with pytest.raises(ConfigError):
        config_from_mapping([("batching", {})])  # type: ignore[arg-type]


def test_dict_round_trip() -> None:
    cfg = load_config(overrides=["replicas=7", "failures=[{replica: 1, at_s: 2, kind: crash}]"])
    assert config_from_mapping(config_to_dict(cfg)) == cfg


def test_dump_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            "replicas=10",
            "hosts=[h1, h2]",
            "zipf_theta=0.123456789",
            "tick_ms=2.5",
            "label=run 1: a/b",
            "cluster_secret=no",
            "mix=custom",
            "read_proportion=0.1",
            "update_proportion=0.9",
            "failures=[{replica: 9, at_s: 3.25, kind: silent}, {replica: 0, at_s: 0, kind: crash}]",
        ]
    )
    path = tmp_path / "config.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(4, 64),
    batch_size=st.integers(1, 2000),
    theta=st.floats(1e-9, 1 - 1e-9),
    duration=st.floats(0.001, 1000),
    label=st.text(max_size=20),
    enabled=st.booleans(),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    replicas: int,
    batch_size: int,
    theta: float,
    duration: float,
    label: str,
    enabled: bool,
) -> None:
    cfg = config_from_mapping(
        {
            "cluster": {"replicas": replicas},
            "batching": {"batch_size": batch_size},
            "client": {"max_txn_in_flight": 2 * batch_size},
            "workload": {"zipf_theta": theta},
            "run": {"duration_s": duration, "warmup_s": 0, "label": label},
            "crypto": {"enabled": enabled},
        }
    )
    path = tmp_path_factory.mktemp("rt") / "config.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg


# --- argparse and the command ------------------------------------------------------------------


def test_add_config_args_and_config_from_args(tmp_path: Path) -> None:
    exp = _write(tmp_path / "exp.yaml", "batching: {batch_size: 50}\n")
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--config", str(exp), "--set", "replicas=7", "--set", "seed=9"])
    cfg = config_from_args(args)
    assert (cfg.batching.batch_size, cfg.cluster.replicas, cfg.run.seed) == (50, 7, 9)
    assert config_from_args(parser.parse_args([])) == load_config()


def test_main_prints_yaml_that_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--set", "batch_size=250", "--set", "protocol.name=null"]) == 0
    out = capsys.readouterr().out
    path = _write(tmp_path / "printed.yaml", out)
    assert load_config(path) == load_config(overrides=["batch_size=250", "protocol.name=null"])
    assert "# derived: f=1" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--set", "batch_size=0"], "batching.batch_size"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--config", "/nonexistent/exp.yaml"], "/nonexistent/exp.yaml"),
    ],
)
def test_main_reports_config_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert fragment in captured.err


def test_main_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--set" in capsys.readouterr().out
    assert main(["--bogus"]) == 2


def test_fabric_dispatcher_runs_config(capsys: pytest.CaptureFixture[str]) -> None:
    from fabric.__main__ import main as fabric_main

    assert fabric_main(["config", "--set", "replicas=2"]) == 2
    assert "cluster.replicas" in capsys.readouterr().err
    assert fabric_main(["config"]) == 0


# --- internals that other tests rely on ----------------------------------------------------


def test_rules_name_only_real_keys() -> None:
    real = {f"{s}.{k}" for s, keys in config_module._SCHEMA.items() for k in keys}
    real |= {f"failures.{k}" for k in config_module._FAILURE_SCHEMA}
    assert set(config_module._RULES) <= real  # a renamed key must not silently lose its rule


def test_config_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ConfigError("batching.batch_size", "0 is not allowed")))
    assert err.key == "batching.batch_size" and str(err) == "batching.batch_size: 0 is not allowed"


def test_config_type_is_exported() -> None:
    assert isinstance(load_config(), Config)


def test_hotstuff_batches_per_block_is_validated_and_reaches_the_protocol() -> None:
    """protocol.hotstuff_batches_per_block: an integer 1..4096 (default.yaml), refused
    naming the key otherwise; the value reaches HotStuff's typed params."""
    err = _error(["protocol.hotstuff_batches_per_block=0"])
    assert err.key == "protocol.hotstuff_batches_per_block"
    cfg = load_config(overrides=["protocol.name=hotstuff", "protocol.hotstuff_batches_per_block=8"])
    params = cfg.protocol_config(0).params
    assert params["hotstuff_batches_per_block"] == 8
    from protocols.hotstuff.params import HotStuffParams

    assert HotStuffParams.from_params(params).batches_per_block == 8
