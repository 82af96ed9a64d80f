"""What the Lightning adapter needs from Lightning besides its hooks: default model getters, the models as the
probes call them under an FSDP strategy, the strategy's collectives as a
:class:`~spinal_callback.recovery.sync.RankSync`, and where output goes (the trainer's ``TensorBoardLogger`` and
every logger in ``trainer.loggers``)."""

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

from spinal_callback.config import SpinalConfig
from spinal_callback.model.sharding import enclosed

__all__ = ["ModelGetter", "StrategySync", "default_policy", "default_reference", "outputs", "pl", "probed"]

ModelGetter = Callable[["pl.LightningModule"], nn.Module]


def _first_module(pl_module: pl.LightningModule, attrs: tuple[str, ...]) -> nn.Module | None:
    for attr in attrs:
        candidate = getattr(pl_module, attr, None)
        if isinstance(candidate, nn.Module):
            return candidate
    return None


def default_policy(pl_module: pl.LightningModule) -> nn.Module:
    return _first_module(pl_module, ("policy", "model")) or pl_module


def default_reference(pl_module: pl.LightningModule) -> nn.Module | None:
    return _first_module(pl_module, ("reference", "ref_model"))


def probed(trainer: pl.Trainer, model: nn.Module) -> nn.Module:
    """``model`` as the probes call it: through the FSDP root when the strategy's model is one that encloses it
    (``FSDPStrategy`` wraps the whole ``LightningModule``, so that root owns the policy's embedding, final norm
    and unembedding; see :func:`~spinal_callback.model.sharding.enclosed`), else ``model`` itself."""
    return enclosed(model, getattr(trainer.strategy, "model", None))


class StrategySync:
    """:class:`~spinal_callback.recovery.sync.RankSync` over a Lightning strategy's collectives."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def broadcast(self, obj: Any) -> Any:
        return self.strategy.broadcast(obj, src=0)

    def all_ok(self, ok: bool) -> bool:
        return bool(self.strategy.reduce_boolean_decision(bool(ok), all=True))


def outputs(
    trainer: pl.Trainer, config: SpinalConfig
) -> tuple[Any, str, Callable[..., None] | None, Callable[[str, str, int], None] | None]:
    """(the ``TensorBoardLogger``'s writer or None, the TensorBoard directory, scalars to every logger, text to
    the loggers that take text).

    With a ``TensorBoardLogger`` the callback writes into its run directory through its writer; without
    one it opens its own writer on ``config.log_dir`` (default ``<default_root_dir>/spinal``). Scalars
    go to every entry of ``trainer.loggers`` (CSV, W&B, MLflow, …) too; alert, rollback and config text to
    the loggers with a ``log_text(key, columns, data, step)`` (W&B: a one-column table).
    """
    loggers = list(trainer.loggers)

    def to_loggers(metrics: Mapping[str, float], step: int) -> None:
        for logger in loggers:
            logger.log_metrics(dict(metrics), step=step)

    texts = [lg for lg in loggers if type(lg).__name__ == "WandbLogger" and callable(getattr(lg, "log_text", None))]

    def text_to_loggers(tag: str, text: str, step: int) -> None:
        for logger in texts:
            logger.log_text(key=tag, columns=["text"], data=[[text]], step=step)  # type: ignore[attr-defined]

    to_text = text_to_loggers if texts else None
    tb = next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
    if tb is not None and trainer.is_global_zero:
        return tb.experiment, str(tb.log_dir), to_loggers, to_text
    log_dir = config.log_dir or os.path.join(trainer.default_root_dir, "spinal")
    return None, log_dir, to_loggers if loggers else None, to_text
