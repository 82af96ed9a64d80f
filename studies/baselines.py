"""The detectors users already have, replayed on a run's recorded series, and spinal's own detector.

Every function takes a series as ``[(step, value), ...]`` in step order and returns the steps it alarms
at. They are offline replays of what each detector would have decided online, one value at a time, with
only the past in view.

- :func:`lightning_spike_alarms` runs Lightning's own ``SpikeDetection`` (``lightning.fabric.utilities.spike``)
  on the loss, unchanged; it stops training at its first spike, so it alarms at most once.
- :func:`window_zscore_alarms` follows OLMo-core's ``StabilityMonitorCallback``: a value is a spike when it
  exceeds the mean of the previous ``window`` values by more than ``threshold`` population standard
  deviations; nothing is tested until the window is full; every value joins the window.
- :func:`drop_from_best_alarms` is the threshold a person sets on TRL's metrics: the rolling mean of the last
  ``window`` logged values falls ``drop`` below the best rolling mean seen so far.
- :func:`spinal_alarms` replays :class:`~spinal_callback.early_warning.detector.EarlyWarningDetector` on the
  observations the monitor fed it.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

from spinal_callback.early_warning.alerts import Alert
from spinal_callback.early_warning.detector import DetectorConfig, EarlyWarningDetector

__all__ = ["drop_from_best_alarms", "lightning_spike_alarms", "spinal_alarms", "window_zscore_alarms"]

Series = Sequence[tuple[int, float]]


class _OneProcessStrategy:
    """The slice of a Fabric strategy ``SpikeDetection`` calls, for a single process on the CPU."""

    root_device = "cpu"

    def barrier(self) -> None:
        return None

    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


class _OneProcessFabric:
    global_rank = 0
    strategy = _OneProcessStrategy()


def lightning_spike_alarms(losses: Series, *, window: int = 10, warmup: int = 1, rtol: float | None = 2.0,
                           atol: float | None = None) -> list[int]:
    """Steps at which Lightning's ``SpikeDetection`` (mode ``"min"``, defaults as shipped) raises.

    The loss of step ``s`` is fed as ``batch_idx = s − 1``. The detector raises ``TrainingSpikeException`` at
    the first spike, which ends training, so the list has at most one step. Needs ``lightning`` (and the
    ``torchmetrics`` it brings).
    """
    import torch
    from lightning.fabric.utilities.spike import SpikeDetection, TrainingSpikeException

    with tempfile.TemporaryDirectory() as scratch:  # it writes the batches to skip on a spike
        detector = SpikeDetection(mode="min", window=window, warmup=warmup, atol=atol, rtol=rtol,
                                  exclude_batches_path=scratch)
        for step, loss in losses:
            try:
                detector.on_train_batch_end(cast(Any, _OneProcessFabric()), torch.tensor(float(loss)), None, step - 1)
            except TrainingSpikeException:
                return [step]
    return []


def window_zscore_alarms(series: Series, *, window: int = 128, threshold: float = 6.0) -> list[int]:
    """Steps whose value exceeds the previous ``window`` values' mean by more than ``threshold`` population σ.

    Nothing is tested before ``window`` values have been seen, a window with σ < 1e-10 never flags, and
    every value — spike or not — joins the window (OLMo-core's ``StabilityMonitorCallback`` semantics).
    Non-finite values are flagged (they exceed any threshold) and kept out of the window.
    """
    history: deque[float] = deque(maxlen=window)
    alarms = []
    for step, value in series:
        value = float(value)
        if not math.isfinite(value):
            if len(history) == window:
                alarms.append(step)
            continue
        if len(history) == window:
            mean = statistics.fmean(history)
            std = math.sqrt(statistics.fmean((x - mean) ** 2 for x in history))
            if std >= 1e-10 and value > mean + threshold * std:
                alarms.append(step)
        history.append(value)
    return alarms


def drop_from_best_alarms(series: Series, *, drop: float, window: int = 10, bad: str = "down") -> list[int]:
    """Steps at which the rolling mean of the last ``window`` values is ``drop`` worse than its best so far.

    ``bad="down"`` watches for a fall below the highest rolling mean, ``"up"`` for a rise above the
    lowest. Rolling means start once ``window`` values have been seen; a non-finite value is always an
    alarm. Every step the condition holds is returned (the first one is the alarm).
    """
    if bad not in ("down", "up"):
        raise ValueError(f"`bad` must be 'down' or 'up', got {bad!r}")
    sign = 1.0 if bad == "down" else -1.0
    recent: deque[float] = deque(maxlen=window)
    best = -math.inf
    alarms = []
    for step, value in series:
        value = float(value)
        if not math.isfinite(value):
            alarms.append(step)
            continue
        recent.append(sign * value)
        if len(recent) < window:
            continue
        level = statistics.fmean(recent)
        best = max(best, level)
        if level <= best - drop:
            alarms.append(step)
    return alarms


def spinal_alarms(observations: Sequence[tuple[int, Mapping[str, float]]],
                  config: DetectorConfig | Mapping[str, Any] | None = None) -> list[Alert]:
    """Replay spinal's early-warning detector on ``[(step, {signal: value}), ...]`` and return its alerts."""
    if isinstance(config, Mapping):
        config = DetectorConfig(**config)
    detector = EarlyWarningDetector(config)
    alerts: list[Alert] = []
    for step, signals in observations:
        alerts.extend(detector.update(step, signals))
    return alerts
