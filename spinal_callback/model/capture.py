"""Read-only capture of decoder-block outputs at selected token positions.

Hooks exist only inside a :class:`LayerCapture` context (removal is idempotent and runs in
``finally``), record only while *armed*, and record each block at most once per arming — so a
gradient-checkpointing recomputation during backward, or any later forward through the same modules
(a PEFT reference pass, an eval pass), is never mixed into the capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["LayerCapture", "StopForward", "block_output", "select_positions"]


class StopForward(Exception):
    """Raised from the last monitored block's hook to skip the rest of a probe forward."""


def select_positions(
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token positions a probe measures: completion tokens if known, else all non-padding tokens.

    When more than ``max_tokens`` positions qualify, a deterministic subsample (a permutation from a
    generator seeded with ``seed``, then sorted) keeps ``max_tokens`` of them, so the same batch
    always yields the same positions — for every layer and every training step.

    Args:
        attention_mask: ``(B, T)`` 0/1 mask of real (non-padding) tokens.
        completion_mask: optional ``(B, T)`` 0/1 mask of completion tokens (TRL's layout).
        max_tokens: cap on the number of positions, or ``None`` for no cap.
        seed: seed of the subsample.

    Returns:
        ``(rows, cols)`` long tensors on the mask's device, in row-major order.

    Raises:
        ValueError: masks are not 2-D, differ in shape, or select no position at all.
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"`attention_mask` must be 2-D (batch, seq), got shape {tuple(attention_mask.shape)}")
    mask = attention_mask.bool()
    if completion_mask is not None:
        if completion_mask.shape != attention_mask.shape:
            raise ValueError(
                f"`completion_mask` shape {tuple(completion_mask.shape)} differs from `attention_mask` "
                f"shape {tuple(attention_mask.shape)}"
            )
        mask = mask & completion_mask.bool()
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"`max_tokens` must be a positive integer or None, got {max_tokens!r}")
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        which = "attention_mask & completion_mask" if completion_mask is not None else "attention_mask"
        raise ValueError(
            f"The probe batch selects no token: {which} is all zeros (an all-padding batch or empty "
            "completions). Give sequences with at least one real completion token."
        )
    if max_tokens is not None and rows.numel() > max_tokens:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(rows.numel(), generator=gen)[:max_tokens].sort().values.to(rows.device)
        rows, cols = rows[keep], cols[keep]
    return rows, cols


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


class LayerCapture:
    """Context manager that records block outputs ``H_ℓ`` (``n × d``) at fixed token positions.

    Example:
        >>> with LayerCapture(layout.blocks, rows, cols) as cap:   # doctest: +SKIP
        ...     cap.arm()
        ...     model(input_ids, attention_mask=attention_mask)
        >>> cap.hidden[0].shape                                     # doctest: +SKIP
        torch.Size([n, d])

    Args:
        blocks: the decoder blocks to hook, in depth order.
        rows, cols: token positions from :func:`select_positions`.
        stop_after_last: raise :class:`StopForward` once the last block is recorded, so a probe
            forward skips the rest of the network (the caller catches it).
        armed: arm on entry.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        rows: torch.Tensor,
        cols: torch.Tensor,
        *,
        stop_after_last: bool = False,
        armed: bool = False,
    ) -> None:
        if len(blocks) == 0:
            raise ValueError("`blocks` is empty: there is no decoder block to capture")
        self.blocks = list(blocks)
        self.rows = rows
        self.cols = cols
        self.stop_after_last = stop_after_last
        self._arm_on_enter = armed
        self._handles: list[RemovableHandle] = []
        self._armed = False
        self.hidden: dict[int, torch.Tensor] = {}
        self.calls = [0] * len(self.blocks)

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LayerCapture:
        self.attach()
        if self._arm_on_enter:
            self.arm()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def attach(self) -> None:
        """Register the (read-only) forward hooks. Calling it twice is harmless."""
        if self._handles:
            return
        try:
            for index, block in enumerate(self.blocks):
                self._handles.append(block.register_forward_hook(self._make_hook(index)))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove every hook; idempotent."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        self._armed = False

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    # -- arming ----------------------------------------------------------------------------------
    def arm(self) -> None:
        """Open a recording window for the next forward pass; clears earlier records."""
        self.hidden = {}
        self.calls = [0] * len(self.blocks)
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    @property
    def complete(self) -> bool:
        """Every block has been recorded in the current window."""
        return len(self.hidden) == len(self.blocks)

    def stacked(self) -> list[torch.Tensor]:
        """The recorded ``H_ℓ`` in depth order; raises if a block was not recorded."""
        missing = [i + 1 for i in range(len(self.blocks)) if i not in self.hidden]
        if missing:
            raise RuntimeError(f"Blocks {missing} were not recorded: the forward did not reach them")
        return [self.hidden[i] for i in range(len(self.blocks))]

    def _make_hook(self, index: int):  # type: ignore[no-untyped-def]
        last = len(self.blocks) - 1

        def hook(module: nn.Module, args: object, output: object) -> None:
            self.calls[index] += 1
            if not self._armed or index in self.hidden:
                return None
            hidden = block_output(output)
            if hidden.ndim != 3:
                raise ValueError(
                    f"Decoder block {index + 1} returned hidden states of shape {tuple(hidden.shape)}; "
                    "expected (batch, seq, hidden)"
                )
            rows = self.rows.to(hidden.device)
            cols = self.cols.to(hidden.device)
            self.hidden[index] = hidden.detach()[rows, cols]
            if self.complete:
                self._armed = False  # one pass per arming: later calls (recomputation) are ignored
                if self.stop_after_last and index == last:
                    raise StopForward
            return None

        return hook
