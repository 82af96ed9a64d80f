"""Running a policy or reference model for a probe: which module, in which mode, with which block edits.

A :class:`ModelRun` is one side of a patching experiment — the policy, or the reference (a separate
model, or the PEFT policy with its adapter disabled, as TRL does with ``ref_model=None``).
:func:`forward_blocks` runs it once with optional *edits* of block outputs (read or replace the hidden
states of block ℓ) and stops after the last block (:class:`~spinal_callback.model.capture.StopForward`): the
LM head never runs, the caller scores tokens from the returned last-block output. It can also *skip*
the unpatched prefix of the network: blocks before ``start`` return recorded hidden states instead of
computing them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spinal_callback.model.architectures import DecoderLayout, resolve_layout, unwrap_parallel
from spinal_callback.model.capture import StopForward, block_output

__all__ = ["BlockEdit", "ModelRun", "forward_blocks", "probe_mode", "resolve_layers", "resolve_runs"]

#: ``edit(hidden) -> new hidden or None`` applied to one block's output hidden states ``(R, T, d)``.
BlockEdit = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass
class ModelRun:
    """One side of a patching experiment.

    Attributes:
        name: ``"policy"`` or ``"reference"`` (used in messages).
        module: the module that is called (parallel wrappers removed, PEFT kept).
        layout: its decoder blocks and logit head.
        adapter_disabled: run under ``module.disable_adapter()`` (a PEFT policy used as reference).
        tensor_outputs: whether the blocks were seen returning bare tensors (``None``: not seen yet);
            prefix skipping is only used when they do.
    """

    name: str
    module: nn.Module
    layout: DecoderLayout
    adapter_disabled: bool = False
    tensor_outputs: bool | None = None

    @property
    def device(self) -> torch.device:
        for param in self.module.parameters():
            return param.device
        return torch.device("cpu")

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """The adapter state of this run: PEFT's ``disable_adapter()`` for the reference, else nothing."""
        if self.adapter_disabled:
            return self.module.disable_adapter()  # type: ignore[operator]
        return contextlib.nullcontext()


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
    policy_module = unwrap_parallel(policy)
    policy_run = ModelRun("policy", policy_module, resolve_layout(policy))
    if reference is None:
        if not callable(getattr(policy_module, "disable_adapter", None)):
            raise ValueError(
                f"`reference` is None but the policy ({type(policy_module).__name__}) is not a PEFT model "
                "with an adapter to disable; pass the reference model (e.g. the trainer's ref_model)"
            )
        return policy_run, ModelRun("reference", policy_module, policy_run.layout, adapter_disabled=True)
    if not isinstance(reference, nn.Module):
        raise ValueError(f"`reference` must be a torch.nn.Module or None, got {type(reference).__name__}")
    reference_module = unwrap_parallel(reference)
    reference_run = ModelRun("reference", reference_module, resolve_layout(reference))
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


@contextlib.contextmanager
def probe_mode(*runs: ModelRun) -> Iterator[None]:
    """Eval mode for every submodule of the runs, restored exactly (flag by flag) on exit."""
    seen: dict[int, tuple[nn.Module, bool]] = {}
    for run in runs:
        for module in run.module.modules():
            seen.setdefault(id(module), (module, module.training))
    try:
        for run in runs:
            run.module.eval()
        yield
    finally:
        for module, mode in seen.values():
            module.training = mode


def _replace_hidden(output: object, hidden: torch.Tensor) -> object:
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    if isinstance(output, list):
        return [hidden, *output[1:]]
    raise TypeError(f"Cannot replace the hidden states of a decoder block output of type {type(output).__name__}")


@contextlib.contextmanager
def _skipped(blocks: list[nn.Module], hidden: torch.Tensor) -> Iterator[None]:
    """Blocks that return ``hidden`` without computing (an instance ``forward``, restored on exit)."""

    def skip(*args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden

    saved = [(block, block.__dict__.get("forward")) for block in blocks]
    try:
        for block in blocks:
            block.forward = skip  # type: ignore[method-assign]
        yield
    finally:
        for block, previous in saved:
            if previous is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = previous  # type: ignore[method-assign]


def forward_blocks(
    run: ModelRun,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    edits: Mapping[int, BlockEdit] | None = None,
    *,
    start: int = 0,
    start_hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """One forward of ``run`` up to the last decoder block, with block-output edits.

    Mode and grad state are the caller's (see :func:`probe_mode`). Hooks live only for this call.

    Args:
        run: the model side to run (its adapter context is entered here).
        input_ids, attention_mask: ``(R, T)`` inputs (moved to the model's device).
        edits: 0-based block index → ``edit(hidden)``; a returned tensor replaces the block's output
            hidden states (the edit of the last block sees, and may change, the final hidden states).
        start: first block to compute; blocks ``0..start-1`` are skipped and return ``start_hidden``
            (the recorded output of block ``start-1`` for these rows). Needs bare-tensor block outputs.
        start_hidden: ``(R, T, d)`` hidden states standing for the output of block ``start-1``.

    Returns:
        The (possibly edited) output hidden states of the last block, ``(R, T, d)``.
    """
    edits = dict(edits or {})
    blocks = run.layout.blocks
    last = len(blocks) - 1
    if start and (start_hidden is None or not 0 < start <= last):
        raise ValueError(f"`start` must be in 1..{last} with `start_hidden`, got start={start}")
    result: dict[str, torch.Tensor] = {}

    def make_hook(index: int) -> Callable[[nn.Module, object, object], object]:
        edit = edits.get(index)

        def hook(module: nn.Module, args: object, output: object) -> object:
            run.tensor_outputs = isinstance(output, torch.Tensor)
            hidden = block_output(output)
            new = edit(hidden) if edit is not None else None
            if new is not None:
                output, hidden = _replace_hidden(output, new), new
            if index == last:
                result["final"] = hidden
                raise StopForward
            return output if new is not None else None

        return hook

    device = run.device
    kwargs: dict[str, Any] = {}
    if getattr(getattr(run.layout.model, "config", None), "use_cache", None) is not None:
        kwargs["use_cache"] = False
    handles = []
    try:
        for index in sorted(set(edits) | {last}):
            handles.append(blocks[index].register_forward_hook(make_hook(index)))
        skip = (
            _skipped(blocks[:start], start_hidden)
            if start and start_hidden is not None
            else contextlib.nullcontext()
        )
        with run.context(), skip:
            try:
                run.module(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
            except StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()
    if "final" not in result:
        raise RuntimeError(f"The {run.name} forward did not reach its last decoder block")
    return result["final"]
