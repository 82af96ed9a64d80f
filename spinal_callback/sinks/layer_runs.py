"""One TensorBoard run per monitored layer, so that per-layer charts draw each layer in its own colour.

TensorBoard colours lines by *run*, in the Scalars dashboard and in Custom Scalars alike (a multi-line
chart of one run's tags draws every line in that run's colour). So each layer's values go to their own
run, ``<log dir>/spinal_layers/L<ℓ>``, under the same tags:

- ``spinal_by_layer/<metric>`` — the layer's value;
- ``spinal_by_layer/<metric>_change`` — the value minus the layer's first finite value of this process
  (its change since the first probe; 0 at that probe).

The Scalars dashboard then shows one chart per tag with one coloured line per layer run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.summary_events import add_scalars_at

__all__ = ["LAYER_RUNS_DIR", "LAYER_TAG_PREFIX", "LayerRuns", "layer_run_name", "log_dir_of"]

#: Sub-directory of the run's log directory that holds the per-layer runs.
LAYER_RUNS_DIR = "spinal_layers"
#: Tag prefix of the per-layer runs' scalars.
LAYER_TAG_PREFIX = "spinal_by_layer"


def layer_run_name(layer: int, num_layers: int) -> str:
    """``"L07"``: zero-padded to the width of the largest layer index, so runs sort by depth."""
    return f"L{layer:0{max(2, len(str(num_layers)))}d}"


def log_dir_of(writer: Any) -> str | None:
    """The directory a ``SummaryWriter``-like object writes to (torch, tensorboardX), or ``None``."""
    get = getattr(writer, "get_logdir", None)
    if callable(get):
        try:
            found = get()
        except Exception:  # a stand-in that does not implement it
            found = None
        if isinstance(found, (str, os.PathLike)):
            return os.fspath(found)
    for attribute in ("log_dir", "logdir"):
        found = getattr(writer, attribute, None)
        if isinstance(found, (str, os.PathLike)):
            return os.fspath(found)
    return None


def _torch_writer(log_dir: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=log_dir)


class LayerRuns:
    """Writers of the per-layer runs under ``<log_dir>/spinal_layers/``, opened on first use and owned here.

    Args:
        log_dir: the main run's directory.
        open_writer: ``path -> SummaryWriter``-like (default: ``torch.utils.tensorboard.SummaryWriter``).
    """

    def __init__(self, log_dir: str, open_writer: Callable[[str], Any] | None = None) -> None:
        self.root = os.path.join(log_dir, LAYER_RUNS_DIR)
        self.open_writer = open_writer or _torch_writer
        self.writers: dict[int, Any] = {}
        self.baselines: dict[tuple[int, str], float] = {}

    def write_trace(self, step: int, trace: DepthTrace) -> None:
        """The finite per-layer values of ``trace`` and their change since each layer's first value."""
        for i, layer in enumerate(trace.layers):
            values: dict[str, float] = {}
            for metric in LAYER_METRICS:
                value = float(getattr(trace, metric)[i])
                if not math.isfinite(value):
                    continue
                baseline = self.baselines.setdefault((layer, metric), value)
                values[f"{LAYER_TAG_PREFIX}/{metric}"] = value
                values[f"{LAYER_TAG_PREFIX}/{metric}_change"] = value - baseline
            if not values:
                continue
            writer = self.writers.get(layer)
            if writer is None:
                path = os.path.join(self.root, layer_run_name(layer, max(trace.layers)))
                writer = self.writers[layer] = self.open_writer(path)
            add_scalars_at(writer, values, step)

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every per-layer writer (idempotent)."""
        writers, self.writers = self.writers, {}
        for writer in writers.values():
            writer.flush()
            writer.close()
