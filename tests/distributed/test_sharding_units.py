"""The sharding helpers on one process: detection, the FSDP1 root kept, the head stub, the ZeRO-3 gather
(through a stand-in ``deepspeed`` module that records what the documented API is called with)."""

from __future__ import annotations

import contextlib
import sys
import types

import pytest
import torch

from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.sharding import (
    check_sharded_config,
    gathered_head,
    probe_root,
    sharding_of,
    stubbed_head,
)
from tests.conftest import tiny_causal_lm


def test_an_unsharded_model_is_left_alone() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    assert sharding_of(model) is None
    assert probe_root(model) is model
    assert check_sharded_config(model, rollback=True, patching=True) is None
    with gathered_head(model, resolve_layout(model)):
        pass


def test_the_head_stub_returns_one_column_and_is_removed() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    ids = torch.tensor([[1, 2, 3]])
    with stubbed_head(layout), torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 3, 1) and not logits.any()
    assert "forward" not in layout.unembed.__dict__
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape[-1] == layout.vocab_size


def _zero3(model: torch.nn.Module) -> None:
    for param in model.parameters():
        param.ds_id = id(param)  # type: ignore[attr-defined]
        param.ds_status = "NOT_AVAILABLE"  # type: ignore[attr-defined]


def test_zero3_gathers_the_head_through_gathered_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    calls: list[tuple[list[torch.Tensor], object]] = []

    @contextlib.contextmanager
    def gathered_parameters(params, modifier_rank=None):  # type: ignore[no-untyped-def]
        calls.append((list(params), modifier_rank))
        yield

    fake = types.ModuleType("deepspeed")
    fake.zero = types.SimpleNamespace(GatheredParameters=gathered_parameters)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    _zero3(model)
    assert sharding_of(model) == "zero3"
    with gathered_head(model, layout):
        pass
    (params, rank), = calls
    expected = {id(p) for m in (layout.final_norm, layout.unembed) for p in m.parameters()}
    assert {id(p) for p in params} == expected and rank is None
    with pytest.raises(ValueError, match=r"DeepSpeed ZeRO-3.*on_alert=\('log', 'stop'\)"):
        check_sharded_config(model, rollback=True, patching=False)
    with pytest.raises(ValueError, match="patch_interval=0"):
        check_sharded_config(model, rollback=False, patching=True)
    assert check_sharded_config(model, rollback=False, patching=False) == "zero3"


def test_vocabulary_comes_from_the_config_when_the_weight_is_a_shard() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    vocab = layout.vocab_size
    layout.unembed.weight = torch.nn.Parameter(torch.empty(0))  # FSDP's flat, empty view on a rank
    assert layout.vocab_size == vocab == model.config.vocab_size
