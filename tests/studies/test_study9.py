"""Study 9's phases end to end on small synthetic run folders (no training): the variance threshold of the
recent-increment ratio chosen on C9 (studies 7 and 8's folders), then T9 scored with it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback.config.detector import DetectorConfig
from studies import study9, tables
from studies.scenarios import RunSpec
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 90  # probe steps 0, 2, …, 178
FAULT = 120
ONSET = 140


def _burst(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """TRL's chosen log-prob: noise growing slowly by half over the run; ×30 after a label-noise fault."""
    noise = 0.05 * (1.0 + 0.5 * step / (2 * PROBES))
    if spec.scenario == "label_noise_ramp" and step > FAULT:
        noise *= 30.0
    return {"logps/chosen": -1 + rng.gauss(0, noise)}


def _write(root: Path, test_set: str, seeds: int = 3) -> None:
    for seed in range(seeds):
        write_run(root, RunSpec("healthy", 10 + seed, 2 * PROBES, model="M2", part=f"{test_set}-healthy"), PROBES,
                  ONSET, False, update_signals, _burst)
        for i, family in enumerate(("lr_jump", "label_noise_ramp")):
            spec = RunSpec(family, 20 + 10 * i + seed, 2 * PROBES, fault_step=FAULT,
                           label_noise_ramp=60 if family == "label_noise_ramp" else 0, model="M1",
                           part=f"{test_set}-faults")
            write_run(root, spec, PROBES, ONSET, True, update_signals, _burst)


def test_choose_then_evaluate(tmp_path: Path) -> None:
    _write(tmp_path / "study7", "T7")
    with pytest.raises(FileNotFoundError, match="study8 holds 0 finished T8-healthy"):
        study9.choose(tmp_path, tmp_path / "study9")
    _write(tmp_path / "study8", "T8")
    out = tmp_path / "study9"
    chosen = study9.choose(tmp_path, out)
    assert chosen["healthy_runs"] == 6 and chosen["fault_runs"] == 12 and chosen["variance_reference"] == 32
    threshold = chosen["variance_threshold"]
    assert threshold > 1.0 and round(threshold, 2) == threshold  # rounded up to 2 decimals
    shipped = DetectorConfig.from_dict(chosen["shipped_config"])
    assert shipped.variance_reference == 32 and shipped.variance_threshold == threshold
    assert "slope_change" not in shipped.checks and shipped.variance_signals == ("logps/chosen",)
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["in_sample"] == json.loads(json.dumps(chosen["in_sample"]))
    assert set(chosen["in_sample"]) == {study9.SHIPPED, study9.STUDY8}
    table = tables.study9_calibration_table(chosen)
    assert f"**{threshold:.2f}**" in table and "C9" in table
    _write(out, "T9")
    results = study9.evaluate(out)
    names = [f"spinal: {n}" for n in (study9.SHIPPED, study9.STUDY8, study9.UPDATE_ONLY)]
    assert list(results["detectors"])[:3] == names
    ours = results["detectors"][names[0]]
    assert ours["label_noise_ramp"]["detected_in_time"] == 3 and ours["lr_jump"]["detected_in_time"] == 3
    assert results["variance_threshold"] == threshold and results["matched_on"] == "C6"
    alone = results["detectors"][names[2]]  # the update and turn tests do not see a data fault
    assert alone["label_noise_ramp"]["detected_in_time"] == 0
