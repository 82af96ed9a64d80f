"""Shared helpers of the recovery tests: a tiny model, its optimizer, and guard decisions."""

from __future__ import annotations

import math

import torch
from torch import nn

from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.recovery.guard import AlertGuard, TrainingHandles
from spinal_callback.recovery.rollback import RollbackConfig, RollbackManager

SNAPSHOT = {"alerts": [], "snapshot": True}


def make_handles(hidden: int = 6, seed: int = 0) -> TrainingHandles:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.9**s)
    return TrainingHandles(model=model, optimizer=optimizer, scheduler=scheduler)


def train_step(handles: TrainingHandles, step: int) -> None:
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(step))
    loss = handles.model(x).pow(2).mean()
    handles.optimizer.zero_grad()
    loss.backward()
    handles.optimizer.step()
    handles.scheduler.step()


def weights(handles: TrainingHandles) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in handles.model.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def make_guard(strict: bool = False, **rollback) -> AlertGuard:
    config = RollbackConfig(**{"snapshot_interval": 2, "keep": 3, **rollback})
    return AlertGuard(EarlyWarningDetector(), ("log", "rollback"), RollbackManager(config), strict=strict)


def alert_decision(step: int, onset: int) -> dict:
    """An alert whose snapshots strictly before ``onset`` are known-good."""
    alert = Alert(step, AlertReason.NON_FINITE, "band/late/transport_curvature", math.nan, 0.0, math.nan,
                  math.nan, (), onset, onset - 1, "the late band turned non-finite")
    assert alert.restore_before == onset
    return {"alerts": [alert.to_dict()], "snapshot": False}
