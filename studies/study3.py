"""Study 3's two analysis phases (protocol: ``docs/evidence.md``, study 3).

- :func:`choose` uses the calibration set only — every run of study 2 (its calibration and its spent test
  set): calibrates every detector variant of :data:`VARIANTS` on the fault-free runs, scores them on the
  fault runs, picks the shipped variant and the default probe interval by the protocol's rules, and writes
  ``calibration.json``.
- :func:`evaluate` scores study 3's test set once with those choices and writes ``results.json``.

Study 3 differs from study 2 in three ways fixed by its protocol: the SPEED_JUMP test (how far one update
moved the fixed probe pairs, against the updates before it), calibration on 40 fault-free runs with the
data alone (``keep_floor=False``: the previous thresholds are not a floor), and a run counts as detected
*in time* when the first alarm after the fault comes no later than the behavioural onset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import calibrate
from studies.ground_truth import behavioural_onset
from studies.replay import Run, alarms, observations, saved_config, studied_defaults
from studies.scoring import BASELINES, Score, matched_threshold, score, summarise
from studies.study2 import baseline_scores, compare, load_set, rollback_value

__all__ = [
    "FAULT_PARTS",
    "HEALTHY_PARTS",
    "VARIANTS",
    "calibrated",
    "choose",
    "detector_scores",
    "evaluate",
    "first_live_alert",
    "live_versus_replay",
    "matched_thresholds",
    "onsets_of",
    "probe_steps",
    "replayed_summary",
    "variant_config",
]

RECORDED_INTERVAL = 2
TARGET_RATE = 0.5  # false alarms per 1000 probe steps

_GEOMETRY = {f"band/late/{m}": "both" for m in ("contraction", "transport", "entropy", "transport_curvature")}
_PROBE_SET = {f"pairs/{m}": "both" for m in ("logp_chosen", "logp_rejected", "margin", "logratio_margin")}
_HEAD = {"head/log_z": "both", "head/max_logit": "both"}
_TRL = {m: "both" for m in ("rewards/chosen", "logps/chosen", "rewards/accuracies", "rewards/margins")}
_LOGPS = {"pairs/logp_chosen": "both", "pairs/logp_rejected": "both"}
_VECTORS = ("layers/late/transport", "layers/late/contraction")
_TREND = ("trend_break", "slope_change", "variance_burst")
_SPEED = ("speed_jump",)

#: Variant → (scalar signals, vectors, checks, speed signals). Fixed by the protocol before any test run.
VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "TRL metrics + probe-set (study 2's default)": ({**_TRL, **_PROBE_SET}, (), _TREND, ()),
    "TRL metrics + probe-set + speed": ({**_TRL, **_PROBE_SET}, (), _TREND + _SPEED, tuple(_LOGPS)),
    "probe-set + speed": (dict(_PROBE_SET), (), _TREND + _SPEED, tuple(_LOGPS)),
    "speed only": (dict(_LOGPS), (), _SPEED, tuple(_LOGPS)),
    "probe-set control": (dict(_PROBE_SET), (), _TREND, ()),
    "geometry": (dict(_GEOMETRY), _VECTORS, (*_TREND, "pattern_change"), ()),
    "geometry + speed (on the geometry)": (dict(_GEOMETRY), _VECTORS, (*_TREND, "pattern_change", *_SPEED),
                                           ("band/late/transport", "band/late/contraction")),
    "all signals + speed": ({**_GEOMETRY, **_PROBE_SET, **_HEAD, **_TRL}, _VECTORS,
                            (*_TREND, "pattern_change", *_SPEED), tuple(_LOGPS)),
}

#: Study-2 parts that are fault-free (calibration of the thresholds) and that hold faults (the choice).
HEALTHY_PARTS = ("C-healthy", "C-stable", "T-healthy")
FAULT_PARTS = ("C-faults", "T-faults")


def variant_config(name: str) -> DetectorConfig:
    """Variant ``name`` with the shipped config's other settings (thresholds still uncalibrated)."""
    signals, vectors, checks, speed = VARIANTS[name]
    return replace(studied_defaults(), signals=dict(signals), vectors=tuple(vectors), checks=tuple(checks),
                   variance_signals=("*",),  # study 3 ran the variance test on every watched signal
                   variance_reference=0,  # against the pooled noise scale (the recent-increment one came with study 9)
                   speed_signals=tuple(speed))


def calibrated(name: str, healthy: Sequence[Run], stride: int = 1) -> DetectorConfig:
    """Variant ``name`` calibrated on ``healthy`` to :data:`TARGET_RATE`, from the data alone."""
    streams = [observations(run, stride) for run in healthy]
    return calibrate(streams, variant_config(name), target_rate=TARGET_RATE, keep_floor=False)


def probe_steps(runs: Sequence[Run], stride: int) -> int:
    """Probe steps of ``runs`` replayed at ``stride`` (the denominator of the false-alarm rates)."""
    return sum(len(run.traces[::stride]) for run in runs)


def detector_scores(name: str, config: DetectorConfig, runs: Sequence[Run], onsets: dict[str, int | None],
                    stride: int) -> list[Score]:
    """``config`` replayed on every run of ``runs`` at ``stride``, each scored against its onset."""
    return [score(run, name, alarms(run, config, stride), onsets[run.name]) for run in runs]


def replayed_summary(name: str, config: DetectorConfig, runs: Sequence[Run], onsets: dict[str, int | None],
                     stride: int = 1) -> dict[str, Any]:
    """:func:`~studies.scoring.summarise` of ``config`` replayed on ``runs`` at ``stride`` (probe interval
    ``RECORDED_INTERVAL * stride``): detections, leads and false alarms per 1000 probe steps."""
    return summarise(detector_scores(name, config, runs, onsets, stride), probe_steps(runs, stride),
                     RECORDED_INTERVAL * stride)


def matched_thresholds(healthy: Sequence[Run]) -> dict[str, float | None]:
    """Each baseline's smallest grid threshold with at most :data:`TARGET_RATE` false alarms per 1000 probe steps
    (rounded down to a count) on the fault-free runs ``healthy``."""
    allowed = math.floor(TARGET_RATE * probe_steps(healthy, 1) / 1000)
    return {name: matched_threshold(name, healthy, allowed) for name in BASELINES}


def onsets_of(runs: Sequence[Run]) -> dict[str, int | None]:
    """Behavioural onsets; a fault run whose onset comes before its fault step has none (the degradation is not
    the fault's, and no detector can answer it in time): it is excluded from detection, its alarms still count."""
    out = {}
    for run in runs:
        onset = behavioural_onset(run.evals)
        out[run.name] = None if onset is not None and run.is_fault and onset < run.fault_start else onset
    return out


def _key(summary: dict[str, Any], name: str) -> tuple[float, float, float]:
    lead = summary["median_in_time_lead"]
    return (summary["detected_in_time"], lead if lead is not None else -math.inf, -len(VARIANTS[name][0]))


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (calibration set = every study-2 run): thresholds, the shipped variant, the default interval."""
    healthy = load_set(calibration_dir, HEALTHY_PARTS)
    faults = load_set(calibration_dir, FAULT_PARTS)
    onsets = onsets_of(healthy + faults)
    table: dict[str, Any] = {}
    for name in VARIANTS:
        config = calibrated(name, healthy)
        table[name] = {
            "config": config.to_dict(),
            "faults": replayed_summary(name, config, faults, onsets),
            "healthy": replayed_summary(name, config, healthy, onsets),
        }
        print(f"{name}: {table[name]['faults']['detected_in_time']}/{table[name]['faults']['fault_runs']} in time, "
              f"{table[name]['healthy']['false_per_1000']:.2f} false alarms / 1000", flush=True)
    shipped = max(VARIANTS, key=lambda v: _key(table[v]["faults"], v))
    best = table[shipped]["faults"]
    lead = best["median_in_time_lead"]
    interval, per_interval = RECORDED_INTERVAL, {}
    for stride in (1, 2, 3):
        config = calibrated(shipped, healthy, stride)
        summary = replayed_summary(shipped, config, faults, onsets, stride)
        per_interval[RECORDED_INTERVAL * stride] = {"config": config.to_dict(), "faults": summary}
        keeps = summary["detected_in_time"] >= best["detected_in_time"]
        if stride > 1 and keeps and lead is not None and RECORDED_INTERVAL * stride <= lead / 3:
            interval = RECORDED_INTERVAL * stride
    result = {"variants": table, "shipped": shipped, "interval": interval, "per_interval": per_interval,
              "shipped_config": per_interval[interval]["config"], "matched_thresholds": matched_thresholds(healthy),
              "onsets": onsets, "healthy_runs": len(healthy), "fault_runs": len(faults)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def first_live_alert(run: Run) -> int | None:
    """The step of the callback's own first alert at or after the fault step (``None``: none)."""
    return min((int(a["step"]) for a in run.live_alerts if int(a["step"]) >= run.fault_start), default=None)


def live_versus_replay(runs: Sequence[Run], replayed: Sequence[Score]) -> dict[str, Any]:
    """The shipped detector live (the callback's own alerts in the trace file: the library defaults, with the
    probe pairs' measured noise floors) against its replay: healthy runs with an alert, and fault runs whose
    first alert at or after the fault step is the same step."""
    by_run = {s.run: s for s in replayed}
    healthy_live = healthy_replay = same_first = fault_runs = 0
    for run in runs:
        replay = by_run[run.name]
        if not run.is_fault:
            healthy_live += bool(run.live_alerts)
            healthy_replay += bool(replay.alarms)
            continue
        fault_runs += 1
        same_first += first_live_alert(run) == replay.first
    return {"healthy_runs_live_alert": healthy_live, "healthy_runs_replay_alert": healthy_replay,
            "fault_runs": fault_runs, "fault_runs_same_first_alert": same_first}


def evaluate(out_dir: Path, calibration_dir: Path) -> dict[str, Any]:
    """Phase 2 (study 3's test set, once): score with the choices of ``<out_dir>/calibration.json``."""
    chosen = json.loads((out_dir / "calibration.json").read_text())
    interval = int(chosen["interval"])
    stride = interval // RECORDED_INTERVAL
    healthy = load_set(out_dir, ("T3-healthy",))
    faults = load_set(out_dir, ("T3-faults",))
    runs = healthy + faults
    onsets = onsets_of(runs)
    steps = probe_steps(healthy, stride)
    results: dict[str, Any] = {"interval": interval, "shipped": chosen["shipped"], "onsets": onsets}
    all_scores: dict[str, list[Score]] = {}
    c_healthy = load_set(calibration_dir, HEALTHY_PARTS)
    for name in VARIANTS:
        config = (saved_config(chosen["shipped_config"], variant_config(name)) if name == chosen["shipped"]
                  else saved_config(chosen["variants"][name]["config"], variant_config(name)) if stride == 1
                  else calibrated(name, c_healthy, stride))
        all_scores[f"spinal: {name}"] = detector_scores(name, config, runs, onsets, stride)
    all_scores.update(baseline_scores(runs, onsets, chosen["matched_thresholds"]))
    results.update(compare(all_scores, steps, interval, chosen["shipped"], in_time=True))
    results["rollback"] = rollback_value(out_dir)
    results["live"] = live_versus_replay(runs, all_scores[f"spinal: {chosen['shipped']}"])
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
