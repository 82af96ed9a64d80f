"""Tiny policy/reference pairs and an independent, naive patching implementation for the probe tests.

The naive implementation shares no code with ``spinal_callback.probes``: it finds the blocks by
attribute name, runs one full forward per patched layer with a single forward hook, and scores the
completion with ``log_softmax`` over the model's own logits, in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from tests.conftest import make_batch, tiny_causal_lm

__all__ = ["blocks_of", "naive_margins", "naive_patch", "perturbed_pair", "probe_batch"]


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks of a bare llama-like, GPT-2 or toy model, found by attribute name."""
    for path in ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers", "layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return list(obj)
    raise AssertionError(f"no blocks found on {type(model).__name__}")


def perturbed_pair(
    model_type: str = "llama", num_layers: int = 4, scale: float = 0.05, seed: int = 0, **overrides: object
) -> tuple[nn.Module, nn.Module]:
    """``(policy, reference)``: the policy is the reference with Gaussian noise on its *block* weights.

    The embeddings, final norm and unembedding are shared in value, as after LoRA on the blocks, so
    patching the last block transfers the whole margin gap.
    """
    overrides.setdefault("initializer_range", 0.05)
    reference = tiny_causal_lm(model_type, num_layers=num_layers, seed=seed, **overrides)
    policy = copy.deepcopy(reference)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for block in blocks_of(policy):
            for param in block.parameters():
                param.add_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return policy, reference


def probe_batch(num_pairs: int = 4, seq_len: int = 12, seed: int = 0, vocab_size: int = 128) -> dict:
    """A (2K, T) batch with ragged right padding and prompts of different lengths."""
    batch = make_batch(2 * num_pairs, seq_len, vocab_size=vocab_size, seed=seed)
    for row in range(2 * num_pairs):
        pad = row % 3
        prompt = min(3 + row % 4, seq_len - pad - 1)  # at least one completion token
        if pad:
            batch["input_ids"][row, -pad:] = 0
            batch["attention_mask"][row, -pad:] = 0
        batch["completion_mask"][row] = 0
        batch["completion_mask"][row, prompt : seq_len - pad] = 1
    return batch


def naive_margins(
    model: nn.Module, batch: dict, hook: Callable[[nn.Module, object, object], object] | None = None, block: int = 0
) -> torch.Tensor:
    """``[K]`` margins from one full forward (logits of every position), optionally with one block hook."""
    handle = blocks_of(model)[block].register_forward_hook(hook) if hook is not None else None
    try:
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finally:
        if handle is not None:
            handle.remove()
    logp = logits[:, :-1].double().log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)
    mask = (batch["completion_mask"] * batch["attention_mask"])[:, 1:].double()
    seq = (logp * mask).sum(1)
    k = seq.shape[0] // 2
    return seq[:k] - seq[k:]


def _block_outputs(model: nn.Module, batch: dict) -> list[torch.Tensor]:
    store: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: store.__setitem__(i, o if torch.is_tensor(o) else o[0]))
        for i, b in enumerate(blocks_of(model))
    ]
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    return [store[i] for i in range(len(store))]


def naive_patch(base: nn.Module, source: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(per_example [L, K], margin_base [K], margin_source [K])``, one full forward per layer."""
    base.eval()
    source.eval()
    outputs = _block_outputs(source, batch)
    margin_base = naive_margins(base, batch)
    rows = []
    for layer, h_src in enumerate(outputs):

        def replace(module: nn.Module, args: object, output: object, h_src: torch.Tensor = h_src) -> object:
            return h_src if torch.is_tensor(output) else (h_src, *output[1:])

        rows.append(naive_margins(base, batch, replace, layer) - margin_base)
    return torch.stack(rows), margin_base, naive_margins(source, batch)
