"""Run by test_ddp.py: a 2-process CPU (gloo) Lightning DDP fit with a NaN fault and rollback.

Each rank writes what it saw into ``<out>/rank<r>.json`` (test bookkeeping only); the library itself
must write its TensorBoard and trace files from rank 0 only.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spinal_callback import SpinalConfig, SpinalLightningCallback
from tests.integrations.test_lightning import TinyPolicyModule

FAULT_STEP = 8


class Fault(L.Callback):
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == FAULT_STEP:
            with torch.no_grad():
                pl_module.policy.model.layers[-1].mlp.down_proj.weight[0, 0] = float("nan")


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(out: Path) -> None:
    config = SpinalConfig(
        interval=1, num_probe_pairs=4, on_alert=("log", "rollback"),
        detector={"warmup": 5}, rollback={"snapshot_interval": 2, "keep": 4},
        trace_path=str(out / "trace.jsonl"),
    )
    callback = SpinalLightningCallback(config)
    module = TinyPolicyModule()
    trainer = L.Trainer(
        max_steps=FAULT_STEP + 3, accelerator="cpu", devices=2, strategy="ddp",
        logger=TensorBoardLogger(str(out), name="tb"),
        callbacks=[callback, Fault()], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(out),
    )
    trainer.fit(module)
    guard = callback.monitor.guard
    assert guard.rollback is not None
    report = {
        "rank": trainer.global_rank,
        "rollbacks": guard.rollback.rollbacks,
        "history": [r.to_dict() for r in guard.rollback.history],
        "alerts_total": guard.alerts_total,
        "digest": weights_digest(module),
        "log_dir": callback.log_dir,
        "trace_path": callback.trace_path,
        "global_step": trainer.global_step,
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
