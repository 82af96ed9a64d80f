"""``SpinalLightningCallback``: the geometry monitor for Lightning 2.x."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

try:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger
except ImportError:  # pragma: no cover - the standalone `pytorch_lightning` distribution
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.loggers import TensorBoardLogger  # type: ignore[no-redef,assignment]
    except ImportError as exc:
        raise ImportError(
            "SpinalLightningCallback needs Lightning: pip install \"spinal-callback[lightning]\""
        ) from exc

from ..config import SpinalConfig
from ..guard import TrainingHandles
from ..monitor import SpinalMonitor, default_trace_path
from ..sinks.jsonl import TraceWriter
from ..sinks.tensorboard import TensorBoardSink
from ._common import LOGGED_TAGS, coerce_config, summary_writer

__all__ = ["SpinalLightningCallback"]

ModelGetter = Callable[["pl.LightningModule"], nn.Module]


def _default_policy(pl_module: pl.LightningModule) -> nn.Module:
    for attr in ("policy", "model"):
        candidate = getattr(pl_module, attr, None)
        if isinstance(candidate, nn.Module):
            return candidate
    return pl_module


def _default_reference(pl_module: pl.LightningModule) -> nn.Module | None:
    for attr in ("reference", "ref_model"):
        candidate = getattr(pl_module, attr, None)
        if isinstance(candidate, nn.Module):
            return candidate
    return None


class SpinalLightningCallback(pl.Callback):
    """Live layer-geometry monitoring for a Lightning DPO module.

    Add it in one line::

        trainer = L.Trainer(..., callbacks=[SpinalLightningCallback(SpinalConfig(interval=50))])

    Every ``config.interval`` optimizer steps (and at step 0) it runs one no-grad, eval-mode
    forward of the policy on a fixed probe set and logs the SPINAL depth trace: scalars through all
    of the trainer's loggers, images / text / the custom-scalars layout through its
    ``TensorBoardLogger`` (or the callback's own ``SummaryWriter`` on ``config.log_dir``, default
    ``<default_root_dir>/spinal``, when there is none). The JSON-lines trace goes to
    ``config.trace_path`` or ``<tensorboard dir>/spinal_trace.jsonl``. Only global rank 0 writes.

    Logged tags:
    """

    __doc__ = (__doc__ or "") + LOGGED_TAGS + """
    Args:
        config: a :class:`SpinalConfig` (or a dict of its fields).
        policy: ``LightningModule -> nn.Module``; default ``pl_module.policy``, else
            ``pl_module.model``, else the module itself.
        reference: ``LightningModule -> nn.Module``; default ``pl_module.reference`` or
            ``pl_module.ref_model`` (needed by patching probes, not by geometry).
        tokenizer: tokenizes text probe pairs / text training records; default
            ``pl_module.tokenizer``.

    Attributes:
        monitor: the framework-neutral :class:`SpinalMonitor`.
        log_dir / trace_path: where output goes (after ``on_train_start``, rank 0).
    """

    def __init__(
        self,
        config: SpinalConfig | Mapping[str, Any] | None = None,
        policy: ModelGetter | None = None,
        reference: ModelGetter | None = None,
        tokenizer: Any = None,
    ) -> None:
        for name, getter in (("policy", policy), ("reference", reference)):
            if getter is not None and not callable(getter):
                raise TypeError(f"`{name}` must be a callable LightningModule -> nn.Module, got {getter!r}")
        self.monitor = SpinalMonitor(coerce_config(config))
        self._policy = policy or _default_policy
        self._reference = reference or _default_reference
        self.tokenizer = tokenizer
        self.log_dir: str | None = None
        self.trace_path: str | None = None

    @property
    def config(self) -> SpinalConfig:
        return self.monitor.config

    @property
    def state_key(self) -> str:
        return self._generate_state_key(probe=self.config.fingerprint())

    def policy(self, pl_module: pl.LightningModule) -> nn.Module:
        model = self._policy(pl_module)
        if not isinstance(model, nn.Module):
            raise TypeError(f"The `policy` getter returned {type(model).__name__}, not an nn.Module")
        return model

    def reference(self, pl_module: pl.LightningModule) -> nn.Module | None:
        return self._reference(pl_module)

    # -- hooks -----------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The train dataloader exists from here on; nothing has stepped yet, so misconfiguration
        # raised by setup() still stops the run before its first optimizer step.
        if self.monitor.layout is None:
            self._setup(trainer, pl_module)
        self._step(trainer, pl_module)

    def _setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sink = writer = None
        if trainer.is_global_zero:
            sink, self.log_dir = self._sink(trainer)
            self.trace_path = default_trace_path(self.config, self.log_dir)
            writer = TraceWriter(self.trace_path)
        tokenizer = self.tokenizer if self.tokenizer is not None else getattr(pl_module, "tokenizer", None)
        try:
            self.monitor.setup(
                self.policy(pl_module), records=self._records(trainer), tokenizer=tokenizer,
                sink=sink, trace_writer=writer,
                rank_zero=bool(trainer.is_global_zero), reference=self.reference(pl_module),
            )
        except BaseException:
            self.monitor.sink, self.monitor.trace_writer = sink, writer
            self.monitor.close()
            raise

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor.layout is not None:
            self._step(trainer, pl_module)

    def _step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor.observe_metrics(trainer.callback_metrics)
        configs = trainer.lr_scheduler_configs
        handles = TrainingHandles(
            model=pl_module,
            optimizer=trainer.optimizers[0] if trainer.optimizers else None,
            scheduler=configs[0].scheduler if configs else None,
            scaler=getattr(trainer.precision_plugin, "scaler", None),
        )
        outcome = self.monitor.on_step(
            trainer.global_step, self.policy(pl_module), handles,
            sync=lambda decision: trainer.strategy.broadcast(decision, src=0),
            reference=self.reference(pl_module),
        )
        if outcome is not None and outcome.stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.monitor.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor.close()

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict)

    # -- helpers ---------------------------------------------------------------------------------
    def _sink(self, trainer: pl.Trainer) -> tuple[TensorBoardSink, str]:
        loggers = list(trainer.loggers)
        tb = next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)

        def to_loggers(metrics: Mapping[str, float], step: int, extra: Any = None) -> None:
            for lg in loggers:
                lg.log_metrics(dict(metrics), step=step)
            if extra is not None:
                for tag, value in metrics.items():
                    extra.add_scalar(tag, value, step)

        if tb is not None:
            sink = TensorBoardSink(tb.experiment, log_scalars=to_loggers, heatmaps=self.config.heatmaps)
            return sink, str(tb.log_dir)
        log_dir = self.config.log_dir or os.path.join(trainer.default_root_dir, "spinal")
        writer = summary_writer(log_dir)
        log_scalars = (lambda m, s: to_loggers(m, s, writer)) if loggers else None
        sink = TensorBoardSink(writer, log_scalars=log_scalars, heatmaps=self.config.heatmaps, owns_writer=True)
        return sink, log_dir

    def _records(self, trainer: pl.Trainer) -> Any:
        if self.config.probe_pairs is not None:
            return None
        loader = trainer.train_dataloader
        if isinstance(loader, Mapping):
            loader = next(iter(loader.values()), None)
        elif isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise ValueError(
                "SpinalLightningCallback cannot find the training dataset to take probe pairs from; give them "
                "explicitly with SpinalConfig(probe_pairs=[{'prompt': ..., 'chosen': ..., 'rejected': ...}])"
            )
        return dataset
