"""The TRL recipe end to end, without the spinal callback (``--no-spinal``), on tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from spinal_callback.demo.model import build_model, demo_config
from spinal_callback.demo.task import AdditionTask, build_tokenizer
from spinal_callback.demo.trl_recipe import main

from ._events import scalars, summary


def _hf_run_dir(output_dir: Path) -> Path:
    runs = sorted((output_dir / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_default_task_runs_and_writes_hf_tensorboard_events(tiny_flags, tmp_path, capsys) -> None:
    assert main([*tiny_flags, "--no-spinal", "--logging-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "greedy accuracy after DPO" in out and "tensorboard --logdir" in out
    run = _hf_run_dir(tmp_path / "run")
    tags = scalars(run)
    for tag in ("train/loss", "train/rewards/accuracies", "train/rewards/margins"):
        assert [step for step, _ in tags[tag]] == [1, 2, 3, 4], tag
    result = summary(tmp_path / "run")
    assert result["log_dir"] == str(run) and result["trace_path"] is None
    assert result["sft"]["steps"] == 30 and 0.0 <= result["accuracy_after_dpo"] <= 1.0
    assert result["dpo"]["rewards/accuracies"]["start"] == 0.0  # policy == reference at the first log
    assert not any(p.name.startswith("spinal") for p in run.iterdir())


def test_model_path_with_a_locally_saved_checkpoint(tiny_flags, tmp_path) -> None:
    tok = build_tokenizer()
    model = build_model(demo_config(len(tok), num_layers=3, hidden_size=32), seed=0)
    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    tok.save_pretrained(checkpoint)
    assert main([*tiny_flags, "--no-spinal", "--model", str(checkpoint)]) == 0
    result = summary(tmp_path / "run")
    assert result["sft"] is None  # a given model is not pre-trained again
    assert result["accuracy_before_dpo"] is not None and scalars(_hf_run_dir(tmp_path / "run"))


def test_dataset_from_a_local_jsonl_file(tiny_flags, tmp_path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in AdditionTask(seed=5).preference_pairs(24)))
    assert main([*tiny_flags, "--no-spinal", "--dataset", str(path)]) == 0
    result = summary(tmp_path / "run")
    assert result["accuracy_before_dpo"] is None  # only defined for the built-in task
    assert result["dpo"]["loss"] is not None


def test_dataset_missing_columns_is_a_clear_error(tiny_flags, tmp_path, capsys) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "1+1=", "chosen": "2"}) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main([*tiny_flags, "--no-spinal", "--dataset", str(path)])
    assert exit_.value.code == 2
    assert "missing the column(s) prompt, rejected" in capsys.readouterr().err


def test_peft_runs_with_the_adapter_disabled_reference(tiny_flags, tmp_path) -> None:
    pytest.importorskip("peft")
    assert main([*tiny_flags, "--no-spinal", "--peft", "--lora-r", "4"]) == 0
    assert "train/rewards/accuracies" in scalars(_hf_run_dir(tmp_path / "run"))


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-steps", "0"), ("--interval", "0"), ("--sft-target", "2"), ("--lora-r", "0"), ("--signal-interval", "0"),
     ("--signal-interval", "3")],  # 3 does not divide the default --interval 10
)
def test_bad_flags_exit_with_status_2(tiny_flags, flag, value, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*tiny_flags, "--no-spinal", flag, value])
    assert exit_.value.code == 2 and flag in capsys.readouterr().err


def test_bf16_on_cpu(tiny_flags, tmp_path) -> None:
    assert main([*tiny_flags, "--no-spinal", "--bf16", "--logging-steps", "1"]) == 0
    assert "train/loss" in scalars(_hf_run_dir(tmp_path / "run"))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [(["--on-alert", "explode"], "got 'explode'"), (["--lr-spike", "sixty"], "STEP:FACTOR"),
     (["--lr-spike", "0:30"], "STEP >= 1")],
)
def test_bad_early_warning_flags_exit_with_status_2(tiny_flags, flags, needle, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*tiny_flags, *flags])
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
