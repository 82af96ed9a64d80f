"""SpinalTrainerCallback inside TRL's DPOTrainer: schedule, TensorBoard tags, trace file, resume."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from spinal_callback import SpinalConfig, SpinalTrainerCallback, UnsupportedArchitectureError
from spinal_callback.config.detector import DEFAULT_SIGNALS
from spinal_callback.integrations.transformers import sparse_logging_advice

from .helpers import all_finite, images, pairs, scalars, tiny_llama, tokenizer


def _trainer(tmp_path: Path, callback: SpinalTrainerCallback, *, max_steps: int = 6, peft: bool = False,
             report_to: list[str] | None = None, **args: object) -> DPOTrainer:
    tok = tokenizer()
    model = tiny_llama(len(tok))
    ref = None if peft else copy.deepcopy(model).eval().requires_grad_(False)
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args.setdefault("save_strategy", "no")
    args.setdefault("logging_steps", 1)
    config = DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4,
        learning_rate=1e-3, report_to=report_to if report_to is not None else ["tensorboard"],
        use_cpu=True, max_length=32, **args,  # type: ignore[arg-type]
    )
    return DPOTrainer(
        model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(pairs()),
        processing_class=tok, callbacks=[callback], peft_config=peft_config,
    )


#: The default detector signals plus the late-band transport whose history the resume test follows.
WATCH = {"signals": {**DEFAULT_SIGNALS, "band/late/transport": "both"}}


def _trace_records(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_dpo_run_logs_traces_at_the_scheduled_steps(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, trace_interval=0, num_probe_pairs=4))  # full traces
    trainer = _trainer(tmp_path, callback, max_steps=5)
    # TRL's default: recomputation must not disturb the probe (transformers 5 names the flag activation_checkpointing,
    # the old name goes in v6; 4.x has only gradient_checkpointing)
    flag = "activation_checkpointing" if hasattr(trainer.args, "activation_checkpointing") else "gradient_checkpointing"
    assert getattr(trainer.args, flag)
    trainer.train()

    hf_dirs = [d for d in (tmp_path / "out" / "runs").iterdir()]
    assert [Path(callback.log_dir)] == hf_dirs  # same run directory as HF's TensorBoardCallback
    everything = _trace_records(callback.trace_path)
    records = [r for r in everything if r["type"] == "trace"]
    assert [r["step"] for r in records] == [0, 2, 4]
    # the logs at the steps between (TRL logs every step here) were observations of their own (read_every_log)
    assert [(r["type"], r["step"], r["signals"]) for r in everything if r["type"] != "trace"] == [
        ("signals", 1, {}), ("signals", 3, {}), ("signals", 5, {})]
    assert len(records[0]["layers"]) == 6
    tags = scalars(callback.log_dir)
    for tag in ("spinal/contraction/L1", "spinal/transport/L5", "spinal/entropy/L6",
                "spinal/band/late/transport", "spinal/band/early/contraction", "train/loss"):
        assert tag in tags, tag
    assert [s for s, _ in tags["spinal/contraction/L1"]] == [0, 2, 4]
    assert all_finite(tags["spinal/band/late/transport"])
    assert "spinal/heatmap/contraction" in images(callback.log_dir)
    # the policy moved, so the geometry moved
    first, last = records[0]["layers"][-1], records[-1]["layers"][-1]
    assert first["entropy"] != last["entropy"]


def test_without_tensorboard_reporting_uses_own_directory(tmp_path: Path) -> None:
    log_dir = tmp_path / "spinal_tb"
    callback = SpinalTrainerCallback(SpinalConfig(interval=3, num_probe_pairs=2, log_dir=str(log_dir)))
    _trainer(tmp_path, callback, max_steps=3, report_to=[]).train()
    assert Path(callback.log_dir) == log_dir
    assert "spinal/transport/L1" in scalars(log_dir)
    assert not (tmp_path / "out" / "runs").exists()


def test_peft_policy_is_monitored_through_the_wrapper(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2))
    trainer = _trainer(tmp_path, callback, max_steps=2, peft=True)
    trainer.train()
    assert type(trainer.model).__name__.startswith("Peft")
    assert [r["step"] for r in _trace_records(callback.trace_path) if r["type"] == "trace"] == [0, 2]


def test_explicit_probe_pairs_are_tokenized_with_the_processing_class(tmp_path: Path) -> None:
    probe = [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}]
    callback = SpinalTrainerCallback(SpinalConfig(interval=10, probe_pairs=probe, max_tokens=4))
    _trainer(tmp_path, callback, max_steps=1).train()
    batch = callback.monitor.probe_batch
    assert batch is not None and batch["input_ids"].shape[0] == 2
    assert int(batch["completion_mask"].sum()) == 4  # "4<eos>" and "5<eos>"
    assert _trace_records(callback.trace_path)[0]["num_tokens"] == 4


def test_unsupported_model_fails_before_the_first_step(tmp_path: Path) -> None:
    from spinal_callback.model import architectures

    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2))
    trainer = _trainer(tmp_path, callback, max_steps=2)
    saved = architectures._REGISTRY.pop("llama")
    trainer.model.config.num_hidden_layers = 99  # discovery finds no block list of that length: ambiguous
    try:
        with pytest.raises(UnsupportedArchitectureError, match=r"LlamaForCausalLM.*register_architecture"):
            trainer.train()
    finally:
        architectures._REGISTRY["llama"] = saved
    assert trainer.state.global_step == 0


def test_failing_probe_warns_and_training_goes_on(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2))
    trainer = _trainer(tmp_path, callback, max_steps=3)
    original = callback.monitor._measure
    calls = {"n": 0}

    def flaky(policy: torch.nn.Module):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("simulated out of memory")
        return original(policy)

    callback.monitor._measure = flaky  # type: ignore[method-assign]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 3
    assert any("probe at step 1 failed" in str(w.message) for w in caught)
    assert callback.monitor.failures == 1
    records = _trace_records(callback.trace_path)
    assert [(r["type"], r["step"]) for r in records] == [("trace", 0), ("signals", 1), ("trace", 2), ("trace", 3)]
    assert "update/size" in records[1]["signals"]  # the failed probe's step still records what the detector read
    assert scalars(callback.log_dir)["spinal/probe/failures"][-1][1] == 1.0


def test_strict_mode_raises(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=1, num_probe_pairs=2, strict=True))
    trainer = _trainer(tmp_path, callback, max_steps=2)

    def broken(policy: torch.nn.Module):
        raise RuntimeError("boom")

    callback.monitor._measure = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()


def test_state_round_trips_through_trainer_state_json(tmp_path: Path) -> None:
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2, detector=WATCH))
    callback.monitor.guard.alerts_total = 7  # stands for alerts raised earlier in the run
    trainer = _trainer(tmp_path, callback, max_steps=4, save_strategy="steps", save_steps=4)
    trainer.train()
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    saved = state["stateful_callbacks"]["SpinalTrainerCallback"]
    assert saved["attributes"]["_restored_state"]["last_probe_step"] == 4
    assert saved["attributes"]["_restored_state"]["probes_done"] == 3
    rebuilt = SpinalTrainerCallback(**saved["args"])
    assert rebuilt.config == SpinalConfig(interval=2, num_probe_pairs=2, detector=WATCH)
    detector_state = saved["attributes"]["_restored_state"]["guard"]["detector"]
    assert detector_state == callback.monitor.guard.detector.state_dict()

    # resume to step 6: the callback picks its counters up and does not re-probe step 4
    resumed_cb = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=2, detector=WATCH))
    resumed = _trainer(tmp_path / "resumed", resumed_cb, max_steps=6)  # own run dir, whatever the clock says
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert resumed_cb.monitor.probes_done == 4
    assert resumed_cb.monitor.guard.alerts_total == 7
    # the detector's baseline carried over: the 3 observations before the checkpoint plus step 6
    signals = resumed_cb.monitor.guard.detector.state_dict()["signals"]
    assert [s for s, _ in signals["band/late/transport"]["history"]] == [0, 2, 4, 6]
    steps = [(r["type"], r["step"]) for r in _trace_records(resumed_cb.trace_path)]
    assert steps == [("signals", 5), ("trace", 6)]  # step 5's log, read on its own (read_every_log), then the probe


def test_bf16_policy_is_monitored(tmp_path: Path) -> None:
    tok = tokenizer()
    model = tiny_llama(len(tok)).to(torch.bfloat16)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, trace_interval=0, num_probe_pairs=4))  # full traces
    config = DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to=[], bf16=True, use_cpu=True, max_length=32, save_strategy="no",
    )
    DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(pairs()),
               processing_class=tok, callbacks=[callback]).train()
    records = [r for r in _trace_records(callback.trace_path) if r["type"] == "trace"]
    assert [r["step"] for r in records] == [0, 2]
    for row in records[-1]["layers"]:
        assert row["contraction"] is not None and row["entropy"] is not None  # spectra in float64, lens in float32


def test_a_reading_at_a_logging_step_sees_that_steps_metrics(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # HF calls on_step_end before it logs the step: the callback holds such a reading for the log, so that the
    # detector reads the metrics of the step it reads (a data fault shows at its own step, not one later)
    for every_log in (True, False):
        callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=4, read_every_log=every_log))
        trainer = _trainer(tmp_path / str(every_log), callback, max_steps=6, logging_steps=3)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="spinal_callback"):
            trainer.train()
        advice = [r.getMessage() for r in caplog.records if "logging_steps=3" in r.getMessage()]
        # once, at the start: the detector counts TRL's metrics in logs
        assert len(advice) == 1 and "after 25 logs (step 75 from the start" in advice[0]
        losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
        assert sorted(losses) == [3, 6]
        fed = {(r["type"], r["step"]): r.get("metrics", {}) for r in _trace_records(callback.trace_path)
               if r["type"] in ("trace", "signals")}
        assert "loss" not in fed["trace", 2]
        assert fed["trace", 6]["loss"] == pytest.approx(losses[6])  # logged at a reading step: with that reading
        if every_log:  # logged at a step off the schedule: read on its own, at that step
            assert sorted(fed, key=lambda key: key[1]) == [("trace", 0), ("trace", 2), ("signals", 3), ("trace", 4),
                                                           ("trace", 6)]
            assert fed["signals", 3]["loss"] == pytest.approx(losses[3]) and "loss" not in fed["trace", 4]
        else:  # as up to study 14: at the next reading
            assert sorted(fed, key=lambda key: key[1]) == [("trace", 0), ("trace", 2), ("trace", 4), ("trace", 6)]
            assert fed["trace", 4]["loss"] == pytest.approx(losses[3])


def test_read_every_log_feeds_every_logged_value_at_its_step(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # TRL logs every step, the callback reads every 2: with read_every_log the logs in between are observations of
    # their own (metrics only), so the detector sees every logged value, each at the step it was logged
    callback = SpinalTrainerCallback(SpinalConfig(interval=2, num_probe_pairs=4, read_every_log=True))
    trainer = _trainer(tmp_path, callback, max_steps=5)
    with caplog.at_level(logging.WARNING, logger="spinal_callback"):
        trainer.train()
    assert not [r for r in caplog.records if "logging_steps" in r.getMessage()]  # a log every step: nothing to say
    logged = {entry["step"]: entry["logps/chosen"] for entry in trainer.state.log_history if "logps/chosen" in entry}
    assert sorted(logged) == [1, 2, 3, 4, 5]
    records = [r for r in _trace_records(callback.trace_path) if r["type"] in ("trace", "signals")]
    fed = {r["step"]: r.get("metrics", {}).get("logps/chosen") for r in records}
    assert sorted(fed) == [0, 1, 2, 3, 4, 5]
    assert all(fed[step] == pytest.approx(value) for step, value in logged.items())
    assert [r["step"] for r in records if r["type"] == "signals" and not r["signals"]] == [1, 3, 5]
    history = callback.monitor.guard.detector.state_dict()["signals"]["logps/chosen"]["history"]
    assert [step for step, _ in history] == [1, 2, 3, 4, 5]


def test_sparse_logging_advice_names_what_logging_every_n_steps_costs() -> None:
    advice = sparse_logging_advice(10, SpinalConfig())
    assert advice is not None and "logging_steps=10" in advice and "after 25 logs (step 250 from the start" in advice
    assert "rewards/chosen, rewards/accuracies, rewards/margins, logps/chosen" in advice and "logging_steps=1" in advice
    glob = sparse_logging_advice(5, SpinalConfig(detector={"signals": {"logps/*": "both"}, "warmup": 9}))
    assert glob is not None and "(logps/chosen, logps/rejected)" in glob
    assert "after 10 logs (step 50 from the start" in glob
    demo = sparse_logging_advice(5, SpinalConfig(), first_step=True)  # the demo logs step 1, then every 5
    assert demo is not None and "(step 120 from the start" in demo
    assert sparse_logging_advice(1, SpinalConfig()) is None  # every step: what the studies measured
    assert sparse_logging_advice(10.0, SpinalConfig()) == advice  # TrainingArguments' float type
    assert sparse_logging_advice(0.1, SpinalConfig()) is None  # a fraction of the run: not a step count
    assert sparse_logging_advice(None, SpinalConfig()) is None
    no_metrics = SpinalConfig(detector={"signals": {"band/late/transport": "both"}})
    assert sparse_logging_advice(10, no_metrics) is None  # the detector watches none of the trainer's metrics
