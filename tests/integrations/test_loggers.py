"""Any logger: the HF callback hands its scalars to every reporting integration of the Trainer and honours
``report_to`` (the Lightning callback's loggers are tested in test_lightning.py, CSVLogger included)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from transformers import TrainerCallback
from transformers.integrations import integration_utils
from trl import DPOConfig, DPOTrainer

from spinal_callback import SpinalConfig, SpinalTrainerCallback

from .helpers import pairs, tiny_llama, tokenizer


def _trainer(tmp_path: Path, callbacks: list[Any], report_to: list[str], max_steps: int = 3) -> DPOTrainer:
    tok = tokenizer()
    model = tiny_llama(len(tok))
    config = DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=1, report_to=report_to, use_cpu=True, max_length=32, save_strategy="no", disable_tqdm=True,
    )
    return DPOTrainer(
        model=model, ref_model=copy.deepcopy(model).eval().requires_grad_(False), args=config,
        train_dataset=Dataset.from_list(pairs()), processing_class=tok, callbacks=callbacks,
    )


def _event_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("events.out.tfevents.*")]


class Recorder(TrainerCallback):
    """A reporting integration that records what reaches its ``on_log``: (global step, logs)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, dict[str, Any]]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        self.seen.append((state.global_step, dict(logs or {})))


@pytest.fixture
def recording_integration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``Recorder`` as HF's integration "recording", as W&B or MLflow are registered."""
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "recording", Recorder)


def test_scalars_reach_every_reporting_integration_at_the_probe_steps(tmp_path: Path, recording_integration) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    recorder = Recorder()
    trainer = _trainer(tmp_path, [recorder, callback], report_to=[], max_steps=4)
    callback.set_trainer(trainer)
    trainer.train()
    spinal = [(step, logs) for step, logs in recorder.seen if any(k.startswith("spinal/") for k in logs)]
    probes = [(step, logs) for step, logs in spinal if "spinal/probe/seconds" in logs]
    assert [step for step, _ in probes] == [0, 2, 4]
    # TRL logs every step here: the logs between the probes were read on their own (read_every_log), with the
    # detector's markers at their steps
    assert [step for step, _ in spinal if step % 2] == [1, 3]
    assert all({"spinal/alerts/marker", "spinal/rollbacks/marker"} <= set(logs) for step, logs in spinal if step % 2)
    for step, logs in probes:  # a full depth trace at step 0 (trace_interval 10), the last layer at every probe
        assert ("spinal/band/late/transport" in logs and "spinal/transport/L1" in logs) == (step == 0)
        assert {"spinal/pairs/margin", "spinal/probe/seconds", "spinal/entropy/L6"} <= set(logs)
        assert all(k.startswith("spinal/") and isinstance(v, float) for k, v in logs.items())
    # TRL's own logs still arrive untouched, and the trainer's history holds no spinal entry.
    assert any("rewards/chosen" in logs for _, logs in recorder.seen)
    assert not any(k.startswith("spinal/") for entry in trainer.state.log_history for k in entry)
    # report_to=[] without log_dir: no TensorBoard anywhere, the trace file in <output_dir>/spinal.
    assert callback.log_dir is None and _event_files(tmp_path) == []
    assert callback.trace_path == str(tmp_path / "out" / "spinal" / "spinal_trace.jsonl")
    records = [json.loads(line) for line in Path(callback.trace_path).read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in records] == [("trace", 0), ("signals", 1), ("trace", 2), ("signals", 3),
                                                         ("trace", 4)]


def test_report_to_none_writes_the_trace_and_no_tensorboard(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    _trainer(tmp_path, [callback], report_to=["none"]).train()
    assert _event_files(tmp_path) == []
    assert Path(callback.trace_path).is_file() and callback.log_dir is None


def test_without_the_trainer_a_named_integration_gets_a_warning_that_says_how(
    tmp_path: Path, recording_integration, caplog: pytest.LogCaptureFixture
) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    with caplog.at_level(logging.WARNING, logger="spinal_callback"):
        _trainer(tmp_path, [callback], report_to=["recording"], max_steps=1).train()
    assert "set_trainer(trainer)" in caplog.text and "recording" in caplog.text


def test_wandb_offline_receives_the_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb", reason="wandb is in the dev extras; CI installs it")
    from wandb.sdk.wandb_run import Run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    logged: list[dict[str, Any]] = []
    real_log = Run.log

    def log(self, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        logged.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(Run, "log", log)
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    trainer = _trainer(tmp_path, [callback], report_to=["wandb"], max_steps=2)
    callback.set_trainer(trainer)
    trainer.train()
    wandb.finish()
    spinal = [entry for entry in logged if "train/spinal/pairs/margin" in entry]
    assert [entry["train/global_step"] for entry in spinal] == [0, 2]
    assert "spinal-callback** monitoring" in spinal[0]["train/spinal/config"]  # text reaches W&B at the 1st probe
    assert list((tmp_path / "wandb").glob("offline-run-*/*.wandb"))  # the offline run was really written


def test_a_failing_integration_is_a_warning_and_training_goes_on(tmp_path: Path, recording_integration) -> None:
    class Broken(Recorder):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and any(k.startswith("spinal/") for k in logs):
                raise ConnectionError("logger offline")

    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2))
    trainer = _trainer(tmp_path, [Broken(), callback], report_to=[], max_steps=2)
    callback.set_trainer(trainer)
    with pytest.warns(RuntimeWarning, match="handing scalars to Broken failed.*logger offline"):
        trainer.train()
    assert trainer.state.global_step == 2
    steps = [json.loads(line)["step"] for line in Path(callback.trace_path).read_text().splitlines()]
    assert steps == [0, 1, 2]


def test_text_goes_only_to_integrations_that_take_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb_like = type("WandbCallback", (Recorder,), {})  # W&B logs a text value as text; MLflow & co. drop it
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "wandb_like", wandb_like)
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "recording", Recorder)
    numbers_only, takes_text = Recorder(), wandb_like()
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    trainer = _trainer(tmp_path, [numbers_only, takes_text, callback], report_to=[], max_steps=2)
    callback.set_trainer(trainer)
    trainer.train()
    texts = [(step, logs["spinal/config"]) for step, logs in takes_text.seen if "spinal/config" in logs]
    assert len(texts) == 1 and texts[0][0] == 0 and "spinal-callback** monitoring" in texts[0][1]
    spinal_values = [v for _, logs in numbers_only.seen for k, v in logs.items() if k.startswith("spinal/")]
    assert spinal_values and not any(isinstance(v, str) for v in spinal_values)


def test_lightning_text_goes_to_loggers_with_log_text(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from spinal_callback import SpinalLightningCallback
    from tests.integrations.test_lightning import _fit

    class WandbLogger(CSVLogger):  # the duck type of Lightning's WandbLogger: log_text(key, columns, data, step)
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.texts: list[tuple[str, list, int | None]] = []

        def log_text(self, key, columns, data, step=None):  # type: ignore[no-untyped-def]
            self.texts.append((key, data, step))

    logger = WandbLogger(str(tmp_path), name="wb")
    callback = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=2, log_dir=str(tmp_path / "tb")))
    _fit(tmp_path, callback, max_steps=2, logger=logger, enable_checkpointing=False)
    keys = [key for key, _, _ in logger.texts]
    assert keys == ["spinal/config"] and "spinal-callback** monitoring" in logger.texts[0][1][0][0]
