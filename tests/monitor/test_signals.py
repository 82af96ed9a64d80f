"""Probe-forward signals against the model's own full forward: log-likelihoods, log Z, max logit, log-ratios."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

from spinal_callback import SpinalConfig, SpinalMonitor
from spinal_callback.model.architectures import resolve_layout
from spinal_callback.monitor.probing import measure_geometry
from spinal_callback.monitor.signals import ScoredPositions, probe_signals
from tests.conftest import tiny_causal_lm

PAIRS = [
    {"prompt_ids": [5, 6, 7, 8], "chosen_ids": [9, 10, 11], "rejected_ids": [12, 13]},
    {"prompt_ids": [20, 21], "chosen_ids": [22, 23, 24, 25], "rejected_ids": [26, 27, 28]},
    {"prompt_ids": [30, 31, 32], "chosen_ids": [33], "rejected_ids": [34, 35, 36, 37]},
]


def _oracle(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """Sequence log-likelihoods and the mean log Z / max logit over scored tokens from a full forward (float64)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    label = batch["completion_mask"].bool() & batch["attention_mask"].bool()
    label[:, 0] = False
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)
    sequences = (logp * label[:, 1:]).sum(dim=1)
    scored = logits[:, :-1][label[:, 1:]]
    return sequences, float(torch.logsumexp(scored, dim=-1).mean()), float(scored.max(dim=-1).values.mean())


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "gemma2"])
def test_readout_equals_the_models_own_logits(architecture: str) -> None:
    model = tiny_causal_lm(architecture, num_layers=3)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3))
    monitor.setup(model, records=PAIRS)
    assert monitor.probe_batch is not None and monitor.probe_set is not None
    batch = monitor.probe_batch
    measured = measure_geometry(model, resolve_layout(model), batch, monitor.config, monitor.probe_set.positions)
    assert measured.readout is not None
    sequences, log_z, max_logit = _oracle(model, batch)
    torch.testing.assert_close(measured.readout.logprobs, sequences, atol=1e-4, rtol=0)
    assert measured.readout.log_z == pytest.approx(log_z, abs=1e-4)
    assert measured.readout.max_logit == pytest.approx(max_logit, abs=1e-4)


def test_identical_reference_gives_zero_log_ratios_and_a_moved_policy_does_not() -> None:
    model = tiny_causal_lm(num_layers=3)
    reference = copy.deepcopy(model)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3))
    monitor.setup(model, records=PAIRS, reference=reference)
    assert monitor.probe_set is not None and monitor.probe_set.reference_source == "reference model"
    first = monitor.probe(0, model).signals
    assert first["pairs/logratio_margin"] == pytest.approx(0.0, abs=1e-9)
    assert first["pairs/logratio_chosen"] == pytest.approx(0.0, abs=1e-9)
    assert first["pairs/margin"] == pytest.approx(first["pairs/logp_chosen"] - first["pairs/logp_rejected"])
    with torch.no_grad():  # move the policy: raise the chosen completions' first tokens
        model.lm_head.weight[9] += 0.5
        model.lm_head.weight[22] += 0.5
    moved = monitor.probe(1, model).signals
    assert moved["pairs/logratio_chosen"] > 1e-3
    assert moved["pairs/logratio_margin"] > 1e-3 and moved["pairs/accuracy"] > 0
    assert "head/log_z" in moved and "head/max_logit" in moved


def test_without_a_reference_the_first_probe_is_the_reference_and_survives_a_resume() -> None:
    model = tiny_causal_lm(num_layers=3)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3))
    monitor.setup(model, records=PAIRS)
    assert monitor.probe_set is not None and monitor.probe_set.reference_source == "first probe"
    assert monitor.probe(0, model).signals["pairs/logratio_margin"] == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        model.lm_head.weight[9] += 0.5
    state = monitor.state_dict()
    resumed = SpinalMonitor(SpinalConfig(num_probe_pairs=3))
    resumed.load_state_dict(state)
    resumed.setup(model, records=PAIRS)
    assert resumed.probe(1, model).signals["pairs/logratio_chosen"] == pytest.approx(
        monitor.probe(1, model).signals["pairs/logratio_chosen"], abs=1e-9)
    assert resumed.probe(2, model).signals["pairs/logratio_chosen"] > 1e-3


def test_peft_reference_is_the_adapter_disabled_policy() -> None:
    peft = pytest.importorskip("peft")
    base = tiny_causal_lm(num_layers=3)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    policy = peft.get_peft_model(base, config)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3))
    monitor.setup(policy, records=PAIRS)
    assert monitor.probe_set is not None and monitor.probe_set.reference_source == "adapter-disabled policy"
    signals = monitor.probe(0, policy).signals
    assert abs(signals["pairs/logratio_chosen"]) > 1e-6  # the random adapter moves the policy off its base
    with policy.disable_adapter():
        expected, _, _ = _oracle(policy, monitor.probe_set.batch)
    torch.testing.assert_close(monitor.probe_set.reference_logprobs, expected, atol=1e-4, rtol=0)


def test_scored_positions_shift_by_one_and_skip_position_zero() -> None:
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "completion_mask": torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1]]),
    }
    positions = ScoredPositions.from_batch(batch)
    assert positions.rows.tolist() == [0, 0, 1, 1]
    assert positions.cols.tolist() == [1, 2, 0, 1]
    assert positions.targets.tolist() == [3, 4, 6, 7]


def test_probe_signals_without_reference_have_no_log_ratios() -> None:
    from spinal_callback.monitor.signals import HeadReadout

    readout = HeadReadout(torch.tensor([-1.0, -2.0, -3.0, -2.5], dtype=torch.float64), 4.0, 2.0)
    signals = probe_signals(readout, None)
    assert signals["pairs/logp_chosen"] == pytest.approx(-1.5)
    assert signals["pairs/margin"] == pytest.approx(((-1.0 + 3.0) + (-2.0 + 2.5)) / 2)
    assert not any(name.startswith("pairs/logratio") for name in signals)


def test_pair_noise_is_the_standard_error_of_the_per_pair_change() -> None:
    from spinal_callback.monitor.signals import pair_noise

    before = {"pairs/margin": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)}
    now = {"pairs/margin": torch.tensor([1.1, 2.3, 2.9, 4.5], dtype=torch.float64)}
    changes = torch.tensor([0.1, 0.3, -0.1, 0.5], dtype=torch.float64)
    expected = float(changes.std(unbiased=True) / 2.0)
    assert pair_noise(now, before)["pairs/margin"] == pytest.approx(expected, rel=1e-9)
    assert pair_noise(now, None) == {}
    assert pair_noise(now, {"pairs/margin": torch.tensor([1.0, 2.0])}) == {}  # a different probe set


def test_probe_set_signals_adopt_the_first_probe_and_measure_noise_from_the_second() -> None:
    from spinal_callback.monitor.probe_set import ProbeSet
    from spinal_callback.monitor.signals import HeadReadout

    batch = {"input_ids": torch.ones(4, 3, dtype=torch.long), "attention_mask": torch.ones(4, 3, dtype=torch.long),
             "completion_mask": torch.tensor([[0, 1, 1]] * 4)}
    probe_set = ProbeSet(batch, ScoredPositions.from_batch(batch), num_pairs=2)
    first = HeadReadout(torch.tensor([-1.0, -2.0, -3.0, -2.5], dtype=torch.float64), 4.0, 2.0)
    signals, noise = probe_set.signals(first)
    assert noise == {}  # nothing to compare with yet
    torch.testing.assert_close(probe_set.reference_logprobs, first.logprobs)  # the first probe is the reference
    assert signals["pairs/logratio_margin"] == pytest.approx(0.0)
    second = HeadReadout(torch.tensor([-0.9, -2.2, -3.1, -2.0], dtype=torch.float64), 4.0, 2.0)
    signals, noise = probe_set.signals(second)
    # chosen − rejected log-ratios against the first probe: (0.1 + 0.1, −0.2 − 0.5) per pair
    assert signals["pairs/logratio_margin"] == pytest.approx((0.2 - 0.7) / 2)
    changes = torch.tensor([0.2, -0.7], dtype=torch.float64)  # the per-pair change of the log-ratio margin
    assert noise["pairs/logratio_margin"] == pytest.approx(float(changes.std(unbiased=True) / 2 ** 0.5))
    torch.testing.assert_close(probe_set.reference_logprobs, first.logprobs)  # adopted once
