"""Studies 2–5's Markdown tables, from ``calibration.json`` and ``results.json`` (what ``docs/evidence.md``
shows). Study 3 adds the *in time* columns (first alarm after the fault no later than the onset) and the
speed threshold; study 4's calibration is one threshold and the false alarms on its fault-free runs; study 5's
the candidate VARIANCE_BURST signal sets, with leave-one-part-out false alarms."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["calibration_table", "study3_calibration_table", "study4_calibration_table", "study5_calibration_table",
           "study8_calibration_table", "study9_calibration_table", "test_tables"]


def _lead(value: Any) -> str:
    return "–" if value is None else f"{value:+g}"


def _rate(summary: Mapping[str, Any], in_time: bool = False) -> str:
    keys = (("detected_in_time", "in_time_ci", "median_in_time_lead") if in_time
            else ("detected_before_onset", "rate_ci", "median_lead"))
    n, k = summary["fault_runs"], summary[keys[0]]
    if not n:
        return "–"
    low, high = summary[keys[1]]
    return f"{k}/{n} ({100 * low:.0f}–{100 * high:.0f} %) · {_lead(summary[keys[2]])}"


def _false(summary: Mapping[str, Any]) -> str:
    low, high = summary["false_per_1000_ci"]
    return f"{summary['false_per_1000']:.2f} ({low:.2f}–{high:.2f})"


def _matched(thresholds: Mapping[str, Any], on: str) -> str:
    shown = ", ".join(f"{k}: {'none' if v is None else f'{v:g}'}" for k, v in thresholds.items())
    return f"Matched baseline thresholds (≤ 0.5 false alarms per 1000 probe steps on {on}): {shown}."


def calibration_table(result: Mapping[str, Any]) -> str:
    """Variants on the calibration set, the shipped choice, the interval study and the twin oracle."""
    lines = [
        f"Calibration set: {result['healthy_runs']} healthy runs, {result['fault_runs']} fault runs.",
        "",
        "| variant | C-faults detected before onset (95 % CI) · median lead | C-healthy false alarms / 1000 probes "
        "(in-sample) | thresholds z · h · var · T² |",
        "|---|---:|---:|---|",
    ]
    for name, entry in result["variants"].items():
        c = entry["config"]
        thresholds = " · ".join(f"{c[k]:.3g}" for k in ("z_threshold", "cusum_h", "variance_threshold", "t2_threshold"))
        lines.append(f"| {name} | {_rate(entry['faults'])} | {_false(entry['healthy'])} | {thresholds} |")
    lines += ["", f"Shipped: **{result['shipped']}**, probe interval **{result['interval']}** steps.", "",
              "| interval (steps) | C-faults detected before onset · median lead |", "|---:|---:|"]
    for interval, entry in result["per_interval"].items():
        lines.append(f"| {interval} | {_rate(entry['faults'])} |")
    if result.get("twins"):
        signals = list(next(iter(result["twins"].values())))
        lines += ["", "Twin oracle (C-faults against their C-stable twin): steps before the onset at which the fault "
                  "run first left its twin (positive: before the onset).", "",
                  "| run | " + " | ".join(signals) + " |", "|---|" + "---:|" * len(signals)]
        for run, row in result["twins"].items():
            lines.append(f"| {run} | " + " | ".join(_lead(row[s]) for s in signals) + " |")
    return "\n".join(lines) + "\n"


def test_tables(result: Mapping[str, Any], in_time: bool = False) -> str:
    """Detection, leads and false alarms per detector on the test set; paired comparisons; the live detector
    against its replay (study 3); rollback value. ``in_time`` (study 3): cells count alarms no later than the
    onset, and a column gives the strictly-before count."""
    families = [k for k in next(iter(result["detectors"].values())) if k not in ("all", "healthy", "runs")]
    counted = ("detected in time (first alarm after the fault no later than the onset)" if in_time
               else "detected before the onset")
    pooled = " | all faults: in time | all faults: before the onset" if in_time else " | all faults"
    lines = [
        f"Probe interval {result['interval']} steps; shipped detector: **spinal: {result['shipped']}**.",
        "",
        f"Cells: {counted} / fault runs with an onset (95 % Clopper–Pearson) · median lead in steps.",
        "",
        "| detector | " + " | ".join(families) + pooled + " | healthy: false alarms / 1000 probes (95 % CI) | "
        "healthy runs with an alarm | fault runs: alarms before the fault |",
        "|---|" + "---:|" * (len(families) + 4 + in_time),
    ]
    for name, entry in result["detectors"].items():
        cells = [_rate(entry[f], in_time) for f in families] + [_rate(entry["all"], in_time)]
        cells += [_rate(entry["all"])] if in_time else []
        pre_fault = sum(1 for r in entry["runs"] if r["fault_start"] < 10**9 and r["false_alarms"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_false(entry['healthy'])} | "
                     f"{entry['healthy']['runs_with_false_alarm']} | {pre_fault} |")
    better, worse, p = result["shipped_vs_best_baseline"]
    lines += [
        "",
        f"Paired per-run lead{' (a miss ranks below any timely alarm)' if in_time else ''}, shipped detector vs "
        f"the best baseline ({result['best_baseline']}): shipped earlier in {better} runs, later in {worse} "
        f"(sign test p = {p:.3g}).",
    ]
    if "geometry_vs_probe_set" in result:
        g_better, g_worse, g_p = result["geometry_vs_probe_set"]
        lines.append(f"Geometry vs the probe-set control: geometry earlier in {g_better} runs, later in {g_worse} "
                     f"(sign test p = {g_p:.3g}).")
    if result.get("matched_thresholds"):
        lines.append(_matched(result["matched_thresholds"], result.get("matched_on", "C-healthy")))
    live = result.get("live")
    if live:
        lines.append(
            f"Live (the callback's own alerts, library defaults with the probe pairs' noise floors) against the "
            f"replay: healthy runs with an alert {live['healthy_runs_live_alert']} live, "
            f"{live['healthy_runs_replay_alert']} replayed; fault runs whose first alert after the fault is the "
            f"same step: {live['fault_runs_same_first_alert']}/{live['fault_runs']}.")
    if result.get("rollback"):
        lines += ["", "| run | fault | live alerts | rollbacks | held-out accuracy at the end, rollback off → on |",
                  "|---|---|---:|---:|---:|"]
        for row in result["rollback"]:
            off, on = (("—" if row[k] is None else f"{row[k]:.3f}") for k in ("accuracy_off", "accuracy_on"))
            lines.append(f"| {row['run']} | {'yes' if row['fault'] else 'no'} | {row['alerts']} | {row['rollbacks']} | "
                         f"{off} → {on} |")
    return "\n".join(lines) + "\n"


_THRESHOLDS3 = ("z_threshold", "cusum_h", "variance_threshold", "t2_threshold", "speed_threshold")


def study3_calibration_table(result: Mapping[str, Any]) -> str:
    """Study 3's variants on its calibration set (every study-2 run), the shipped choice and the interval."""
    lines = [
        f"Calibration set: {result['healthy_runs']} fault-free runs, {result['fault_runs']} fault runs.",
        "",
        "| variant | faults detected in time (95 % CI) · median lead | before the onset · median lead | "
        "fault-free: false alarms / 1000 probes (in-sample) | thresholds z · h · var · T² · speed |",
        "|---|---:|---:|---:|---|",
    ]
    for name, entry in result["variants"].items():
        c = entry["config"]
        used = set(c["checks"])
        tests = ("trend_break", "slope_change", "variance_burst", "pattern_change", "speed_jump")
        thresholds = " · ".join(f"{c[k]:.3g}" if t in used else "–" for k, t in zip(_THRESHOLDS3, tests))
        lines.append(f"| {name} | {_rate(entry['faults'], True)} | {_rate(entry['faults'])} | "
                     f"{_false(entry['healthy'])} | {thresholds} |")
    lines += ["", f"Shipped: **{result['shipped']}**, probe interval **{result['interval']}** steps.", "",
              "| interval (steps) | faults detected in time · median lead |", "|---:|---:|"]
    for interval, entry in result["per_interval"].items():
        lines.append(f"| {interval} | {_rate(entry['faults'], True)} |")
    lines += ["", _matched(result["matched_thresholds"], "the fault-free runs")]
    return "\n".join(lines) + "\n"


def study4_calibration_table(result: Mapping[str, Any]) -> str:
    """Study 4's choice on C4 (and study 6's on C6): the one threshold chosen, false alarms of the shipped detector
    and of the chosen test alone."""
    set_name = result.get("calibration_set", "C4")
    test, key, what = result.get("chosen_test", ("UPDATE_JUMP", "update_threshold", "the update"))
    threshold = result[key]
    lines = [
        f"Calibration set {set_name}: {result['healthy_runs']} fault-free runs, {result['probe_steps']} probe steps "
        f"(interval {result['interval']}).",
        "",
        f"{test} threshold: **{threshold:.3g}** (ln ratio; {what} {math.exp(threshold):.3g}× the larger of its "
        f"lagged median and trend forecast), set alone to {result['update_target_rate']:g} false alarms per 1000 "
        f"probe steps; the other thresholds are {result.get('other_thresholds_from', 'study 3')}'s.",
        "",
        f"| detector | {set_name}: false alarms / 1000 probes (95 % CI, in-sample) | {set_name} runs with an alarm |",
        "|---|---:|---:|",
    ]
    for name, summary in result["false_alarms"].items():
        lines.append(f"| {name} | {_false(summary)} | {summary['runs_with_false_alarm']} |")
    lines += ["", _matched(result["matched_thresholds"], set_name)]
    return "\n".join(lines) + "\n"


def study5_calibration_table(result: Mapping[str, Any]) -> str:
    """Study 5's candidates on C5: faults in time, false alarms in-sample and cross-validated, thresholds."""
    lines = [
        f"Calibration set C5: {result['healthy_runs']} fault-free runs ({result['probe_steps']} probe steps), "
        f"{result['fault_runs']} fault runs; probe interval {result['interval']}.",
        "",
        "| VARIANCE_BURST on | faults detected in time (95 % CI) · median lead | before the onset · median lead | "
        "fault-free: false alarms / 1000 probes, in-sample | leave-one-part-out (runs) | "
        "thresholds z · h · var · speed · update |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, entry in result["candidates"].items():
        c = entry["config"]
        thresholds = " · ".join(
            "–" if key == "variance_threshold" and "variance_burst" not in c["checks"] else f"{c[key]:.3g}"
            for key in ("z_threshold", "cusum_h", "variance_threshold", "speed_threshold", "update_threshold"))
        cv = entry["cross_validated"]
        lines.append(f"| {name} | {_rate(entry['faults'], True)} | {_rate(entry['faults'])} | "
                     f"{_false(entry['healthy'])} | {_false(cv)} ({cv['runs_with_false_alarm']}) | {thresholds} |")
    lines += ["", f"Shipped: **{result['shipped']}**.", "", _matched(result["matched_thresholds"], "C5")]
    return "\n".join(lines) + "\n"


def study8_calibration_table(result: Mapping[str, Any]) -> str:
    """Study 8's choice on C8: per test, the fault-free runs it alarmed in and the fault runs it answered first; the
    tests dropped; false alarms and detections in-sample."""
    lines = [
        f"Calibration set {result['calibration_set']}: {result['healthy_runs']} fault-free runs "
        f"({result['probe_steps']} probe steps), {result['fault_runs']} fault runs; probe interval "
        f"{result['interval']}.",
        "",
        "| test | fault-free runs it alarmed in | fault runs it answered first |",
        "|---|---:|---:|",
    ]
    for check, seen in result["tests"].items():
        lines.append(f"| {check} | {len(seen['healthy_runs'])} | {len(seen['first_answers'])} |")
    dropped = ", ".join(result["dropped"]) or "none"
    lines += [
        "", f"Dropped from the default checks (alarmed in a fault-free run, answered no fault first): **{dropped}**.",
        "", "| detector | in time (in-sample) | fault-free: false alarms / 1000 probes (in-sample) | runs with one |",
        "|---|---:|---:|---:|",
    ]
    for name, summary in result["in_sample"].items():
        faults, healthy = summary["faults"], summary["healthy"]
        lines.append(f"| {name} | {faults['detected_in_time']}/{faults['fault_runs']} | {_false(healthy)} | "
                     f"{healthy['runs_with_false_alarm']} |")
    lines += ["", _matched(result["matched_thresholds"], "C6")]
    return "\n".join(lines) + "\n"


def study9_calibration_table(result: Mapping[str, Any]) -> str:
    """Study 9's choice on C9: the variance threshold of the recent-increment ratio; false alarms of the shipped
    detector and of the variance test alone; detections and false alarms in-sample against study 8's detector."""
    lines = [
        f"Calibration set {result['calibration_set']}: {result['healthy_runs']} fault-free runs "
        f"({result['probe_steps']} probe steps), {result['fault_runs']} fault runs; probe interval "
        f"{result['interval']}.",
        "",
        f"VARIANCE_BURST against the {result['variance_reference']} increments before the variance window: threshold "
        f"**{result['variance_threshold']:.2f}**, set alone to {result['update_target_rate']:g} false alarms per 1000 "
        "probe steps (from the data alone, rounded up); every other setting is study 8's.",
        "",
        "| detector | in time (in-sample) | fault-free: false alarms / 1000 probes (in-sample) | runs with one |",
        "|---|---:|---:|---:|",
    ]
    for name, summary in result["in_sample"].items():
        faults, healthy = summary["faults"], summary["healthy"]
        lines.append(f"| {name} | {faults['detected_in_time']}/{faults['fault_runs']} | {_false(healthy)} | "
                     f"{healthy['runs_with_false_alarm']} |")
    alone = [summary for name, summary in result["false_alarms"].items() if name != result["shipped"]]
    lines += ["", "The variance test alone on the fault-free runs: " + "; ".join(
        f"{_false(summary)} false alarms per 1000 probe steps, {summary['runs_with_false_alarm']} runs with one"
        for summary in alone) + ".", "", _matched(result["matched_thresholds"], "C6")]
    return "\n".join(lines) + "\n"
