"""The one block runner: readers and replacements of block outputs, stopping early, hook lifecycle,
the geometry capture built on it, token selection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from spinal_callback.geometry.trace import capture_layers
from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.layout import DecoderLayout
from spinal_callback.model.probe_batch import select_positions
from spinal_callback.model.runner import ModelRun, block_output, forward_blocks, probe_mode
from tests.conftest import make_batch, tiny_causal_lm

WIDTH = 8


# ------------------------------------------------------------------------------------ small modules
class TensorBlock(nn.Module):
    """Returns a bare tensor like transformers 5 decoder layers; ``calls`` counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, WIDTH)
        self.calls = 0

    def _compute(self, hidden: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return hidden + torch.tanh(self.linear(hidden))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._compute(hidden)


class TupleBlock(TensorBlock):
    """Returns ``(hidden, extra)`` like older transformers decoder layers."""

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        out = self._compute(hidden)
        return out, out.sum()


class Stack(nn.Module):
    """A residual stack with an embedding and a head, called like a causal LM."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, WIDTH)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(WIDTH, 16)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block_output(block(hidden))
        return self.head(hidden)


def make_run(block_cls: type[TensorBlock] = TensorBlock, depth: int = 3) -> ModelRun:
    torch.manual_seed(0)
    stack = Stack([block_cls() for _ in range(depth)])
    layout = DecoderLayout(stack, "stack", list(stack.blocks), None, [], stack.head)
    return ModelRun("model", stack, layout)


def inputs(batch: int = 2, seq: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 16, (batch, seq), generator=torch.Generator().manual_seed(1))
    return ids, torch.ones_like(ids)


def plain_hidden(run: ModelRun, ids: torch.Tensor) -> list[torch.Tensor]:
    """Block outputs from a plain no-grad forward, computed without hooks."""
    out, hidden = [], run.module.embed(ids)
    with torch.no_grad():
        for block in run.layout.blocks:
            hidden = block_output(block(hidden))
            out.append(hidden)
    return out


def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


# ------------------------------------------------------------------------------------ the runner
@pytest.mark.parametrize("block_cls", [TupleBlock, TensorBlock])
def test_readers_see_every_block_once_and_the_forward_stops_after_the_deepest(block_cls) -> None:
    run = make_run(block_cls, depth=4)
    ids, mask = inputs()
    seen: dict[int, list[torch.Tensor]] = {}
    readers = {i: (lambda h, i=i: seen.setdefault(i, []).append(h.clone())) for i in (0, 2)}
    head_calls: list[int] = []
    run.module.head.register_forward_hook(lambda *_: head_calls.append(1))
    with torch.no_grad():
        final = forward_blocks(run, ids, mask, readers, stop_after=2)
    want = plain_hidden(run, ids)
    assert sorted(seen) == [0, 2] and all(len(v) == 1 for v in seen.values())
    torch.testing.assert_close(seen[0][0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(final, want[2], rtol=0, atol=0)
    # Blocks 1-3 ran in the probe, block 4 and the head never did (plain_hidden ran each block once more).
    assert [b.calls for b in run.layout.blocks] == [2, 2, 2, 1] and head_calls == []
    assert run.tensor_outputs is (block_cls is TensorBlock)
    assert _hooks(run.module) == 1  # only the test's own head hook is left


def test_a_replacement_changes_everything_downstream() -> None:
    run = make_run()
    ids, mask = inputs()
    with torch.no_grad():
        plain = forward_blocks(run, ids, mask)
        zeroed = forward_blocks(run, ids, mask, {0: lambda h: torch.zeros_like(h)})
        expected = run.layout.blocks[2](run.layout.blocks[1](torch.zeros_like(plain)))
    torch.testing.assert_close(zeroed, expected, rtol=0, atol=0)
    assert not torch.allclose(zeroed, plain)


def test_prefix_skipping_equals_the_full_forward() -> None:
    run = make_run()
    ids, mask = inputs()
    with torch.no_grad():
        want = plain_hidden(run, ids)
        final = forward_blocks(run, ids, mask, start=2, start_hidden=want[1])
    torch.testing.assert_close(final, want[2], rtol=0, atol=0)


def test_bad_ranges_are_refused_before_any_hook() -> None:
    run = make_run()
    ids, mask = inputs()
    with pytest.raises(ValueError, match="stop_after"):
        forward_blocks(run, ids, mask, stop_after=3)
    with pytest.raises(ValueError, match=r"edits of blocks \[2\] lie outside"):
        forward_blocks(run, ids, mask, {2: lambda h: None}, stop_after=1)
    with pytest.raises(ValueError, match="start"):
        forward_blocks(run, ids, mask, start=1)
    assert _hooks(run.module) == 0


def test_non_3d_block_output_is_refused_and_hooks_removed() -> None:
    run = make_run()
    run.layout.blocks[1].forward = lambda hidden: hidden.reshape(-1, WIDTH)  # type: ignore[method-assign]
    ids, mask = inputs()
    with pytest.raises(ValueError, match=r"Decoder block 2 returned hidden states of shape \(10, 8\)"):
        forward_blocks(run, ids, mask, {1: lambda h: None})
    assert _hooks(run.module) == 0


@pytest.mark.parametrize("where", ["block", "edit"])
def test_hooks_are_removed_when_a_block_or_an_edit_raises(where: str) -> None:
    run = make_run()
    ids, mask = inputs()

    def broken(hidden):
        raise RuntimeError("failed inside")

    edits = {}
    if where == "block":
        run.layout.blocks[1].forward = broken  # type: ignore[method-assign]
    else:
        edits = {1: broken}
    with pytest.raises(RuntimeError, match="failed inside"):
        forward_blocks(run, ids, mask, edits)
    assert _hooks(run.module) == 0


def test_a_forward_that_never_reaches_the_block_is_an_error() -> None:
    run = make_run()
    run.module.forward = lambda input_ids, attention_mask: None  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="did not reach decoder block 3"):
        forward_blocks(run, *inputs())
    assert _hooks(run.module) == 0


# ------------------------------------------------------------------------------------ geometry capture
@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
def test_capture_of_a_training_model_with_checkpointing_equals_an_eval_forward() -> None:
    """A probe of a model mid-training (train mode, gradient checkpointing on) sees the eval-mode blocks,
    runs each block once, and leaves every flag and hook as it found them."""
    num_layers = 3
    model = tiny_causal_lm("llama", num_layers=num_layers, initializer_range=0.2, attention_dropout=0.0)
    layout = resolve_layout(model)
    batch = make_batch(batch_size=2, seq_len=9, left_pad=(0, 2))
    rows, cols = select_positions(batch["attention_mask"], batch["completion_mask"])
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    hooks_before = [dict(block._forward_hooks) for block in layout.blocks]
    model.gradient_checkpointing_enable()
    model.train()
    modes = {name: m.training for name, m in model.named_modules()}
    inner_calls = [0] * num_layers
    counters = [
        block.mlp.register_forward_pre_hook(lambda *_, i=i: inner_calls.__setitem__(i, inner_calls[i] + 1))
        for i, block in enumerate(layout.blocks)
    ]
    try:
        captured = capture_layers(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], layout=layout, max_tokens=None
        )
    finally:
        for handle in counters:
            handle.remove()
    assert inner_calls == [1] * num_layers
    assert {name: m.training for name, m in model.named_modules()} == modes
    for layer in range(1, num_layers):
        torch.testing.assert_close(captured[layer], ref.hidden_states[layer][rows, cols], rtol=1e-5, atol=1e-6)
        assert not captured[layer].requires_grad
    with torch.no_grad():  # hidden_states[-1] already went through the final norm
        last = model.model.norm(captured[num_layers])
    torch.testing.assert_close(last, ref.hidden_states[-1][rows, cols], rtol=1e-5, atol=1e-6)
    assert [dict(block._forward_hooks) for block in layout.blocks] == hooks_before


def test_capture_readers_share_the_forward_of_the_captured_layers() -> None:
    model = tiny_causal_lm("llama", num_layers=3)
    layout = resolve_layout(model)
    batch = make_batch(batch_size=2, seq_len=7)
    full: list[torch.Tensor] = []
    captured = capture_layers(
        model, batch["input_ids"], batch["attention_mask"], layers=[1], layout=layout, max_tokens=None,
        readers={2: full.append},
    )
    assert list(captured) == [1] and len(full) == 1 and full[0].shape[:2] == batch["input_ids"].shape
    rows, cols = select_positions(batch["attention_mask"])
    again = capture_layers(model, batch["input_ids"], batch["attention_mask"], layout=layout, max_tokens=None)
    torch.testing.assert_close(full[0][rows, cols], again[3], rtol=0, atol=0)


def test_probe_mode_restores_every_flag() -> None:
    run = make_run()
    run.module.train()
    run.layout.blocks[1].eval()
    before = [m.training for m in run.module.modules()]
    with probe_mode(run):
        assert not any(m.training for m in run.module.modules())
    assert [m.training for m in run.module.modules()] == before


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
