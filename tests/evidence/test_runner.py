"""One short study run end to end: files, cadences and the injected faults."""

from __future__ import annotations

import json

import pytest

from spinal_callback.evidence.analysis import load_run
from spinal_callback.evidence.runner import StudySettings, _training_pairs, run_study
from spinal_callback.evidence.scenarios import RunSpec

pytest.importorskip("trl")


def test_label_flip_rows_start_at_the_fault_step():
    from spinal_callback.demo.task import AdditionTask

    spec = RunSpec("label_flip", 0, max_steps=10, fault_step=4, flip_fraction=1.0)
    settings = StudySettings(batch_size=3)
    task = AdditionTask(seed=0)
    flipped = _training_pairs(spec, settings, task)
    clean = task.preference_pairs(30)
    assert flipped[:9] == clean[:9]  # steps 1-3 consume rows 0-8
    assert all(f["chosen"] == c["rejected"] and f["rejected"] == c["chosen"] for f, c in zip(flipped[9:], clean[9:]))


def test_short_run_records_everything(tmp_path):
    from spinal_callback.demo.model import SFTSettings

    spec = RunSpec("lr_ramp", 0, max_steps=6, fault_step=3, lr_growth=2.0)
    settings = StudySettings(batch_size=4, eval_problems=16, eval_pairs=8, num_probe_pairs=4)
    run_dir = run_study(spec, tmp_path / "runs", tmp_path / "cache", settings, SFTSettings(max_steps=20))
    run = load_run(run_dir)
    assert [r["step"] for r in run.logs] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in run.evals] == [0, 2, 4, 6]
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["chosen_logp"] < 0 for e in run.evals)
    assert [s for s, _ in run.traces] == [0, 2, 4, 6]
    lr = dict(run.series("learning_rate"))
    # The ramp doubles the learning rate after steps 3, 4, 5, … (the optimizer uses 2× at step 4). HF logs
    # the scheduler's last value, one step behind the optimizer: 4× the warmed-up 5e-5 at step 6.
    assert lr[6] == pytest.approx(4 * spec.learning_rate)
    assert json.loads((run_dir / "run.json").read_text())["spec"]["scenario"] == "lr_ramp"
