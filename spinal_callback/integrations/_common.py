"""Pieces both adapters share: TensorBoard writer construction and the tag list for docstrings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..config import SpinalConfig

#: Every TensorBoard tag the callbacks write (``<metric>`` ∈ contraction, transport, entropy,
#: effective_rank, transport_curvature, hidden_curvature; ``<band>`` ∈ early, mid, late).
LOGGED_TAGS = """
    - ``spinal/<metric>/L<ℓ>`` — per-layer value at each probe step.
    - ``spinal/band/<band>/<metric>`` — band mean; ``…/<metric>_min`` and ``…/<metric>_max`` — band range.
    - ``spinal/heatmap/<metric>`` — image: layer (rows, layer 1 at the bottom) × probe step (columns).
    - ``spinal/probe/seconds`` — wall time of the last probe; ``spinal/probe/failures`` — failed probes so far.
    - ``spinal/detector/<signal>/<score>`` — the detector's latest z / cusum / variance_ratio per signal.
    - ``spinal/alerts`` (text) and ``spinal/alerts/total`` — each alert, with its message; alerts so far.
    - ``spinal/rollbacks`` (text) and ``spinal/rollbacks/total`` — each rollback; rollbacks so far.
    - ``spinal/config`` — text: the configuration and the monitored model.
    - ``spinal/patch/<direction>/effect/L<ℓ>``, ``…/normalized_effect/L<ℓ>``, ``spinal/patch/low_rank/L<ℓ>/k<k>``,
      ``spinal/patch/lasso/L<ℓ>``, ``spinal/patch/lasso/r2``, ``spinal/patch/attribution/L<ℓ>``,
      ``spinal/patch/attribution/spearman``, ``spinal/patch/seconds``, ``spinal/patch/failures`` and the image
      ``spinal/heatmap/patch_normalized_effect`` — patching probes (``patch_interval > 0``).
    - Custom-scalars layout: one multi-line chart per metric over layers, one margin chart per band and metric.
"""


def broadcast_from_rank_zero(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank under ``torch.distributed``; ``obj`` itself on one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def summary_writer(log_dir: str) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (created if needed)."""
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(log_dir, exist_ok=True)
    return SummaryWriter(log_dir=log_dir)


def coerce_config(config: SpinalConfig | Mapping[str, Any] | None) -> SpinalConfig:
    """Accept a SpinalConfig, a plain dict of its fields (as saved in a checkpoint) or None."""
    if config is None:
        return SpinalConfig()
    if isinstance(config, SpinalConfig):
        return config
    if isinstance(config, Mapping):
        return SpinalConfig(**dict(config))
    raise TypeError(f"`config` must be a SpinalConfig or a dict of its fields, got {type(config).__name__}")


def portable_config(config: SpinalConfig) -> dict[str, Any]:
    """``config.to_dict()`` without callables, so ``SpinalConfig(**result)`` rebuilds it."""
    data = config.to_dict()
    data["on_alert"] = [a for a in config.on_alert if isinstance(a, str)]
    return data
