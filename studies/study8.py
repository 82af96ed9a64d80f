"""Study 8's two analysis phases (protocol: ``docs/evidence.md``, study 8).

- :func:`choose` uses the calibration set C8 — study 7's spent test set T7 (GPT-2 and Qwen2 runs) — only: per test of
  study 6's shipped detector, the fault-free runs it alarmed in and the fault runs it answered first; a test that
  alarmed in a fault-free run and answered no fault run first leaves the default checks. Writes
  ``calibration.json``.
- :func:`evaluate` scores study 8's test set T8 once with that choice (study 3's rules) and writes ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from studies.replay import Run, alarm_reasons
from studies.study2 import load_set
from studies.study3 import RECORDED_INTERVAL, onsets_of, probe_steps, replayed_summary
from studies.study7 import C6_MATCHED, score_choice, study6_detector

__all__ = ["CALIBRATION_PARTS", "SHIPPED", "STUDY6", "UPDATE_ONLY", "choose", "evaluate", "test_record"]

#: C8: study 7's test set, spent (its fault-free runs, its fault runs).
CALIBRATION_PARTS = ("T7-healthy", "T7-faults")
SHIPPED = "shipped (study 8 detector)"
STUDY6 = "study 6 detector (shipped before)"
UPDATE_ONLY = "update and turn jumps only"


def test_record(healthy: Sequence[Run], faults: Sequence[Run], checks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each test of ``checks`` within study 6's detector replayed on the runs: the fault-free runs it alarmed in,
    and the fault runs whose first alarm at or after the fault step is its (ties count for each test alarming at
    that step)."""
    config = study6_detector()
    record: dict[str, dict[str, Any]] = {check: {"healthy_runs": [], "first_answers": []} for check in checks}
    for run in healthy:
        for check in {reason for _, reason, _ in alarm_reasons(run, config)} & set(checks):
            record[check]["healthy_runs"].append(run.name)
    for run in faults:
        after = [(step, reason) for step, reason, _ in alarm_reasons(run, config) if step >= run.fault_start]
        if after:
            first = after[0][0]
            for check in sorted({reason for step, reason in after if step == first} & set(checks)):
                record[check]["first_answers"].append(run.name)
    return record


test_record.__test__ = False  # type: ignore[attr-defined]


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C8 = T7, spent): the tests that leave the default checks, the shipped config, false alarms on C8.

    Raises:
        FileNotFoundError: ``calibration_dir`` holds no finished T7 run.
    """
    healthy = load_set(calibration_dir, CALIBRATION_PARTS[:1])
    faults = load_set(calibration_dir, CALIBRATION_PARTS[1:])
    if not healthy or not faults:
        raise FileNotFoundError(f"{calibration_dir} holds {len(healthy)} finished T7-healthy and {len(faults)} "
                                "T7-faults runs: study 7's test set is study 8's calibration set")
    base = study6_detector()
    record = test_record(healthy, faults, base.checks)
    dropped = [check for check, seen in record.items() if seen["healthy_runs"] and not seen["first_answers"]]
    shipped = replace(base, checks=tuple(c for c in base.checks if c not in dropped))
    onsets = onsets_of([*healthy, *faults])
    summaries = {name: {"healthy": replayed_summary(name, config, healthy, onsets),
                        "faults": replayed_summary(name, config, faults, onsets)}
                 for name, config in ((SHIPPED, shipped), (STUDY6, base))}
    result = {
        "calibration_set": "C8 (study 7's T7)", "interval": RECORDED_INTERVAL, "tests": record, "dropped": dropped,
        "shipped": SHIPPED, "shipped_config": shipped.to_dict(), "in_sample": summaries,
        "matched_thresholds": dict(C6_MATCHED), "healthy_runs": len(healthy), "fault_runs": len(faults),
        "probe_steps": probe_steps(healthy, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T8, once): score with the choice of ``<out_dir>/calibration.json``: the shipped detector, study 6's,
    the update and turn tests alone, and the baselines at their C6 thresholds.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``).
    """
    return score_choice(out_dir, "T8", SHIPPED, STUDY6, study6_detector(), ("dropped",))
