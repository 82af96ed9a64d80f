"""The issue's scenario: a tiny DPO run whose learning rate is raised 30x mid-run.

With the fault, an alert fires and a rollback happens, after which the run is healthy again; the
same run without the fault raises no alert. Both runs use the demo's pre-trained 9-block model (its
supervised warm-up is cached once for the session) and TRL's DPOTrainer with the callback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from spinal_callback.demo import trl_recipe
from spinal_callback.demo.inputs import prepare_inputs, silence_known_warnings

FAULT_STEP = 80  # after the detector's warm-up: 24 probes at interval 2
FAULT = f"{FAULT_STEP}:30"
STEPS = 130


@pytest.fixture(scope="module")
def sft_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sft_cache")


def _run(tmp_path: Path, cache: Path, *extra: str) -> tuple[list[dict], Any]:
    args = trl_recipe.build_parser().parse_args([
        "--output-dir", str(tmp_path), "--cache-dir", str(cache), "--max-steps", str(STEPS), "--interval", "2",
        "--logging-steps", "1", "--on-alert", "log,rollback", "--snapshot-interval", "10", "--seed", "0", *extra,
    ])
    inputs = prepare_inputs(args)
    before = inputs.accuracy()
    with silence_known_warnings():
        trainer, callback = trl_recipe.build_trainer(args, inputs)
        trainer.train()
    records = [json.loads(line) for line in Path(callback.trace_path).read_text().splitlines()]
    return records, (callback, before, inputs.accuracy(trainer.model))


def test_lr_spike_raises_an_alert_and_rolls_back_to_a_healthy_run(tmp_path: Path, sft_cache: Path) -> None:
    records, (callback, before, after) = _run(tmp_path, sft_cache, "--lr-spike", FAULT)
    alerts = [r for r in records if r["type"] == "alert"]
    rollbacks = [r for r in records if r["type"] == "rollback"]
    assert alerts and min(a["step"] for a in alerts) > FAULT_STEP, [(a["step"], a["signal"]) for a in alerts]
    assert len(rollbacks) == 1, rollbacks
    rollback = rollbacks[0]
    assert rollback["to_step"] <= FAULT_STEP < rollback["from_step"]
    # healthy again: no alert after the rollback, the learning rate is back below the original,
    # and the policy is at least as good as before DPO
    assert all(a["step"] <= rollback["step"] for a in alerts)
    assert callback.monitor.guard.rollback.lr_factor == pytest.approx(0.5)
    assert after >= before - 0.02, (before, after)
    last = [r for r in records if r["type"] == "trace"][-1]
    assert last["step"] == STEPS and all(row["entropy"] is not None for row in last["layers"])


def test_same_run_without_the_fault_raises_no_alert(tmp_path: Path, sft_cache: Path) -> None:
    records, (callback, before, after) = _run(tmp_path, sft_cache)
    assert [r for r in records if r["type"] in ("alert", "rollback")] == []
    assert callback.monitor.guard.rollback.store.steps()  # snapshots were being taken
    assert after >= before
