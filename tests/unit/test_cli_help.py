"""Command-line help that must answer rather than fail (issue 15, item 8)."""

from __future__ import annotations

import bench.__main__ as bench_main


def test_bench_help_lists_the_benchmarks(capsys) -> None:
    assert bench_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: python -m bench" in out and "cluster" in out and "ring" in out
    assert bench_main.main(["nope"]) == 2
