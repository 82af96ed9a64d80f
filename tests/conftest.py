"""Shared test helpers: tiny random causal LMs built offline, and probe batches.

Everything here is deterministic (seeded) and small enough to build and run in well under a second on a CPU. Tests use
the factories through the fixtures ``tiny_lm`` and ``make_batch``, or import them directly::

    from tests.conftest import tiny_causal_lm, make_batch
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

VOCAB_SIZE = 128
HIDDEN_SIZE = 32

# Special tokens inside the vocabulary (some configs, e.g. phi3, check pad_token_id < vocab_size).
_TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}

_ATTENTION = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64}

#: Per-architecture keyword arguments of a tiny configuration (hidden 32, vocab 128, dropout off).
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {**_ATTENTION},
    "mistral": {**_ATTENTION, "sliding_window": None},
    "qwen2": {**_ATTENTION},
    "qwen3": {**_ATTENTION},
    "gemma": {**_ATTENTION},
    "gemma2": {**_ATTENTION, "final_logit_softcapping": 2.0, "sliding_window": 16},
    "gemma3_text": {**_ATTENTION, "final_logit_softcapping": 2.0, "sliding_window": 16},
    "phi3": {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "olmo2": {**_ATTENTION},
    "granite": {**_ATTENTION, "logits_scaling": 4.0, "embedding_multiplier": 2.0, "residual_multiplier": 0.5},
    "phi": {"num_attention_heads": 4, "intermediate_size": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0},
    "gpt2": {"n_head": 4, "n_inner": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "gpt_neox": {"num_attention_heads": 4, "intermediate_size": 64, "hidden_dropout": 0.0},
    # word_embed_proj_dim != hidden_size exercises OPT's project_out before the unembedding.
    "opt": {"num_attention_heads": 4, "ffn_dim": 64, "word_embed_proj_dim": 16, "dropout": 0.0},
    "mixtral": {**_ATTENTION, "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None},
    "qwen2_moe": {
        **_ATTENTION,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 32,
    },
    "qwen3_moe": {**_ATTENTION, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
}

#: Every architecture with a tiny configuration above (all are built-in registry entries).
TINY_ARCHITECTURES = tuple(TINY_CONFIGS)


def tiny_config(model_type: str, num_layers: int = 2, **overrides: Any) -> Any:
    """A tiny ``transformers`` config of ``model_type`` (hidden 32, vocab 128), built offline."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": num_layers,
        "max_position_embeddings": 64,
        **_TOKENS,
        **TINY_CONFIGS.get(model_type, {}),
        **overrides,
    }
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_causal_lm(
    model_type: str = "llama", num_layers: int = 2, seed: int = 0, train: bool = False, **overrides: Any
) -> torch.nn.Module:
    """A tiny random ``AutoModelForCausalLM`` (float32, eval mode unless ``train``), seeded."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, num_layers=num_layers, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.train(train)
    return model


def make_batch(
    batch_size: int = 3,
    seq_len: int = 10,
    vocab_size: int = VOCAB_SIZE,
    seed: int = 0,
    left_pad: tuple[int, ...] = (),
    prompt_len: int | None = None,
) -> dict[str, torch.Tensor]:
    """A probe batch: ``input_ids``, ``attention_mask`` and ``completion_mask``, each ``(B, T)``.

    ``left_pad[b]`` padding tokens (id 0) start row ``b``; the completion is every real token after the
    first ``prompt_len`` real tokens (default: half of the row).
    """
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (batch_size, seq_len), generator=gen)
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.long)
    completion_mask = torch.zeros(batch_size, seq_len, dtype=torch.long)
    for b in range(batch_size):
        pad = left_pad[b] if b < len(left_pad) else 0
        input_ids[b, :pad] = _TOKENS["pad_token_id"]
        attention_mask[b, :pad] = 0
        start = pad + (prompt_len if prompt_len is not None else (seq_len - pad) // 2)
        completion_mask[b, start:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


@pytest.fixture
def tiny_lm():
    """The :func:`tiny_causal_lm` factory."""
    return tiny_causal_lm


@pytest.fixture(name="make_batch")
def make_batch_fixture():
    """The :func:`make_batch` factory."""
    return make_batch
