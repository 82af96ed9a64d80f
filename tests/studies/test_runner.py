"""One short study run end to end: files, cadences and the injected faults."""

from __future__ import annotations

import json
import random

import pytest

from studies.analysis import load_run
from studies.runner import StudySettings, _training_pairs, run_study
from studies.scenarios import RunSpec

pytest.importorskip("trl")


def test_label_flip_rows_start_at_the_fault_step():
    from spinal_callback.demo.task import AdditionTask

    spec = RunSpec("label_flip", 0, max_steps=10, fault_step=4, flip_fraction=1.0)
    settings = StudySettings(batch_size=3)
    task = AdditionTask(seed=0)
    flipped = _training_pairs(spec, settings, task)
    clean = task.preference_pairs(30)
    assert flipped[:9] == clean[:9]  # steps 1-3 consume rows 0-8
    assert all(f["chosen"] == c["rejected"] and f["rejected"] == c["chosen"] for f, c in zip(flipped[9:], clean[9:]))


def test_short_run_records_everything(tmp_path):
    from spinal_callback.demo.model import SFTSettings

    spec = RunSpec("lr_ramp", 0, max_steps=6, fault_step=3, lr_growth=2.0)
    settings = StudySettings(batch_size=4, eval_problems=16, eval_pairs=8, num_probe_pairs=4)
    run_dir = run_study(spec, tmp_path / "runs", tmp_path / "cache", settings, SFTSettings(max_steps=20))
    run = load_run(run_dir)
    assert [r["step"] for r in run.logs] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in run.evals] == [0, 2, 4, 6]
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["chosen_logp"] < 0 for e in run.evals)
    assert [s for s, _ in run.traces] == [0, 2, 4, 6]
    lr = dict(run.series("learning_rate"))
    # The ramp doubles the learning rate after steps 3, 4, 5, … (the optimizer uses 2× at step 4). HF logs
    # the scheduler's last value, one step behind the optimizer: 4× the warmed-up 5e-5 at step 6.
    assert lr[6] == pytest.approx(4 * spec.learning_rate)
    assert json.loads((run_dir / "run.json").read_text())["spec"]["scenario"] == "lr_ramp"


# ---------------------------------------------------------------------------------------------- study 2
class _State:
    def __init__(self, global_step: int) -> None:
        self.global_step = global_step


def _adam(n: int = 4):
    import torch

    param = torch.nn.Parameter(torch.ones(n))
    optimizer = torch.optim.AdamW([param], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return param, optimizer, scheduler


def _pre_step(callback, step: int, **kwargs) -> None:
    """Call ``on_pre_optimizer_step`` as the Trainer does before optimizer step ``step``."""
    callback.on_pre_optimizer_step(None, _State(step - 1), None, **kwargs)


def test_learning_rate_jump_multiplies_once_at_the_fault_step():
    from studies.faults import LearningRateJump

    _, optimizer, scheduler = _adam()
    jump = LearningRateJump(step=5, factor=20.0)
    for step in range(1, 9):
        _pre_step(jump, step, optimizer=optimizer, lr_scheduler=scheduler)
        expected = 1e-3 * (20 if step >= 5 else 1)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        assert scheduler.get_last_lr()[0] == pytest.approx(expected)  # what HF logs for this step
        optimizer.step()
        scheduler.step()  # the schedule continues from the jumped value
    with pytest.raises(ValueError, match="fault step"):
        LearningRateJump(step=0, factor=20.0)


def test_adam_fault_sets_beta2_and_eps_from_the_fault_step_and_after_a_rollback():
    import torch

    from studies.faults import AdamFault

    _, optimizer, _ = _adam()
    saved = optimizer.state_dict()
    fault = AdamFault(step=3, beta2=0.5, eps=1e-12)
    for step in (1, 2):
        _pre_step(fault, step, optimizer=optimizer)
        assert optimizer.param_groups[0]["betas"] == (0.9, 0.999) and optimizer.param_groups[0]["eps"] == 1e-8
    _pre_step(fault, 3, optimizer=optimizer)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.5) and optimizer.param_groups[0]["eps"] == 1e-12
    optimizer.load_state_dict(saved)  # a rollback restores the old param groups …
    _pre_step(fault, 9, optimizer=optimizer)  # … and the misconfiguration comes back at the next step
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.5) and optimizer.param_groups[0]["eps"] == 1e-12
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(TypeError, match="not an Adam-type optimizer"):
        _pre_step(fault, 3, optimizer=sgd)


def test_gradient_noise_is_five_times_the_gradient_norm_and_seeded():
    import torch

    from studies.faults import GradientNoise

    def noised(seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        param, optimizer, _ = _adam(20_000)
        small = torch.nn.Parameter(torch.ones(3, 7))
        optimizer.add_param_group({"params": [small]})
        param.grad = torch.linspace(-1, 1, 20_000)
        small.grad = torch.full((3, 7), 0.01)
        clean = param.grad.clone()
        _pre_step(GradientNoise(step=4, scale=5.0, seed=seed), step, optimizer=optimizer)
        return clean, param.grad - clean

    clean, noise = noised(seed=1, step=3)
    assert noise.abs().max() == 0  # before the fault step: untouched
    clean, noise = noised(seed=1, step=4)
    assert float(noise.norm() / clean.norm()) == pytest.approx(5.0, rel=0.03)
    assert abs(float(noise.mean())) < 0.05 * float(noise.std())
    assert torch.equal(noise, noised(seed=1, step=10)[1])  # reproducible from the seed
    assert not torch.equal(noise, noised(seed=2, step=4)[1])


def test_weight_noise_perturbs_the_weights_once_right_after_the_fault_step():
    import torch

    from studies.faults import WeightNoise

    param, optimizer, _ = _adam(20_000)
    with torch.no_grad():
        param.copy_(torch.linspace(-1, 1, 20_000))
    clean = param.detach().clone()
    fault = WeightNoise(step=5, scale=0.3, seed=3)
    for step in range(1, 5):
        fault.on_optimizer_step(None, _State(step - 1), None, optimizer=optimizer)
        assert torch.equal(param.detach(), clean)
    fault.on_optimizer_step(None, _State(4), None, optimizer=optimizer)  # after optimizer step 5
    moved = param.detach() - clean
    assert float(moved.norm() / clean.norm()) == pytest.approx(0.3, rel=0.03)
    after = param.detach().clone()
    fault.on_optimizer_step(None, _State(4), None, optimizer=optimizer)  # once: a rollback does not re-arm it
    assert torch.equal(param.detach(), after)
    with pytest.raises(ValueError, match="scale > 0"):
        WeightNoise(step=5, scale=0.0, seed=0)


def test_gradient_ascent_negates_every_gradient_from_the_fault_step():
    import torch

    from studies.faults import GradientAscent

    param, optimizer, _ = _adam(4)
    fault = GradientAscent(step=3)
    param.grad = torch.tensor([1.0, -2.0, 3.0, 0.5])
    _pre_step(fault, 2, optimizer=optimizer)
    assert param.grad.tolist() == [1.0, -2.0, 3.0, 0.5]
    _pre_step(fault, 3, optimizer=optimizer)
    assert param.grad.tolist() == [-1.0, 2.0, -3.0, -0.5]
    param.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    _pre_step(fault, 50, optimizer=optimizer)  # and at every later step
    assert param.grad.tolist() == [-1.0] * 4


def test_label_noise_ramp_rises_from_zero_to_all_over_60_steps():
    from studies.faults import label_noise_ramp, swap_probability

    batch, fault, steps = 400, 5, 80
    pairs = [{"prompt": f"{i}=", "chosen": "right", "rejected": "wrong"} for i in range(steps * batch)]
    noisy = label_noise_ramp(pairs, fault, 60, batch, random.Random(0))
    assert pairs[0]["chosen"] == "right"  # the input is not modified
    share = {s: sum(r["chosen"] == "wrong" for r in noisy[(s - 1) * batch: s * batch]) / batch
             for s in range(1, steps + 1)}
    assert all(share[s] == 0 for s in range(1, fault + 1))  # nothing before, and 0 % at the fault step
    for s in range(fault + 1, fault + 60):
        assert share[s] == pytest.approx((s - fault) / 60, abs=0.1)
    assert all(share[s] == 1 for s in range(fault + 60, steps + 1))
    assert swap_probability(fault + 30, fault, 60) == 0.5
    swapped = next(r for r in noisy if r["chosen"] == "wrong")
    assert swapped["rejected"] == "right" and swapped["prompt"].endswith("=")


def test_runner_applies_the_label_noise_ramp_of_a_spec():
    from spinal_callback.demo.task import AdditionTask

    spec = RunSpec("label_noise_ramp", 330, max_steps=12, fault_step=3, label_noise_ramp=4)
    settings = StudySettings(batch_size=50)
    task = AdditionTask(seed=spec.seed)
    clean = task.preference_pairs(12 * 50)
    noisy = _training_pairs(spec, settings, task)
    assert noisy == _training_pairs(spec, settings, task)  # seeded
    swapped = [sum(n != c for n, c in zip(noisy[s * 50:(s + 1) * 50], clean[s * 50:(s + 1) * 50])) for s in range(12)]
    assert swapped[:3] == [0, 0, 0] and 0 < swapped[3] < 50 and swapped[6:] == [50] * 6


def test_short_study2_run_with_optimizer_faults(tmp_path, monkeypatch):
    """One short run on M2 (cosine schedule, rollback on) with the LR jump, the Adam fault and gradient noise from
    step 3, checked from inside the real Trainer (accelerate's optimizer wrapper included)."""
    from transformers import TrainerCallback

    from spinal_callback.demo.model import SFTSettings
    from studies import runner

    seen: dict[str, dict[int, object]] = {"betas": {}, "eps": {}, "before": {}, "after": {}}

    def norm(optimizer) -> float:
        return sum(float(p.grad.norm()) ** 2 for g in optimizer.param_groups for p in g["params"]
                   if p.grad is not None) ** 0.5

    class Before(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            seen["before"][state.global_step + 1] = norm(kwargs["optimizer"])

    class After(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            group = kwargs["optimizer"].param_groups[0]
            step = state.global_step + 1
            seen["after"][step] = norm(kwargs["optimizer"])
            seen["betas"][step], seen["eps"][step] = tuple(group["betas"]), group["eps"]

    faults = runner._fault_callbacks
    monkeypatch.setattr(runner, "_fault_callbacks", lambda spec: [Before(), *faults(spec), After()])
    spec = RunSpec("lr_jump", 0, max_steps=5, fault_step=3, model="M2", schedule="cosine", lr_jump=20.0,
                   adam_beta2=0.5, adam_eps=1e-12, grad_noise=5.0, rollback=True, part="T-faults")
    settings = StudySettings(batch_size=4, eval_problems=8, eval_pairs=4, num_probe_pairs=4)
    run_dir = run_study(spec, tmp_path / "runs", tmp_path / "cache", settings, SFTSettings(max_steps=10))
    assert run_dir.name == "lr_jump-s0-rb"
    run = load_run(run_dir)
    assert [r["step"] for r in run.logs] == [1, 2, 3, 4, 5]
    assert [e["step"] for e in run.evals] == [0, 2, 4]
    assert [s for s, _ in run.traces] == [0, 2, 4]
    lr = dict(run.series("learning_rate"))
    assert lr[3] / lr[2] > 10  # ×20 at the fault step (on a cosine schedule that has started to decay)
    assert seen["betas"][2] == (0.9, 0.999) and seen["betas"][3] == seen["betas"][5] == (0.9, 0.5)
    assert seen["eps"][2] == 1e-8 and seen["eps"][4] == 1e-12
    assert seen["after"][2] == pytest.approx(seen["before"][2])
    for step in (3, 4, 5):
        assert seen["after"][step] / seen["before"][step] == pytest.approx(26 ** 0.5, rel=0.1)  # ‖g + 5‖g‖ε‖
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["spec"] == spec.to_dict()
    assert meta["model"]["num_layers"] == 6 and meta["model"]["hidden_size"] == 128
    assert meta["on_alert"] == ["log", "rollback"] and meta["rollback"]["snapshot_interval"] == 10
    assert meta["final_step"] == 5 and "detector" in meta
    for name in ("logs.jsonl", "evals.jsonl", "spinal_trace.jsonl"):
        assert (run_dir / name).stat().st_size > 0


def test_study_script_lists_the_sets():
    import importlib.util
    from pathlib import Path

    from studies import scenarios

    path = Path(__file__).resolve().parents[2] / "scripts" / "study_early_warning.py"
    module_spec = importlib.util.spec_from_file_location("study_early_warning", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    assert script.study2_specs("test") == scenarios.test_set()
    assert script.study2_specs("rollback") == scenarios.rollback_set()
    quick = script.study2_specs("test", quick=True)
    assert {s.scenario for s in quick} == {"healthy", *scenarios.TEST_FAULTS}
    assert {s.model for s in quick} == {"M1", "M2", "M1p"} and all(s.max_steps == 30 for s in quick)
    assert all(s.fault_step is None or 1 <= s.fault_step < 30 for s in quick)
    with pytest.raises(SystemExit):
        script.main(["--set", "test", "--analyse-only", "--out", "unused"])


def test_recorder_evaluates_nothing_when_eval_every_is_0(tmp_path):
    """Study 4's fault-free runs: ``eval_every=0`` writes an empty ``evals.jsonl`` (the model is never touched)."""
    from studies import runner
    from studies.ground_truth import behavioural_onset
    from studies.replay import _jsonl

    with pytest.raises(ValueError, match="eval_every"):
        StudySettings(eval_every=-1)
    recorder = runner._recorder(tmp_path, StudySettings(eval_every=0), None, [], {})
    recorder.on_train_begin(None, _State(0), None, model=None)
    for step in range(1, 7):
        recorder.on_step_end(None, _State(step), None, model=None)
        recorder.on_log(None, _State(step), None, logs={"loss": 0.5})
    recorder.on_train_end(None, _State(6), None)
    assert (tmp_path / "evals.jsonl").read_text() == ""
    assert len((tmp_path / "logs.jsonl").read_text().splitlines()) == 6
    assert behavioural_onset(_jsonl(tmp_path / "evals.jsonl")) is None  # what scoring reads: no onset


def test_a_logging_handler_bound_to_a_runs_log_file_is_detached_when_the_run_ends(tmp_path, monkeypatch) -> None:
    import importlib.util
    import logging
    import sys
    from pathlib import Path

    import studies.runner
    from studies import scenarios

    path = Path(__file__).resolve().parents[2] / "scripts" / "study_early_warning.py"
    module_spec = importlib.util.spec_from_file_location("study_early_warning", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    handler_holder = []

    def fake_run_study(spec, out, cache, settings, sft) -> None:
        handler = logging.StreamHandler()  # binds to sys.stderr now: the run's log file
        logging.getLogger("a_library_that_logs").addHandler(handler)
        handler_holder.append(handler)
        print("trained")

    monkeypatch.setattr(studies.runner, "run_study", fake_run_study)
    spec = scenarios.run_spec("stable", 0, 4)
    try:
        script._train((spec, str(tmp_path), str(tmp_path), 1, None))
        handler = handler_holder[0]
        assert (tmp_path / f"{spec.name}.log").read_text() == "trained\n"
        assert handler.stream is sys.stderr and not handler.stream.closed
        logging.getLogger("a_library_that_logs").warning("the next run logs: no error about a closed file")
    finally:
        logging.getLogger("a_library_that_logs").handlers.clear()
