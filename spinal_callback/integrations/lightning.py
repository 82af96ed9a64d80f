"""``SpinalLightningCallback``: the geometry monitor for Lightning 2.x — hooks translated into session calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.integrations._common import LOGGED_TAGS
from spinal_callback.integrations._lightning_support import (
    ModelGetter,
    StrategySync,
    default_policy,
    default_reference,
    outputs,
    pl,
    probed,
)
from spinal_callback.monitor.session import MonitorSession, dataset_of
from spinal_callback.recovery.guard import TrainingHandles

__all__ = ["SpinalLightningCallback"]


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
    Off the schedule a batch costs nothing: no hook, no forward, no metric read, no collective.

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
        session: the framework-neutral :class:`~spinal_callback.monitor.session.MonitorSession`.
        monitor: its :class:`~spinal_callback.SpinalMonitor`.
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
        self.session = MonitorSession(config)
        self.monitor = self.session.monitor
        self._policy = policy or default_policy
        self._reference = reference or default_reference
        self.tokenizer = tokenizer

    config = property(lambda self: self.session.config)
    log_dir = property(lambda self: self.session.log_dir)
    trace_path = property(lambda self: self.session.trace_path)

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

    def _probed(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[nn.Module, nn.Module | None]:
        """The policy and the reference as the probes call them (through an enclosing FSDP root)."""
        reference = self.reference(pl_module)
        return probed(trainer, self.policy(pl_module)), None if reference is None else probed(trainer, reference)

    # -- hooks -----------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The train dataloader exists from here on; nothing has stepped yet, so misconfiguration
        # raised by start() still stops the run before its first optimizer step.
        if not self.session.started:
            writer, log_dir, log_scalars, log_text = outputs(trainer, self.config)
            policy, reference = self._probed(trainer, pl_module)
            self.session.start(
                policy, rank_zero=bool(trainer.is_global_zero), log_dir=log_dir, writer=writer,
                log_scalars=log_scalars, log_text=log_text, records=dataset_of(trainer.train_dataloader),
                tokenizer=self.tokenizer if self.tokenizer is not None else getattr(pl_module, "tokenizer", None),
                reference=reference,
            )
        self._step(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._step(trainer, pl_module)

    def _step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.session.due(trainer.global_step):
            return

        def handles() -> TrainingHandles:
            configs = trainer.lr_scheduler_configs
            return TrainingHandles(
                model=pl_module,
                optimizer=trainer.optimizers[0] if trainer.optimizers else None,
                scheduler=configs[0].scheduler if configs else None,
                scaler=getattr(trainer.precision_plugin, "scaler", None),
            )

        policy, reference = self._probed(trainer, pl_module)
        stop = self.session.step(
            trainer.global_step, policy, handles, sync=StrategySync(trainer.strategy), reference=reference,
            metrics=lambda: trainer.callback_metrics,
        )
        if stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.session.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.session.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.session.close()

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.session.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.session.load_state_dict(state_dict)
