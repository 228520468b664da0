"""The ``network`` section (fabric.harness.config) and the per-link numbers and tc commands
fabric.harness.network derives from it: every bad value is refused naming its key, regions
are assigned round-robin, the delay matrix is symmetric, the probe names what is missing.
No namespace is created here (tests/integration/test_netns.py does that)."""

from __future__ import annotations

import pytest

from fabric.harness import network
from fabric.harness.config import ConfigError, config_from_mapping, config_to_dict, load_config

GEO = [
    "network.emulation=transport",
    "network.delay_ms=2",
    "network.regions=[us, eu, asia]",
    "network.region_delay_ms={us: {eu: 40, asia: 80}, asia: {eu: 70}}",
]


def test_regions_round_robin_and_the_matrix_is_symmetric() -> None:
    cfg = load_config(None, GEO)
    net = cfg.network
    assert [net.region_of(j) for j in range(cfg.node_count)] == ["us", "eu", "asia", "us", "eu"]
    assert net.link_delay_ms(0, 3) == 2  # same region
    assert net.link_delay_ms(0, 1) == net.link_delay_ms(1, 0) == 40
    assert net.link_delay_ms(2, 1) == net.link_delay_ms(1, 2) == 70
    shapes = network.link_shapes(cfg, 0)
    assert set(shapes) == {1, 2, 3, 4}
    assert shapes[2].delay_s == pytest.approx(0.08)
    # the resolved config reads back to the same Config
    assert config_from_mapping(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["network.emulation=wan"], "network.emulation", "none | netem | transport"),
        (["network.delay_ms=5"], "network.delay_ms", "does nothing"),
        (["network.regions=[a, b]"], "network.regions", "does nothing"),
        (["network.emulation=netem", "network.delay_ms=-1"], "network.delay_ms", "0..10000"),
        (["network.emulation=netem", "network.jitter_ms=20000"], "network.jitter_ms", "0..10000"),
        (["network.emulation=netem", "network.loss_pct=51"], "network.loss_pct", "0..50"),
        (["network.emulation=netem", "network.rate_mbit=-3"], "network.rate_mbit", "0 = no cap"),
        (
            ["network.emulation=transport", "network.regions=[a, b]"],
            "network.region_delay_ms",
            "no delay between regions a and b",
        ),
        (
            ["network.emulation=transport", "network.region_delay_ms={a: {b: 5}}"],
            "network.region_delay_ms",
            "in no node's network.regions",
        ),
        (
            [
                "network.emulation=transport",
                "network.regions=[a, b]",
                "network.region_delay_ms={a: {b: 5}, b: {a: 6}}",
            ],
            "network.region_delay_ms.b.a",
            "one delay per pair",
        ),
        (
            [
                "network.emulation=transport",
                "network.regions=[a, b]",
                "network.region_delay_ms={a: {a: 5}}",
            ],
            "network.region_delay_ms.a.a",
            "distinct regions",
        ),
        (
            [
                "network.emulation=transport",
                "network.regions=[a, b]",
                "network.region_delay_ms={a: {b: 20000}}",
            ],
            "network.region_delay_ms",
            "0..10000",
        ),
        (["network.emulation=transport", "transport.kind=ipc"], "transport.kind", "allowed: tcp"),
        (
            ["network.emulation=transport", "cluster.hosts=[10.0.0.1]"],
            "cluster.hosts",
            "[127.0.0.1]",
        ),
    ],
)
def test_bad_network_values_are_refused_by_name(
    overrides: list[str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert err.value.key == key
    assert fragment in str(err.value)


def test_the_namespace_addresses_are_accepted_as_hosts() -> None:
    cfg = load_config(None, ["network.emulation=transport"])
    hosts = network.addresses(cfg.node_count)
    assert hosts[:2] == ["10.77.0.1", "10.77.0.2"]
    moved = cfg.with_overrides([f"cluster.hosts=[{', '.join(hosts)}]"])
    assert [moved.node_host(j) for j in range(cfg.node_count)] == hosts


def test_without_emulation_the_sender_is_untouched_and_with_it_delayed() -> None:
    sender = object()
    assert network.shaped_sender(load_config(), sender, 0) is sender
    rate_only = load_config(None, ["network.emulation=transport", "network.rate_mbit=10"])
    assert network.shaped_sender(rate_only, sender, 0) is sender  # tbf does it all


def test_tc_commands_per_mode() -> None:
    transport = load_config(None, ["network.emulation=transport", "network.rate_mbit=50"])
    net = network.Network(transport.node_count, transport.network)
    (tbf,) = net.qdisc_commands(0)
    assert tbf[:3] == ["tc", "-n", net.namespace(0)] and "tbf" in tbf and "50mbit" in tbf
    netem = load_config(
        None,
        [
            "network.emulation=netem",
            "network.delay_ms=10",
            "network.jitter_ms=1",
            "network.loss_pct=0.5",
        ],
    )
    (qdisc,) = network.Network(netem.node_count, netem.network).qdisc_commands(1)
    assert qdisc[qdisc.index("netem") :] == [
        "netem",
        "limit",
        str(network.NETEM_LIMIT_PACKETS),
        "delay",
        "10ms",
        "1ms",
        "loss",
        "0.5%",
    ]
    geo = load_config(None, [*GEO[1:], "network.emulation=netem"])
    commands = network.Network(geo.node_count, geo.network).qdisc_commands(0)
    filters = [c for c in commands if "filter" in c]
    assert len(filters) == geo.node_count - 1  # one per other node, by destination address
    delays = [c[c.index("delay") + 1] for c in commands if "netem" in c]
    assert sorted(delays) == ["2ms", "40ms", "80ms"]


def test_the_probe_names_root_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    network._probe.cache_clear()
    monkeypatch.setattr(network.os, "geteuid", lambda: 1000)
    try:
        missing = network.probe("transport")
        assert missing and missing[0].startswith("root (this runs as uid 1000")
        cfg = load_config(None, ["network.emulation=netem"])
        with pytest.raises(network.NetworkUnavailable, match="network.emulation=netem.*root"):
            network.check(cfg)
    finally:
        network._probe.cache_clear()
    assert network.probe("none") == []


def test_a_sweep_with_a_network_this_machine_lacks_is_refused_before_it_starts(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabric.harness import sweep

    def lacking(cfg):
        raise network.NetworkUnavailable("network.emulation=netem cannot run; missing: netem")

    monkeypatch.setattr(network, "check", lacking)
    spec = sweep.spec_from_mapping(
        {
            "name": "wan-test",
            "description": "refused",
            "base": {"network": {"emulation": "netem", "delay_ms": 10}},
            "grid": {"protocol.name": ["pbft"]},
        }
    )
    with pytest.raises(sweep.SweepError, match="point .*missing: netem"):
        sweep.run_sweep(spec, tmp_path, progress=False, report=False)
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no run


def test_the_network_command_prints_each_mode_and_fails_when_none_works(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(network, "probe", lambda mode, **_: [f"{mode}-piece"])
    assert network.main([]) == 1
    out = capsys.readouterr().out
    assert (
        "network.emulation=transport (with rate_mbit and regions): missing: transport-piece" in out
    )
    assert "network.emulation=netem" in out
    monkeypatch.setattr(network, "probe", lambda mode, **_: [] if mode == "transport" else ["x"])
    assert network.main([]) == 0
    assert "transport (with rate_mbit and regions): available" in capsys.readouterr().out
