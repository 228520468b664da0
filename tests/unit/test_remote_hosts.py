"""SSH hosts in the config (fabric.harness.hosts.plan): placement, and bad input refused
before anything starts, naming the entry (no host is contacted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric.harness import hosts, remote
from fabric.harness.config import ConfigError, load_config


def _cfg(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, list(overrides))


def _hosts_file(tmp_path: Path, rows: list) -> str:  # type: ignore[type-arg]
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(rows))
    return f"cluster.hosts_file={path}"


def test_one_machine_is_no_remote_run() -> None:
    assert hosts.plan(_cfg()) is None


def test_round_robin_and_resolved_addresses() -> None:
    cfg = _cfg('cluster.hosts=["a@10.0.0.1", "b@10.0.0.2:2222"]')
    plan = hosts.plan(cfg)
    assert plan is not None and plan.placement == (0, 1, 0, 1, 0)
    assert plan.hosts[1].user == "b" and plan.hosts[1].port == 2222
    assert plan.hosts[0].port == 22 and plan.hosts[0].python == "python3"
    assert hosts.resolved(cfg, plan).cluster.hosts == (
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.1",
    )


def test_explicit_placement() -> None:
    cfg = _cfg(
        'cluster.hosts=["a@h1", "a@h2"]',
        'cluster.placement=["a@h1", "a@h1", "a@h2", "a@h2", "a@h1"]',
    )
    plan = hosts.plan(cfg)
    assert plan is not None and plan.placement == (0, 0, 1, 1, 0)


@pytest.mark.parametrize("entry", ["h1", "a@", "@h1", "a@h1:x", "a@h1:70000", "a b@h1"])
def test_entry_that_does_not_parse_is_named(entry: str) -> None:
    with pytest.raises(ConfigError, match="cluster.hosts") as err:
        _cfg(f'cluster.hosts=["a@ok", "{entry}"]')
    assert repr(entry) in str(err.value)


def test_host_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice") as err:
        _cfg('cluster.hosts=["a@h1", "b@h1:22"]')
    assert "'b@h1:22'" in str(err.value)
    hosts.plan(_cfg('cluster.hosts=["a@h1", "a@h1:2222"]'))  # two sshds on one machine: fine


def test_more_nodes_than_slots_is_refused(tmp_path: Path) -> None:
    rows = [{"host": "a@h1", "slots": 2}, {"host": "a@h2", "slots": 2}]
    with pytest.raises(ConfigError, match="5 nodes .1 left over. but the hosts hold 4"):
        _cfg(_hosts_file(tmp_path, rows))
    rows[1]["slots"] = 3
    plan = hosts.plan(_cfg(_hosts_file(tmp_path, rows)))
    assert plan is not None and sorted(plan.placement) == [0, 0, 1, 1, 1]


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"key file {missing} does not exist") as err:
        _cfg(_hosts_file(tmp_path, [{"host": "a@h1", "key_file": str(missing)}]))
    assert "entry 0" in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        _cfg('cluster.hosts=["a@h1"]', f"ssh.key_file={missing}")


def test_hosts_file_entries_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="entry 1.*unknown key 'colour'"):
        _cfg(_hosts_file(tmp_path, ["a@h1", {"host": "a@h2", "colour": "red"}]))
    with pytest.raises(ConfigError, match="entry 0.*slots"):
        _cfg(_hosts_file(tmp_path, [{"host": "a@h1", "slots": -1}]))
    with pytest.raises(ConfigError, match="cluster.hosts_file.*cannot be read"):
        _cfg(f"cluster.hosts_file={tmp_path / 'missing.yaml'}")
    with pytest.raises(ConfigError, match="one of them"):
        _cfg(_hosts_file(tmp_path, ["a@h1"]), 'cluster.hosts=["a@h2"]')


def test_bad_placement_is_named() -> None:
    with pytest.raises(ConfigError, match="cluster.placement.*'a@h3' is no listed host"):
        _cfg(
            'cluster.hosts=["a@h1", "a@h2"]',
            'cluster.placement=["a@h1", "a@h1", "a@h2", "a@h3", "a@h1"]',
        )
    with pytest.raises(ConfigError, match="cluster.placement.*2 entries for 5 nodes"):
        _cfg('cluster.hosts=["a@h1"]', 'cluster.placement=["a@h1", "a@h1"]')
    with pytest.raises(ConfigError, match="cluster.placement.*does nothing"):
        _cfg('cluster.placement=["a@h1"]')


def test_project_tar_hash_follows_content(tmp_path: Path) -> None:
    (tmp_path / "fabric").mkdir()
    (tmp_path / "fabric" / "a.py").write_text("x = 1\n")
    (tmp_path / "fabric" / "__pycache__").mkdir()
    (tmp_path / "fabric" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    tar1, h1 = remote.project_tar(tmp_path)
    assert remote.project_tar(tmp_path)[1] == h1  # reproducible (mtime 0)
    (tmp_path / "fabric" / "a.py").write_text("x = 2\n")
    assert remote.project_tar(tmp_path)[1] != h1
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(tar1)).getnames()
    assert names == ["fabric/a.py"]


def test_emulation_on_ssh_hosts_is_the_senders_only() -> None:
    two = 'cluster.hosts=["a@h1", "a@h2"]'
    with pytest.raises(ConfigError, match="network.emulation: netem .* on SSH hosts"):
        _cfg(two, "network.emulation=netem", "network.delay_ms=5")
    with pytest.raises(ConfigError, match="network.emulation: transport .rate_mbit 10. on SSH"):
        _cfg(two, "network.emulation=transport", "network.rate_mbit=10")
    cfg = _cfg(two, "network.emulation=transport", "network.delay_ms=5")
    plan = hosts.plan(cfg)
    assert plan is not None and hosts.resolved(cfg, plan).network.delay_ms == 5
