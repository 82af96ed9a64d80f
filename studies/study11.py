"""Study 11's analysis (protocol: ``docs/evidence.md``, study 11): the shipped detector on model shapes and fault
families it was not chosen on.

Nothing is chosen: the detector is study 9's shipped one (:func:`~studies.study10.study9_detector`, pinned), beside
its update and turn tests alone; the baselines keep their shipped thresholds and those matched on C6
(:data:`~studies.study7.C6_MATCHED`). :func:`evaluate` scores T11 once by study 3's rules, adds the shipped
detector's results per model (:func:`by_model`), and writes ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from studies.replay import Run
from studies.scoring import Score
from studies.study2 import load_set
from studies.study3 import detector_scores, onsets_of
from studies.study4 import UPDATE_CHECK, score_test_set
from studies.study6 import TURN_CHECK
from studies.study7 import C6_MATCHED
from studies.study10 import study9_detector

__all__ = ["NEW_MODELS", "SHIPPED", "UPDATE_ONLY", "by_model", "evaluate", "model_table"]

SHIPPED = "shipped (study 9 detector)"
UPDATE_ONLY = "update and turn jumps only"
#: The shapes no study before 11 used.
NEW_MODELS = ("M3", "G2")


def by_model(runs: Sequence[Run], scores: Sequence[Score]) -> dict[str, dict[str, Any]]:
    """Per model of ``runs``: fault-free runs and those with a false alarm, fault runs with an onset and those
    answered in time (``scores``: one detector's, one per run)."""
    model_of = {run.name: str(run.spec["model"]) for run in runs}
    fault = {run.name: run.is_fault for run in runs}
    out: dict[str, dict[str, Any]] = {}
    for s in scores:
        row = out.setdefault(model_of[s.run], {"healthy": 0, "healthy_alarmed": [], "faults": 0, "in_time": 0,
                                               "missed": []})
        if not fault[s.run]:
            row["healthy"] += 1
            if s.false_alarms:
                row["healthy_alarmed"].append(s.run)
        elif s.onset is not None:
            row["faults"] += 1
            row["in_time"] += int(s.in_time)
            if not s.in_time:
                row["missed"].append(s.run)
    return dict(sorted(out.items()))


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Score T11 (``out_dir``) once: the shipped detector, its update and turn tests alone, and the baselines at
    their C6 thresholds; plus the shipped detector per model. ``calibration_dir`` is not read (nothing is chosen).

    Raises:
        FileNotFoundError: ``out_dir`` lacks T11's fault-free or fault runs.
    """
    shipped = study9_detector()
    configs = {SHIPPED: shipped, UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK))}
    results = score_test_set(out_dir, "T11", configs, SHIPPED, {"matched_thresholds": dict(C6_MATCHED)},
                             matched_on="C6")
    runs = load_set(out_dir, ("T11-healthy", "T11-faults"))
    results["by_model"] = by_model(runs, detector_scores(SHIPPED, shipped, runs, onsets_of(runs), 1))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def model_table(results: dict[str, Any]) -> str:
    """The shipped detector per model of T11 (new shapes marked)."""
    lines = ["Shipped detector per model (* = a shape no earlier study used):", "",
             "| model | fault-free runs | with a false alarm | fault runs with an onset | answered in time | missed |",
             "|---|---:|---:|---:|---:|---|"]
    for model, row in results["by_model"].items():
        mark = "*" if model in NEW_MODELS else ""
        lines.append(f"| {model}{mark} | {row['healthy']} | {len(row['healthy_alarmed'])} | {row['faults']} | "
                     f"{row['in_time']} | {', '.join(row['missed']) or '–'} |")
    return "\n".join(lines) + "\n"
