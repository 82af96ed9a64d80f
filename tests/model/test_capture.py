"""Read-only capture of block outputs: arming, one record per block, hook lifecycle, token selection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.capture import LayerCapture, StopForward, block_output, select_positions
from tests.conftest import make_batch, tiny_causal_lm

WIDTH = 8


# ------------------------------------------------------------------------------------ small modules
class TupleBlock(nn.Module):
    """Returns ``(hidden, extra)`` like older transformers decoder layers.

    With ``drift=True`` every call adds a different offset, so a recomputation during backward gives
    other values than the first pass and recording it would show. ``outputs`` keeps every result.
    """

    def __init__(self, drift: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, WIDTH)
        self.drift = drift
        self.outputs: list[torch.Tensor] = []

    def _compute(self, hidden: torch.Tensor) -> torch.Tensor:
        out = hidden + torch.tanh(self.linear(hidden))
        if self.drift:
            out = out + 0.01 * len(self.outputs)
        self.outputs.append(out.detach().clone())
        return out

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._compute(hidden)
        return out, out.sum()


class TensorBlock(TupleBlock):
    """Returns a bare tensor like transformers 5 decoder layers."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._compute(hidden)


class Stack(nn.Module):
    """A residual stack; ``checkpointing`` wraps each block's ``__call__`` (so hooks run on recompute)."""

    def __init__(self, blocks: list[nn.Module], checkpointing: str | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(WIDTH, 3)
        self.checkpointing = checkpointing

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.checkpointing is None:
                out = block(hidden)
            else:
                out = checkpoint(block, hidden, use_reentrant=self.checkpointing == "reentrant")
            hidden = out[0] if isinstance(out, tuple) else out
        return self.head(hidden)


def make_stack(
    block_cls: type[TupleBlock] = TensorBlock, depth: int = 3, checkpointing: str | None = None, drift: bool = False
) -> Stack:
    torch.manual_seed(0)
    return Stack([block_cls(drift=drift) for _ in range(depth)], checkpointing=checkpointing)


def all_positions(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    return select_positions(torch.ones(batch, seq, dtype=torch.long))


def reference_hidden(stack: Stack, x: torch.Tensor) -> list[torch.Tensor]:
    """Block outputs from a plain no-grad forward, computed without hooks."""
    out, hidden = [], x
    with torch.no_grad():
        for block in stack.blocks:
            hidden = block_output(block(hidden))
            out.append(hidden.reshape(-1, WIDTH))
    return out


# --------------------------------------------------------------------- gradient checkpointing, HF model
@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
def test_training_step_with_hf_gradient_checkpointing_records_each_layer_once() -> None:
    num_layers = 3
    model = tiny_causal_lm("llama", num_layers=num_layers, initializer_range=0.2, attention_dropout=0.0)
    layout = resolve_layout(model)
    batch = make_batch(batch_size=2, seq_len=9, left_pad=(0, 2))
    rows, cols = select_positions(batch["attention_mask"], batch["completion_mask"])

    # Reference: a no-grad eval forward (dropout is 0 anyway).
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)

    # transformers 5 leaves its own output-recording hooks on the blocks after output_hidden_states=True.
    hooks_before = [dict(block._forward_hooks) for block in layout.blocks]
    model.gradient_checkpointing_enable()
    model.train()
    # Count executions inside each block: the recompute during backward runs them a second time. (A
    # pre-hook: non-reentrant checkpointing may stop the recompute before the MLP returns.)
    inner_calls = [0] * num_layers
    counters = [
        block.mlp.register_forward_pre_hook(lambda *_, i=i: inner_calls.__setitem__(i, inner_calls[i] + 1))
        for i, block in enumerate(layout.blocks)
    ]
    try:
        with LayerCapture(layout.blocks, rows, cols) as cap:
            cap.arm()
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["input_ids"],
            )
            assert cap.complete and inner_calls == [1] * num_layers
            out.loss.backward()
    finally:
        for handle in counters:
            handle.remove()

    assert inner_calls == [2] * num_layers  # the checkpointed blocks really were recomputed
    # transformers 5 checkpoints `forward` (hooks outside: 1 call); older versions `__call__` (2 calls).
    assert all(c in (1, 2) for c in cap.calls), cap.calls
    assert len(cap.hidden) == num_layers
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    for i in range(num_layers - 1):
        expected = ref.hidden_states[i + 1][rows, cols]
        torch.testing.assert_close(cap.hidden[i], expected, rtol=1e-5, atol=1e-6)
        assert not cap.hidden[i].requires_grad
    # hidden_states[-1] already went through the final norm.
    with torch.no_grad():
        last = model.model.norm(cap.hidden[num_layers - 1])
    torch.testing.assert_close(last, ref.hidden_states[-1][rows, cols], rtol=1e-5, atol=1e-6)
    assert [dict(block._forward_hooks) for block in layout.blocks] == hooks_before


@pytest.mark.parametrize("mode", ["reentrant", "non_reentrant"])
@pytest.mark.parametrize("block_cls", [TupleBlock, TensorBlock])
def test_recomputation_inside_the_hooks_is_ignored(mode: str, block_cls: type[nn.Module]) -> None:
    """Checkpointing around the block's ``__call__`` fires its hooks twice; only the first is kept."""
    stack = make_stack(block_cls, checkpointing=mode, drift=True)
    x = torch.randn(2, 5, WIDTH, generator=torch.Generator().manual_seed(1), requires_grad=True)
    inner_calls = []
    for block in stack.blocks:
        block.linear.register_forward_pre_hook(lambda *_: inner_calls.append(1))
    with LayerCapture(stack.blocks, *all_positions(2, 5), armed=True) as cap:
        stack(x).square().sum().backward()
    assert len(inner_calls) == 6  # every block was recomputed during backward
    if mode == "reentrant":
        assert cap.calls == [2, 2, 2]  # the whole block re-ran, its hooks included ...
    else:
        # Non-reentrant checkpointing stops the recompute once the saved tensors are rebuilt, before
        # the block's forward hooks would run; either way nothing new may be recorded.
        assert all(c in (1, 2) for c in cap.calls), cap.calls
    assert len(cap.hidden) == 3  # ... and the recomputation was not recorded
    for got, block in zip(cap.stacked(), stack.blocks):
        torch.testing.assert_close(got, block.outputs[0].reshape(-1, WIDTH), rtol=0, atol=0)
        if len(block.outputs) == 2:  # the recomputed output differs (drift): recording it would show
            assert not torch.allclose(block.outputs[1], block.outputs[0])
    if mode == "reentrant":
        assert all(len(block.outputs) == 2 for block in stack.blocks)
    assert stack.blocks[0].linear.weight.grad is not None


def test_a_second_forward_after_completion_is_not_recorded() -> None:
    stack = make_stack()
    gen = torch.Generator().manual_seed(2)
    first, second = torch.randn(2, 4, WIDTH, generator=gen), torch.randn(2, 4, WIDTH, generator=gen)
    with LayerCapture(stack.blocks, *all_positions(2, 4)) as cap:
        cap.arm()
        with torch.no_grad():
            stack(first)
            recorded = [h.clone() for h in cap.stacked()]
            assert cap.complete  # the window closed by itself
            stack(second)  # e.g. a reference pass through the same modules
        assert cap.calls == [2, 2, 2]
        for got, want in zip(cap.stacked(), recorded):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        for got, want in zip(cap.stacked(), reference_hidden(stack, first)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        # Re-arming opens a new window, which records the next pass.
        cap.arm()
        assert cap.hidden == {} and cap.calls == [0, 0, 0]
        with torch.no_grad():
            stack(second)
        for got, want in zip(cap.stacked(), reference_hidden(stack, second)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_nothing_is_recorded_unless_armed() -> None:
    stack = make_stack()
    x = torch.randn(1, 3, WIDTH)
    with LayerCapture(stack.blocks, *all_positions(1, 3)) as cap, torch.no_grad():
        stack(x)
        assert cap.hidden == {} and cap.calls == [1, 1, 1]
        cap.arm()
        cap.disarm()
        stack(x)
        assert cap.hidden == {}
        with pytest.raises(RuntimeError, match=r"\[1, 2, 3\] were not recorded"):
            cap.stacked()


@pytest.mark.parametrize("block_cls", [TupleBlock, TensorBlock])
def test_tuple_and_tensor_block_outputs_are_both_captured(block_cls: type[nn.Module]) -> None:
    stack = make_stack(block_cls)
    x = torch.randn(3, 6, WIDTH, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(3, 6, dtype=torch.long)
    mask[0, 1:4] = 1
    mask[2, 5] = 1
    rows, cols = select_positions(mask)
    with LayerCapture(stack.blocks, rows, cols, armed=True) as cap, torch.no_grad():
        stack(x)
    full = reference_hidden(stack, x)
    for got, want in zip(cap.stacked(), full):
        assert got.shape == (4, WIDTH)
        torch.testing.assert_close(got, want.reshape(3, 6, WIDTH)[rows, cols], rtol=0, atol=0)


def test_block_output_variants() -> None:
    h = torch.randn(1, 2, 3)
    assert block_output(h) is h
    assert block_output((h, None)) is h
    assert block_output([h]) is h
    assert block_output(SimpleNamespace(hidden_states=h)) is h
    assert block_output(SimpleNamespace(last_hidden_state=h)) is h
    with pytest.raises(TypeError, match="dict"):
        block_output({"x": h})
    with pytest.raises(TypeError):
        block_output((None, h))


def test_non_3d_block_output_is_refused() -> None:
    block = nn.Linear(WIDTH, WIDTH)
    with (
        LayerCapture([block], torch.tensor([0]), torch.tensor([0]), armed=True),
        pytest.raises(ValueError, match=r"\(2, 8\)"),
    ):
        block(torch.randn(2, WIDTH))
    assert not block._forward_hooks


def test_stop_after_last_skips_the_rest_of_the_forward() -> None:
    stack = make_stack()
    head_calls = []
    stack.head.register_forward_hook(lambda *_: head_calls.append(1))
    with LayerCapture(stack.blocks, *all_positions(1, 2), stop_after_last=True, armed=True) as cap:
        with pytest.raises(StopForward), torch.no_grad():
            stack(torch.randn(1, 2, WIDTH))
        assert cap.complete and head_calls == []
        with torch.no_grad():  # disarmed after the window: later passes run to the end
            stack(torch.randn(1, 2, WIDTH))
    assert head_calls == [1]


# ------------------------------------------------------------------------------------- hook lifecycle
def _hooks(stack: Stack) -> int:
    return sum(len(m._forward_hooks) for m in stack.modules())


def test_hooks_exist_only_inside_the_context() -> None:
    stack = make_stack()
    cap = LayerCapture(stack.blocks, *all_positions(1, 2))
    assert not cap.attached and _hooks(stack) == 0
    with cap:
        assert cap.attached and _hooks(stack) == 3
        cap.attach()  # twice is harmless
        assert _hooks(stack) == 3
    assert not cap.attached and _hooks(stack) == 0
    assert all(not block._forward_hooks for block in stack.blocks)


def test_hooks_are_removed_after_an_exception() -> None:
    stack = make_stack()
    capture = LayerCapture(stack.blocks, *all_positions(1, 2), armed=True)
    with pytest.raises(KeyError, match="inside"), capture:
        assert _hooks(stack) == 3
        raise KeyError("inside")
    assert _hooks(stack) == 0


def test_hooks_are_removed_when_a_block_raises() -> None:
    stack = make_stack()

    def broken(hidden):
        raise RuntimeError("block failed")

    stack.blocks[1].forward = broken
    with (
        pytest.raises(RuntimeError, match="block failed"),
        LayerCapture(stack.blocks, *all_positions(1, 2), armed=True) as cap,
    ):
        stack(torch.randn(1, 2, WIDTH))
    assert _hooks(stack) == 0 and not cap.attached
    assert list(cap.hidden) == [0]


def test_remove_is_idempotent_and_disarms() -> None:
    stack = make_stack()
    cap = LayerCapture(stack.blocks, *all_positions(1, 2))
    cap.attach()
    cap.arm()
    cap.remove()
    cap.remove()
    assert _hooks(stack) == 0 and not cap.attached
    with torch.no_grad():
        stack(torch.randn(1, 2, WIDTH))
    assert cap.hidden == {}
    # Re-attaching after removal works.
    with cap:
        cap.arm()
        with torch.no_grad():
            stack(torch.randn(1, 2, WIDTH))
        assert cap.complete
    assert _hooks(stack) == 0


def test_empty_block_list_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        LayerCapture([], torch.tensor([0]), torch.tensor([0]))


# ------------------------------------------------------------------------------------ select_positions
def test_select_positions_uses_completion_and_attention_masks() -> None:
    attention = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])
    completion = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 1]])  # (0,0) is padding, (1,3) too
    rows, cols = select_positions(attention, completion)
    assert rows.dtype == cols.dtype == torch.long
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 2), (0, 3), (1, 2)]
    rows, cols = select_positions(attention)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
    # Boolean masks work the same.
    rows_b, cols_b = select_positions(attention.bool(), completion.bool())
    assert rows_b.tolist() == [0, 0, 1] and cols_b.tolist() == [2, 3, 2]


def test_select_positions_cap_is_deterministic_and_seeded() -> None:
    attention = torch.ones(6, 50, dtype=torch.long)
    first = select_positions(attention, max_tokens=40, seed=0)
    again = select_positions(attention, max_tokens=40, seed=0)
    other = select_positions(attention, max_tokens=40, seed=1)
    assert first[0].numel() == 40
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not (torch.equal(first[0], other[0]) and torch.equal(first[1], other[1]))
    # Sorted row-major order, no duplicates, all inside the mask.
    flat = first[0] * 50 + first[1]
    assert torch.equal(flat, flat.sort().values) and flat.unique().numel() == 40
    # No cap, or a cap above the count, keeps every position.
    assert select_positions(attention, max_tokens=300)[0].numel() == 300
    assert select_positions(attention, max_tokens=None)[0].numel() == 300


def test_select_positions_cap_only_keeps_selected_tokens() -> None:
    batch = make_batch(batch_size=4, seq_len=20, left_pad=(5, 0, 3))
    selected = batch["attention_mask"].bool() & batch["completion_mask"].bool()
    rows, cols = select_positions(batch["attention_mask"], batch["completion_mask"], max_tokens=10, seed=7)
    assert rows.numel() == 10 and bool(selected[rows, cols].all())


def test_select_positions_errors() -> None:
    attention = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"completion_mask.*\(2, 4\).*\(2, 5\)"):
        select_positions(attention, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"2-D.*\(10,\)"):
        select_positions(torch.ones(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"selects no token.*attention_mask"):
        select_positions(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"selects no token.*completion_mask"):
        select_positions(attention, torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_tokens"):
        select_positions(attention, max_tokens=0)
