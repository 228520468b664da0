"""``python -m fabric sim`` argument errors: one line naming what is allowed (issue 15, item 7)."""

from __future__ import annotations

import pytest

from fabric.sim import cli


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--protocol", "foo"],
            "--protocol foo: unknown protocol; allowed: hotstuff, null, pbft, poe, rcc",
        ),
        (["--param", "bogus=1"], "--param bogus: unknown protocol parameter; allowed: "),
        (["--param", "poe_certificate=mac"], "allowed: signatures | macs"),
        (["--param", "pbft_signed_votes=maybe"], "allowed: true or false"),
        (["--param", "novalue"], "expected KEY=VALUE; allowed keys: "),
    ],
)
def test_bad_sim_arguments_are_one_line_errors(argv, needle, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.parse_args([*argv, "--seeds", "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    if "bogus" in argv[-1]:
        assert "poe_certificate" in err and "pbft_signed_votes" in err


def test_good_params_are_checked_and_typed_like_the_config() -> None:
    args = cli.parse_args(["--protocol", "poe", "--param", "poe_certificate=macs", "--seeds", "2"])
    assert args.params == {"poe_certificate": "macs"}
    args = cli.parse_args(["--param", "protocol.pbft_signed_votes=false"])
    assert args.params == {"pbft_signed_votes": False}
