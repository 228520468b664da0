"""Typed protocol parameters (protocols/params.py): each protocol declares its knobs once;
a wrong value or an unknown key is a ValueError naming the key and what is allowed, and
config/default.yaml's protocol section lists every one of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from protocols.base import ProtocolConfig
from protocols.hotstuff import HotStuff
from protocols.hotstuff.params import HotStuffParams
from protocols.pbft import Pbft
from protocols.pbft.params import PbftParams
from protocols.poe import Poe
from protocols.poe.params import PoeParams
from protocols.rcc.params import RccParams
from protocols.rcc.replica import Rcc
from protocols.zyzzyva import Zyzzyva
from protocols.zyzzyva.params import ZyzzyvaParams
from tests.protocol.scenario import FakeVerifier

PARAMS = (
    (PbftParams, "pbft_"),
    (PoeParams, "poe_"),
    (RccParams, "rcc_"),
    (ZyzzyvaParams, "zyzzyva_"),
    (HotStuffParams, "hotstuff_"),
)


def _config(params: dict[str, object]) -> ProtocolConfig:
    return ProtocolConfig(replica_id=0, n=4, params=params)


def test_defaults_are_the_declared_ones() -> None:
    assert PbftParams.from_params({}) == PbftParams(signed_votes=True)
    assert PoeParams.from_params({}) == PoeParams(certificate="signatures")
    assert RccParams.from_params({}) == RccParams(0, True, 0, 0)


@pytest.mark.parametrize(
    ("cls", "key", "value", "allowed"),
    [
        (Pbft, "pbft_signed_votes", "yes", "true | false"),
        (Pbft, "pbft_signed_votes", 1, "true | false"),
        (Poe, "poe_certificate", "threshold", "signatures | macs"),
        (Rcc, "rcc_noop_ticks", -1, ">= 0"),
        (Rcc, "rcc_permute_rounds", 0, "true | false"),
        (Rcc, "rcc_max_lag_rounds", True, "an integer"),
        (Zyzzyva, "zyzzyva_commit_wait_ticks", 0, ">= 1"),
        (HotStuff, "hotstuff_batches_per_block", 0, ">= 1"),
        (HotStuff, "hotstuff_batches_per_block", True, "an integer"),
    ],
)
def test_a_wrong_value_names_the_key_and_what_is_allowed(
    cls: type, key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ValueError, match=key) as info:
        cls(_config({key: value}), FakeVerifier(0))
    assert allowed in str(info.value)


@pytest.mark.parametrize(
    ("cls", "key"),
    [
        (Pbft, "pbft_fetch_ticks"),  # a bound now (protocols.limits), no longer a knob
        (Poe, "poe_replay_window"),
        (Rcc, "rcc_instance"),
        (HotStuff, "hotstuff_batch"),
        (Pbft, "signed_votes"),  # no protocol's prefix
    ],
)
def test_an_unknown_key_is_refused(cls: type, key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown protocol parameter '{key}'"):
        cls(_config({key: 1}), FakeVerifier(0))


def test_other_protocols_keys_and_shared_keys_pass() -> None:
    """The runtime hands every protocol the whole protocol section."""
    every = {"pbft_signed_votes": False, "poe_certificate": "macs", "rcc_instances": 4}
    every.update({"rcc_permute_rounds": True, "tick_ms": 10, "rcc_noop_timeout_ms": 50})
    assert not Pbft(_config(every), FakeVerifier(0)).sign_votes
    assert Poe(_config(every), FakeVerifier(0)).macs
    assert Rcc(_config(every), FakeVerifier(0)).m == 4


def test_default_yaml_lists_every_parameter_with_its_default() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "default.yaml"
    section = yaml.safe_load(path.read_text())["protocol"]
    for cls, prefix in PARAMS:
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            assert f.metadata["meaning"]
            if key == "rcc_noop_ticks":  # set through its wall-time form, rcc_noop_timeout_ms
                assert "rcc_noop_timeout_ms" in section
                continue
            if key == "zyzzyva_commit_wait_ticks":  # its wall-time form: zyzzyva_commit_wait_ms
                assert section["zyzzyva_commit_wait_ms"] == f.default * 10  # protocol.tick_ms
                continue
            assert section[key] == f.default, key
