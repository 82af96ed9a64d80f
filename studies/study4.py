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
import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.signals import CHECKS
from spinal_callback.early_warning import calibrate
from spinal_callback.early_warning.calibrate import THRESHOLD_FIELDS
from studies.replay import Run, observations, saved_config, studied_defaults
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
    "SHIPPED",
    "STUDY4_CHECKS",
    "UPDATE_CHECK",
    "UPDATE_TARGET_RATE",
    "calibrated_update_threshold",
    "choose",
    "choose_threshold",
    "evaluate",
    "healthy_part",
    "score_test_set",
    "study3_detector",
    "study4_detector",
    "variants",
]

UPDATE_CHECK = "update_jump"
#: False alarms per 1000 probe steps the update test alone may raise on C4.
UPDATE_TARGET_RATE = 0.1

#: The part of C4 (calibration); T4's parts are ``T4-healthy`` and ``T4-faults``.
CALIBRATION_PARTS = ("C4-healthy",)
#: The tests of studies 3-5's detectors (TURN_JUMP came with study 6).
STUDY4_CHECKS = tuple(c for c in CHECKS if c != "turn_jump")

#: The detector variants scored on T4, in report order (see :func:`variants`).
SHIPPED = "shipped (study 3 detector + update jump)"
STUDY3_DETECTOR = "study 3 detector"
UPDATE_ONLY = "update jump only"


def study3_detector() -> DetectorConfig:
    """Study 3's shipped detector, pinned (the library's defaults have moved on since): the variance test on every
    watched signal, thresholds z 20.59, h 38.99, variance 6.82, speed 4.31, no turn test."""
    return replace(studied_defaults(), variance_signals=("*",), checks=STUDY4_CHECKS, z_threshold=20.59, cusum_h=38.99,
                   variance_threshold=6.82, variance_reference=0, speed_threshold=4.31)


def study4_detector() -> DetectorConfig:
    """Study 4's shipped detector, pinned: study 3's with the update test at 0.39."""
    return replace(study3_detector(), update_threshold=0.39)


def _calibrated_alone(healthy: Sequence[Run], base: DetectorConfig, check: str) -> float:
    """The threshold of ``check`` set alone on the fault-free runs ``healthy`` to :data:`UPDATE_TARGET_RATE` false
    alarms per 1000 probe steps, from the data alone (``keep_floor=False``)."""
    streams = [observations(run) for run in healthy]
    config = calibrate(streams, replace(base, checks=(check,)), target_rate=UPDATE_TARGET_RATE, keep_floor=False)
    return float(getattr(config, THRESHOLD_FIELDS[check]))


def calibrated_update_threshold(healthy: Sequence[Run]) -> float:
    """The UPDATE_JUMP threshold set on the fault-free runs ``healthy`` (probe interval 2) to
    :data:`UPDATE_TARGET_RATE` false alarms per 1000 probe steps, from the data alone (``keep_floor=False``).

    Raises:
        ValueError: no run of ``healthy`` has enough ``update/size`` observations to be scored (runs recorded
            before the monitor measured it).
    """
    return _calibrated_alone(healthy, study3_detector(), UPDATE_CHECK)


def variants(shipped: DetectorConfig) -> dict[str, DetectorConfig]:
    """The protocol's detector variants, from the shipped config: it, it without the update test (study 3's
    detector), and the update test alone."""
    return {
        SHIPPED: shipped,
        STUDY3_DETECTOR: replace(shipped, checks=tuple(c for c in shipped.checks if c != UPDATE_CHECK)),
        UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK,)),
    }


def healthy_part(calibration_dir: Path, set_name: str) -> list[Run]:
    """The finished fault-free runs of part ``<set_name>-healthy`` in ``calibration_dir``.

    Raises:
        FileNotFoundError: there is none.
    """
    part = f"{set_name}-healthy"
    healthy = load_set(calibration_dir, (part,))
    if not healthy:
        raise FileNotFoundError(f"no finished {set_name} run (part {part!r}) in {calibration_dir}: train the "
                                "calibration set first")
    return healthy


def choose_threshold(healthy: Sequence[Run], out_dir: Path, set_name: str, base: DetectorConfig, check: str,
                     names: tuple[str, str], matched: Any = None, round_up: int | None = None, write: bool = True,
                     **extra: Any) -> dict[str, Any]:
    """The one-threshold choice of studies 4, 6 and 9: ``check``'s threshold set alone on the fault-free runs
    ``healthy`` of calibration set ``set_name`` (:data:`UPDATE_TARGET_RATE`, from the data alone; ``round_up``:
    rounded up to that many decimals), shipped as ``base`` with that threshold; the false alarms there of the shipped
    detector and of ``check`` alone (``names``), the baselines' matched thresholds (on ``healthy``, unless
    ``matched`` gives them); written to ``<out_dir>/calibration.json`` with ``extra`` (unless not ``write``: a caller
    that adds to it writes it)."""
    field = THRESHOLD_FIELDS[check]
    threshold = _calibrated_alone(healthy, base, check)
    if round_up is not None:
        threshold = math.ceil(threshold * 10**round_up) / 10**round_up
    shipped = replace(base, **{field: threshold})  # type: ignore[arg-type]
    configs = dict(zip(names, (shipped, replace(shipped, checks=(check,))), strict=True))
    onsets = onsets_of(healthy)
    false_alarms = {name: replayed_summary(name, config, healthy, onsets) for name, config in configs.items()}
    for name, summary in false_alarms.items():
        print(f"{name}: {summary['false_per_1000']:.2f} false alarms / 1000 probe steps on {set_name} "
              f"({summary['runs_with_false_alarm']}/{len(healthy)} runs with one)", flush=True)
    result = {
        field: threshold, "update_target_rate": UPDATE_TARGET_RATE, "interval": RECORDED_INTERVAL,
        "shipped": names[0], "shipped_config": shipped.to_dict(), "false_alarms": false_alarms,
        "matched_thresholds": matched_thresholds(healthy) if matched is None else dict(matched),
        "healthy_runs": len(healthy), "probe_steps": probe_steps(healthy, 1), **extra,
    }
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C4 only): the update threshold on study 3's detector, false alarms and matched baselines on C4.

    Raises:
        FileNotFoundError: ``calibration_dir`` holds no finished C4 run.
    """
    return choose_threshold(healthy_part(calibration_dir, "C4"), out_dir, "C4", study3_detector(), UPDATE_CHECK,
                            (SHIPPED, UPDATE_ONLY))


def score_test_set(out_dir: Path, test_set: str, configs: dict[str, DetectorConfig], shipped: str,
                   chosen: dict[str, Any], read_before_log: Collection[str] = (), every_log: Collection[str] = (),
                   live: str | None = None, **extra: Any) -> dict[str, Any]:
    """Score a test set once (studies 4-6): ``configs`` (shipped first) and the baselines at the thresholds matched
    in ``chosen``, by study 3's rules, with the live-versus-replay check and the rollback runs; writes and returns
    ``<out_dir>/results.json`` (``extra`` is added to it). The detectors named in ``read_before_log`` are replayed as
    a callback that read each step before its log saw the runs (the callback before study 14), those in
    ``every_log`` as one that reads every logged value at its own step (study 15). The callback's own alerts are
    checked against the replay of ``live`` (default: ``shipped``), the detector the runs were trained with.

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
    before = [replace(run, metrics_at_step=False) for run in runs]
    each_log = [replace(run, every_log=True) for run in runs]

    def fed(name: str) -> list[Run]:
        return before if name in read_before_log else each_log if name in every_log else runs

    all_scores: dict[str, list[Score]] = {
        f"spinal: {name}": detector_scores(name, config, fed(name), onsets, 1) for name, config in configs.items()}
    all_scores.update(baseline_scores(runs, onsets, chosen["matched_thresholds"]))
    results: dict[str, Any] = {"interval": RECORDED_INTERVAL, "shipped": shipped, "onsets": onsets,
                               "matched_thresholds": chosen["matched_thresholds"], **extra}
    results.update(compare(all_scores, probe_steps(healthy, 1), RECORDED_INTERVAL, shipped, in_time=True))
    results["live"] = live_versus_replay(runs, all_scores[f"spinal: {live or shipped}"])
    results["rollback"] = rollback_value(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T4, once): score with the choices of ``<out_dir>/calibration.json``.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``); it is accepted so the phases
    share one call shape.
    """
    chosen = json.loads((out_dir / "calibration.json").read_text())
    configs = variants(saved_config(chosen["shipped_config"], study4_detector()))
    return score_test_set(out_dir, "T4", configs, SHIPPED, chosen, update_threshold=chosen["update_threshold"],
                          matched_on="C4")
