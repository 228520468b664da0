"""What the live fuzzer reports: the frames it sent against what its target counted (drop
reasons expected vs counted, in the fuzz run and the baseline), the throughput cost over the
whole measured window and over the seconds it sent; ``fuzz.json`` and the text of res.out.

Pure functions of the fuzzer's counts and the runs' stats and summaries (dicts read from the
run folders), so a report can be rebuilt from the folders alone.

Must not live here: sending anything (fabric.harness.fuzz), the frames (fuzz_frames).
"""

from __future__ import annotations

import math
from typing import Any

from fabric.harness import fuzz_frames

#: drop reasons the fuzzer's frames can make the target count (the comparison's rows)
FUZZ_REASONS = (
    "mac",
    "unknown_sender",
    "body",
    "shape",
    "field_too_long",
    "too_many_items",
    "magic",
    "version",
    "unknown_kind",
    "bad_sender",
    "client_kind",
    "too_long",
    "too_long_for_kind",
    "client_too_long",
    "length",
    "partial_frame",
)


def compare(
    sent: dict[str, Any], fuzz_drops: dict[str, int], base_drops: dict[str, int] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (reason, expected from the frames sent, counted by the target in the fuzz run
    and in the baseline) and the differences that the frames sent do not explain."""
    expected = {
        fate: n for fate, n in sent["by_fate"].items() if not fate.startswith(fuzz_frames.ACCEPTED)
    }
    reasons = [r for r in FUZZ_REASONS if r in expected or fuzz_drops.get(r)]
    reasons += sorted(r for r in expected if r not in reasons)
    rows = []
    problems = []
    for reason in reasons:
        want = expected.get(reason, 0)
        got = int(fuzz_drops.get(reason, 0))
        base = None if base_drops is None else int(base_drops.get(reason, 0))
        rows.append({"reason": reason, "expected": want, "counted": got, "baseline": base})
        if got != want:
            problems.append(f"{reason}: the frames sent make {want:,}, the target counted {got:,}")
    for reason, count in sorted(fuzz_drops.items()):
        if reason.startswith(("error:", "protocol_error:")) and count:
            problems.append(f"{reason}: {count} (an exception in the replica, counted)")
    return rows, problems


def window_rate(stats: dict[str, Any] | None, lo_s: float, hi_s: float) -> float | None:
    """Transactions/s a replica executed in the whole seconds between ``lo_s`` and ``hi_s``
    after its t0 (its ``executed_per_s``); None without stats or a whole second."""
    if not stats or stats.get("t0") is None:
        return None
    t0 = float(stats["t0"])
    first, last = math.ceil(t0 + lo_s), math.floor(t0 + hi_s)
    if last <= first:
        return None
    per_s = {int(sec): int(count) for sec, count in stats.get("executed_per_s", [])}
    return sum(per_s.get(sec, 0) for sec in range(first, last)) / (last - first)


def _ignored(stats: dict[str, Any] | None) -> dict[str, int]:
    status = (stats or {}).get("protocol_status") or {}
    ignored = status.get("ignored") if isinstance(status, dict) else None
    return {str(k): int(v) for k, v in (ignored or {}).items()}


def fuzz_report(
    sent: dict[str, Any],
    fuzz_summary: dict[str, Any],
    target_stats: dict[str, Any] | None,
    base_summary: dict[str, Any] | None,
    base_target: dict[str, Any] | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """fuzz.json: the options, what was sent, what the target counted, the cost."""
    fuzz_drops = dict((target_stats or {}).get("drops", {}))
    base_drops = None if base_target is None else dict(base_target.get("drops", {}))
    rows, problems = compare(sent, fuzz_drops, base_drops)
    if sent["aborted_frames"]:
        problems.append(
            f"{sent['aborted_bursts']} burst(s) ({sent['aborted_frames']} frames) cut short by "
            f"socket errors {sent['errors']}: not in the expected counts"
        )
    if target_stats is None:
        problems.append(f"replica {options['target']} wrote no stats (it did not survive)")
    accepted = {
        fate.removeprefix(fuzz_frames.ACCEPTED): n
        for fate, n in sent["by_fate"].items()
        if fate.startswith(fuzz_frames.ACCEPTED)
    }
    tput = float(fuzz_summary.get("throughput_txn_s", 0.0))
    base_tput = None if base_summary is None else float(base_summary.get("throughput_txn_s", 0))
    cost = None if not base_tput else round(1.0 - tput / base_tput, 4)
    # the same comparison over the seconds the fuzzer was sending (the target's executed
    # transactions/s, in the fuzz run and over the same seconds of the baseline)
    window = None
    if target_stats and target_stats.get("t0") is not None and sent["frames_sent"]:
        lo_s = sent["began"] - float(target_stats["t0"])
        hi_s = sent["ended"] - float(target_stats["t0"])
        during = window_rate(target_stats, lo_s, hi_s)
        before = window_rate(base_target, lo_s, hi_s)
        window = {
            "from_s": round(lo_s, 2),
            "to_s": round(hi_s, 2),
            "executed_txn_s": None if during is None else round(during, 1),
            "baseline_executed_txn_s": None if before is None else round(before, 1),
            "cost": None if not before or during is None else round(1.0 - during / before, 4),
        }
    received = dict(((target_stats or {}).get("messages") or {}).get("received") or {})
    base_received = (
        None
        if base_target is None
        else dict((base_target.get("messages") or {}).get("received") or {})
    )
    # frames that passed: the target's received count per kind is the fuzzer's plus the
    # genuine traffic's (for kinds no honest node sends it, the fuzzer's alone)
    accepted_rows = [
        {
            "kind": kind,
            "expected": accepted.get(kind, 0),
            "received": int(received.get(kind, 0)),
            "genuine": int(received.get(kind, 0)) - accepted.get(kind, 0),
            "baseline": None if base_received is None else int(base_received.get(kind, 0)),
        }
        for kind in sorted(set(accepted) | set(received))
    ]
    for row in accepted_rows:
        if row["genuine"] < 0:
            problems.append(
                f"{row['kind']}: {row['expected']:,} passed MAC and decode, the target "
                f"received {row['received']:,}"
            )
    return {
        "options": options,
        "sent": sent,
        "accepted_by_the_target": accepted,
        "accepted": accepted_rows,
        "drops": rows,
        "target_drops_fuzz_run": fuzz_drops,
        "target_drops_baseline": base_drops,
        "target_inbound": (target_stats or {}).get("inbound"),
        # where the frames that passed went: what the target's protocol ignored, by reason
        "protocol_ignored": _ignored(target_stats),
        "protocol_ignored_baseline": None if base_target is None else _ignored(base_target),
        "target_resources": (target_stats or {}).get("resources"),
        "target_resources_baseline": None if base_target is None else base_target.get("resources"),
        "throughput_txn_s": tput,
        "baseline_throughput_txn_s": base_tput,
        "throughput_cost": cost,
        "fuzzed_window": window,
        "baseline_run": None if base_summary is None else base_summary.get("run", {}).get("name"),
        "problems": problems,
    }


def format_fuzz(report: dict[str, Any]) -> str:
    """The fuzz section of res.out and stdout."""
    sent = report["sent"]
    opt = report["options"]
    lines = [
        "",
        f"Live fuzzing of replica {opt['target']} (compromised link: replica {opt['peer']}; "
        f"seed {opt['seed']}; asked {opt['frames']:,} frames at {opt['rate']:,} frames/s)",
        f"  sent {sent['frames_sent']:,} frames ({sent['bytes_sent'] / 1e6:.1f} MB) on "
        f"{sent['connections']:,} connections in {sent['seconds']:.1f} s: "
        f"{sent['frames_per_s']:,.0f} frames/s sustained",
        f"  the fuzzer's time: CPU {sent['fuzzer_cpu_s']:.1f} s, connecting "
        f"{sent['connect_s']:.1f} s, sending {sent['send_s']:.1f} s, waiting for the rate "
        f"{sent['paced_s']:.1f} s",
        f"  genuine frames (replays, mutations): {sent['genuine_frames']}",
        "  frames by class: " + ", ".join(f"{cls} {n:,}" for cls, n in sent["by_class"].items()),
    ]
    accepted = report["accepted_by_the_target"]
    if accepted:
        lines.append(
            f"  passed MAC and decode (handed to the input stage and the protocol): "
            f"{sum(accepted.values()):,} ("
            + ", ".join(f"{k} {n:,}" for k, n in sorted(accepted.items()))
            + ")"
        )
    rows = report.get("accepted") or []
    if rows:
        lines.append(
            f"  {'passed, by kind':<20}{'expected':>12}{'received':>12}{'genuine':>12}"
            f"{'baseline':>12}"
        )
        for row in rows:
            base = "-" if row["baseline"] is None else f"{row['baseline']:,}"
            lines.append(
                f"  {row['kind']:<20}{row['expected']:>12,}{row['received']:>12,}"
                f"{row['genuine']:>12,}{base:>12}"
            )
    lines.append(f"  {'drop reason':<20}{'expected':>12}{'counted':>12}{'baseline':>12}")
    for row in report["drops"]:
        base = "-" if row["baseline"] is None else f"{row['baseline']:,}"
        lines.append(f"  {row['reason']:<20}{row['expected']:>12,}{row['counted']:>12,}{base:>12}")
    others = {
        k: v
        for k, v in report["target_drops_fuzz_run"].items()
        if k not in {r["reason"] for r in report["drops"]} and v
    }
    if others:
        lines.append(
            "  other drops at the target (genuine traffic, or the input stage's own limits on "
            "frames that passed, e.g. fetch_rate on hostile Fetch requests): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(others.items()))
        )
    ignored = report.get("protocol_ignored") or {}
    if ignored:
        base_ignored = report.get("protocol_ignored_baseline")
        lines.append(
            "  the target's protocol ignored (fuzz run"
            + (" / baseline" if base_ignored is not None else "")
            + "): "
            + ", ".join(
                f"{k} {v:,}" + ("" if base_ignored is None else f"/{base_ignored.get(k, 0):,}")
                for k, v in sorted(ignored.items(), key=lambda kv: -kv[1])
            )
        )
    inbound = report["target_inbound"]
    if inbound:
        lines.append(
            f"  the target's inputs delimited {inbound['frames']:,} frames, read "
            f"{inbound['bytes'] / 1e6:.1f} MB, held at most {inbound['peak_buffered_bytes']:,} "
            "bytes of unfinished frames"
        )
    res = report.get("target_resources") or {}
    if res:
        base_res = report.get("target_resources_baseline") or {}
        lines.append(
            f"  the target's peak RSS {res.get('peak_rss_mb', 0):.1f} MB, CPU "
            f"{res.get('cpu_s', 0):.1f} s"
            + (
                f" (undisturbed: {base_res.get('peak_rss_mb', 0):.1f} MB, "
                f"{base_res.get('cpu_s', 0):.1f} s)"
                if base_res
                else ""
            )
        )
    if report["throughput_cost"] is not None:
        lines.append(
            f"  throughput {report['throughput_txn_s']:,.0f} txn/s vs "
            f"{report['baseline_throughput_txn_s']:,.0f} undisturbed "
            f"({report['baseline_run']}): cost {100 * report['throughput_cost']:.1f} %"
        )
    else:
        lines.append(f"  throughput {report['throughput_txn_s']:,.0f} txn/s (no baseline run)")
    window = report.get("fuzzed_window")
    if window and window["cost"] is not None:
        lines.append(
            f"  while the fuzzer sent (t={window['from_s']:.0f}..{window['to_s']:.0f} s): the "
            f"target executed {window['executed_txn_s']:,.0f} txn/s vs "
            f"{window['baseline_executed_txn_s']:,.0f} in the same seconds undisturbed: cost "
            f"{100 * window['cost']:.1f} %"
        )
    if report.get("run_degraded"):
        lines.append(f"  the run is DEGRADED: {report['run_degraded']}")
    if report["problems"]:
        lines.append("  DIFFERENCES: " + "; ".join(report["problems"]))
    else:
        lines.append("  every frame sent is counted by the target as its class predicts")
    return "\n".join(lines) + "\n"
