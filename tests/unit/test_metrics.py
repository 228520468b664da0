"""fabric.analysis.metrics: what a process reports about itself (peak memory, CPU).

Must not live here: latency percentiles over runs (test_runner_summary.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fabric.analysis.metrics import _vm_hwm_kib, process_resources


@pytest.mark.skipif(_vm_hwm_kib() is None, reason="needs /proc/self/status (Linux)")
def test_a_child_reports_its_own_peak_memory_not_its_big_parents() -> None:
    """Linux's ru_maxrss keeps the pre-exec peak across exec: a replica spawned by a sweep
    holding 100+ MB reported the sweep's peak. VmHWM belongs to the new image only."""
    ballast = bytearray(300 * 1024 * 1024)  # the parent touches 300 MB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "import json; from fabric.analysis.metrics import process_resources as p; print(json.dumps(p()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    child = json.loads(out)
    assert child["peak_rss_mb"] < 150, child  # a bare interpreter: tens of MB
    assert process_resources()["peak_rss_mb"] >= 300  # and the parent still sees its own
    del ballast


def test_vm_hwm_parse_failures_fall_back_quietly(tmp_path) -> None:
    bad = tmp_path / "status"
    bad.write_text("Name: x\nVmHWM: lots kB\n")
    assert _vm_hwm_kib(str(bad)) is None
    assert _vm_hwm_kib(str(tmp_path / "missing")) is None
    good = tmp_path / "good"
    good.write_text("VmPeak: 9 kB\nVmHWM:\t  2048 kB\n")
    assert _vm_hwm_kib(str(good)) == 2048
