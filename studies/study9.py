"""Study 9's two analysis phases (protocol: ``docs/evidence.md``, study 9).

- :func:`choose` uses the calibration set C9 only — studies 7 and 8's spent test sets T7 and T8: the VARIANCE_BURST
  test measured against each signal's own recent increments (``variance_reference`` = :data:`VARIANCE_REFERENCE`,
  fixed by the protocol) has its threshold set alone on C9's fault-free runs by studies 4 and 6's rule
  (:func:`studies.study4.choose_threshold`), and ships in study 8's detector; writes ``calibration.json``.
- :func:`evaluate` scores study 9's test set T9 once with that choice (study 3's rules) and writes ``results.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from studies.replay import Run, saved_config
from studies.study2 import load_set
from studies.study3 import onsets_of, replayed_summary
from studies.study4 import choose_threshold
from studies.study7 import C6_MATCHED, score_choice, study6_detector

__all__ = ["CALIBRATION_SETS", "SHIPPED", "STUDY8", "UPDATE_ONLY", "VARIANCE_ONLY", "VARIANCE_REFERENCE",
           "calibration_runs", "choose", "evaluate", "study8_detector"]

#: C9: (folder under the calibration root, test set) of studies 7 and 8, both spent.
CALIBRATION_SETS = (("study7", "T7"), ("study8", "T8"))
#: R, the increments before the variance window the ratio is measured against (fixed by the protocol).
VARIANCE_REFERENCE = 32
VARIANCE_CHECK = "variance_burst"
SHIPPED = "shipped (study 9 detector)"
STUDY8 = "study 8 detector (shipped before)"
VARIANCE_ONLY = "variance test alone"
UPDATE_ONLY = "update and turn jumps only"


def study8_detector() -> DetectorConfig:
    """Study 8's shipped detector, pinned: study 6's without SLOPE_CHANGE (the variance ratio against the pooled
    noise scale, threshold 4.61)."""
    base = study6_detector()
    return replace(base, checks=tuple(c for c in base.checks if c != "slope_change"))


def calibration_runs(root: Path) -> tuple[list[Run], list[Run]]:
    """C9's fault-free and fault runs, from ``<root>/study7`` and ``<root>/study8``.

    Raises:
        FileNotFoundError: either folder holds no finished fault-free or fault run of its test set.
    """
    healthy: list[Run] = []
    faults: list[Run] = []
    for folder, test_set in CALIBRATION_SETS:
        found = load_set(root / folder, (f"{test_set}-healthy",)), load_set(root / folder, (f"{test_set}-faults",))
        if not all(found):
            raise FileNotFoundError(f"{root / folder} holds {len(found[0])} finished {test_set}-healthy and "
                                    f"{len(found[1])} {test_set}-faults runs: studies 7 and 8's test sets are study "
                                    "9's calibration set")
        healthy += found[0]
        faults += found[1]
    return healthy, faults


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C9 = T7 + T8, spent; ``calibration_dir`` holds ``study7/`` and ``study8/``): the variance threshold
    of the recent-increment ratio, the false alarms on C9's fault-free runs and the detections on its fault runs
    (in-sample), for the shipped detector and study 8's.

    Raises:
        FileNotFoundError: see :func:`calibration_runs`.
    """
    healthy, faults = calibration_runs(calibration_dir)
    base = replace(study8_detector(), variance_reference=VARIANCE_REFERENCE)
    result = choose_threshold(healthy, out_dir, "C9", base, VARIANCE_CHECK, (SHIPPED, VARIANCE_ONLY),
                              matched=C6_MATCHED, round_up=2, write=False,
                              calibration_set="C9 (studies 7 and 8's T7 and T8)",
                              variance_reference=VARIANCE_REFERENCE, fault_runs=len(faults))
    shipped = saved_config(result["shipped_config"], base)
    onsets = onsets_of(faults)
    result["in_sample"] = {name: {"healthy": replayed_summary(name, config, healthy, onsets_of(healthy)),
                                  "faults": replayed_summary(name, config, faults, onsets)}
                           for name, config in ((SHIPPED, shipped), (STUDY8, study8_detector()))}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T9, once): score with the choice of ``<out_dir>/calibration.json``: the shipped detector, study 8's,
    the update and turn tests alone, and the baselines at their C6 thresholds.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``).
    """
    return score_choice(out_dir, "T9", SHIPPED, STUDY8, study8_detector(), ("variance_threshold", "variance_reference"))
