"""The one unwrap of the package: see through parallel, compile and PEFT wrappers to the model inside."""

from __future__ import annotations

from torch import nn

__all__ = ["unwrap_model", "unwrap_parallel"]


def _is_fsdp1(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(model, FullyShardedDataParallel)


def unwrap_parallel(model: nn.Module, *, keep_fsdp_root: bool = False) -> nn.Module:
    """Strip DDP / DataParallel / FSDP ``.module`` and ``torch.compile`` ``._orig_mod`` wrappers (not PEFT).

    The one unwrap of the package (probes, patching and snapshots all use it). A ``._orig_mod`` or
    ``.module`` is seen through only when it holds every parameter of its owner, so a user module that
    merely has a sub-module called ``module`` next to parameters of its own is left alone; parameter names
    of the result are therefore the model's own, with or without the wrapper.

    Args:
        keep_fsdp_root: stop at the outermost ``FullyShardedDataParallel`` (FSDP1) wrapper — the module a
            probe of a sharded model must call, since its forward gathers the root's own parameters.
    """
    while True:
        if keep_fsdp_root and _is_fsdp1(model):
            return model
        for attr in ("_orig_mod", "module"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module) and inner is not model and _holds_all_parameters(inner, model):
                model = inner
                break
        else:
            return model


def _holds_all_parameters(inner: nn.Module, outer: nn.Module) -> bool:
    held = {id(p) for p in inner.parameters()}
    return all(id(p) in held for p in outer.parameters())


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel/FSDP, ``torch.compile`` and PEFT wrappers down to the bare causal LM."""
    while True:
        model = unwrap_parallel(model)
        get_base = getattr(model, "get_base_model", None)
        if not (callable(get_base) and type(model).__name__.startswith("Peft")):
            return model
        model = get_base()
