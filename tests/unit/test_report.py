"""Report generation from the fixture run folder and from a fake-runner sweep folder.

The tests copy tests/fixtures/run-pbft-n4-b100 to a temporary folder, draw, and check that each
figure is a real PNG, that report.html embeds every figure, and that missing optional files
skip their figure with a note instead of failing. Sweep folders are made by fabric.harness.sweep with
the fake runner (no cluster starts).
"""

from __future__ import annotations

import base64
import csv
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fabric.analysis import plots, report
from fabric.harness.paths import RunPaths, SweepPaths
from fabric.harness.sweep import run_sweep, spec_from_mapping
from tests.fixtures.fake_runner import FIXTURE, FakeRunner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 5_000  # an empty 8x4.5 inch canvas with axes is larger than this; a stub is not


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) > MIN_PNG_BYTES, f"{path.name} is only {len(data)} bytes"


def embedded_images(html: str) -> dict[str, bytes]:
    """data-file name -> the PNG bytes embedded in report.html."""
    found = re.findall(r'data-file="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {name: base64.b64decode(data) for name, data in found}


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.png", "report.html"))
    # the drops figure needs drops; a real short run may have none, so write them here
    RunPaths(folder).drops.write_text(
        "node,reason,count\nreplica-1,bad_mac,3\nreplica-2,stale_view,17\n"
    )
    return folder


def test_run_report_draws_every_figure_as_png(run_folder: Path) -> None:
    assert report.main([str(run_folder)]) == 0
    paths = RunPaths(run_folder)
    for name in report.RUN_FIGURES:
        assert_png(paths.figure(name))


def test_run_report_html_embeds_every_figure(run_folder: Path) -> None:
    result = report.report_run(run_folder)
    html = result.html_path.read_text()
    images = embedded_images(html)
    assert {f.path.name for f in result.drawn if f.path} == set(images)
    assert set(images) == {f"{name}.png" for name in report.RUN_FIGURES}
    for name, data in images.items():  # embedded, so a copied report.html still shows them
        assert data == (run_folder / name).read_bytes()
    assert "<img" in html and 'src="' not in html.replace('src="data:image/png;base64,', "")
    assert "Config (config.yaml)" in html and "batch_size: 100" in html


def test_report_still_works_when_the_folder_is_copied(run_folder: Path, tmp_path: Path) -> None:
    report.report_run(run_folder)
    moved = shutil.copytree(run_folder, tmp_path / "elsewhere" / "copy")
    for png in moved.glob("*.png"):
        png.unlink()  # the figures live inside the HTML
    assert len(embedded_images(RunPaths(moved).report_html.read_text())) == len(report.RUN_FIGURES)


def test_missing_drops_skips_that_figure_and_says_so(run_folder: Path) -> None:
    report.report_run(run_folder)
    assert RunPaths(run_folder).figure("drops").exists()
    RunPaths(run_folder).drops.unlink()
    result = report.report_run(run_folder)
    assert [f.name for f in result.skipped] == ["drops"]
    assert not RunPaths(run_folder).figure("drops").exists(), "a stale figure was left behind"
    html = result.html_path.read_text()
    assert "drops.png" not in embedded_images(html)
    assert "Figures not drawn" in html and "drops.csv is absent" in html


def test_drops_file_without_drops_skips_the_figure(run_folder: Path) -> None:
    RunPaths(run_folder).drops.write_text("node,reason,count\n")
    result = report.report_run(run_folder)
    assert [(f.name, f.skipped) for f in result.skipped] == [
        ("drops", "no drops recorded (drops.csv has no rows)")
    ]


def test_malformed_or_missing_tables_skip_figures_not_the_report(run_folder: Path) -> None:
    paths = RunPaths(run_folder)
    paths.throughput.write_text("when,who\n1,2\n")  # wrong columns
    paths.latency.unlink()
    paths.threads.write_bytes(b"")  # empty file
    result = report.report_run(run_folder)
    skipped = {f.name: f.skipped for f in result.skipped}
    assert skipped["throughput"] == "throughput.csv lacks column(s) time_s, node, role, txn"
    assert skipped["latency_cdf"] == "latency.csv is absent"
    assert skipped["idleness"] == "threads.csv is empty"
    assert {f.name for f in result.drawn} == {"messages", "drops", "memory"}
    assert result.html_path.is_file()


def test_not_a_results_folder_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a results folder" in err and "summary.json" in err and "combined.csv" in err
    assert report.main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "report.html").exists()


def test_protocol_palette_is_fixed_and_used() -> None:
    colours = [plots.protocol_colour(p) for p in ("pbft", "poe", "rcc", "null")]
    assert len(set(colours)) == 4
    assert plots.protocol_colour("hotstuff") == plots.protocol_colour("hotstuff")
    assert plots.protocol_colour("PBFT") == plots.protocol_colour("pbft")
    stats = pd.DataFrame(
        {
            "point": ["null", "pbft"],
            "protocol": ["null", "pbft"],
            "throughput_txn_s_mean": [9.0, 5.0],
            "throughput_txn_s_min": [8.0, 4.0],
            "throughput_txn_s_max": [10.0, 6.0],
        }
    )
    fig = plots.throughput_by_protocol(stats)
    bars = [p for p in fig.axes[0].patches]
    from matplotlib.colors import to_hex

    assert [to_hex(b.get_facecolor()) for b in bars] == [
        plots.protocol_colour("null"),
        plots.protocol_colour("pbft"),
    ]


def _sweep(
    tmp_path: Path, grid: dict, repetitions: int = 1, runner: FakeRunner | None = None
) -> Path:
    spec = spec_from_mapping(
        {
            "name": "t",
            "description": "test sweep",
            "base": {"run": {"duration_s": 4, "warmup_s": 1}},
            "grid": grid,
            "repetitions": repetitions,
        }
    )
    return run_sweep(spec, tmp_path, runner=runner or FakeRunner(), progress=False).folder


def test_sweep_report_draws_what_the_knobs_allow(tmp_path: Path) -> None:
    folder = _sweep(
        tmp_path, {"batch_size": [10, 100], "protocol.name": ["pbft", "null"]}, repetitions=2
    )
    paths = SweepPaths(folder)
    html = paths.report_html.read_text()
    images = embedded_images(html)
    expected = {
        "throughput_vs_batch_size",
        "throughput_by_protocol",
        "load_curve",
        "messages_per_batch",
    }
    assert set(images) == {f"{name}.png" for name in expected}
    for name in expected:
        assert_png(paths.figure(name))
    assert "error bars span min..max of up to 2 repetitions" in html
    assert html.count("<tr>") >= 1 + 4 + 1 + 8  # summary header + 4 points, runs header + 8 runs


def test_sweep_report_with_one_protocol_and_failures_says_what_it_skipped(tmp_path: Path) -> None:
    runner = FakeRunner(fail={"n10_r1"})
    folder = _sweep(tmp_path, {"replicas": [4, 7, 10]}, runner=runner)
    result = report.report_sweep(folder, runs=True)
    assert {f.name for f in result.drawn} == {
        "throughput_vs_replicas",
        "load_curve",
        "messages_per_batch",
    }
    assert {f.name: f.skipped for f in result.skipped} == {
        "throughput_by_protocol": "only one protocol in this sweep"
    }
    html = result.html_path.read_text()
    assert "2 of 3 runs ok" in html and "1 not ok" in html and "fake failure" in html
    for run in (p for p in folder.iterdir() if p.is_dir()):  # --runs redrew every run's report
        assert RunPaths(run).report_html.is_file()
    assert report.main([str(folder)]) == 0


def test_sweep_report_with_a_single_ok_point_draws_no_curves(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, {"replicas": [4, 7]}, runner=FakeRunner(fail={"n7_r1"}))
    result = report.report_sweep(folder)
    assert {f.name for f in result.drawn} == {"messages_per_batch"}
    assert {f.name: f.skipped for f in result.skipped} == {
        "throughput_vs_knob": "no numeric knob varies in this sweep",
        "throughput_by_protocol": "only one protocol in this sweep",
        "load_curve": "fewer than two grid points finished ok",
    }


def test_sweep_report_with_every_run_failed_still_writes_html(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, {"replicas": [4, 7]}, runner=FakeRunner(crash={"n4_r1", "n7_r1"}))
    result = report.report_sweep(folder)
    assert result.drawn == [] and "0 of 2 runs ok" in result.html_path.read_text()


def test_throughput_timeline_shows_the_view_change_as_a_dip_and_recovery() -> None:
    """The fixture's primary crashes at 3 s: seconds without rows must be drawn as 0, not bridged."""
    table, why = report.read_table(RunPaths(FIXTURE).throughput, ["time_s", "node", "role", "txn"])
    assert table is not None, why
    fig = plots.throughput_timeline(table, "pbft", warmup_s=1.0, events=[(3.0, "crash replica 0")])
    replica_lines = [ln for ln in fig.axes[0].lines if "(executed)" in str(ln.get_label())]
    assert replica_lines
    for line in replica_lines:
        xs, ys = list(line.get_xdata()), list(line.get_ydata())
        assert xs == sorted(xs) and xs == list(range(int(xs[0]), int(xs[-1]) + 1))
        zero = ys.index(0)
        assert max(ys[:zero]) > 0 and max(ys[zero:]) > 0, f"no dip and recovery in {ys}"
    assert any(list(ln.get_xdata()) == [3.0, 3.0] for ln in fig.axes[0].lines), "fault not marked"


def test_a_sweep_of_cases_is_compared_as_categories(tmp_path: Path, monkeypatch) -> None:
    """Issue 15, item 2: cases are bars named by their labels; a boolean knob the cases set is
    never an axis; the load curve joins nothing; the table names cases, not unvaried knobs."""
    drawn: dict[str, object] = {}
    save = plots.save

    def keep(fig, path):
        drawn[Path(path).stem] = fig
        save(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    spec = spec_from_mapping(
        {
            "name": "protocols",
            "base": {"run": {"duration_s": 4, "warmup_s": 1}},
            "cases": [
                {"protocol.name": "pbft", "batch_size": 100, "label": "pbft"},
                {"protocol.name": "pbft", "pbft_signed_votes": False, "label": "pbft-macs"},
                {"protocol.name": "poe", "poe_certificate": "macs", "label": "poe-macs"},
                {"protocol.name": "null"},
            ],
        }
    )
    folder = run_sweep(spec, tmp_path, runner=FakeRunner(), progress=False).folder
    result = report.report_sweep(folder)
    names = {f.name for f in result.drawn}
    assert names == {"throughput_by_case", "load_curve", "messages_per_batch"}
    assert not any(n.startswith("throughput_vs_") for n in names)
    skipped = {f.name: f.skipped for f in result.skipped}
    assert skipped == {
        "throughput_vs_knob": "the knobs vary only between cases: compared as categories"
    }
    bars = drawn["throughput_by_case"]
    ticks = [t.get_text() for t in bars.axes[1].get_xticklabels()]
    assert ticks == ["pbft", "pbft-macs", "poe-macs", "null"]
    assert "no error bars" in bars.axes[0].get_title()
    curve = drawn["load_curve"].axes[0]
    labels = [t.get_text() for t in curve.get_legend().get_texts()]
    assert labels[:2] == ["null p50", "null p99"] or "pbft-macs p50" in labels
    assert not any("=" in label for label in labels), labels  # no knob=value legends
    assert all(
        line.get_linestyle() in ("None", "none", "")
        for line in curve.get_lines()
        if len(line.get_xdata()) > 1
    )
    html = result.html_path.read_text()
    summary = html.split("<h2>Summary (per grid point)</h2>")[1].split("</table>")[0]
    assert '<th class="text">case</th>' in summary
    assert "protocol.pbft_signed_votes" in summary  # varied by the cases
    assert "batching.batch_size" not in summary  # a case sets it, but nobody varied it
    rows = list(csv.DictReader(SweepPaths(folder).combined.open()))
    assert [r["case"] for r in rows] == ["pbft", "pbft-macs", "poe-macs", "null"]


def test_a_crashed_replicas_line_ends_at_its_crash() -> None:
    rows = [(t, node, "replica", 100) for t in range(10) for node in (0, 1)]
    table = pd.DataFrame(rows, columns=["time_s", "node", "role", "txn"])
    fig = plots.throughput_timeline(table, "pbft", 1.0, [(3.0, "crash replica 0")], {"0": 3.2})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    crashed = lines["replica 0 (crashed at 3.2 s)"]
    assert max(crashed.get_xdata()) <= 3.2
    assert max(lines["replica 1 (executed)"].get_xdata()) == 9


def test_a_restarted_replicas_line_breaks_while_it_was_down_and_goes_on_after() -> None:
    rows = [(t, node, "replica", 100) for t in range(12) for node in (0, 1) if node or t < 4]
    rows += [(t, 0, "replica", 150) for t in range(7, 12)]  # replica 0's second life
    table = pd.DataFrame(rows, columns=["time_s", "node", "role", "txn"])
    fig = plots.throughput_timeline(
        table, "pbft", 1.0, [(3.5, "restart replica 0")], down={"0": (3.5, 6.8)}
    )
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    back = lines["replica 0 (down at 3.5 s, back at 6.8 s)"]
    ys = dict(zip(back.get_xdata(), back.get_ydata(), strict=True))
    assert ys[3] == 100 and ys[7] == 150 and ys[11] == 150  # before and after the restart
    assert all(math.isnan(ys[t]) for t in (4, 5))  # down: a break, not zeros
    assert max(lines["replica 1 (executed)"].get_xdata()) == 11


def test_fault_marks_on_the_timeline_name_the_kind_and_its_delay():
    from fabric.analysis.report import _fault_events

    config = {
        "failures": [
            {"replica": 0, "at_s": 2.0, "kind": "throttle", "delay_ms": 150.0},
            {"replica": 1, "at_s": 3.0, "kind": "equivocate", "delay_ms": 0.0},
        ]
    }
    assert _fault_events(config) == [
        (2.0, "throttle 150 ms replica 0"),
        (3.0, "equivocate replica 1"),
    ]


def test_a_byzantine_replicas_line_is_marked_with_what_it_played() -> None:
    rows = [(t, node, "replica", 100) for t in range(6) for node in (0, 1)]
    table = pd.DataFrame(rows, columns=["time_s", "node", "role", "txn"])
    fig = plots.throughput_timeline(
        table,
        "pbft",
        1.0,
        [(2.0, "throttle 200 ms replica 0")],
        byzantine={"0": "throttle from 2.0 s"},
    )
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["replica 0 (executed; throttle from 2.0 s)"].get_linestyle() == "-."
    assert lines["replica 1 (executed)"].get_linestyle() == "-"
