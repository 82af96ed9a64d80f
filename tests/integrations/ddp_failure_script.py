"""Run by test_ddp.py: a 2-process CPU (gloo) Lightning DDP fit in which rank 0 cannot write one snapshot.

Rank 0 keeps disk snapshots, rank 1 memory ones. Before the snapshot of ``BLOCKED_STEP`` rank 0's snapshot
folder is replaced by a file (and put back right after), so only rank 0's write fails; then a NaN fault
makes both ranks roll back. Each rank writes what it saw into ``<out>/failure_rank<r>.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spinal_callback import SpinalConfig, SpinalLightningCallback
from tests.integrations.ddp_rollback_script import weights_digest
from tests.integrations.test_lightning import TinyPolicyModule

BLOCKED_STEP = 8
FAULT_STEP = 8


class BlockRankZeroSnapshots(L.Callback):
    """Rank 0 only: the snapshot folder is a plain file while the snapshot of BLOCKED_STEP is taken."""

    def __init__(self, directory: Path, callback: SpinalLightningCallback) -> None:
        self.directory = directory
        self.aside = directory.with_name(directory.name + ".aside")
        self.callback = callback
        self.steps_after_failure: list[int] | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == BLOCKED_STEP:  # every rank: the index right after the failed snapshot
            manager = self.callback.monitor.guard.rollback
            assert manager is not None
            self.steps_after_failure = manager.store.steps()
        if trainer.global_rank != 0:
            return
        if trainer.global_step == BLOCKED_STEP - 1:  # this batch ends at BLOCKED_STEP
            shutil.move(str(self.directory), str(self.aside))
            self.directory.write_text("not a folder")
        elif trainer.global_step == BLOCKED_STEP:
            self.directory.unlink()
            shutil.move(str(self.aside), str(self.directory))


class Fault(L.Callback):
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == FAULT_STEP:
            with torch.no_grad():
                pl_module.policy.model.layers[-1].mlp.down_proj.weight[0, 0] = float("nan")


def main(out: Path) -> None:
    snaps = out / "snaps"
    config = SpinalConfig(
        interval=1, num_probe_pairs=4, on_alert=("log", "rollback"), detector={"warmup": 5},
        rollback={"snapshot_interval": 2, "keep": 4, "storage": "disk", "snapshot_dir": str(snaps)},
    )
    callback = SpinalLightningCallback(config)
    block = BlockRankZeroSnapshots(snaps, callback)
    module = TinyPolicyModule()
    trainer = L.Trainer(
        max_steps=FAULT_STEP + 3, accelerator="cpu", devices=2, strategy="ddp", logger=False,
        callbacks=[callback, block, Fault()], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(out),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module)
    guard = callback.monitor.guard
    assert guard.rollback is not None
    report = {
        "rank": trainer.global_rank,
        "storage": guard.rollback.store.storage,
        "failures": guard.failures,
        "steps": guard.rollback.store.steps(),
        "steps_after_failure": block.steps_after_failure,
        "rollbacks": guard.rollback.rollbacks,
        "history": [r.to_dict() for r in guard.rollback.history],
        "digest": weights_digest(module),
        "global_step": trainer.global_step,
        "warnings": [str(w.message) for w in caught if "snapshot at step" in str(w.message)],
    }
    (out / f"failure_rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
