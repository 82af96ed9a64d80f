"""Pairing a policy with its reference for a patching experiment, and the layers a probe patches."""

from __future__ import annotations

from typing import Any

from torch import nn

from spinal_callback.model.architectures import DecoderLayout, resolve_layout
from spinal_callback.model.runner import ModelRun
from spinal_callback.model.sharding import probe_root, sharding_of

__all__ = ["resolve_layers", "resolve_runs"]


def _describe(layout: DecoderLayout) -> dict[str, Any]:
    config = getattr(layout.model, "config", None)
    return {
        "architecture": layout.architecture,
        "decoder blocks": layout.num_layers,
        "vocabulary": layout.vocab_size,
        "hidden size": getattr(config, "hidden_size", None),
    }


def resolve_runs(policy: nn.Module, reference: nn.Module | None) -> tuple[ModelRun, ModelRun]:
    """Pair the policy with its reference and check that they can be patched into each other.

    Args:
        policy: the model being trained (PEFT-, DDP- or compile-wrapped too).
        reference: the reference model, or ``None`` to use the PEFT policy with its adapter disabled.

    Raises:
        ValueError: ``reference`` is ``None`` and the policy has no adapter to disable, or the two
            models differ in architecture, number of decoder blocks, vocabulary or hidden size (the
            message shows both).
    """
    if not isinstance(policy, nn.Module):
        raise ValueError(f"`policy` must be a torch.nn.Module, got {type(policy).__name__}")
    policy_module = probe_root(policy)
    policy_run = ModelRun("policy", policy_module, resolve_layout(policy), sharded=sharding_of(policy))
    if reference is None:
        if not callable(getattr(policy_module, "disable_adapter", None)):
            raise ValueError(
                f"`reference` is None but the policy ({type(policy_module).__name__}) is not a PEFT model "
                "with an adapter to disable; pass the reference model (e.g. the trainer's ref_model)"
            )
        return policy_run, ModelRun(
            "reference", policy_module, policy_run.layout, adapter_disabled=True, sharded=policy_run.sharded
        )
    if not isinstance(reference, nn.Module):
        raise ValueError(f"`reference` must be a torch.nn.Module or None, got {type(reference).__name__}")
    reference_module = probe_root(reference)
    reference_run = ModelRun("reference", reference_module, resolve_layout(reference), sharded=sharding_of(reference))
    mine, theirs = _describe(policy_run.layout), _describe(reference_run.layout)
    differ = [key for key in mine if mine[key] != theirs[key]]
    if differ:
        shown = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
        raise ValueError(
            f"`policy` and `reference` cannot be patched into each other: they differ in {', '.join(differ)} "
            f"(policy {type(policy_module).__name__}: {shown(mine)}; reference "
            f"{type(reference_module).__name__}: {shown(theirs)})"
        )
    return policy_run, reference_run


def resolve_layers(layers: Any, num_layers: int) -> list[int]:
    """1-based layer numbers → sorted 0-based block indices; ``None`` means every block.

    Raises:
        ValueError: a layer outside ``1..num_layers``, a repeated layer, or an empty selection.
    """
    if layers is None:
        return list(range(num_layers))
    try:
        chosen = [int(layer) for layer in layers]
    except (TypeError, ValueError) as error:
        raise ValueError(f"`layers` must be a sequence of 1-based layer numbers or None, got {layers!r}") from error
    bad = [layer for layer in chosen if not 1 <= layer <= num_layers]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"`layers` must be distinct 1-based layer numbers in 1..{num_layers} (the model has {num_layers} "
            f"decoder blocks), got {layers!r}"
        )
    return sorted(layer - 1 for layer in chosen)
