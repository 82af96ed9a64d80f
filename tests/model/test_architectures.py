"""Architecture registry: every built-in layout, wrappers, and registration of new architectures."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spinal_callback.geometry import compute_depth_trace
from spinal_callback.model import architectures
from spinal_callback.model.architectures import (
    UnsupportedArchitectureError,
    register_architecture,
    registered_architectures,
    resolve_layout,
    unwrap_model,
)
from spinal_callback.model.runner import block_output
from tests.conftest import TINY_ARCHITECTURES, VOCAB_SIZE, make_batch, tiny_causal_lm


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made by a test disappear after it."""
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))


def last_block_lens_logits(model: nn.Module, batch: dict[str, torch.Tensor]):
    """(lens logits of the last block's output, the model's own logits), from one forward."""
    layout = resolve_layout(model)
    seen: list[torch.Tensor] = []
    handle = layout.blocks[-1].register_forward_hook(lambda m, a, out: seen.append(block_output(out)))
    try:
        with torch.no_grad():
            output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            assert len(seen) == 1
            lens = layout.lens_logits(seen[0])
    finally:
        handle.remove()
    return lens, getattr(output, "logits", output)


# ------------------------------------------------------------------------------------ built-in layouts
def test_every_tiny_architecture_is_registered() -> None:
    assert set(TINY_ARCHITECTURES) <= set(registered_architectures())
    assert "gemma3" in registered_architectures()


@pytest.mark.parametrize("model_type", TINY_ARCHITECTURES)
def test_builtin_architecture_layout_and_logit_lens(model_type: str) -> None:
    model = tiny_causal_lm(model_type, num_layers=3)
    layout = resolve_layout(model)
    assert layout.architecture == model_type
    assert layout.num_layers == 3 == model.config.num_hidden_layers
    assert layout.vocab_size == VOCAB_SIZE
    assert layout.model is model
    # Bigger output weights make logits O(10), so soft-capping / scaling / projections matter.
    with torch.no_grad():
        layout.unembed.weight.mul_(25.0)
    batch = make_batch(batch_size=2, seq_len=8, left_pad=(0, 2))
    lens, logits = last_block_lens_logits(model, batch)
    assert lens.dtype == torch.float32 and lens.shape == logits.shape
    assert float(logits.abs().max()) > 0.5
    torch.testing.assert_close(lens, logits.float(), rtol=0, atol=1e-4)

    trace = compute_depth_trace(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], max_tokens=None
    )
    assert trace.num_layers == 3
    assert trace.num_tokens == int((batch["attention_mask"] & batch["completion_mask"]).sum())
    assert all(math.isfinite(v) for v in trace.contraction + trace.entropy)
    assert all(math.isfinite(v) for v in trace.transport[:-1])


@pytest.mark.parametrize(
    "model_type,overrides",
    [
        ("gemma2", {"final_logit_softcapping": 2.0}),
        ("granite", {"logits_scaling": 4.0}),
        ("opt", {"word_embed_proj_dim": 16}),
    ],
)
def test_output_head_extras_are_needed(model_type: str, overrides: dict) -> None:
    """Without soft-capping / logits scaling / project_out the lens would not reproduce the output."""
    model = tiny_causal_lm(model_type, num_layers=2, **overrides)
    layout = resolve_layout(model)
    with torch.no_grad():
        layout.unembed.weight.mul_(25.0)
    batch = make_batch(batch_size=2, seq_len=6)
    lens, logits = last_block_lens_logits(model, batch)
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-4)
    if model_type == "opt":
        assert len(layout.pre_unembed) == 1 and layout.pre_unembed[0] is model.model.decoder.project_out
    else:
        assert layout.logit_transform is not None
        hidden = layout.final_norm(torch.randn(3, 32))
        raw = layout.unembed(hidden).float()
        assert not torch.allclose(layout.logit_transform(raw, model.config), raw, atol=1e-2)


def test_opt_without_final_norm_and_without_projection() -> None:
    """OPT-350m style: post-layer-norm blocks (final_layer_norm is None) and project_out to 16 dims."""
    model = tiny_causal_lm("opt", num_layers=2, do_layer_norm_before=False, word_embed_proj_dim=16)
    assert model.model.decoder.final_layer_norm is None
    layout = resolve_layout(model)
    assert layout.final_norm is None and len(layout.pre_unembed) == 1
    lens, logits = last_block_lens_logits(model, make_batch(batch_size=2, seq_len=6))
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-4)
    # OPT-125m style: no projection at all.
    plain = resolve_layout(tiny_causal_lm("opt", num_layers=2, word_embed_proj_dim=32))
    assert plain.pre_unembed == [] and plain.final_norm is not None


def test_gemma3_multimodal_layout() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    text = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 64,
        "sliding_window": 16,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 16,
        "patch_size": 8,
    }
    config = AutoConfig.for_model(
        "gemma3",
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        image_token_index=5,
        boi_token_index=6,
        eoi_token_index=7,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    layout = resolve_layout(model)
    assert layout.architecture == "gemma3" and layout.num_layers == 2
    assert layout.blocks[0] is model.model.language_model.layers[0]
    batch = make_batch(batch_size=2, seq_len=6)
    batch["input_ids"] = batch["input_ids"].clamp_min(8)  # no image tokens
    lens, logits = last_block_lens_logits(model, batch)
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-4)
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"])
    assert all(math.isfinite(v) for v in trace.contraction + trace.entropy)


# ------------------------------------------------------------------------------------------- wrappers
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft → transformers 5
def test_peft_lora_model_resolves_and_traces() -> None:
    from peft import LoraConfig, get_peft_model

    base = tiny_causal_lm("llama", num_layers=3)
    batch = make_batch(batch_size=2, seq_len=8)
    before = compute_depth_trace(base, batch["input_ids"], batch["attention_mask"])
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    layout = resolve_layout(peft_model)
    assert layout.model is base and layout.architecture == "llama" and layout.num_layers == 3
    assert unwrap_model(peft_model) is base
    trace = compute_depth_trace(peft_model, batch["input_ids"], batch["attention_mask"])
    # LoRA's B starts at zero: the adapted model computes the same function as the base.
    for name in ("contraction", "entropy", "effective_rank"):
        assert trace.metric(name) == pytest.approx(before.metric(name), rel=1e-5)
    assert all(not block._forward_hooks for block in layout.blocks)


class DDPLike(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_parallel_and_compile_wrappers_are_seen_through() -> None:
    model = tiny_causal_lm("qwen2", num_layers=2)
    batch = make_batch(batch_size=2, seq_len=6)
    expected = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"]).to_dict()
    compiled = torch.compile(model)  # not called: only the `_orig_mod` wrapper is needed
    for wrapped in (DDPLike(model), compiled, DDPLike(compiled), DDPLike(DDPLike(model))):
        layout = resolve_layout(wrapped)
        assert layout.model is model and layout.architecture == "qwen2"
        trace = compute_depth_trace(wrapped, batch["input_ids"], batch["attention_mask"])
        assert trace.to_dict() == expected


# ------------------------------------------------------------------------------ unsupported / register
class TinyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, hidden: torch.Tensor, **kwargs) -> tuple[torch.Tensor]:
        return (hidden + torch.tanh(self.linear(hidden)),)


class CustomLM(nn.Module):
    """A config-bearing causal LM that no registry entry knows."""

    def __init__(self, vocab: int = 20, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.config = type("CustomConfig", (), {"model_type": "custom_lm", "use_cache": None})()
        self.embed = nn.Embedding(vocab, width)
        self.trunk = nn.Module()
        self.trunk.stack = nn.ModuleList(TinyBlock(width) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        hidden = self.embed(input_ids)
        for block in self.trunk.stack:
            hidden = block(hidden)[0]
        return self.head(self.norm_out(hidden))


@pytest.mark.parametrize(
    "module,class_name",
    [(nn.Linear(3, 3), "Linear"), (CustomLM(), "CustomLM")],
)
def test_unsupported_model_raises_a_helpful_error(module: nn.Module, class_name: str) -> None:
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_layout(module)
    message = str(info.value)
    assert class_name in message and "register_architecture" in message
    assert "Unsupported architecture" in message
    if class_name == "CustomLM":
        assert "custom_lm" in message


def test_non_module_is_refused() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        resolve_layout("llama")  # type: ignore[arg-type]


def test_register_architecture_makes_a_custom_model_work(isolated_registry) -> None:
    torch.manual_seed(0)
    model = CustomLM()
    spec = register_architecture("custom_lm", blocks="trunk.stack", final_norm="norm_out", unembed="head")
    assert "custom_lm" in registered_architectures() and spec.blocks == "trunk.stack"
    layout = resolve_layout(model)
    assert layout.num_layers == 3 and layout.unembed is model.head and layout.final_norm is model.norm_out
    ids = torch.randint(0, 20, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    lens, logits = last_block_lens_logits(model, {"input_ids": ids, "attention_mask": mask})
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-6)
    trace = compute_depth_trace(model, ids, mask)
    assert trace.num_layers == 3 and trace.num_tokens == 18
    assert all(math.isfinite(v) for v in trace.entropy + trace.transport[:-1])


def test_register_by_class_name_and_alternative_paths(isolated_registry) -> None:
    model = CustomLM()
    model.config = None  # no model_type: looked up by class name
    register_architecture("CustomLM", blocks=("layers", "trunk.stack"), unembed=["lm_head", "head"])
    layout = resolve_layout(model)
    assert layout.architecture == "CustomLM" and layout.final_norm is None and layout.unembed is model.head


def test_register_refuses_duplicates_without_overwrite(isolated_registry) -> None:
    with pytest.raises(ValueError, match=r"already registered.*overwrite=True"):
        register_architecture("llama", blocks="model.layers", unembed="lm_head")
    register_architecture("custom_lm", blocks="trunk.stack", unembed="head")
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("custom_lm", blocks="trunk.stack", unembed="head")
    replaced = register_architecture(
        "custom_lm", blocks="trunk.stack", unembed="head", final_norm="norm_out", overwrite=True
    )
    assert replaced.final_norm == "norm_out"
    assert resolve_layout(CustomLM()).final_norm is not None


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"blocks": "", "unembed": "head"}, "blocks"),
        ({"blocks": "trunk.stack", "unembed": []}, "unembed"),
        ({"blocks": 3, "unembed": "head"}, "blocks"),
        ({"blocks": "trunk.stack", "unembed": "head", "final_norm": ""}, "final_norm"),
        ({"blocks": "trunk.stack", "unembed": "head", "pre_unembed": [""]}, "pre_unembed"),
    ],
)
def test_register_validates_paths(isolated_registry, kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        register_architecture("custom_lm", **kwargs)
    assert "custom_lm" not in registered_architectures()
    with pytest.raises(ValueError, match="`name`"):
        register_architecture("", blocks="a", unembed="b")


def test_register_accepts_one_pre_unembed_path_as_a_string(isolated_registry) -> None:
    spec = register_architecture("custom_lm", blocks="trunk.stack", unembed="head", pre_unembed="norm_out")
    assert spec.pre_unembed == ("norm_out",)
    assert resolve_layout(CustomLM()).pre_unembed[0].__class__ is nn.LayerNorm


@pytest.mark.parametrize(
    "paths,missing",
    [
        ({"blocks": "trunk.nothing", "unembed": "head"}, "trunk.nothing"),
        ({"blocks": "trunk.stack", "unembed": "lm_head"}, "lm_head"),
        ({"blocks": "trunk.stack", "unembed": "head", "final_norm": "model.norm"}, "model.norm"),
    ],
)
def test_registered_paths_that_do_not_exist_give_a_clear_error(isolated_registry, paths, missing) -> None:
    register_architecture("custom_lm", **paths)
    with pytest.raises(UnsupportedArchitectureError, match=missing) as info:
        resolve_layout(CustomLM())
    assert "CustomLM" in str(info.value) and "overwrite=True" in str(info.value)


def test_blocks_path_must_be_a_module_list(isolated_registry) -> None:
    register_architecture("custom_lm", blocks="norm_out", unembed="head")
    with pytest.raises(UnsupportedArchitectureError, match="ModuleList"):
        resolve_layout(CustomLM())
