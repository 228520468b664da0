"""Sweeps: grid expansion and up-front validation, combined.csv, failures, resume, the CLI.

Runs are made by the fake runner in tests/fixtures/fake_runner.py (it copies the fixture run
folder), so no cluster starts; the shipped experiments are planned (validated), not run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from fabric.analysis.report import COMBINED_COLUMNS, FOLDER_COLUMN, MESSAGES_PREFIX
from fabric.harness import sweep
from fabric.harness.paths import SweepPaths
from fabric.harness.sweep import SweepError, plan_sweep, run_sweep, spec_from_mapping
from protocols import registry
from tests.fixtures.fake_runner import FakeRunner

EXPERIMENTS = Path(__file__).resolve().parents[2] / "config" / "experiments"
SHIPPED = (
    "batching",
    "pipeline",
    "clients",
    "protocols",
    "poe",
    "rcc",
    "scaling",
    "server_batching",
)
BASE = {"run": {"duration_s": 4, "warmup_s": 1}}


def spec(grid: dict, repetitions: int = 1, **extra: object) -> sweep.SweepSpec:
    return spec_from_mapping(
        {
            "name": "tiny",
            "description": "a test sweep",
            "base": BASE,
            "grid": grid,
            "repetitions": repetitions,
            **extra,
        }
    )


def read_combined(folder: Path) -> list[dict[str, str]]:
    with SweepPaths(folder).combined.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_tiny_runs_make_combined_csv_with_expected_columns_and_rows(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run_sweep(
        spec({"batch_size": [10, 100]}), tmp_path, runner=runner, progress=False, report=False
    )
    assert runner.calls == ["b10_r1", "b100_r1"]
    rows = read_combined(result.folder)
    header = list(rows[0])
    assert header[0] == "batching.batch_size"
    assert header[1 : 1 + len(COMBINED_COLUMNS)] == list(COMBINED_COLUMNS)
    assert header[-1] == FOLDER_COLUMN
    assert any(c.startswith(MESSAGES_PREFIX) for c in header)
    assert [
        (r["batching.batch_size"], r["batch_size"], r["repetition"], r["status"]) for r in rows
    ] == [("10", "10", "1", "ok"), ("100", "100", "1", "ok")]
    for row in rows:
        assert row["protocol"] == "pbft" and row["replicas"] == "4"
        assert float(row["throughput_txn_s"]) > 0 and float(row["latency_ms_p99"]) >= float(
            row["latency_ms_p50"]
        )
        assert (result.folder / row[FOLDER_COLUMN] / "summary.json").is_file()
        assert row[FOLDER_COLUMN].endswith(f"-b{row['batch_size']}_r1")
    assert result.folder.parent == tmp_path and result.folder.name.startswith("sweep-")
    as_run = yaml.safe_load(SweepPaths(result.folder).sweep_yaml.read_text())
    assert as_run["grid"] == {"batching.batch_size": [10, 100]} and as_run["quick_applied"] is False


def test_grid_is_the_cartesian_product_times_repetitions(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run_sweep(
        spec({"batch_size": [10, 100], "replica.worker_threads": [1, 2]}, repetitions=2),
        tmp_path,
        runner=runner,
        progress=False,
        report=False,
    )
    assert len(runner.calls) == len(set(runner.calls)) == 8
    rows = read_combined(result.folder)
    assert {
        (r["batching.batch_size"], r["replica.worker_threads"], r["repetition"]) for r in rows
    } == {(b, w, rep) for b in ("10", "100") for w in ("1", "2") for rep in ("1", "2")}


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    runner = FakeRunner(fail={"b20_r1"}, crash={"b30_r1"})
    result = run_sweep(
        spec({"batch_size": [10, 20, 30, 40]}),
        tmp_path,
        runner=runner,
        progress=False,
        report=False,
    )
    assert runner.calls == ["b10_r1", "b20_r1", "b30_r1", "b40_r1"]
    assert result.failed == 2
    by_label = {r["point"]: r for r in read_combined(result.folder)}
    assert by_label["b10"]["status"] == by_label["b40"]["status"] == "ok"
    assert (by_label["b20"]["status"], by_label["b20"]["reason"]) == ("failed", "fake failure")
    assert by_label["b30"]["status"] == "failed"
    assert by_label["b30"]["reason"] == "runner raised RuntimeError: fake crash of b30_r1"
    assert by_label["b30"][FOLDER_COLUMN] == "" and by_label["b30"]["throughput_txn_s"] == ""


def test_resume_skips_finished_runs_and_reruns_failed_ones(tmp_path: Path) -> None:
    first = FakeRunner(fail={"b20_r1"})
    done = run_sweep(
        spec({"batch_size": [10, 20, 30]}), tmp_path, runner=first, progress=False, report=False
    )
    assert done.failed == 1
    second = FakeRunner()
    again = run_sweep(
        spec({"batch_size": [10, 20, 30]}),
        tmp_path,
        runner=second,
        resume=done.folder,
        progress=False,
        report=False,
    )
    assert second.calls == ["b20_r1"], "finished runs must not be run again"
    assert (again.ran, again.skipped, again.failed) == (1, 2, 0)
    rows = read_combined(done.folder)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    third = FakeRunner()
    run_sweep(
        spec({"batch_size": [10, 20, 30]}),
        tmp_path,
        runner=third,
        resume=done.folder,
        progress=False,
        report=False,
    )
    assert third.calls == []


def test_resume_without_combined_csv_finds_finished_folders_by_label(tmp_path: Path) -> None:
    done = run_sweep(
        spec({"batch_size": [10, 20]}), tmp_path, runner=FakeRunner(), progress=False, report=False
    )
    SweepPaths(done.folder).combined.unlink()
    runner = FakeRunner()
    run_sweep(
        spec({"batch_size": [10, 20]}),
        tmp_path,
        runner=runner,
        resume=done.folder,
        progress=False,
        report=False,
    )
    assert runner.calls == []
    assert len(read_combined(done.folder)) == 2


def test_resume_reruns_a_run_whose_summary_is_incomplete(tmp_path: Path) -> None:
    done = run_sweep(
        spec({"batch_size": [10, 20]}), tmp_path, runner=FakeRunner(), progress=False, report=False
    )
    folder = done.folder / read_combined(done.folder)[1][FOLDER_COLUMN]
    (folder / "summary.json").write_text('{"run": {"status": "ok"}')  # cut short
    runner = FakeRunner()
    run_sweep(
        spec({"batch_size": [10, 20]}),
        tmp_path,
        runner=runner,
        resume=done.folder,
        progress=False,
        report=False,
    )
    assert runner.calls == ["b20_r1"]


def test_latest_sweep_finds_the_newest_folder_of_that_name(tmp_path: Path) -> None:
    older = tmp_path / "sweep-20000101-000000-tiny"
    newer = tmp_path / "sweep-20000102-000000-tiny"
    other = tmp_path / "sweep-20000103-000000-other"
    for folder, name in ((older, "tiny"), (newer, "tiny"), (other, "other")):
        folder.mkdir()
        SweepPaths(folder).sweep_yaml.write_text(yaml.safe_dump({"name": name}))
    assert sweep.latest_sweep(tmp_path, "tiny") == newer
    with pytest.raises(SweepError, match="no earlier sweep named 'gone'"):
        sweep.latest_sweep(tmp_path, "gone")


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        ({"batch_sise": [10]}, "batch_sise"),  # an unknown bare knob
        ({"batching.batch_sise": [10]}, "batching.batch_sise"),  # an unknown dotted knob
        ({"batch_size": [100, 0]}, "batching.batch_size"),  # a bad value at the second point
        ({"replicas": [4, 3]}, "cluster.replicas"),
    ],
)
def test_a_bad_knob_fails_up_front_naming_the_key(tmp_path: Path, grid: dict, named: str) -> None:
    runner = FakeRunner()
    with pytest.raises(SweepError) as info:
        run_sweep(spec(grid), tmp_path, runner=runner, progress=False, report=False)
    assert named in str(info.value)
    assert runner.calls == [] and list(tmp_path.iterdir()) == [], (
        "nothing may run before the whole grid is valid"
    )


def test_a_bad_spec_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="unknown key 'repetitons'"):
        spec_from_mapping({"name": "x", "grid": {}, "repetitons": 2})
    with pytest.raises(SweepError, match="grid.batch_size must be a non-empty list"):
        spec_from_mapping({"name": "x", "grid": {"batch_size": 100}})
    with pytest.raises(SweepError, match="repetitions must be an integer"):
        spec_from_mapping({"name": "x", "grid": {}, "repetitions": 0})


def test_unknown_protocols_are_skipped_with_a_note() -> None:
    plan = plan_sweep(spec({"protocol.name": ["pbft", "no-such-protocol"]}))
    assert [p.config.protocol.name for p in plan.points] == ["pbft"]
    assert len(plan.notes) == 1 and "no-such-protocol" in plan.notes[0]
    with pytest.raises(SweepError, match="none of the protocols is available"):
        plan_sweep(spec({"protocol.name": ["no-such-protocol"]}))


CASES = [
    {"protocol.name": "pbft"},
    {"protocol.name": "poe", "poe_certificate": "macs", "label": "poe-macs"},
]


def test_cases_are_points_of_their_own_times_the_grid(tmp_path: Path) -> None:
    """Variants that are not a product (PoE with MACs is no PBFT knob) are cases; each
    point names every knob a case sets, the base's value where its case does not."""
    runner = FakeRunner()
    result = run_sweep(
        spec({"batch_size": [10, 100]}, cases=CASES),
        tmp_path,
        runner=runner,
        progress=False,
        report=False,
    )
    assert runner.calls == ["b10_pbft_r1", "b10_poe-macs_r1", "b100_pbft_r1", "b100_poe-macs_r1"]
    rows = read_combined(result.folder)
    assert list(rows[0])[:3] == [
        "batching.batch_size",
        "protocol.name",
        "protocol.poe_certificate",
    ]
    assert [(r["protocol.name"], r["protocol.poe_certificate"], r["protocol"]) for r in rows] == [
        ("pbft", "signatures", "pbft"),
        ("poe", "macs", "poe"),
    ] * 2
    as_run = yaml.safe_load(SweepPaths(result.folder).sweep_yaml.read_text())
    assert as_run["cases"][1] == CASES[1]
    again, _, _ = sweep.load_spec_as_run(result.folder)  # what --resume reads back
    assert again.cases == CASES


@pytest.mark.parametrize(
    ("cases", "overrides", "message"),
    [
        ([{"batch_size": 5}], [], "which the grid sweeps"),
        ([{"poe_certificate": "macs"}], ["poe_certificate=macs"], "conflicts with cases[1]"),
        ([{"poe_certifcate": "macs"}], [], "poe_certifcate"),
        ([{"poe_certificate": "both"}], [], "protocol.poe_certificate"),
        ([{"protocol.name": "no-such-protocol"}], [], "none of the cases can run"),
    ],
)
def test_bad_cases_fail_up_front_naming_the_key(cases: list, overrides: list, message: str) -> None:
    with pytest.raises(SweepError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_sweep(spec({"batch_size": [10]}, cases=cases), overrides=overrides)


def test_malformed_cases_are_named() -> None:
    with pytest.raises(SweepError, match="cases must be a list"):
        spec_from_mapping({"name": "x", "cases": {"protocol.name": "pbft"}})
    with pytest.raises(SweepError, match=r"cases\[2\] must map knob names"):
        spec_from_mapping({"name": "x", "cases": [{"protocol.name": "pbft"}, {"label": "x"}]})
    with pytest.raises(SweepError, match=r"cases\[1\].label must be a word"):
        spec_from_mapping({"name": "x", "cases": [{"protocol.name": "pbft", "label": "a b"}]})
    plan = plan_sweep(spec({}, cases=[{"protocol.name": "pbft"}, {"protocol.name": "nope"}]))
    assert [p.label for p in plan.points] == ["pbft"] and "cases[2]" in plan.notes[0]


def test_quick_overrides_durations_and_repetitions() -> None:
    s = spec(
        {"batch_size": [10]},
        repetitions=3,
        quick={"run.duration_s": 2, "warmup_s": 0.5, "repetitions": 1},
    )
    full, quick = plan_sweep(s), plan_sweep(s, quick=True)
    assert (full.repetitions, full.points[0].config.run.duration_s) == (3, 4)
    assert (
        quick.repetitions,
        quick.points[0].config.run.duration_s,
        quick.points[0].config.run.warmup_s,
    ) == (1, 2, 0.5)


def test_progress_bar_counts_runs_on_stderr() -> None:
    stream = io.StringIO()
    bar = sweep.SweepProgress(2, stream)
    bar.show("b10_r1")
    bar.step(3.0)
    bar.show("b100_r1")
    bar.step(5.0)
    bar.show("done")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[") and "0/2 now: b10_r1 ETA ?" in lines[0]
    assert "1/2 now: b100_r1 ETA 0m03s" in lines[1]
    assert "2/2 now: done ETA 0m00s" in lines[2]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiments_are_valid_and_quick_is_short(name: str) -> None:
    path = EXPERIMENTS / f"{name}.yaml"
    text = path.read_text()
    assert text.startswith("#"), (
        "each experiment opens with a comment saying which question it answers"
    )
    loaded = sweep.load_spec(path)
    assert loaded.name == name and loaded.description
    for quick in (False, True):
        plan = plan_sweep(loaded, quick=quick)
        assert plan.points and len({r.label for r in plan.runs}) == len(plan.runs)
    quick_plan = plan_sweep(loaded, quick=True)
    measured_s = sum(
        r.point.config.run.duration_s + r.point.config.run.warmup_s for r in quick_plan.runs
    )
    assert measured_s <= 180, f"--quick asks for {measured_s} s of run time"
    protocols = {r.point.config.protocol.name for r in quick_plan.runs}
    assert protocols <= set(registry.available())


def test_cli_dry_run_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep.main([str(EXPERIMENTS / "batching.yaml"), "--dry-run", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "b10_r1: batching.batch_size=10" in out and "5 runs (5 points x 1 repetitions)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "grid": {"worker_thread": [1]}}))
    assert sweep.main([str(bad), "--dry-run"]) == 2
    assert "worker_thread" in capsys.readouterr().err
    assert sweep.main([str(tmp_path / "missing.yaml")]) == 2


def test_set_overrides_every_point_and_is_recorded(tmp_path: Path) -> None:
    plan = plan_sweep(spec({"batch_size": [10, 20]}), overrides=["base_port=23000", "label=2024"])
    assert [p.config.transport.base_port for p in plan.points] == [23000, 23000]
    assert plan.points[0].config.run.label == "2024"  # a string knob keeps the text as written
    with pytest.raises(SweepError, match="conflicts with the grid"):
        plan_sweep(spec({"batch_size": [10]}), overrides=["batching.batch_size=5"])
    with pytest.raises(SweepError, match="transport.base_port"):
        plan_sweep(spec({"batch_size": [10]}), overrides=["base_port=80"])
    done = run_sweep(
        spec({"batch_size": [10]}),
        tmp_path,
        runner=FakeRunner(),
        overrides=["base_port=23000"],
        progress=False,
        report=False,
    )
    loaded, quick, overrides = sweep.load_spec_as_run(done.folder)
    assert (loaded.grid, quick, overrides) == (
        {"batching.batch_size": [10]},
        False,
        ["base_port=23000"],
    )


def test_a_protocol_whose_module_does_not_register_is_skipped_up_front(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_get = registry.get

    def get(name: str) -> object:
        if name == "null":
            raise KeyError("unknown protocol 'null'")
        return real_get(name)

    monkeypatch.setattr(registry, "get", get)
    plan = plan_sweep(spec({"protocol.name": ["pbft", "null"]}))
    assert [p.config.protocol.name for p in plan.points] == ["pbft"]
    assert plan.notes == [
        "skipped protocol null: it does not load (KeyError: \"unknown protocol 'null'\")"
    ]


# --- resume continues the sweep as planned (issue 15, item 1) ------------------------------------


def _spec_file(tmp_path: Path, grid: dict | None = None) -> Path:
    path = tmp_path / "tiny.yaml"
    data = {
        "name": "tiny",
        "description": "a test sweep",
        "base": BASE,
        "grid": grid or {"batch_size": [10, 20]},
        "repetitions": 2,
        "quick": {"run.duration_s": 3, "repetitions": 1},
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def fake_default_runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(sweep, "default_runner", lambda: runner)
    return runner


def test_resume_latest_keeps_the_quick_plan_it_was_started_with(
    tmp_path: Path, fake_default_runner: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path, results = _spec_file(tmp_path), tmp_path / "results"
    common = ["--results-dir", str(results), "--no-report", "--no-progress"]
    assert sweep.main([str(spec_path), "--quick", *common]) == 0
    assert fake_default_runner.calls == ["b10_r1", "b20_r1"]
    folder = sweep.latest_sweep(results, "tiny")
    (folder / read_combined(folder)[1][FOLDER_COLUMN] / "summary.json").unlink()  # b20 lost
    capsys.readouterr()
    # the README's command: no --quick given again; the stored quick plan goes on
    assert sweep.main(["--resume", "latest", str(spec_path), *common]) == 0
    assert fake_default_runner.calls == ["b10_r1", "b20_r1", "b20_r1"]
    rows = read_combined(folder)
    assert [(r["point"], r["repetition"]) for r in rows] == [("b10", "1"), ("b20", "1")]
    assert yaml.safe_load(SweepPaths(folder).sweep_yaml.read_text())["quick_applied"] is True
    out = capsys.readouterr().out
    assert "b20  " in out and "ok" in out  # the one-line-per-run table at the end
    # without a spec, --resume latest takes the stored one; --dry-run says what it would skip
    assert sweep.main(["--resume", "latest", "--dry-run", *common[:2]]) == 0
    out = capsys.readouterr().out
    assert "b10_r1: skip, finished ok in" in out and "b20_r1: skip" in out
    assert "2 would be skipped, 0 run" in out and "as planned (--quick)" in out


def test_resume_refuses_options_that_differ_from_the_stored_plan(
    tmp_path: Path, fake_default_runner: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path, results = _spec_file(tmp_path), tmp_path / "results"
    common = ["--results-dir", str(results), "--no-report", "--no-progress"]
    assert sweep.main([str(spec_path), *common]) == 0  # the full plan: 2 points x 2 reps
    calls = list(fake_default_runner.calls)
    capsys.readouterr()
    assert sweep.main(["--resume", "latest", str(spec_path), "--quick", *common]) == 2
    assert "--quick differs from the sweep being resumed" in capsys.readouterr().err
    assert sweep.main(["--resume", "latest", "--set", "batch_timeout_ms=5", *common]) == 2
    assert "--set batch_timeout_ms=5 differs" in capsys.readouterr().err
    _spec_file(tmp_path, {"batch_size": [10, 30]})  # the spec file changed since
    assert sweep.main(["--resume", "latest", str(spec_path), *common]) == 2
    err = capsys.readouterr().err
    assert "no longer plans the runs stored in" in err and "b30_r1" in err
    assert fake_default_runner.calls == calls  # nothing ran


def test_a_degraded_run_is_recorded_as_degraded() -> None:
    class Degraded:
        ok, folder, summary, reason, status = False, None, {}, "replica 3 behind", "degraded"

    plan = plan_sweep(spec({"batch_size": [10]}))
    row = sweep._run_point(lambda *a, **k: Degraded(), plan.runs[0], Path("."))
    assert (row["status"], row["reason"]) == ("degraded", "replica 3 behind")
