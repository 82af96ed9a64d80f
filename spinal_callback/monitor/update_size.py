"""How far the optimizer moved the weights since the previous probe, read off a fixed sample of them.

``update/size`` is the root-mean-square per-step displacement of ``S`` trainable coordinates drawn once,
uniformly over all trainable elements (so each tensor contributes in proportion to its size)::

    update/size(t) = ‖θ_S(t) − θ_S(t′)‖₂ / (√S · (t − t′))

with ``t′`` the previous probe step. For Adam-type optimizers it sits near the learning rate times the
typical ``|m̂/√v̂|``, so it follows the schedule smoothly; a learning-rate jump, a corrupted update or an
optimizer misconfiguration changes it at once, before any forward could show it. Reading it costs one gather
of ``S`` elements per probe (no forward, no gradient); the sampled values are kept in float32.

The sample is of what this process holds: a sharded model (FSDP, DeepSpeed ZeRO-3) is sampled on this
rank's shards, which are a uniform sample of the model's coordinates as well. Coordinates are drawn with
their own ``torch.Generator``: the run's random streams are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["UPDATE_SIGNAL", "UpdateSampler", "local_data"]

#: The signal's name (a probe signal: in the trace records' ``"signals"`` and under ``spinal/update/size``).
UPDATE_SIGNAL = "update/size"


def local_data(param: torch.Tensor) -> torch.Tensor:
    """The elements of ``param`` this process holds: a DTensor's local shard, a ZeRO-3 parameter's
    ``ds_tensor`` partition, else the parameter itself (detached)."""
    to_local = getattr(param, "to_local", None)
    if callable(to_local):
        return to_local().detach()
    ds_tensor = getattr(param, "ds_tensor", None)
    if isinstance(ds_tensor, torch.Tensor):
        return ds_tensor.detach()
    return param.detach()


def _trainable(model: nn.Module) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for param in model.parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            yield param


class UpdateSampler:
    """Reads ``update/size`` at each probe (see the module docstring).

    Args:
        model: the policy being trained (wrappers allowed); its trainable parameters are sampled.
        coordinates: ``S``, how many coordinates to sample (fewer when the model has fewer trainable elements).
        seed: seed of the draw of the coordinates.
    """

    def __init__(self, model: nn.Module, coordinates: int, seed: int = 0) -> None:
        if coordinates < 1:
            raise ValueError(f"`coordinates` must be a positive integer, got {coordinates!r}")
        params = [p for p in _trainable(model) if local_data(p).numel() > 0]
        sizes = [local_data(p).numel() for p in params]
        total = sum(sizes)
        self._picks: list[tuple[torch.Tensor, torch.Tensor]] = []
        if total:
            generator = torch.Generator().manual_seed(seed)
            if coordinates >= total:
                flat = torch.arange(total)
            else:
                # drawn with replacement, then the repeats dropped: no permutation of all the model's elements
                flat = torch.unique(torch.randint(0, total, (coordinates,), generator=generator))
            start = 0
            for param, size in zip(params, sizes, strict=True):
                inside = flat[(flat >= start) & (flat < start + size)] - start
                if inside.numel():
                    self._picks.append((param, inside.to(local_data(param).device)))
                start += size
        self.coordinates = int(sum(idx.numel() for _, idx in self._picks))
        self._last: torch.Tensor | None = None
        self._last_step: int | None = None

    @torch.no_grad()
    def read(self) -> torch.Tensor:
        """The sampled coordinates now, float32 on the CPU, in a fixed order (gathered on each device, then one
        copy per device: one device synchronisation, not one per parameter)."""
        if not self._picks:
            return torch.zeros(0)
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for param, idx in self._picks:
            values = local_data(param).reshape(-1).index_select(0, idx).float()
            by_device.setdefault(values.device, []).append(values)
        return torch.cat([torch.cat(parts).cpu() for parts in by_device.values()])

    def measure(self, step: int) -> float | None:
        """``update/size`` since the previous call, and remember this one; ``None`` at the first call after
        construction or :meth:`reset`, with no trainable coordinate, or when ``step`` is not after the last."""
        values = self.read()
        last, last_step = self._last, self._last_step
        self._last, self._last_step = values, int(step)
        if last is None or last_step is None or values.numel() == 0 or step <= last_step:
            return None
        displacement = float(torch.linalg.vector_norm(values - last))
        return displacement / (math.sqrt(values.numel()) * (step - last_step))

    def reset(self) -> None:
        """Forget the last reading (after the weights were restored, or a resume): the next one is a baseline."""
        self._last, self._last_step = None, None
