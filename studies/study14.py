"""Study 14's analysis (protocol: ``docs/evidence.md``, study 14): data faults answered at the reading that sees them.

Through study 13 the detector answered swapped preference labels 2–8 steps after the fault, while TRL's chosen
log-prob drop answered at the fault step or the one after: the batch metrics jump at once (``logps/chosen`` falls
by several nats in one step), but three delays stood between that jump and the alert. The HF callback read a step
at ``on_step_end``, before the trainer logs that step, so each reading saw the metrics of the step before; readings
every 2 steps saw every second logged value; and TREND_BREAK waited for a second exceedance at the next reading.
Study 14 changes two things:

- the callback holds a reading at a logging step until that step's log (``SpinalTrainerCallback.on_log``), so the
  detector reads the metrics of the step it reads (runs record ``"metrics_at_step"``; :mod:`studies.replay`);
- an exceedance at least ``decisive_factor`` times its threshold opens the episode at once, without the second one
  (``DetectorConfig.decisive_factor``, :data:`DECISIVE_FACTOR`).

The choice was made on spent runs (:func:`calibration_replay`: studies 11–13's test runs, replayed with study 13's
default as it ran, with the new reading alone, and with the new reading and each candidate factor); :func:`evaluate`
scores the fresh test set T14 once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.calibrate import THRESHOLD_FIELDS, healthy_scores
from studies.replay import Run, observations
from studies.study2 import load_set
from studies.study3 import detector_scores, onsets_of
from studies.study4 import score_test_set
from studies.study7 import C6_MATCHED
from studies.study11 import by_model
from studies.study12 import PROBE_INTERVAL, replay_summary
from studies.study13 import study13_detector

__all__ = ["AT_LOG", "CANDIDATE_FACTORS", "DECISIVE_FACTOR", "LARGEST", "SHIPPED", "STUDY13", "calibration_replay",
           "calibration_table", "evaluate", "largest_healthy", "settings_of", "study14_detector"]

SHIPPED = "shipped (study 14 default: decisive exceedances)"
STUDY13 = "study 13 default (two exceedances)"
AT_LOG = "study 13 default, reading at the log"
#: The key of the largest fault-free statistics in :func:`calibration_replay`'s results.
LARGEST = "largest statistic"
#: The candidate factors the choice looked at, on spent runs.
CANDIDATE_FACTORS = (1.5, 2.0, 3.0, 4.0)
#: ``DetectorConfig.decisive_factor`` since study 14.
DECISIVE_FACTOR = 2.0


def study14_detector() -> DetectorConfig:
    """The library's default detector since study 14, pinned: study 13's with ``decisive_factor`` set."""
    return replace(study13_detector(), decisive_factor=DECISIVE_FACTOR)


def settings_of(spec: Any) -> Any:
    """T14's study settings: study 13's (the library's schedule: probe every 50 steps, readings every 2; held-out
    evaluations for fault runs only). The live detector is the library's default, which is :func:`study14_detector`."""
    from studies.study13 import settings_of as study13_settings

    return study13_settings(spec)


def _as_read(runs: Sequence[Run], at_step: bool) -> list[Run]:
    """The runs as a callback that reads each logging step with its own log (``at_step``) or the one before saw them."""
    return [replace(run, metrics_at_step=at_step) for run in runs]


def calibration_replay(runs: Sequence[Run]) -> dict[str, Any]:
    """The choice's evidence, on spent runs (recorded with the reading before the log): study 13's default as it ran;
    the reading at the log alone; the reading at the log with each candidate factor. Per detector the healthy runs
    that alarmed, the fault runs answered in time and each fault run's first alarm after the fault; and (``LARGEST``)
    the largest TREND_BREAK and VARIANCE_BURST statistic in a fault-free run read at the log, single and two in a
    row, as a fraction of the threshold (a single one would have alarmed at a factor below it)."""
    onsets = onsets_of(runs)
    before, at_log = _as_read(runs, False), _as_read(runs, True)
    base = study13_detector()
    out: dict[str, Any] = {
        STUDY13: replay_summary(before, detector_scores(STUDY13, base, before, onsets, 1)),
        AT_LOG: replay_summary(at_log, detector_scores(AT_LOG, base, at_log, onsets, 1)),
    }
    for factor in CANDIDATE_FACTORS:
        name = f"{AT_LOG}, decisive factor {factor:g}"
        config = replace(base, decisive_factor=factor)
        out[name] = replay_summary(at_log, detector_scores(name, config, at_log, onsets, 1))
    out["onsets"] = {run.name: onsets[run.name] for run in runs if run.is_fault}
    out["families"] = {run.name: run.spec["scenario"] for run in runs if run.is_fault}
    out[LARGEST] = largest_healthy(at_log, base)
    return out


def largest_healthy(runs: Sequence[Run], base: DetectorConfig) -> dict[str, float | None]:
    """Over the fault-free ``runs``: the largest TREND_BREAK and VARIANCE_BURST statistic of a single observation and
    of two in a row (the weaker of the two), each as a fraction of its threshold in ``base``."""
    healthy = [observations(run) for run in runs if not run.is_fault]
    out: dict[str, float | None] = {}
    for label, config in (("single", replace(base, decisive_factor=1.0)), ("two in a row", base)):
        scores = healthy_scores(healthy, config)
        for test in ("trend_break", "variance_burst"):
            values = [v for run in scores.get(test, []) for v in run]
            threshold = float(getattr(base, THRESHOLD_FIELDS[test]))
            out[f"{test}, {label}"] = max(values) / threshold if values else None
    return out


def calibration_table(results: dict[str, Any]) -> str:
    """:func:`calibration_replay`'s results as Markdown: per detector, fault-free runs with an alarm, fault runs in
    time, and per family the median of (onset − first alarm) over the runs answered in time."""
    import statistics

    names = [k for k in results if k not in ("onsets", "families", LARGEST)]
    families = sorted(set(results["families"].values()))
    lines = ["| detector | healthy runs with an alarm | fault runs answered in time | "
             + " | ".join(f"{f}: in time · median lead" for f in families) + " |",
             "|---|---:|---:|" + "---:|" * len(families)]
    onsets = results["onsets"]
    for name in names:
        row = results[name]
        cells = []
        for family in families:
            leads = [onsets[r] - first for r, first in row["first_alarm"].items()
                     if results["families"][r] == family and onsets.get(r) is not None and first is not None
                     and first <= onsets[r]]
            scorable = sum(1 for r in row["first_alarm"]
                           if results["families"][r] == family and onsets.get(r) is not None)
            cells.append(f"{len(leads)}/{scorable} · {statistics.median(leads):g}" if leads else f"0/{scorable} · –")
        lines.append(f"| {name} | {len(row['healthy_alarmed'])}/{row['healthy_runs']} | "
                     f"{row['in_time']}/{row['scorable_faults']} | " + " | ".join(cells) + " |")
    largest = ", ".join(f"{key} {value:.2f}" for key, value in results[LARGEST].items() if value is not None)
    lines += ["", f"Fault-free runs read at the log, {LARGEST} (fraction of the threshold): {largest or 'none'}."]
    return "\n".join(lines) + "\n"


def evaluate(out_dir: Path) -> dict[str, Any]:
    """Score T14 (``out_dir``) once: the new default (as recorded: reading at the log), study 13's default with the
    reading before the log (as it ran), and the baselines at their C6 thresholds; the new default per model.

    Raises:
        FileNotFoundError: ``out_dir`` lacks T14's fault-free or fault runs.
    """
    shipped = study14_detector()
    configs = {SHIPPED: shipped, STUDY13: study13_detector()}
    results = score_test_set(out_dir, "T14", configs, SHIPPED, {"matched_thresholds": dict(C6_MATCHED)},
                             matched_on="C6", probe_interval=PROBE_INTERVAL,
                             read_before_log={STUDY13})
    runs = load_set(out_dir, ("T14-healthy", "T14-faults"))
    results["by_model"] = by_model(runs, detector_scores(SHIPPED, shipped, runs, onsets_of(runs), 1))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
