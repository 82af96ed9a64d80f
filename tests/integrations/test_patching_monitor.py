"""Patching probes scheduled by the monitor: trace records, TensorBoard tags, reference handling."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

L = pytest.importorskip("lightning.pytorch")
pytest.importorskip("sklearn")

from spinal_callback import SpinalConfig, SpinalLightningCallback, SpinalTrainerCallback  # noqa: E402

from .helpers import images, scalars  # noqa: E402
from .test_lightning import TinyPolicyModule, _fit  # noqa: E402
from .test_transformers import _trainer  # noqa: E402


class WithReference(TinyPolicyModule):
    def __init__(self) -> None:
        super().__init__()
        self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)


def _patch_records(path: str | None) -> list[dict]:
    assert path is not None
    return [r for r in map(json.loads, Path(path).read_text().splitlines()) if r["type"] == "patch"]


def test_lightning_patching_every_n_steps(tmp_path: Path) -> None:
    config = SpinalConfig(interval=2, num_probe_pairs=4, patch_interval=2, patch_low_rank_layers=1,
                          patch_ranks=(1, 4, 32))
    callback = SpinalLightningCallback(config)
    _fit(tmp_path, callback, WithReference(), max_steps=4, enable_checkpointing=False)
    records = _patch_records(callback.trace_path)
    assert [r["step"] for r in records] == [2, 4]
    last = records[-1]
    assert set(last["exact"]) == {"policy_to_reference", "reference_to_policy"}
    effect = last["exact"]["policy_to_reference"]["normalized_effect"]
    # the whole policy trains (its final norm and head too), so even the last layer recovers only part
    assert len(effect) == 6 and all(v is not None and 0.0 < v < 1.5 for v in effect)
    assert last["low_rank"]["ranks"] == [1, 4, 32] and len(last["low_rank"]["layers"]) == 1
    assert last["low_rank"]["fraction_recovered"][0][-1] == pytest.approx(1.0, abs=1e-4)  # k = d is exact
    assert "selected_layers" in last["lasso"] and last["attribution"]["spearman"] is not None
    tags = scalars(callback.log_dir)  # type: ignore[arg-type]
    assert [s for s, _ in tags["spinal/patch/policy_to_reference/normalized_effect/L6"]] == [2, 4]
    assert "spinal/patch/reference_to_policy/effect/L1" in tags
    assert "spinal/patch/attribution/spearman" in tags and "spinal/patch/seconds" in tags
    assert any(t.startswith("spinal/patch/low_rank/L") and t.endswith("/k32") for t in tags)
    assert "spinal/heatmap/patch_normalized_effect" in images(callback.log_dir)  # type: ignore[arg-type]


def test_patching_without_a_reference_is_refused_before_training(tmp_path: Path) -> None:
    callback = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=4, patch_interval=2))
    with pytest.raises(ValueError, match="needs a reference model"):
        _fit(tmp_path, callback, TinyPolicyModule(), max_steps=2, enable_checkpointing=False)


def test_trl_patching_with_ref_model_and_with_peft(tmp_path: Path) -> None:
    config = SpinalConfig(interval=2, num_probe_pairs=4, patch_interval=2, patch_lasso=False,
                          patch_low_rank_layers=0)
    callback = SpinalTrainerCallback(config)
    trainer = _trainer(tmp_path / "ref", callback, max_steps=2)
    callback.set_trainer(trainer)
    trainer.train()
    records = _patch_records(callback.trace_path)
    assert [r["step"] for r in records] == [2] and "lasso" not in records[0]
    assert torch.isfinite(torch.tensor(records[0]["exact"]["policy_to_reference"]["effect"])).all()

    peft_cb = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=4, patch_interval=2,
                                                 patch_lasso=False, patch_low_rank_layers=0))
    _trainer(tmp_path / "peft", peft_cb, max_steps=2, peft=True).train()
    (record,) = _patch_records(peft_cb.trace_path)
    margins = record["exact"]["policy_to_reference"]
    assert margins["margin_base"] != margins["margin_source"]  # the adapter moved the policy off its base


def test_failing_patching_probe_warns_counts_and_training_goes_on(tmp_path: Path, monkeypatch) -> None:
    import spinal_callback.probes.protocol as patching

    def broken(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("simulated out of memory")

    monkeypatch.setattr(patching, "run_patching_probe", broken)
    callback = SpinalLightningCallback(SpinalConfig(interval=2, num_probe_pairs=4, patch_interval=2))
    with pytest.warns(RuntimeWarning, match="patching probe at step 2 failed"):
        trainer = _fit(tmp_path, callback, WithReference(), max_steps=4, enable_checkpointing=False)
    assert trainer.global_step == 4 and callback.monitor.patch_failures == 2
    assert scalars(callback.log_dir)["spinal/patch/failures"][-1] == (4, 2.0)  # type: ignore[arg-type]
    assert _patch_records(callback.trace_path) == []
