"""Study 5's analysis phases end to end on small synthetic run folders (no training).

C5 is laid out as studies 2-4 leave it under the runs root. Healthy runs carry batch metrics whose noise bursts
on ``rewards/chosen`` (a healthy burst the variance test must learn to ignore there); fault runs burst on
``logps/chosen`` from the fault step on (a data fault), and their held-out accuracy falls later.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import study5, tables
from studies.scenarios import RunSpec
from tests.studies.synthetic_runs import write_run

PROBES = 90  # probe steps 0, 2, …, 178
FAULT = 120
ONSET = 150


def _update(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    return {"update/size": 1e-3 * (1 + 0.1 * rng.random())}


def _bursts(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """A healthy run's ``rewards/chosen`` bursts for 20 steps somewhere in 70-170; a fault run's ``logps/chosen``
    from its fault step on."""
    burst_at = random.Random(spec.name + "burst").randrange(70, 150)
    faulty = spec.fault_step is not None and step >= spec.fault_step
    healthy_burst = spec.fault_step is None and burst_at <= step < burst_at + 20
    return {"rewards/chosen": rng.gauss(0, 0.5 if healthy_burst else 0.05),
            "logps/chosen": -1 + rng.gauss(0, 0.5 if faulty else 0.05)}


def _write_run(root: Path, spec: RunSpec, evals: bool) -> None:
    write_run(root, spec, PROBES, ONSET, evals, _update, _bursts)


def test_choose_then_evaluate(tmp_path: Path) -> None:
    root, out = tmp_path / "runs", tmp_path / "study5"
    seed = 0
    for folder, parts in study5.CALIBRATION["healthy"]:
        for _ in range(4):
            _write_run(root / folder, RunSpec("healthy", seed, 2 * PROBES, part=parts[0]), evals=False)
            seed += 1
    for folder, parts in study5.CALIBRATION["faults"]:
        _write_run(root / folder, RunSpec("label_noise_ramp", seed, 2 * PROBES, fault_step=FAULT, part=parts[0]),
                   evals=True)
        seed += 1
    for i in range(3):
        _write_run(out, RunSpec("healthy", 900 + i, 2 * PROBES, part="T5-healthy"), evals=False)
        _write_run(out, RunSpec("label_flip", 1010 + i, 2 * PROBES, fault_step=FAULT, part="T5-faults"), evals=True)

    chosen = study5.choose(root, out)
    assert json.loads((out / "calibration.json").read_text())["shipped"] == chosen["shipped"]
    assert chosen["healthy_runs"] == 12 and chosen["fault_runs"] == 3
    assert list(chosen["candidates"]) == list(study5.CANDIDATES)
    for entry in chosen["candidates"].values():
        assert set(entry) == {"config", "faults", "healthy", "cross_validated"}
        assert entry["cross_validated"]["false_per_1000"] >= 0.0
    # Healthy bursts sit on rewards/chosen: a variance test there sets a high threshold; on logps/chosen only, a
    # low one that catches the faults' bursts. The rule ships the latter.
    everything = chosen["candidates"]["all watched signals (study 4)"]["config"]["variance_threshold"]
    logps = chosen["candidates"]["logps/chosen only"]["config"]["variance_threshold"]
    assert logps < everything
    assert chosen["shipped"] == "logps/chosen only"
    assert chosen["shipped_config"]["variance_signals"] == ["logps/chosen"]
    assert "Shipped: **logps/chosen only**" in tables.study5_calibration_table(chosen)

    results = study5.evaluate(out)
    detectors = results["detectors"]
    assert list(detectors)[:3] == ["spinal: logps/chosen only", f"spinal: {study5.STUDY4}", "spinal: update jump only"]
    shipped = detectors["spinal: logps/chosen only"]
    assert shipped["all"]["fault_runs"] == 3 and shipped["all"]["detected_in_time"] == 3
    assert shipped["healthy"]["false_alarms"] == 0
    assert results["onsets"]["label_flip-s1010"] == ONSET and results["matched_on"] == "C5"
    table = tables.test_tables(json.loads((out / "results.json").read_text()), in_time=True)
    assert "logps/chosen only" in table
