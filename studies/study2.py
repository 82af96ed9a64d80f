"""Study 2's two analysis phases (protocol: ``docs/evidence.md``).

- :func:`choose` uses the calibration set only: calibrates every detector variant on C-healthy, scores them
  on C-faults, picks the shipped variant and the default probe interval by the protocol's rules, and
  writes ``calibration.json`` (the thresholds that ship).
- :func:`evaluate` scores the test set once with those choices: every variant, every baseline shipped and
  at a matched false-alarm rate, the paired comparisons, the rollback runs, and writes ``results.json``
  and ``table.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from studies.ground_truth import behavioural_onset
from studies.replay import VARIANTS, Run, alarms, calibrated, eval_series, first_divergence, load, signal_series
from studies.scoring import BASELINES, Score, matched_threshold, paired, score, summarise

__all__ = ["baseline_scores", "choose", "compare", "evaluate", "load_set", "rollback_value"]

RECORDED_INTERVAL = 2  # the study probes every 2 steps; stride k replays interval 2k
TARGET_RATE = 0.5  # false alarms per 1000 probe steps


def load_set(out_dir: Path, parts: Sequence[str]) -> list[Run]:
    """Finished runs of ``out_dir`` whose spec part is in ``parts`` (rollback runs excluded)."""
    runs = []
    for meta in sorted(out_dir.glob("*/run.json")):
        run = load(meta.parent)
        if run.part in parts and not run.spec.get("rollback"):
            runs.append(run)
    return runs


def _probe_steps(runs: Sequence[Run], stride: int) -> int:
    return sum(len(run.traces[::stride]) for run in runs)


def _scores(variant: str, config: DetectorConfig, runs: Sequence[Run], onsets: dict[str, int | None],
            stride: int) -> list[Score]:
    return [score(run, variant, alarms(run, config, stride), onsets[run.name]) for run in runs]


def _key(summary: dict[str, Any], variant: str) -> tuple[float, float, float]:
    lead = summary["median_lead"]
    return (summary["detected_before_onset"], lead if lead is not None else -math.inf, -len(VARIANTS[variant][0]))


def choose(out_dir: Path) -> dict[str, Any]:
    """Phase 1 (calibration set only): variants, the shipped choice, the default interval, the twin oracle."""
    healthy = load_set(out_dir, ("C-healthy",))
    faults = load_set(out_dir, ("C-faults",))
    stable = {int(r.spec["seed"]): r for r in load_set(out_dir, ("C-stable",))}
    onsets = {run.name: behavioural_onset(run.evals) for run in healthy + faults + list(stable.values())}
    table: dict[str, Any] = {}
    for variant in VARIANTS:
        config = calibrated(variant, healthy, 1, TARGET_RATE)
        summary = summarise(_scores(variant, config, faults, onsets, 1), _probe_steps(faults, 1), RECORDED_INTERVAL)
        fa = summarise(_scores(variant, config, healthy, onsets, 1), _probe_steps(healthy, 1), RECORDED_INTERVAL)
        table[variant] = {"config": config.to_dict(), "faults": summary, "healthy": fa}
    shipped = max(VARIANTS, key=lambda v: _key(table[v]["faults"], v))
    lead = table[shipped]["faults"]["median_lead"]
    interval, per_stride = RECORDED_INTERVAL, {}
    for stride in (1, 2, 3):
        config = calibrated(shipped, healthy, stride, TARGET_RATE)
        summary = summarise(_scores(shipped, config, faults, onsets, stride), _probe_steps(faults, stride),
                            RECORDED_INTERVAL * stride)
        per_stride[RECORDED_INTERVAL * stride] = {"config": config.to_dict(), "faults": summary}
        keeps = summary["detected_before_onset"] >= table[shipped]["faults"]["detected_before_onset"]
        if keeps and lead is not None and RECORDED_INTERVAL * stride <= lead / 3:
            interval = RECORDED_INTERVAL * stride
    twins = {}
    for run in faults:
        twin = stable.get(int(run.spec["seed"]))
        onset = onsets[run.name]
        if twin is None or onset is None:
            continue
        row = {}
        for signal in ("band/late/transport", "band/late/contraction", "pairs/logp_chosen", "pairs/logratio_margin",
                       "head/log_z"):
            found = first_divergence(signal_series(run, signal), signal_series(twin, signal), run.fault_start)
            row[signal] = None if found is None else onset - found
        found = first_divergence(eval_series(run, "chosen_logp"), eval_series(twin, "chosen_logp"), run.fault_start)
        row["held-out chosen log-prob"] = None if found is None else onset - found
        twins[run.name] = row
    result = {"variants": table, "shipped": shipped, "interval": interval, "per_interval": per_stride,
              "shipped_config": per_stride[interval]["config"], "onsets": onsets, "twins": twins,
              "healthy_runs": len(healthy), "fault_runs": len(faults)}
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def evaluate(out_dir: Path) -> dict[str, Any]:
    """Phase 2 (test set, once): score with the choices of ``calibration.json``."""
    chosen = json.loads((out_dir / "calibration.json").read_text())
    stride = int(chosen["interval"]) // RECORDED_INTERVAL
    interval = int(chosen["interval"])
    c_healthy = load_set(out_dir, ("C-healthy",))
    healthy = load_set(out_dir, ("T-healthy",))
    faults = load_set(out_dir, ("T-faults",))
    runs = healthy + faults
    onsets = {run.name: behavioural_onset(run.evals) for run in runs}
    steps = _probe_steps(healthy, stride)
    results: dict[str, Any] = {"interval": interval, "shipped": chosen["shipped"], "onsets": onsets, "detectors": {}}
    all_scores: dict[str, list[Score]] = {}
    for variant in VARIANTS:
        config = calibrated(variant, c_healthy, stride, TARGET_RATE)
        all_scores[f"spinal: {variant}"] = _scores(variant, config, runs, onsets, stride)
    allowed = math.floor(TARGET_RATE * _probe_steps(c_healthy, stride) / 1000)
    matched = {name: matched_threshold(name, c_healthy, allowed) for name in BASELINES}
    results["matched_thresholds"] = matched
    all_scores.update(baseline_scores(runs, onsets, matched))
    results.update(compare(all_scores, steps, interval, chosen["shipped"]))
    results["rollback"] = rollback_value(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def baseline_scores(runs: Sequence[Run], onsets: dict[str, int | None],
                    matched: dict[str, float | None]) -> dict[str, list[Score]]:
    """Every baseline at its shipped threshold, and at its matched one where that differs."""
    out = {}
    for name, (detect, shipped, _grid) in BASELINES.items():
        out[f"{name}, shipped"] = [score(r, name, detect(r, shipped), onsets[r.name]) for r in runs]
        level = matched.get(name)
        if level is not None and level != shipped:
            out[f"{name}, matched ({level:g})"] = [score(r, name, detect(r, level), onsets[r.name]) for r in runs]
    return out


def compare(all_scores: dict[str, list[Score]], steps: int, interval: int, shipped: str,
            in_time: bool = False) -> dict[str, Any]:
    """Per detector: summaries over all faults, per family and on the healthy runs, and the scored runs; the
    best baseline (most detections — in time with ``in_time``, else before the onset — then the larger median
    lead); the paired comparisons of the shipped variant with it and of the geometry with the probe-set
    control (when both are scored)."""
    detectors: dict[str, Any] = {}
    families = sorted({s.family for s in next(iter(all_scores.values())) if s.fault_start < 10**9})
    for name, scores in all_scores.items():
        entry: dict[str, Any] = {"all": summarise(scores, steps, interval)}
        for family in families:
            entry[family] = summarise([s for s in scores if s.family == family], steps, interval)
        entry["healthy"] = summarise([s for s in scores if s.fault_start >= 10**9], steps, interval)
        entry["runs"] = [asdict(s) for s in scores]
        detectors[name] = entry
    count, lead = ("detected_in_time", "median_in_time_lead") if in_time else ("detected_before_onset", "median_lead")

    def strength(name: str) -> tuple[int, float]:
        summary = detectors[name]["all"]
        return (summary[count], summary[lead] if summary[lead] is not None else -math.inf)

    best = max((n for n in all_scores if not n.startswith("spinal")), key=strength)
    faults = {n: [s for s in sc if s.fault_start < 10**9] for n, sc in all_scores.items()}
    out = {
        "detectors": detectors, "best_baseline": best,
        "shipped_vs_best_baseline": paired(faults[f"spinal: {shipped}"], faults[best], in_time),
    }
    if "spinal: geometry" in faults and "spinal: probe-set control" in faults:  # studies 2 and 3
        out["geometry_vs_probe_set"] = paired(faults["spinal: geometry"], faults["spinal: probe-set control"], in_time)
    return out


def rollback_value(out_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for meta in sorted(out_dir.glob("*-rb/run.json")):
        on = load(meta.parent)
        twin_dir = out_dir / on.name.removesuffix("-rb")
        if not (twin_dir / "run.json").is_file():
            continue
        off = load(twin_dir)
        rows.append({
            "run": off.name, "fault": on.is_fault, "rollbacks": len(on.rollbacks), "alerts": len(on.live_alerts),
            # a fault-free twin trained without held-out evaluations (study 4) has no accuracy "off"
            "accuracy_off": off.evals[-1]["accuracy"] if off.evals else None,
            "accuracy_on": on.evals[-1]["accuracy"] if on.evals else None,
            "best_accuracy_off": max((e["accuracy"] for e in off.evals), default=None),
        })
    return rows

