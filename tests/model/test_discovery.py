"""Layout discovery for causal LMs the registry does not list: the lens it finds reproduces the model.

Every family below is built tiny from its config (hidden 32, 3 layers, vocab 128). The test of record:
the last-layer lens entropy of the depth trace equals the model's own output entropy within 1e-3.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from spinal_callback.geometry import compute_depth_trace
from spinal_callback.model import architectures, candidates, discovery
from spinal_callback.model.architectures import (
    UnsupportedArchitectureError,
    register_architecture,
    registered_architectures,
    resolve_layout,
)
from tests.conftest import VOCAB_SIZE, make_batch, tiny_config

pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM

_GQA = {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64}

#: model_type -> (config overrides, blocks path, final-norm path, unembedding path)
FAMILIES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "bloom": ({"n_head": 4}, "transformer.h", "transformer.ln_f", "lm_head"),
    "falcon": ({"num_attention_heads": 4, "parallel_attn": True}, "transformer.h", "transformer.ln_f", "lm_head"),
    "mpt": ({"n_heads": 4, "d_model": 32, "expansion_ratio": 2}, "transformer.blocks", "transformer.norm_f", "lm_head"),
    "stablelm": (_GQA, "model.layers", "model.norm", "lm_head"),
    "cohere": ({**_GQA, "logit_scale": 0.25}, "model.layers", "model.norm", "lm_head"),
    "gptj": ({"n_head": 4, "rotary_dim": 4, "n_embd": 32}, "transformer.h", "transformer.ln_f", "lm_head"),
    "codegen": (
        {"n_head": 4, "rotary_dim": 4, "n_embd": 32, "n_ctx": 64},
        "transformer.h",
        "transformer.ln_f",
        "lm_head",
    ),
    "biogpt": (
        {"num_attention_heads": 4, "intermediate_size": 64},
        "biogpt.layers",
        "biogpt.layer_norm",
        "output_projection",
    ),
    "persimmon": (
        {"num_attention_heads": 4, "intermediate_size": 64},
        "model.layers",
        "model.final_layernorm",
        "lm_head",
    ),
    "starcoder2": (_GQA, "model.layers", "model.norm", "lm_head"),
}


@pytest.fixture(autouse=True)
def fresh_discovery(monkeypatch):
    """Each test sees an empty discovery log and its own copy of the registry."""
    monkeypatch.setattr(discovery, "_logged", set())
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))


def build(model_type: str, num_layers: int = 3, dtype: torch.dtype = torch.float32, **overrides: Any) -> nn.Module:
    """A tiny model of ``model_type`` whose norms are not the identity and whose logits are O(1–10)."""
    kwargs = {"tie_word_embeddings": False, **FAMILIES.get(model_type, ({},))[0], **overrides}
    config = tiny_config(model_type, num_layers=num_layers, **kwargs)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if candidates.is_norm(module):
                for param in module.parameters():
                    param.copy_(1.0 + 0.5 * torch.randn(param.shape, generator=generator))
        logits = model(input_ids=make_batch(batch_size=1, seq_len=8)["input_ids"]).logits
        model.get_output_embeddings().weight.mul_(2.0 / float(logits.std()))  # logits of std 2
    return model.to(dtype)


def output_entropy(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Mean entropy (nats) of the model's own next-token distribution over the real tokens, and the logits."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    real = logits[batch["attention_mask"].bool()]
    entropy = -(real.softmax(-1) * real.log_softmax(-1)).sum(-1)
    return float(entropy.mean()), logits


# ------------------------------------------------------------------------------ the families, end to end
def test_the_families_are_not_registered() -> None:
    assert not set(FAMILIES) & set(registered_architectures())
    assert len(FAMILIES) >= 6


@pytest.mark.parametrize("model_type", FAMILIES)
def test_discovered_lens_reproduces_the_models_output_entropy(model_type: str, caplog) -> None:
    _, blocks, norm, unembed = FAMILIES[model_type]
    model = build(model_type)
    with caplog.at_level(logging.INFO, logger="spinal_callback.model.discovery"):
        layout = resolve_layout(model)
    assert layout.discovered and layout.architecture == model_type and layout.num_layers == 3
    assert layout.blocks == list(model.get_submodule(blocks))
    assert layout.final_norm is model.get_submodule(norm)
    assert layout.unembed is model.get_submodule(unembed) is model.get_output_embeddings()
    assert layout.vocab_size == VOCAB_SIZE
    [record] = [r for r in caplog.records if r.name == "spinal_callback.model.discovery"]
    assert record.levelno == logging.INFO and f"blocks {blocks} (3)" in record.getMessage()
    assert "checked" in record.getMessage() and "unchecked" not in record.getMessage()

    batch = make_batch(batch_size=2, seq_len=8, left_pad=(0, 2))
    expected, _ = output_entropy(model, batch)
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=None)
    assert trace.num_layers == 3 and trace.num_tokens == int(batch["attention_mask"].sum())
    assert 0.05 < expected < 0.99 * torch.log(torch.tensor(float(VOCAB_SIZE))).item()  # neither peaked nor flat
    assert abs(trace.entropy[-1] - expected) < 1e-3


def test_falcon_new_decoder_architecture() -> None:
    model = build("falcon", new_decoder_architecture=True, num_kv_heads=2, parallel_attn=True)
    layout = resolve_layout(model)
    assert layout.final_norm is model.transformer.ln_f
    batch = make_batch(batch_size=2, seq_len=8)
    expected, _ = output_entropy(model, batch)
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=None)
    assert abs(trace.entropy[-1] - expected) < 1e-3


def test_cohere_logit_scale_is_part_of_the_lens() -> None:
    model = build("cohere")
    layout = resolve_layout(model)
    assert layout.logit_transform is not None
    hidden = torch.randn(5, 32)
    with torch.no_grad():
        raw = layout.unembed(layout.final_norm(hidden)).float()
        assert torch.allclose(layout.lens_logits(hidden), raw * 0.25)


def test_bfloat16_model_is_checked_with_a_16_bit_tolerance() -> None:
    model = build("bloom", dtype=torch.bfloat16)
    layout = resolve_layout(model)
    assert layout.discovered and layout.final_norm is model.transformer.ln_f
    batch = make_batch(batch_size=2, seq_len=8)
    expected, _ = output_entropy(model, batch)
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=None)
    assert abs(trace.entropy[-1] - expected) < 1e-2


# ------------------------------------------------------------------------------------ the check forward
def test_the_check_picks_the_norm_that_reproduces_the_logits() -> None:
    """A decoy norm next to the blocks, registered before ln_f, is tried first and rejected."""
    model = build("bloom")
    decoy = nn.LayerNorm(32)
    with torch.no_grad():
        decoy.weight.mul_(3.0)
    parent = model.transformer
    items = list(parent._modules.items())
    parent._modules.clear()
    for name, module in items:
        parent._modules[name] = module
        if name == "h":
            parent._modules["ln_decoy"] = decoy
    norms, static = discovery._norm_candidates(model, "transformer.h")
    assert norms[:2] == ["transformer.ln_decoy", "transformer.ln_f"] and static is None
    assert resolve_layout(model).final_norm is model.transformer.ln_f


def test_discovery_runs_once_per_model_and_leaves_it_as_it_was(caplog) -> None:
    model = build("mpt").train()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with caplog.at_level(logging.INFO, logger="spinal_callback.model.discovery"):
        first = resolve_layout(model)
        second = resolve_layout(model)
        resolve_layout(build("mpt"))  # another instance: checked again, not logged again
    assert len(calls) == 1 and first.blocks == second.blocks
    assert len([r for r in caplog.records if r.name == "spinal_callback.model.discovery"]) == 1
    assert all(module.training for module in model.modules())
    assert all(not block._forward_hooks for block in first.blocks)


def test_unseen_output_processing_is_refused_then_registered(caplog) -> None:
    from transformers import StableLmForCausalLM

    class TripledLogits(StableLmForCausalLM):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            output = super().forward(*args, **kwargs)
            output.logits = output.logits * 3.0
            return output

    torch.manual_seed(0)
    model = TripledLogits(tiny_config("stablelm", num_layers=2, **_GQA)).eval()
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_layout(model)
    message = str(info.value)
    assert "does the last block's logit lens reproduce the model's logits" in message
    assert "model.layers (2 blocks)" in message and "model.norm" in message and "logit_transform" in message
    register_architecture(
        "stablelm",
        blocks="model.layers",
        final_norm="model.norm",
        unembed="lm_head",
        logit_transform=lambda logits, config: logits * 3.0,
    )
    layout = resolve_layout(model)
    assert not layout.discovered
    batch = make_batch(batch_size=2, seq_len=6)
    expected, _ = output_entropy(model, batch)
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=None)
    assert abs(trace.entropy[-1] - expected) < 1e-3


def test_parameters_that_cannot_run_use_the_static_choice() -> None:
    config = tiny_config("bloom", num_layers=3, n_head=4)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layout = resolve_layout(model)
    assert layout.discovered and layout.final_norm is model.transformer.ln_f and layout.num_layers == 3
    assert discovery._found[model].checked.startswith("unchecked: parameter")

    with torch.device("meta"):
        ambiguous = AutoModelForCausalLM.from_config(config)
        ambiguous.transformer.ln_other = nn.LayerNorm(32)
    with pytest.raises(UnsupportedArchitectureError, match=r"ambiguous among transformer\.ln_f, transformer\.ln_"):
        resolve_layout(ambiguous)


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "factory,example",
    [
        ("LlamaModel", "LlamaForCausalLM"),
        ("BloomModel", "BloomForCausalLM"),
        ("LlamaForSequenceClassification", "LlamaForCausalLM"),
    ],
)
def test_a_model_without_an_lm_head_is_told_to_pass_a_causal_lm(factory: str, example: str) -> None:
    import transformers

    model_type = "bloom" if factory.startswith("Bloom") else "llama"
    overrides = FAMILIES["bloom"][0] if model_type == "bloom" else {"num_attention_heads": 4, "head_dim": 8}
    model = getattr(transformers, factory)(tiny_config(model_type, **overrides))
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_layout(model)
    message = str(info.value)
    assert "Pass a *ForCausalLM (a model with an output embedding)" in message
    assert f"such as {example}" in message and factory in message
    assert "register_architecture" not in message  # registering would not help


def test_a_wrong_layer_count_names_this_models_paths() -> None:
    model = build("bloom")
    model.config.n_layer = 5
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_layout(model)
    message = str(info.value)
    assert "no nn.ModuleList of blocks has the config's layer count 5" in message
    assert "transformer.h (3 blocks)" in message and "transformer.ln_f" in message and "lm_head" in message
    assert "register_architecture('bloom', blocks='transformer.h', final_norm='transformer.ln_f'" in message
    assert "model.layers" not in message and "model.norm" not in message  # no Llama advice for Bloom


def test_two_block_lists_of_the_layer_count_are_ambiguous() -> None:
    model = build("falcon")
    model.transformer.h_draft = copy.deepcopy(model.transformer.h)
    with pytest.raises(UnsupportedArchitectureError, match=r"several block lists .*transformer\.h, transformer\.h_dr"):
        resolve_layout(model)


def test_a_module_without_hugging_face_hooks_names_its_candidates() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Module()
            self.trunk.stack = nn.ModuleList(nn.Sequential(nn.Linear(8, 8)) for _ in range(3))
            self.norm_out = nn.LayerNorm(8)
            self.head = nn.Linear(8, 20)

    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_layout(Custom())
    message = str(info.value)
    assert "no get_output_embeddings()" in message and "trunk.stack (3 blocks)" in message
    assert "blocks='trunk.stack', final_norm='norm_out', unembed='head'" in message


def test_registered_paths_missing_from_a_bare_decoder_get_the_causal_lm_message() -> None:
    """A bare ``LlamaModel`` is registered by model_type, but has no ``lm_head``: no Llama-paths advice."""
    from transformers import LlamaModel

    model = LlamaModel(tiny_config("llama", num_attention_heads=4, head_dim=8))
    with pytest.raises(UnsupportedArchitectureError, match=r"LlamaModel .*Pass a \*ForCausalLM"):
        resolve_layout(model)


# ------------------------------------------------------------------------------- in a DPO run (TRL)
def _dpo_trainer(tmp_path, model: nn.Module, callback: Any) -> Any:
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tests.integrations.helpers import pairs, tokenizer

    config = DPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        max_length=32,
        save_strategy="no",
    )
    return DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model).eval().requires_grad_(False),
        args=config,
        train_dataset=Dataset.from_list(pairs(8)),
        processing_class=tokenizer(),
        callbacks=[callback],
    )


def _tiny_for(model_type: str, vocab_size: int, cls: type | None = None) -> nn.Module:
    config = tiny_config(model_type, num_layers=2, vocab_size=vocab_size, **FAMILIES[model_type][0])
    torch.manual_seed(0)
    return cls(config) if cls is not None else AutoModelForCausalLM.from_config(config)


def test_a_discovered_family_is_monitored_in_a_dpo_run(tmp_path) -> None:
    from spinal_callback import SpinalConfig, SpinalTrainerCallback
    from tests.integrations.helpers import tokenizer

    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2, log_dir=str(tmp_path / "tb")))
    trainer = _dpo_trainer(tmp_path, _tiny_for("bloom", len(tokenizer())), callback)
    trainer.train()
    assert callback.monitor.layout is not None and callback.monitor.layout.discovered
    lines = Path(callback.trace_path).read_text().splitlines()
    records = [line for line in lines if '"type": "trace"' in line]
    assert len(records) == 3  # steps 0, 1, 2
    assert callback.monitor.failures == 0


def test_a_model_discovery_refuses_fails_at_callback_setup_with_its_own_paths(tmp_path) -> None:
    from transformers import BloomForCausalLM

    from spinal_callback import SpinalConfig, SpinalTrainerCallback
    from tests.integrations.helpers import tokenizer

    class HalvedLogits(BloomForCausalLM):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            output = super().forward(*args, **kwargs)
            output.logits = output.logits * 0.5
            return output

    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2, log_dir=str(tmp_path / "tb")))
    model = _tiny_for("bloom", len(tokenizer()), HalvedLogits)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # logits large enough that halving them shows beyond bf16 rounding
    trainer = _dpo_trainer(tmp_path, model, callback)
    with pytest.raises(UnsupportedArchitectureError) as info:
        trainer.train()
    assert trainer.state.global_step == 0
    message = str(info.value)
    assert "HalvedLogits (model_type 'bloom')" in message and "transformer.h (2 blocks)" in message
    assert "register_architecture('bloom', blocks='transformer.h'" in message and "model.layers" not in message
