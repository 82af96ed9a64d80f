"""SpinalLightningCallback in a Lightning fit: schedule, loggers, trace file, checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

L = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from spinal_callback import SpinalConfig, SpinalLightningCallback  # noqa: E402
from spinal_callback.model.probe_batch import collate_pairs, tokenize_pairs  # noqa: E402

from .helpers import all_finite, images, pairs, scalars, tiny_llama, tokenizer  # noqa: E402


class TinyPolicyModule(L.LightningModule):
    """Likelihood training on the chosen answers: enough to move the policy between probes."""

    def __init__(self, attr: str = "policy") -> None:
        super().__init__()
        self.tokenizer = tokenizer()
        setattr(self, attr, tiny_llama(len(self.tokenizer)))
        self._attr = attr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        model = getattr(self, self._attr)
        half = batch["input_ids"].shape[0] // 2
        ids, mask = batch["input_ids"][:half], batch["attention_mask"][:half]
        labels = ids.masked_fill(batch["completion_mask"][:half] == 0, -100)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=3e-3)

    def train_dataloader(self) -> DataLoader:
        records = tokenize_pairs(pairs(), self.tokenizer)
        return DataLoader(records, batch_size=4, collate_fn=collate_pairs)  # type: ignore[arg-type]


def _fit(tmp_path: Path, callback: SpinalLightningCallback, module: Any = None, *, max_steps: int = 5,
         logger: Any = True, ckpt_path: str | None = None, **kwargs: Any) -> L.Trainer:
    if logger is True:
        logger = TensorBoardLogger(str(tmp_path), name="tb")
    extra = kwargs.pop("callbacks", [])
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=logger, callbacks=[callback, *extra],
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path), **kwargs,
    )
    trainer.fit(module or TinyPolicyModule(), ckpt_path=ckpt_path)
    return trainer


def _steps(trace_path: str | None) -> list[int]:
    assert trace_path is not None
    return [json.loads(line)["step"] for line in Path(trace_path).read_text().splitlines()]


def test_fit_logs_traces_through_the_tensorboard_logger(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=4))
    trainer = _fit(tmp_path, callback, max_steps=5, enable_checkpointing=False)
    assert callback.log_dir == trainer.logger.log_dir  # type: ignore[union-attr]
    assert _steps(callback.trace_path) == [0, 2, 4]
    tags = scalars(callback.log_dir)  # type: ignore[arg-type]
    assert [s for s, _ in tags["spinal/contraction/L6"]] == [0, 2, 4]
    assert all_finite(tags["spinal/band/mid/entropy"])
    assert "spinal/heatmap/transport" in images(callback.log_dir)  # type: ignore[arg-type]


def test_gradient_accumulation_probes_each_optimizer_step_once(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(SpinalConfig(interval=1, num_probe_pairs=2))
    _fit(tmp_path, callback, max_steps=3, accumulate_grad_batches=2, enable_checkpointing=False)
    assert _steps(callback.trace_path) == [0, 1, 2, 3]


def test_csv_logger_only_gets_scalars_and_own_writer_gets_images(tmp_path: Path) -> None:
    log_dir = tmp_path / "own_tb"
    callback = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=2, log_dir=str(log_dir)))
    _fit(tmp_path, callback, max_steps=2, logger=CSVLogger(str(tmp_path), name="csv"), enable_checkpointing=False)
    metrics = next((tmp_path / "csv").rglob("metrics.csv")).read_text()
    assert "spinal/contraction/L1" in metrics.splitlines()[0]
    assert callback.log_dir == str(log_dir)
    assert "spinal/contraction/L1" in scalars(log_dir)
    assert "spinal/heatmap/entropy" in images(log_dir)


def test_custom_policy_getter_and_model_attribute_default(tmp_path: Path) -> None:
    module = TinyPolicyModule(attr="model")
    seen: list[str] = []

    def getter(pl_module: Any) -> torch.nn.Module:
        seen.append(type(pl_module).__name__)
        return pl_module.model

    callback = SpinalLightningCallback(SpinalConfig(interval=5, num_probe_pairs=2), policy=getter)
    _fit(tmp_path, callback, module, max_steps=1, enable_checkpointing=False)
    assert seen and set(seen) == {"TinyPolicyModule"}
    default_cb = SpinalLightningCallback(SpinalConfig(interval=5, num_probe_pairs=2))
    assert default_cb.policy(module) is module.model
    with pytest.raises(TypeError, match="`policy`"):
        SpinalLightningCallback(policy="policy")  # type: ignore[arg-type]


def test_state_round_trips_through_a_lightning_checkpoint(tmp_path: Path) -> None:
    config = SpinalConfig(interval=2, num_probe_pairs=2)
    callback = SpinalLightningCallback(config)
    trainer = _fit(tmp_path, callback, max_steps=4)
    ckpt = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    saved = torch.load(ckpt, weights_only=False)["callbacks"][callback.state_key]
    assert saved["last_probe_step"] == 4 and saved["probes_done"] == 3

    resumed = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    assert resumed.state_key == callback.state_key
    _fit(tmp_path / "resume", resumed, max_steps=6, ckpt_path=ckpt)
    assert resumed.monitor.probes_done == 4
    assert _steps(resumed.trace_path) == [6]


def test_explicit_text_pairs_need_a_tokenizer(tmp_path: Path) -> None:
    class NoTokenizer(TinyPolicyModule):
        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = None

        def train_dataloader(self) -> DataLoader:
            return DataLoader(tokenize_pairs(pairs(), tokenizer()), batch_size=4,
                              collate_fn=collate_pairs)  # type: ignore[arg-type]

    probe = [{"prompt": "1+2=", "chosen": "3", "rejected": "4"}]
    callback = SpinalLightningCallback(SpinalConfig(probe_pairs=probe))
    with pytest.raises(ValueError, match="need a tokenizer"):
        _fit(tmp_path, callback, NoTokenizer(), max_steps=1, enable_checkpointing=False)
    with_tok = SpinalLightningCallback(SpinalConfig(probe_pairs=probe), tokenizer=tokenizer())
    _fit(tmp_path / "b", with_tok, NoTokenizer(), max_steps=1, enable_checkpointing=False)
    assert _steps(with_tok.trace_path) == [0]
