"""``MonitorSession``: everything the Lightning and Hugging Face adapters share.

An adapter translates its framework's hooks into four calls — :meth:`MonitorSession.start` when
training begins, :meth:`MonitorSession.step` after every optimizer step, :meth:`MonitorSession.close`
at the end — and tells the session the framework-specific facts: where TensorBoard output goes, what
the training data is, which objects a rollback restores, and how ranks talk to each other. The session
owns the rest: opening and closing the outputs (rank 0 only), cleaning up after a failed setup,
finding probe data, zero work off the schedule, and the cross-rank decision.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.monitor.monitor import SpinalMonitor
from spinal_callback.recovery.guard import TrainingHandles
from spinal_callback.recovery.sync import LocalSync, RankSync
from spinal_callback.sinks.summary_events import add_scalars_at

__all__ = ["TRACE_FILENAME", "MonitorSession", "coerce_config", "default_trace_path", "portable_config"]

#: The trace file's name inside the TensorBoard directory when ``trace_path`` is not set.
TRACE_FILENAME = "spinal_trace.jsonl"


def default_trace_path(config: SpinalConfig, tensorboard_dir: str) -> str:
    """``config.trace_path`` or ``<tensorboard_dir>/spinal_trace.jsonl``."""
    return config.trace_path or os.path.join(tensorboard_dir, TRACE_FILENAME)


def _trace_path(config: SpinalConfig, log_dir: str | None, output_dir: str | None) -> str:
    """``config.trace_path``, else next to the TensorBoard events, else ``<output_dir>/spinal/``."""
    if config.trace_path or log_dir:
        return default_trace_path(config, log_dir or "")
    if output_dir is None:
        raise ValueError(
            "spinal-callback has nowhere to write its trace file: set SpinalConfig(trace_path=...) or "
            "SpinalConfig(log_dir=...)"
        )
    return os.path.join(output_dir, "spinal", TRACE_FILENAME)


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


def dataset_of(loader: Any) -> Any:
    """The ``dataset`` behind a dataloader, or behind the first of a dict / list of them (else ``None``)."""
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()), None)
    elif isinstance(loader, (list, tuple)):
        loader = loader[0] if loader else None
    return getattr(loader, "dataset", None)


class MonitorSession:
    """One training run as the monitor sees it: outputs, setup, per-step work, shutdown.

    Args:
        config: the :class:`SpinalConfig` (or a dict of its fields).

    Attributes:
        monitor: the :class:`SpinalMonitor`.
        log_dir / trace_path: where output goes (rank 0, after :meth:`start`).
    """

    def __init__(self, config: SpinalConfig | Mapping[str, Any] | None = None) -> None:
        self.monitor = SpinalMonitor(coerce_config(config))
        self.log_dir: str | None = None
        self.trace_path: str | None = None

    @property
    def config(self) -> SpinalConfig:
        return self.monitor.config

    @property
    def started(self) -> bool:
        return self.monitor.layout is not None

    def start(
        self,
        policy: nn.Module,
        *,
        rank_zero: bool,
        log_dir: str | None,
        output_dir: str | None = None,
        writer: Any = None,
        log_scalars: Callable[..., None] | None = None,
        log_text: Callable[[str, str, int], None] | None = None,
        records: Iterable[Mapping[str, Any]] | None = None,
        tokenizer: Any = None,
        reference: nn.Module | None = None,
        metric_names: Collection[str] | None = None,
    ) -> None:
        """Open the outputs (rank 0) and set the monitor up; on any failure close what was opened and re-raise.

        Args:
            policy: the model being trained.
            rank_zero: whether this process is global rank 0 (the only one that writes).
            log_dir: the TensorBoard directory (the host framework's, or the callback's own), or ``None``
                for no TensorBoard output (scalars then go to ``log_scalars`` only).
            output_dir: where the trace file goes when there is no ``log_dir`` and no
                ``config.trace_path`` (as ``<output_dir>/spinal/spinal_trace.jsonl``).
            writer: the host framework's ``SummaryWriter`` for ``log_dir``, or ``None`` to open one.
            log_scalars: ``f(metrics, step)`` that sends scalars to every logger of the host framework
                (``None``: scalars go to the TensorBoard writer only). With the session's own writer
                (``writer=None``) scalars go to both.
            log_text: ``f(tag, text, step)`` that sends alert, rollback and config text to the host's loggers
                that take text (next to the TensorBoard writer, if any).
            records: the training data, read for probe pairs when the config gives none.
            tokenizer: tokenizes text probe pairs / records.
            reference: the reference model (scores the probe pairs once; needed by patching probes).
            metric_names: the trainer's metric names, for the check of the detector's signal names
                (``None``: not known before training logs them).
        """
        from spinal_callback.sinks.jsonl import TraceWriter
        from spinal_callback.sinks.tensorboard import TensorBoardSink

        cfg = self.config
        sink = trace_writer = None
        try:
            if rank_zero:
                self.log_dir = log_dir
                self.trace_path = _trace_path(cfg, log_dir, output_dir)
                if log_dir is None:  # no TensorBoard asked for: scalars to the host's loggers only
                    sink = TensorBoardSink(None, log_scalars=log_scalars, log_text=log_text) if log_scalars else None
                elif writer is None:  # the session's own writer: scalars go to it and to the host's loggers
                    own = _summary_writer(log_dir)
                    sink = TensorBoardSink(
                        own, log_scalars=_also_to(own, log_scalars) if log_scalars else None,
                        heatmaps=cfg.heatmaps, owns_writer=True, layer_runs=cfg.layer_runs,
                        heatmap_interval=cfg.heatmap_interval, log_text=log_text, draw_in_background=True,
                    )
                else:
                    sink = TensorBoardSink(
                        writer, log_scalars=log_scalars, heatmaps=cfg.heatmaps, layer_runs=cfg.layer_runs,
                        heatmap_interval=cfg.heatmap_interval, log_text=log_text, draw_in_background=True,
                    )
                trace_writer = TraceWriter(self.trace_path)
            if cfg.probe_pairs is None and records is None:
                raise ValueError(
                    "spinal-callback cannot find the training dataset to take probe pairs from; give them "
                    "explicitly with SpinalConfig(probe_pairs=[{'prompt': ..., 'chosen': ..., 'rejected': ...}])"
                )
            self.monitor.setup(
                policy, records=None if cfg.probe_pairs is not None else records, tokenizer=tokenizer,
                sink=sink, trace_writer=trace_writer, rank_zero=rank_zero, reference=reference,
                metric_names=metric_names,
            )
        except BaseException:
            for closable in (sink, trace_writer):
                if closable is not None:
                    closable.close()
            raise

    def due(self, step: int) -> bool:
        """Anything to do at ``step``? Pure Python: no hook, no forward, no device sync."""
        return self.started and self.monitor.due(step)

    def step(
        self,
        step: int,
        policy: nn.Module,
        handles: Callable[[], TrainingHandles],
        *,
        sync: RankSync | None = None,
        reference: nn.Module | None = None,
        metrics: Callable[[], Mapping[str, Any]] | None = None,
    ) -> bool:
        """Everything due after optimizer step ``step``; returns whether training must stop.

        Off the schedule this returns ``False`` before touching anything: ``handles`` and ``metrics``
        are callables so that the rollback handles and the trainer's metrics (one device sync per
        tensor) are only read on steps where something is due.
        """
        if not self.due(step):
            return False
        if metrics is not None:
            self.monitor.observe_metrics(metrics())
        outcome = self.monitor.on_step(step, policy, handles(), sync=sync or LocalSync(), reference=reference)
        return bool(outcome is not None and outcome.stop)

    def log(self, step: int, handles: Callable[[], TrainingHandles], *, sync: RankSync | None = None) -> bool:
        """After the trainer logged at ``step`` (and after that step's reading, if one was due): with
        ``config.read_every_log``, feed the logged metrics no reading took to the detector
        (:meth:`SpinalMonitor.on_log`); returns whether training must stop."""
        if not (self.started and self.config.read_every_log):
            return False
        outcome = self.monitor.on_log(step, handles(), sync=sync or LocalSync())
        return bool(outcome is not None and outcome.stop)

    def close(self) -> None:
        """Flush and close the outputs (idempotent)."""
        self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.monitor.load_state_dict(state)


def _summary_writer(log_dir: str) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (created if needed)."""
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(log_dir, exist_ok=True)
    return SummaryWriter(log_dir=log_dir)


def _also_to(writer: Any, log_scalars: Callable[..., None]) -> Callable[[Mapping[str, float], int], None]:
    """``log_scalars`` followed by the same scalars to ``writer`` (:func:`add_scalars_at`)."""

    def both(metrics: Mapping[str, float], step: int) -> None:
        log_scalars(metrics, step)
        add_scalars_at(writer, metrics, step)

    return both
