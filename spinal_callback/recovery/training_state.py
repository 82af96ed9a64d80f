"""Capture and restore of training state: trainable weights, optimizer, LR scheduler, grad scaler, RNG.

Framework-neutral (torch and numpy only). A *snapshot* is a plain dict of CPU tensors and Python values,
independent of the live objects (restoring it twice gives the same state twice), loadable with
``torch.load(..., weights_only=True)``::

    {"format": 1, "trainable_only": True,
     "model": {name: tensor},            # parameters with requires_grad (all parameters and buffers if
                                         # trainable_only=False), keyed by their name in the unwrapped model
     "fingerprint": [[name, shape, dtype], ...],
     "optimizer": optimizer.state_dict() | None, "scheduler": ... | None, "scaler": ... | None,
     "rng": {"python": ..., "numpy": ..., "torch": ..., "cuda": [...]}}

Under PEFT only the adapter weights require grad, so a snapshot holds the adapter weights only.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from spinal_callback.model.unwrap import unwrap_parallel

__all__ = [
    "SNAPSHOT_FORMAT",
    "SnapshotMismatchError",
    "capture_rng",
    "capture_state",
    "model_tensors",
    "restore_rng",
    "restore_state",
    "scale_learning_rate",
]

SNAPSHOT_FORMAT = 1
#: Learning-rate keys of an optimizer param group that :func:`scale_learning_rate` scales when present
#: (``initial_lr`` is set by torch schedulers; ``max_lr`` / ``min_lr`` by ``OneCycleLR``).
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


class SnapshotMismatchError(ValueError):
    """The snapshot does not fit the model / optimizer it is restored into; nothing was restored."""


def model_tensors(model: nn.Module, trainable_only: bool = True) -> dict[str, torch.Tensor]:
    """The live tensors a snapshot covers: parameters with ``requires_grad`` (``trainable_only``), else all
    parameters and buffers, keyed by name in the unwrapped model (tied weights once)."""
    module = unwrap_parallel(model)
    tensors: dict[str, torch.Tensor] = {
        name: p for name, p in module.named_parameters() if p.requires_grad or not trainable_only
    }
    if not trainable_only:
        tensors.update(module.named_buffers())
    return tensors


def _fingerprint(tensors: Mapping[str, torch.Tensor]) -> list[list[Any]]:
    return [[name, list(t.shape), str(t.dtype).removeprefix("torch.")] for name, t in sorted(tensors.items())]


def _to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor copied to CPU (never aliasing the live object)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return copy.deepcopy(obj)


# ------------------------------------------------------------------------------------------------ RNG
def capture_rng() -> dict[str, Any]:
    """States of Python's ``random``, numpy's global generator, torch CPU and — when CUDA is initialised —
    every CUDA device, as lists / tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`; missing entries are left as they are. CUDA states are restored
    for the devices present (up to the number captured)."""
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if state.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        for device in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[device], device)


# ------------------------------------------------------------------------------------------- capture
def capture_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    trainable_only: bool = True,
) -> dict[str, Any]:
    """Snapshot of the training state, copied to CPU.

    Args:
        model: The trained module (DDP / ``torch.compile`` wrappers are seen through).
        optimizer: Its optimizer (``state_dict()`` deep-copied to CPU).
        scheduler: LR scheduler with ``state_dict()`` (torch ``LRScheduler``, HF schedulers, ...).
        scaler: ``torch.amp.GradScaler`` (or anything with ``state_dict()``).
        trainable_only: Only parameters with ``requires_grad`` (the adapter under PEFT); False: every
            parameter and buffer.

    Returns:
        The snapshot dict described in the module docstring.
    """
    tensors = model_tensors(model, trainable_only)
    return {
        "format": SNAPSHOT_FORMAT,
        "trainable_only": bool(trainable_only),
        "model": {name: t.detach().to("cpu", copy=True) for name, t in tensors.items()},
        "fingerprint": _fingerprint(tensors),
        "optimizer": None if optimizer is None else _to_cpu(optimizer.state_dict()),
        "scheduler": None if scheduler is None else _to_cpu(scheduler.state_dict()),
        "scaler": None if scaler is None else _to_cpu(scaler.state_dict()),
        "rng": capture_rng(),
    }


# ------------------------------------------------------------------------------------------- restore
def _names(names: set[str] | list[str], limit: int = 5) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:limit])
    return shown + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "")


def _validate(
    snapshot: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    scaler: Any | None,
) -> dict[str, torch.Tensor]:
    """Check that ``snapshot`` fits; return the live tensors to copy into. Raises before touching anything."""
    fmt = snapshot.get("format")
    if fmt != SNAPSHOT_FORMAT or "model" not in snapshot:
        raise SnapshotMismatchError(
            f"not a spinal-callback snapshot of format {SNAPSHOT_FORMAT} (format {fmt!r}); nothing was restored"
        )
    live = model_tensors(model, bool(snapshot.get("trainable_only", True)))
    saved: Mapping[str, torch.Tensor] = snapshot["model"]
    missing = set(live) - set(saved)
    unexpected = set(saved) - set(live)
    shapes = sorted(
        f"{n} (snapshot {list(saved[n].shape)} vs model {list(live[n].shape)})"
        for n in set(live) & set(saved)
        if saved[n].shape != live[n].shape
    )
    problems = []
    if missing:
        problems.append(f"missing from the snapshot: {_names(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_names(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_names(shapes, 3)}")
    if problems:
        kind = "trainable " if snapshot.get("trainable_only", True) else ""
        raise SnapshotMismatchError(
            f"the snapshot was taken from a different model (or a different set of {kind}parameters): "
            + "; ".join(problems) + ". Nothing was restored."
        )
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and snapshot.get(name) is None:
            raise SnapshotMismatchError(f"a {name} was given but the snapshot holds no {name} state; "
                                        "nothing was restored")
    if optimizer is not None:
        saved_groups = [len(g["params"]) for g in snapshot["optimizer"]["param_groups"]]
        live_groups = [len(g["params"]) for g in optimizer.param_groups]
        if saved_groups != live_groups:
            raise SnapshotMismatchError(
                f"the optimizer does not match the snapshot: parameters per group {live_groups} vs "
                f"{saved_groups} in the snapshot; nothing was restored"
            )
    return live


def _inner_scheduler(scheduler: Any) -> Any:
    """Accelerate's ``AcceleratedScheduler`` keeps the torch scheduler in ``.scheduler``."""
    inner = getattr(scheduler, "scheduler", None)
    return inner if inner is not None and not hasattr(scheduler, "base_lrs") else scheduler


def scale_learning_rate(optimizer: torch.optim.Optimizer, scheduler: Any | None, factor: float) -> None:
    """Multiply the learning rate by ``factor`` in every param group and in the scheduler.

    Param groups: ``lr`` and, when present, ``initial_lr``, ``max_lr``, ``min_lr``. Scheduler:
    ``base_lrs`` and ``_last_lr``. Schedulers that compute the LR from ``base_lrs`` (``LambdaLR`` — every
    Hugging Face schedule —, ``StepLR``, ``CosineAnnealingLR``'s closed form, ...) and the chainable ones
    that update ``group["lr"]`` multiplicatively therefore both continue on the scaled schedule.
    Absolute floors such as ``CosineAnnealingLR.eta_min`` or ``ReduceLROnPlateau.min_lrs`` are not scaled.
    """
    for group in optimizer.param_groups:
        for key in LR_KEYS:
            value = group.get(key)
            if isinstance(value, torch.Tensor):
                value.mul_(factor)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                group[key] = value * factor
    if scheduler is not None:
        inner = _inner_scheduler(scheduler)
        for attr in ("base_lrs", "_last_lr"):
            values = getattr(inner, attr, None)
            if isinstance(values, list):
                setattr(inner, attr, [v * factor for v in values])


def restore_state(
    snapshot: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    lr_scale: float = 1.0,
) -> None:
    """Restore a :func:`capture_state` snapshot in place.

    Everything is validated first — tensor names and shapes against the model, the optimizer's param
    groups, the presence of optimizer / scheduler / scaler state for the objects given — and a mismatch
    raises :class:`SnapshotMismatchError` with nothing restored. Then tensors are copied into the live
    parameters under ``no_grad`` (to their device and dtype) and their ``.grad`` is cleared; optimizer /
    scheduler / scaler states are loaded from copies (the snapshot stays reusable); the learning rate is
    scaled by ``lr_scale`` when it is not 1 (:func:`scale_learning_rate`, applied after the scheduler
    state is loaded, so the scaled ``base_lrs`` carry the scale into every later scheduler step); and the
    RNG states are restored.

    Args:
        snapshot: Output of :func:`capture_state` (possibly loaded from disk).
        model: The module to restore into.
        optimizer: Optimizer to restore (must match the snapshot's param groups).
        scheduler: LR scheduler to restore.
        scaler: Grad scaler to restore (skipped if the snapshot's scaler was disabled, i.e. empty state).
        lr_scale: Factor applied to the restored learning rate, > 0.

    Raises:
        SnapshotMismatchError: The snapshot does not fit; nothing was restored.
        ValueError: ``lr_scale`` is not a positive finite number.
    """
    if not isinstance(lr_scale, (int, float)) or isinstance(lr_scale, bool) or not 0.0 < lr_scale < float("inf"):
        raise ValueError(f"`lr_scale` must be a positive number, got {lr_scale!r}")
    live = _validate(snapshot, model, optimizer, scheduler, scaler)
    with torch.no_grad():
        for name, tensor in live.items():
            tensor.copy_(snapshot["model"][name])
            tensor.grad = None  # gradients accumulated on the abandoned weights must not be applied
    if optimizer is not None:
        optimizer.load_state_dict(_to_cpu(snapshot["optimizer"]))
    if scheduler is not None:
        scheduler.load_state_dict(_to_cpu(snapshot["scheduler"]))
    if scaler is not None and snapshot["scaler"]:
        scaler.load_state_dict(_to_cpu(snapshot["scaler"]))
    if optimizer is not None and lr_scale != 1.0:
        scale_learning_rate(optimizer, scheduler, lr_scale)
    if snapshot.get("rng") is not None:
        restore_rng(snapshot["rng"])
