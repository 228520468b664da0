"""Fixtures of the real-cluster tests: ``spawned``, every process the runner starts in a test,
checked gone (and killed by process group if not) when the test ends, pass or fail."""

from __future__ import annotations

import os
import signal

import pytest

from fabric.harness import runner


@pytest.fixture
def spawned(monkeypatch):
    """Every Child the runner spawns in this test; after the test, none may be alive."""
    children: list[runner.Child] = []
    original = runner.Runner._spawn

    def spawn(self, role, node, **kw):
        child = original(self, role, node, **kw)
        children.append(child)
        return child

    monkeypatch.setattr(runner.Runner, "_spawn", spawn)
    yield children
    alive = [c for c in children if c.proc.poll() is None]
    for child in alive:  # a failing test must not leave processes behind
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.proc.wait(5)
    assert not alive, f"processes left running: {[c.label for c in alive]}"
