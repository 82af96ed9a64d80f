"""JSON helpers for probe results: tensors to nested lists, non-finite numbers to ``None``."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["json_float", "json_list"]


def json_float(value: float | None) -> float | None:
    """``float(value)``, or ``None`` for ``None``, NaN and ±inf."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def json_list(tensor: torch.Tensor) -> Any:
    """A (nested) list of floats with ``None`` for NaN/±inf, from a tensor of any shape."""
    data = tensor.detach().cpu().double().tolist()
    if not isinstance(data, list):
        return json_float(data)

    def convert(item: Any) -> Any:
        return [convert(x) for x in item] if isinstance(item, list) else json_float(item)

    return convert(data)
