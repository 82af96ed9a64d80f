"""Probing a sharded model: FSDP1 (``FullyShardedDataParallel``), FSDP2 (``fully_shard``) and DeepSpeed ZeRO-3.

A sharded model holds on each rank only a slice of every parameter; the slices are gathered by hooks
around the forward of each sharded unit. Three rules make a probe of such a model correct:

1. **Every rank runs the same probe forward through the wrapped root** (the gathers are collectives),
   so the root's own parameters — embedding, final norm, unembedding — are gathered like in training.
2. **The forward runs to its end**: stopping it from a block's hook would skip the sharding's
   post-forward hooks and leave its state mid-forward. The unembedding is replaced for that one
   forward by a stub that returns one column (the probe scores tokens itself), so the ``B × T × V``
   logits are never built.
3. **The logit lens runs inside :func:`gathered_head`**: the final norm's and the unembedding's full
   parameters are gathered once per probe — ``summon_full_params(unit, recurse=False)`` on the FSDP1
   units that own them, ``unshard()`` / ``reshard()`` on the FSDP2 modules, ``GatheredParameters`` for
   ZeRO-3 — and released afterwards.

The patching probes (:mod:`spinal_callback.probes`) follow the same rules under FSDP1 and FSDP2: every
unpatched and patched forward of the policy and the reference goes through
:func:`~spinal_callback.model.runner.forward_blocks`, each run's head is gathered once per side
(:meth:`~spinal_callback.model.runner.ModelRun.head`) to score its forwards, and attribution patching's
backward runs through the sharded blocks (their hooks gather the parameters again; parameters get no
gradient). Every rank runs the same forwards in the same order: the plan depends only on the batch and
the configuration, and the one choice made from measured values (the low-rank layers) is rank 0's
(:func:`rank_zero_choice`).

A model that is a *submodule* of an FSDP1 or FSDP2 root — Lightning's ``FSDPStrategy`` wraps the whole
``LightningModule``, so the root unit owns the policy's embedding, final norm and unembedding — is probed as
an :class:`EnclosedModel` (:func:`enclosed`): its forward runs through that root (the root's forward is
redirected to the model for the call, as Lightning redirects ``training_step``), so the root's parameters
are gathered and released by the root's own hooks, and :func:`gathered_head` looks for the units that own
the head from the root down.

What is refused under which sharding, at setup, is :mod:`spinal_callback.model.sharding_rules`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, cast

import torch
from torch import nn

__all__ = [
    "EnclosedModel",
    "Sharding",
    "enclosed",
    "gathered_head",
    "probe_root",
    "rank_zero_choice",
    "sharding_of",
    "stubbed_head",
]

Sharding = str  # "fsdp1", "fsdp2" or "zero3"


def _fsdp1_type() -> type | None:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without distributed
        return None
    return FullyShardedDataParallel


def _fsdp2_type() -> type | None:
    for where in ("torch.distributed.fsdp", "torch.distributed._composable.fsdp"):
        try:
            module = __import__(where, fromlist=["FSDPModule"])
        except ImportError:  # pragma: no cover - older torch
            continue
        found = getattr(module, "FSDPModule", None)
        if isinstance(found, type):
            return found
    return None  # pragma: no cover


def _is_zero3(param: torch.Tensor) -> bool:
    """A DeepSpeed ZeRO-3 partitioned parameter (it carries ``ds_id`` and ``ds_status``)."""
    return hasattr(param, "ds_id") and hasattr(param, "ds_status")


def _root_kind(module: nn.Module) -> Sharding | None:
    """``"fsdp1"`` for a ``FullyShardedDataParallel`` wrapper, ``"fsdp2"`` for a ``fully_shard`` module, else
    ``None``."""
    fsdp1, fsdp2 = _fsdp1_type(), _fsdp2_type()
    if fsdp1 is not None and isinstance(module, fsdp1):
        return "fsdp1"
    if fsdp2 is not None and isinstance(module, fsdp2):
        return "fsdp2"
    return None


class EnclosedModel(nn.Module):
    """A model inside an enclosing FSDP1 / FSDP2 root, as a probe calls it (see :func:`enclosed`).

    Calling it runs the root's forward with the root's own module's ``forward`` redirected to the model for
    that one call: the root's hooks gather its parameters (the model's embedding, final norm, unembedding when
    the root owns them) and release them as in training, on every rank alike. ``module`` is the model (a
    registered child: parameters, train/eval flags and :func:`~spinal_callback.model.unwrap.unwrap_parallel`
    see the model and nothing else); ``root`` is held unregistered.

    Attributes:
        module: the model.
        root: the FSDP root that encloses it.
        sharding: the root's sharding, ``"fsdp1"`` or ``"fsdp2"``.
    """

    root: nn.Module
    sharding: Sharding

    def __init__(self, module: nn.Module, root: nn.Module, sharding: Sharding) -> None:
        super().__init__()
        self.module = module
        object.__setattr__(self, "root", root)  # not a submodule: no cycle, no foreign parameters or modes
        self.sharding = sharding

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        root = self.root
        target = cast(nn.Module, root.module) if self.sharding == "fsdp1" else root  # FSDP1: the wrapped module
        model = self.module
        saved = target.__dict__.get("forward")

        def restore() -> None:
            if saved is None:
                target.__dict__.pop("forward", None)
            else:
                target.forward = saved  # type: ignore[method-assign]

        def redirected(*inner_args: Any, **inner_kwargs: Any) -> Any:
            restore()  # before the call: `model` may be `target` itself
            return model(*inner_args, **inner_kwargs)

        target.forward = redirected  # type: ignore[method-assign]
        try:
            return root(*args, **kwargs)
        finally:
            restore()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "disable_adapter":  # a PEFT policy used as its own reference
                return getattr(self.module, name)
            raise


def enclosed(model: nn.Module, root: nn.Module | None) -> nn.Module:
    """``model`` as a probe must call it: an :class:`EnclosedModel` when ``root`` is an FSDP1 wrapper or an FSDP2
    module that holds ``model`` as a proper submodule, else ``model`` itself (no root, not sharded, ``model`` is
    the root, or not inside it).

    Calling a submodule of an FSDP root directly would skip the root's gathers (the parameters it owns stay
    sharded: the forward fails or, worse, reads a shard) and, before the first training forward, could make an
    inner unit the lazily initialized root. Lightning's adapter calls this with the strategy's model.
    """
    if root is None or model is root or isinstance(model, EnclosedModel):
        return model
    kind = _root_kind(root)
    if kind is None or not any(sub is model for sub in root.modules()):
        return model
    return EnclosedModel(model, root, kind)


def sharding_of(model: nn.Module) -> Sharding | None:
    """``"fsdp1"``, ``"fsdp2"``, ``"zero3"`` or ``None`` (not sharded: plain, DDP, compile, PEFT); an
    :class:`EnclosedModel` has its root's sharding."""
    if isinstance(model, EnclosedModel):
        return model.sharding
    fsdp1, fsdp2 = _fsdp1_type(), _fsdp2_type()
    for module in model.modules():
        if fsdp1 is not None and isinstance(module, fsdp1):
            return "fsdp1"
        if fsdp2 is not None and isinstance(module, fsdp2):
            return "fsdp2"
    if any(_is_zero3(p) for p in model.parameters()):
        return "zero3"
    return None


def probe_root(model: nn.Module) -> nn.Module:
    """The module a probe calls: DDP / DataParallel / ``torch.compile`` wrappers stripped, an FSDP1 root kept
    (its forward gathers the root's own parameters; the model inside it holds only flat shards), an
    :class:`EnclosedModel` kept (its forward goes through the enclosing root)."""
    from spinal_callback.model.unwrap import unwrap_parallel

    if isinstance(model, EnclosedModel):
        return model
    return unwrap_parallel(model, keep_fsdp_root=True)


def _owning_units(root: nn.Module, targets: Iterable[nn.Module], unit_type: type) -> list[nn.Module]:
    """For each target module, the nearest enclosing module of ``unit_type`` (itself included), deduplicated."""
    owner: dict[int, nn.Module] = {}

    def visit(module: nn.Module, unit: nn.Module | None) -> None:
        if isinstance(module, unit_type):
            unit = module
        if unit is not None:
            owner.setdefault(id(module), unit)
        for child in module.children():
            visit(child, unit)

    visit(root, None)
    units: dict[int, nn.Module] = {}
    for target in targets:
        unit = owner.get(id(target))
        if unit is not None:
            units[id(unit)] = unit
    return list(units.values())


def _head_modules(layout: Any) -> list[nn.Module]:
    return [m for m in (layout.final_norm, *layout.pre_unembed, layout.unembed) if m is not None]


@contextlib.contextmanager
def gathered_head(model: nn.Module, layout: Any) -> Iterator[None]:
    """Full parameters of the final norm, the modules before the unembedding and the unembedding, for the
    logit lens — gathered once, released on exit. A no-op for a model that is not sharded.

    Call it *after* the probe forward (FSDP1 forbids a forward inside ``summon_full_params``), on every rank.
    The owning units are looked up from ``model`` down, from the enclosing root down for an :class:`EnclosedModel`.
    """
    kind = sharding_of(model)
    heads = _head_modules(layout)
    top = model.root if isinstance(model, EnclosedModel) else model
    if kind == "fsdp1":
        fsdp1 = _fsdp1_type()
        assert fsdp1 is not None
        with contextlib.ExitStack() as stack:
            for unit in _owning_units(top, heads, fsdp1):
                stack.enter_context(fsdp1.summon_full_params(unit, recurse=False, writeback=False))  # type: ignore[attr-defined]
            yield
    elif kind == "fsdp2":
        fsdp2 = _fsdp2_type()
        assert fsdp2 is not None
        units = _owning_units(top, heads, fsdp2)
        try:
            for unit in units:
                unit.unshard()  # type: ignore[operator]
            yield
        finally:
            for unit in units:
                unit.reshard()  # type: ignore[operator]
    elif kind == "zero3":
        import deepspeed  # type: ignore[import-not-found]  # only a ZeRO-3 model gets here

        params = [p for module in heads for p in module.parameters(recurse=True)]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


class _OneColumn(nn.Module):
    """Stands in for the unembedding during a sharded probe forward: ``(…, d) → (…, 1)`` zeros."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[..., :1] * 0


@contextlib.contextmanager
def stubbed_head(layout: Any) -> Iterator[None]:
    """The unembedding's ``forward`` replaced by a one-column stub for the duration (restored on exit).

    Its parameters are still gathered by the sharding's hooks around the root, exactly as in training;
    only the ``B × T × V`` matmul is skipped.
    """
    unembed: nn.Module = layout.unembed
    stub = _OneColumn()
    previous = unembed.__dict__.get("forward")
    unembed.forward = stub.forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        if previous is None:
            unembed.__dict__.pop("forward", None)
        else:
            unembed.forward = previous  # type: ignore[method-assign]


def rank_zero_choice(value: Any, kind: Sharding | None) -> Any:
    """``value`` as global rank 0 has it, on every rank, for a choice that decides which forwards run.

    Probes of a sharded model must run the same forwards on every rank (their gathers are collectives);
    a choice made from measured values (e.g. the layers with the largest effect) could differ between
    ranks by rounding. One ``broadcast_object_list`` on the default process group — call it on every
    rank. Returns ``value`` unchanged when ``kind`` is ``None`` or no process group of 2+ ranks exists.
    """
    import torch.distributed as dist

    if kind is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
