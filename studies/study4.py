"""Study 4's two analysis phases (protocol: ``docs/evidence.md``, study 4).

- :func:`choose` uses the calibration set C4 only — study 2's 40 fault-free runs re-trained with the monitor's
  ``update/size`` probe signal, without held-out evaluations: calibrates the UPDATE_JUMP test alone (target
  :data:`UPDATE_TARGET_RATE`, from the data alone), ships study 3's detector with that threshold, records the
  false alarms of the shipped and update-only detectors on C4 and the baselines' matched thresholds there, and
  writes ``calibration.json``.
- :func:`evaluate` scores study 4's test set T4 once with those choices, with study 3's rules (a fault run is
  detected *in time* when the first alarm after the fault comes no later than the behavioural onset), and
  writes ``results.json``.

Everything but the choice of the update threshold is study 3's (:mod:`studies.study3`): the other thresholds,
the probe interval (2 steps, stride 1), the scoring and the live-versus-replay check.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import calibrate
from studies.replay import Run, observations
from studies.scoring import Score
from studies.study2 import baseline_scores, compare, load_set, rollback_value
from studies.study3 import (
    RECORDED_INTERVAL,
    detector_scores,
    live_versus_replay,
    matched_thresholds,
    onsets_of,
    probe_steps,
    replayed_summary,
)

__all__ = [
    "CALIBRATION_PARTS",
    "FAULT_PARTS",
    "HEALTHY_PARTS",
    "SHIPPED",
    "UPDATE_CHECK",
    "UPDATE_TARGET_RATE",
    "calibrated_update_threshold",
    "choose",
    "evaluate",
    "score_test_set",
    "variants",
]

UPDATE_CHECK = "update_jump"
#: False alarms per 1000 probe steps the update test alone may raise on C4.
UPDATE_TARGET_RATE = 0.1

#: Parts of C4 (calibration) and of T4 (the test set: fault-free runs, fault runs).
CALIBRATION_PARTS = ("C4-healthy",)
HEALTHY_PARTS = ("T4-healthy",)
FAULT_PARTS = ("T4-faults",)

#: The detector variants scored on T4, in report order (see :func:`variants`).
SHIPPED = "shipped (study 3 detector + update jump)"
STUDY3_DETECTOR = "study 3 detector"
UPDATE_ONLY = "update jump only"


def calibrated_update_threshold(healthy: Sequence[Run]) -> float:
    """The UPDATE_JUMP threshold set on the fault-free runs ``healthy`` (probe interval 2) to
    :data:`UPDATE_TARGET_RATE` false alarms per 1000 probe steps, from the data alone (``keep_floor=False``).

    Raises:
        ValueError: no run of ``healthy`` has enough ``update/size`` observations to be scored (runs recorded
            before the monitor measured it).
    """
    streams = [observations(run) for run in healthy]
    config = calibrate(streams, replace(DetectorConfig(), checks=(UPDATE_CHECK,)), target_rate=UPDATE_TARGET_RATE,
                       keep_floor=False)
    return float(config.update_threshold)


def variants(shipped: DetectorConfig) -> dict[str, DetectorConfig]:
    """The protocol's detector variants, from the shipped config: it, it without the update test (study 3's
    detector), and the update test alone."""
    return {
        SHIPPED: shipped,
        STUDY3_DETECTOR: replace(shipped, checks=tuple(c for c in shipped.checks if c != UPDATE_CHECK)),
        UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK,)),
    }


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C4 only): the update threshold, the shipped config, false alarms and matched baselines on C4.

    Raises:
        FileNotFoundError: ``calibration_dir`` holds no finished C4 run.
    """
    healthy = load_set(calibration_dir, CALIBRATION_PARTS)
    if not healthy:
        raise FileNotFoundError(f"no finished C4 run (part {CALIBRATION_PARTS[0]!r}) in {calibration_dir}: "
                                "train the calibration set first")
    threshold = calibrated_update_threshold(healthy)
    shipped = replace(DetectorConfig(), update_threshold=threshold)
    configs = variants(shipped)
    onsets = onsets_of(healthy)
    false_alarms = {name: replayed_summary(name, configs[name], healthy, onsets) for name in (SHIPPED, UPDATE_ONLY)}
    for name, summary in false_alarms.items():
        print(f"{name}: {summary['false_per_1000']:.2f} false alarms / 1000 probe steps on C4 "
              f"({summary['runs_with_false_alarm']}/{len(healthy)} runs with one)", flush=True)
    result = {
        "update_threshold": threshold, "update_target_rate": UPDATE_TARGET_RATE, "interval": RECORDED_INTERVAL,
        "shipped": SHIPPED, "shipped_config": shipped.to_dict(), "false_alarms": false_alarms,
        "matched_thresholds": matched_thresholds(healthy), "healthy_runs": len(healthy),
        "probe_steps": probe_steps(healthy, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def score_test_set(out_dir: Path, test_set: str, configs: dict[str, DetectorConfig], shipped: str,
                   chosen: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Score a test set once (studies 4-6): ``configs`` (shipped first) and the baselines at the thresholds matched
    in ``chosen``, by study 3's rules, with the live-versus-replay check and the rollback runs; writes and returns
    ``<out_dir>/results.json`` (``extra`` is added to it).

    Raises:
        FileNotFoundError: ``out_dir`` lacks the test set's fault-free or fault runs (parts ``<test_set>-healthy``
            and ``<test_set>-faults``).
    """
    healthy = load_set(out_dir, (f"{test_set}-healthy",))
    faults = load_set(out_dir, (f"{test_set}-faults",))
    if not healthy or not faults:
        raise FileNotFoundError(f"{out_dir} holds {len(healthy)} finished {test_set}-healthy and {len(faults)} "
                                f"{test_set}-faults runs: train the test set first")
    runs = healthy + faults
    onsets = onsets_of(runs)
    all_scores: dict[str, list[Score]] = {f"spinal: {name}": detector_scores(name, config, runs, onsets, 1)
                                          for name, config in configs.items()}
    all_scores.update(baseline_scores(runs, onsets, chosen["matched_thresholds"]))
    results: dict[str, Any] = {"interval": RECORDED_INTERVAL, "shipped": shipped, "onsets": onsets,
                               "matched_thresholds": chosen["matched_thresholds"], **extra}
    results.update(compare(all_scores, probe_steps(healthy, 1), RECORDED_INTERVAL, shipped, in_time=True))
    results["live"] = live_versus_replay(runs, all_scores[f"spinal: {shipped}"])
    results["rollback"] = rollback_value(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T4, once): score with the choices of ``<out_dir>/calibration.json``.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``); it is accepted so the phases
    share one call shape.
    """
    chosen = json.loads((out_dir / "calibration.json").read_text())
    configs = variants(DetectorConfig.from_dict(chosen["shipped_config"]))
    return score_test_set(out_dir, "T4", configs, SHIPPED, chosen, update_threshold=chosen["update_threshold"],
                          matched_on="C4")
