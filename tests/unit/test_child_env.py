"""fabric.harness.runner.child_env: what a local replica or client process is started with."""

from __future__ import annotations

import sys
from pathlib import Path

from fabric.harness.runner import child_env


def test_output_is_unbuffered_and_the_rest_is_the_runners() -> None:
    env = child_env({"PATH": "/bin", "X": "1"})
    assert env == {"PATH": "/bin", "X": "1", "PYTHONUNBUFFERED": "1"}


def test_bytecode_is_cached_under_the_prefix_when_the_tree_must_stay_free_of_it() -> None:
    env = child_env({"PYTHONDONTWRITEBYTECODE": "1"})
    cache = Path(sys.prefix) / "pycache"
    if cache.is_dir() and env.get("PYTHONPYCACHEPREFIX"):
        assert "PYTHONDONTWRITEBYTECODE" not in env
        assert env["PYTHONPYCACHEPREFIX"] == str(cache)
    else:  # a prefix this user cannot write: the choice is left as it was
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_an_explicit_cache_prefix_or_no_setting_is_left_alone() -> None:
    both = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/tmp/mine"}
    assert child_env(both) == {**both, "PYTHONUNBUFFERED": "1"}
    assert "PYTHONPYCACHEPREFIX" not in child_env({})
