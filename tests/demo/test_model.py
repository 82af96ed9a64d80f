"""The tiny demo model: its config, supervised pre-training and the on-disk cache."""

from __future__ import annotations

import pytest
import torch

from spinal_callback.demo.model import (
    DEMO_ARCHITECTURES,
    SFTSettings,
    build_model,
    demo_config,
    pretrained_demo_model,
    supervised_pretrain,
)
from spinal_callback.demo.task import AdditionTask, build_tokenizer, greedy_accuracy


def test_demo_config_has_late_band_transport_curvature() -> None:
    """9 blocks: three per band, and the late band (7-9) holds κ^𝓛_7, the detector's first signal."""
    from spinal_callback.geometry import band_slices

    config = demo_config(99)
    assert config.num_hidden_layers == 9 and config.model_type == "llama"
    late = band_slices(config.num_hidden_layers)["late"]
    assert len(late) == 3 and (config.num_hidden_layers - 2) - 1 in late  # κ is defined up to layer L-2
    assert config.hidden_size % config.num_attention_heads == 0


@pytest.mark.parametrize("architecture", DEMO_ARCHITECTURES)
def test_demo_config_builds_each_family_at_the_demo_size(architecture: str) -> None:
    """Each family of the same size (≈ 1.02 M parameters, 9 blocks) whose layout the monitor finds; others refused."""
    from spinal_callback.model.architectures import resolve_layout

    config = demo_config(99, architecture=architecture)
    assert config.model_type == architecture and config.num_hidden_layers == 9
    model = build_model(config, 0)
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.05e6
    layout = resolve_layout(model)
    assert len(layout.blocks) == 9 and layout.architecture == architecture and not layout.discovered
    with torch.no_grad():
        assert model(torch.tensor([[1, 5, 6, 2]])).logits.shape == (1, 4, 99)
    with pytest.raises(ValueError, match="`architecture` must be one of llama, qwen2, gpt2, got 'mamba'"):
        demo_config(99, architecture="mamba")


def test_sft_improves_accuracy_on_a_tiny_budget() -> None:
    """Single-digit addition, a 2-block model, 100 steps (a few seconds): accuracy leaves zero."""
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(demo_config(len(tok), num_layers=2, hidden_size=64), seed=0)
    task = AdditionTask(max_operand=9, seed=0)
    problems = task.train_problems(50, purpose="check")
    before = greedy_accuracy(model, tok, problems)
    steps = supervised_pretrain(
        model, tok, task, SFTSettings(max_steps=100, warmup_steps=10, target_accuracy=1.0, check_every=1000)
    )
    after = greedy_accuracy(model, tok, problems)
    assert steps == 100 and not model.training
    assert before <= 0.05 and after >= before + 0.25, (before, after)


def test_sft_stops_early_at_the_target() -> None:
    tok = build_tokenizer()
    model = build_model(demo_config(len(tok), num_layers=2, hidden_size=32), seed=0)
    task = AdditionTask(max_operand=9, seed=0)
    # target 0 is reached at the first check
    steps = supervised_pretrain(model, tok, task, SFTSettings(max_steps=50, target_accuracy=0.0, check_every=5))
    assert steps == 5


def test_pretrained_model_is_cached(tmp_path) -> None:
    settings = SFTSettings(max_steps=6, batch_size=8, check_every=3, target_accuracy=1.0)
    model, _, first = pretrained_demo_model(tmp_path, seed=0, settings=settings, num_layers=2, hidden_size=32,
                                              eval_size=10)
    again, _, second = pretrained_demo_model(tmp_path, seed=0, settings=settings, num_layers=2, hidden_size=32,
                                             eval_size=10)
    assert not first.cached and second.cached and first.path == second.path
    assert (second.accuracy_before, second.accuracy_after, second.steps) == (
        first.accuracy_before, first.accuracy_after, 6)
    for (name, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), name
    # another seed or setting is another cache entry
    _, _, other = pretrained_demo_model(tmp_path, seed=1, settings=settings, num_layers=2, hidden_size=32,
                                        eval_size=10)
    assert not other.cached and other.path != first.path
    assert len(list(tmp_path.iterdir())) == 2  # no temporary folders left behind
