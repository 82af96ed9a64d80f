"""Early warning wired into the callbacks: a destabilising fault raises one alert and rolls back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

L = pytest.importorskip("lightning.pytorch")

from spinal_callback import AlertReason, SpinalConfig, SpinalLightningCallback  # noqa: E402
from spinal_callback.config.detector import DEFAULT_SIGNALS  # noqa: E402

from .test_lightning import TinyPolicyModule, _fit  # noqa: E402

FAULT_STEP = 12


class Fault(L.Callback):
    """At FAULT_STEP, put a NaN into the last block's weights (as a blown-up update does), and keep a
    copy of the trainable weights after every step so the test can check what a rollback restored."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == FAULT_STEP:  # a blown-up update: the weights turn non-finite
            with torch.no_grad():
                pl_module.policy.model.layers[-1].mlp.down_proj.weight[0, 0] = float("nan")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        self.weights[step] = copy.deepcopy({k: v.detach().clone() for k, v in pl_module.named_parameters()})


def _records(path: str | None) -> list[dict]:
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


#: The default detector signals plus the late-band geometry these tests follow through a resume.
GEOMETRY = {**DEFAULT_SIGNALS, "band/late/transport": "both", "band/late/contraction": "both"}


def _config(actions: tuple[str, ...]) -> SpinalConfig:
    return SpinalConfig(
        interval=1, trace_interval=0, num_probe_pairs=4, on_alert=actions,  # a full trace at every probe
        detector={"warmup": 5, "signals": GEOMETRY},  # the late-band geometry plus the default signals
        rollback={"snapshot_interval": 2, "keep": 4, "lr_scale": 0.5},
    )


def test_fault_raises_one_alert_and_rolls_back_to_a_snapshot_before_it(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(_config(("log", "rollback")))
    fault = Fault()
    module = TinyPolicyModule()
    lr_before = 3e-3
    _fit(tmp_path, callback, module, max_steps=FAULT_STEP + 4, enable_checkpointing=False, callbacks=[fault])
    records = _records(callback.trace_path)
    alerts = [r for r in records if r["type"] == "alert"]
    rollbacks = [r for r in records if r["type"] == "rollback"]
    assert alerts, "the fault raised no alert"
    assert all(a["step"] >= FAULT_STEP for a in alerts), [a["step"] for a in alerts]
    assert {a["reason"] for a in alerts} == {AlertReason.NON_FINITE.value}
    assert len({a["step"] for a in alerts}) == 1  # one episode -> alerts at one step only
    assert len(rollbacks) == 1
    restored = rollbacks[0]["to_step"]
    assert restored <= FAULT_STEP  # snapshots are taken at the end of a step, before the fault
    # the weights right after the rollback (same step) equal those recorded at the snapshot step
    step = rollbacks[0]["step"]
    after = fault.weights[step]
    for name, value in fault.weights[restored].items():
        assert torch.equal(after[name], value), name
    optimizer = module.trainer.optimizers[0]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_before * 0.5)
    # the run is healthy again: later probes are finite and there is no second episode
    last = [r for r in records if r["type"] == "trace"][-1]
    assert last["step"] > step and all(row["entropy"] is not None for row in last["layers"])
    assert callback.monitor.failures == 1


def test_without_the_fault_no_alert(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(_config(("log", "rollback")))
    _fit(tmp_path, callback, max_steps=FAULT_STEP + 4, enable_checkpointing=False)
    types = [r["type"] for r in _records(callback.trace_path)]
    assert "alert" not in types and "rollback" not in types
    assert callback.monitor.guard.rollback is not None
    assert callback.monitor.guard.rollback.store.steps()  # snapshots were taken


def test_stop_action_stops_the_run(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(_config(("log", "stop")))
    trainer = _fit(tmp_path, callback, max_steps=FAULT_STEP + 8, enable_checkpointing=False, callbacks=[Fault()])
    assert trainer.global_step == FAULT_STEP + 1  # stopped right after the first non-finite probe
    assert callback.monitor.guard.rollback is None  # no snapshots without 'rollback'


def test_detector_state_snapshot_index_and_rollback_count_survive_a_checkpoint_resume(tmp_path: Path) -> None:
    config = SpinalConfig(
        interval=1, num_probe_pairs=4, on_alert=("log", "rollback"), detector={"warmup": 5, "signals": GEOMETRY},
        rollback={"snapshot_interval": 2, "keep": 4, "storage": "disk", "snapshot_dir": str(tmp_path / "snaps")},
    )
    callback = SpinalLightningCallback(config)
    fault = Fault()
    trainer = _fit(tmp_path, callback, max_steps=FAULT_STEP + 2, callbacks=[fault])
    guard = callback.monitor.guard
    assert guard.rollback is not None and guard.rollback.rollbacks == 1
    ckpt = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    saved = torch.load(ckpt, weights_only=False)["callbacks"][callback.state_key]["guard"]
    assert saved["rollback"]["rollbacks"] == 1 and saved["rollback"]["store"]
    assert saved["detector"] == guard.detector.state_dict()

    # the disk index in the checkpoint is what a fresh monitor picks up (before it snapshots again)
    fresh = SpinalLightningCallback(SpinalConfig(**{**config.to_dict(), "on_alert": ["log", "rollback"]}))
    fresh.load_state_dict(torch.load(ckpt, weights_only=False)["callbacks"][callback.state_key])
    assert fresh.monitor.guard.rollback is not None
    assert fresh.monitor.guard.rollback.store.steps() == guard.rollback.store.steps()

    resumed = SpinalLightningCallback(SpinalConfig(**{**config.to_dict(), "on_alert": ["log", "rollback"]}))
    _fit(tmp_path / "resume", resumed, max_steps=FAULT_STEP + 4, ckpt_path=ckpt)
    again = resumed.monitor.guard
    assert again.rollback is not None
    assert again.rollback.rollbacks == 1 and again.rollback.lr_factor == pytest.approx(0.5)
    assert again.alerts_total == guard.alerts_total
    assert again.detector.baseline("band/late/transport") is not None
