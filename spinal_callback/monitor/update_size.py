"""How far the optimizer moved the weights since the previous probe, read off a fixed sample of them.

``update/size`` is the root-mean-square per-step displacement of ``S`` trainable coordinates drawn once,
uniformly over all trainable elements (so each tensor contributes in proportion to its size)::

    update/size(t) = ‖θ_S(t) − θ_S(t′)‖₂ / (√S · (t − t′))

with ``t′`` the previous probe step. For Adam-type optimizers it sits near the learning rate times the
typical ``|m̂/√v̂|``, so it follows the schedule smoothly; a learning-rate jump, a corrupted update or an
optimizer misconfiguration changes it at once, before any forward could show it.

``update/turn`` is how far the latest update turned away from the direction the weights have been moving::

    update/turn(n) = 1 − cos(θ_S(t_n) − θ_S(t_{n−1}), θ_S(t_{n−1}) − θ_S(t_{n−1−K}))

over probe readings ``t_n`` with ``K`` = :data:`TURN_WINDOW`: 0 when the update continues the recent course, 1 when
it is orthogonal to it, 2 when it reverses it. Under Adam's momentum a healthy run keeps its course (the cosine
stays positive), while an optimizer that starts climbing the loss (a sign error, gradient ascent) turns away
from it within a few steps, with the size of its steps unchanged.

Reading both costs one gather of ``S`` elements per probe (no forward, no gradient); the sampled values are kept
in float32, the last ``K + 1`` readings of them for the turn (``(K + 1)·S`` floats: 1.4 MB at the defaults).

The sample is of what this process holds: a sharded model (FSDP, DeepSpeed ZeRO-3) is sampled on this
rank's shards, which are a uniform sample of the model's coordinates as well. Coordinates are drawn with
their own ``torch.Generator``: the run's random streams are untouched.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["TURN_SIGNAL", "TURN_WINDOW", "UPDATE_SIGNAL", "UPDATE_SIGNALS", "UpdateSampler", "local_data"]

#: The step size's name (a probe signal: in the trace records' ``"signals"`` and under ``spinal/update/size``).
UPDATE_SIGNAL = "update/size"
#: The turn's name (``spinal/update/turn``).
TURN_SIGNAL = "update/turn"
#: Both, in the order they are read.
UPDATE_SIGNALS = (UPDATE_SIGNAL, TURN_SIGNAL)
#: K, the readings (probes) the recent course of the weights is measured over.
TURN_WINDOW = 20


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


def _is_sharded(param: torch.Tensor) -> bool:
    """Whether :func:`local_data` must look into ``param`` (a DTensor or a ZeRO-3 parameter) at every read."""
    return callable(getattr(param, "to_local", None)) or isinstance(getattr(param, "ds_tensor", None), torch.Tensor)


def _flat(param: torch.Tensor, sharded: bool) -> torch.Tensor | None:
    """A flat view of a plain contiguous parameter (it shares the parameter's storage: a read through it is a read
    of the parameter as long as the parameter's tensor is not swapped), else ``None``."""
    return param.detach().view(-1) if not sharded and param.is_contiguous() else None


def _trainable(model: nn.Module) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for param in model.parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            yield param


class UpdateSampler:
    """Reads ``update/size`` and ``update/turn`` at each probe (see the module docstring).

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
        # (parameter, flat indices, sharded): a plain parameter is read as it is, without a detached view per read
        self._picks: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
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
                    self._picks.append((param, inside.to(local_data(param).device), _is_sharded(param)))
                start += size
        self.coordinates = int(sum(idx.numel() for _, idx, _ in self._picks))
        # per device: [parameter, flat indices, sharded, output slice, flat view or None] and the one buffer or None
        self._slots: list[tuple[list[list[Any]], torch.Tensor | None]] = []
        self._allocate()
        self._readings: deque[tuple[int, torch.Tensor]] = deque(maxlen=TURN_WINDOW + 1)

    def _allocate(self) -> None:
        """Per device, one output buffer per dtype and each pick's slice of it, in the picks' order, and a flat view
        of each plain contiguous parameter: a read writes every value in place (``index_select(..., out=)``), with
        no tensor per parameter and no concatenation."""
        by_device: dict[torch.device, list[tuple[torch.Tensor, torch.Tensor, bool, torch.dtype]]] = {}
        for param, idx, sharded in self._picks:
            data = local_data(param)
            by_device.setdefault(data.device, []).append((param, idx, sharded, data.dtype))
        self._slots = []
        for device, picks in by_device.items():
            sizes: dict[torch.dtype, int] = {}
            for _, idx, _, dtype in picks:
                sizes[dtype] = sizes.get(dtype, 0) + idx.numel()
            buffers = {dtype: torch.empty(size, dtype=dtype, device=device) for dtype, size in sizes.items()}
            used = dict.fromkeys(sizes, 0)
            slots = []
            for param, idx, sharded, dtype in picks:
                start, used[dtype] = used[dtype], used[dtype] + idx.numel()
                slots.append([param, idx, sharded, buffers[dtype][start:used[dtype]], _flat(param, sharded)])
            self._slots.append((slots, next(iter(buffers.values())) if len(buffers) == 1 else None))

    @torch.no_grad()
    def read(self) -> torch.Tensor:
        """The sampled coordinates now, float32 on the CPU, in a fixed order: the parameters' (gathered in place on
        each device, then one copy per device: one device synchronisation, not one per parameter). A parameter whose
        tensor was swapped is read where it is now; one whose dtype or device changed gets new buffers."""
        if not self._picks:
            return torch.zeros(0)
        parts = []
        for slots, whole in self._slots:
            for slot in slots:
                param, idx, sharded, out, flat = slot
                if flat is not None and flat.data_ptr() == param.data_ptr():  # a plain parameter, where it was
                    torch.index_select(flat, 0, idx, out=out)
                    continue
                source = local_data(param) if sharded else param  # under no_grad the parameter itself has no grad
                if source.dtype != out.dtype or source.device != out.device:
                    self._allocate()
                    return self.read()
                torch.take(source, idx, out=out)
                slot[4] = _flat(param, sharded)  # swapped: the view follows the tensor now in place
            # mixed dtypes: torch.cat promotes, and float32 is exact for them all; the buffers are reused: a copy
            values = whole if whole is not None else torch.cat([slot[3] for slot in slots])
            parts.append(values.to("cpu", torch.float32, copy=True))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def measure(self, step: int) -> dict[str, float]:
        """``{"update/size": …, "update/turn": …}`` since the previous call, and remember this reading. The size
        needs one earlier reading, the turn ``K + 1``; either is left out when it cannot be read yet (after
        construction or :meth:`reset`), with no trainable coordinate, when ``step`` is not after the last
        reading, or (the turn) when a displacement is exactly zero."""
        values = self.read()
        history = list(self._readings)
        out: dict[str, float] = {}
        if values.numel() == 0 or (history and step <= history[-1][0]):
            self.reset()
            self._readings.append((int(step), values))
            return out
        self._readings.append((int(step), values))
        if not history:
            return out
        last_step, last = history[-1]
        delta = values - last
        out[UPDATE_SIGNAL] = float(torch.linalg.vector_norm(delta)) / (math.sqrt(values.numel()) * (step - last_step))
        if len(history) == TURN_WINDOW + 1:
            now, course = delta.double(), (last - history[0][1]).double()
            norms = float(torch.linalg.vector_norm(now)) * float(torch.linalg.vector_norm(course))
            if norms > 0.0:
                out[TURN_SIGNAL] = min(2.0, max(0.0, 1.0 - float(torch.dot(now, course)) / norms))
        return out

    def reset(self) -> None:
        """Forget the readings (after the weights were restored, or a resume): the next one is a baseline."""
        self._readings.clear()
