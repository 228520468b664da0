"""Key files (transport.keyfiles): generated per node, loaded back into a KeyStore that
works on a real link, and refused when readable by others or made for another node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric.harness import runner
from fabric.harness.config import ConfigError, load_config
from transport import keyfiles
from transport.auth import Ed25519Verifier, LinkAuth, derive_keys, signer


def _write_all(tmp_path: Path, n: int, schemes: list[str]) -> Path:
    for node, data in keyfiles.generate(n, schemes).items():
        keyfiles.write(tmp_path, node, data)
    return tmp_path


def test_generated_files_hold_one_node_each_and_agree(tmp_path: Path) -> None:
    _write_all(tmp_path, 5, ["cmac-aes"])
    a = keyfiles.load(tmp_path / "node-0.keys", 0, 5)
    b = keyfiles.load(tmp_path / "node-3.keys", 3, 5)
    assert (tmp_path / "node-0.keys").stat().st_mode & 0o777 == 0o600
    assert a.signing_key(0) is not None and a.signing_key(3) is None  # its own secret only
    assert a.link_key("cmac-aes", 0, 3) == b.link_key("cmac-aes", 3, 0)
    assert a.link_key("cmac-aes", 1, 3) is None  # not a link of node 0
    assert a.public_key_bytes(3) == b.public_key_bytes(3)
    frame = b"\x00" * 16  # what one end seals, the other opens
    sealed = LinkAuth("cmac-aes", 0, a).seal(
        3, b"BF\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00" + frame
    )
    assert LinkAuth("cmac-aes", 3, b).open(sealed)
    sig = signer(a, 0)(b"payload")
    assert Ed25519Verifier(3, b).verify(0, b"payload", sig)
    derived = derive_keys("bft-fabric-demo-secret", 5, only_node=0)
    assert a.public_key_bytes(0) != derived.public_key_bytes(0)


def test_files_are_fresh_per_generation() -> None:
    one, two = keyfiles.generate(4, ["cmac-aes"]), keyfiles.generate(4, ["cmac-aes"])
    assert one[0] != two[0]


def test_bad_files_are_refused_by_name(tmp_path: Path) -> None:
    _write_all(tmp_path, 4, ["hmac-sha256"])
    path = tmp_path / "node-1.keys"
    with pytest.raises(ValueError, match="made for node 1 of 4, not node 2 of 4"):
        keyfiles.load(path, 2, 4)
    with pytest.raises(ValueError, match="not node 1 of 5"):
        keyfiles.load(path, 1, 5)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match=f"key file {path}: mode 644"):
        keyfiles.load(path, 1, 4)
    with pytest.raises(ValueError, match="FileNotFoundError"):
        keyfiles.load(tmp_path / "node-9.keys", 9, 10)
    junk = keyfiles.write(tmp_path / "j", 0, b"[1, 2]")
    with pytest.raises(ValueError, match="not a bft-fabric-keys/1 file"):
        keyfiles.load(junk, 0, 4)


def test_keys_files_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="crypto.key_dir"):
        load_config(None, [f"crypto.key_dir={tmp_path}"])  # without crypto.keys=files
    with pytest.raises(ConfigError, match="crypto.key_dir"):
        load_config(None, ["crypto.keys=files"])
    _write_all(tmp_path, 5, ["cmac-aes"])
    os.remove(tmp_path / "node-4.keys")
    cfg = load_config(None, ["crypto.keys=files", f"crypto.key_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="crypto.key_dir: node 4: key file .*node-4.keys"):
        runner._node_keys(cfg, remote=True)  # refused before anything starts


def test_auto_is_derived_on_one_machine_and_generated_on_hosts() -> None:
    cfg = load_config(None, [])
    local, none = runner._node_keys(cfg, remote=False)
    assert none is None and local == cfg  # unchanged: auto means derived here
    remote, files = runner._node_keys(cfg, remote=True)
    assert (
        remote.crypto.keys == "generated" and files is not None and sorted(files) == list(range(5))
    )
    off, nothing = runner._node_keys(load_config(None, ["crypto.enabled=false"]), remote=True)
    assert nothing is None and off.crypto.keys == "derived"
