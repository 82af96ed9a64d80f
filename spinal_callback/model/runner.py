"""The one block runner: every probe forward — geometry capture, reference scoring, patching — goes through it.

A :class:`ModelRun` is a model as a probe runs it: the policy, or the reference (a separate model, or
the PEFT policy with its adapter disabled, as TRL does with ``ref_model=None``). :func:`forward_blocks`
runs it once with optional *edits* of block outputs — a reader returns ``None`` and leaves the block's
output as it was, a replacement returns new hidden states — and stops after the deepest block it needs
(:class:`StopForward`): the blocks after it and the LM head never run; the caller scores tokens from the
returned hidden states with the logit lens. It can also *skip* the unpatched prefix of the network:
blocks before ``start`` return recorded hidden states instead of computing them. Hooks exist only for
the duration of one call and are removed in ``finally``, whatever happens inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spinal_callback.model.layout import DecoderLayout
from spinal_callback.model.sharding import gathered_head, stubbed_head

__all__ = ["BlockEdit", "ModelRun", "StopForward", "block_output", "forward_blocks", "probe_mode"]


class StopForward(Exception):
    """Raised from the deepest needed block's hook to skip the rest of a probe forward."""


def block_output(output: object) -> torch.Tensor:
    """The hidden states of a block's output, whether it returns a tensor, a tuple or a ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    for attr in ("hidden_states", "last_hidden_state"):
        hidden = getattr(output, attr, None)
        if isinstance(hidden, torch.Tensor):
            return hidden
    raise TypeError(f"Cannot find hidden states in a decoder block output of type {type(output).__name__}")


#: ``edit(hidden) -> new hidden or None`` applied to one block's output hidden states ``(R, T, d)``.
BlockEdit = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass
class ModelRun:
    """A model as a probe runs it (for patching: one side of the experiment).

    Attributes:
        name: ``"policy"``, ``"reference"`` or ``"model"`` (used in messages).
        module: the module that is called (parallel wrappers removed, PEFT kept).
        layout: its decoder blocks and logit head.
        adapter_disabled: run under ``module.disable_adapter()`` (a PEFT policy used as reference).
        tensor_outputs: whether the blocks were seen returning bare tensors (``None``: not seen yet);
            prefix skipping is only used when they do.
        sharded: ``"fsdp1"``, ``"fsdp2"``, ``"zero3"`` or ``None``
            (:func:`~spinal_callback.model.sharding.sharding_of`): a sharded forward runs to its end, with
            the unembedding stubbed, instead of stopping after the deepest block needed.
    """

    name: str
    module: nn.Module
    layout: DecoderLayout
    adapter_disabled: bool = False
    tensor_outputs: bool | None = None
    sharded: str | None = None

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

    def head(self) -> contextlib.AbstractContextManager[Any]:
        """The logit lens's parameters for scoring this run's hidden states: for a sharded run, the final
        norm's and the unembedding's full parameters gathered for the duration
        (:func:`~spinal_callback.model.sharding.gathered_head`), else nothing.

        Enter it after a forward and leave it before the next (FSDP1 forbids a forward inside the gather),
        on every rank, in the same order.
        """
        if self.sharded is None:
            return contextlib.nullcontext()
        return gathered_head(self.module, self.layout)


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
    stop_after: int | None = None,
    start: int = 0,
    start_hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """One forward of ``run`` up to block ``stop_after``, with block-output edits.

    Mode and grad state are the caller's (see :func:`probe_mode`). Hooks live only for this call. A sharded
    run (``run.sharded``) is called through its wrapped root and runs every block, with the unembedding
    stubbed (:mod:`~spinal_callback.model.sharding`); the returned hidden states are the same.

    Args:
        run: the model to run (its adapter context is entered here).
        input_ids, attention_mask: ``(R, T)`` inputs (moved to the model's device).
        edits: 0-based block index → ``edit(hidden)``, called once with the block's output hidden states
            ``(R, T, d)``; a returned tensor replaces them, ``None`` leaves them as they are (a reader).
        stop_after: 0-based index of the last block to run (default: the last block of the model); it
            must be at least every edited block.
        start: first block to compute; blocks ``0..start-1`` are skipped and return ``start_hidden``
            (the recorded output of block ``start-1`` for these rows). Needs bare-tensor block outputs.
        start_hidden: ``(R, T, d)`` hidden states standing for the output of block ``start-1``.

    Returns:
        The (possibly edited) output hidden states of block ``stop_after``, ``(R, T, d)``.

    Raises:
        ValueError: ``stop_after`` or ``start`` out of range, an edit below ``start`` or past
            ``stop_after``, or a block whose hidden states are not ``(batch, seq, hidden)``.
        RuntimeError: the forward never reached block ``stop_after``.
    """
    edits = dict(edits or {})
    blocks = run.layout.blocks
    last = len(blocks) - 1 if stop_after is None else stop_after
    if not 0 <= last < len(blocks):
        raise ValueError(f"`stop_after` must be a block index in 0..{len(blocks) - 1}, got {stop_after}")
    if start and (start_hidden is None or not 0 < start <= last):
        raise ValueError(f"`start` must be in 1..{last} with `start_hidden`, got start={start}")
    outside = [index for index in edits if not start <= index <= last]
    if outside:
        raise ValueError(f"edits of blocks {sorted(outside)} lie outside the blocks run ({start}..{last})")
    result: dict[str, torch.Tensor] = {}

    def make_hook(index: int) -> Callable[[nn.Module, object, object], object]:
        edit = edits.get(index)

        def hook(module: nn.Module, args: object, output: object) -> object:
            run.tensor_outputs = isinstance(output, torch.Tensor)
            hidden = block_output(output)
            if hidden.ndim != 3:
                raise ValueError(
                    f"Decoder block {index + 1} returned hidden states of shape {tuple(hidden.shape)}; "
                    "expected (batch, seq, hidden)"
                )
            new = edit(hidden) if edit is not None else None
            if new is not None:
                output, hidden = _replace_hidden(output, new), new
            if index == last:
                result["final"] = hidden
                if run.sharded is None:
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
        head = stubbed_head(run.layout) if run.sharded is not None else contextlib.nullcontext()
        with run.context(), skip, head:
            try:
                run.module(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
            except StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()
    if "final" not in result:
        raise RuntimeError(f"The {run.name} forward did not reach decoder block {last + 1}")
    return result["final"]
