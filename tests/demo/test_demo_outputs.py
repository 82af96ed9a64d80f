"""What ``spinal demo`` leaves to audit: the saved DPO policy, the SFT model's path, the audit command that works
on both, the alerts and rollbacks in its summary, and progress bars that say what they count."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

pytest.importorskip("trl")

import torch

from spinal_callback.demo.model import SFTSettings, build_model, demo_config, supervised_pretrain
from spinal_callback.demo.summary import write_summary
from spinal_callback.demo.task import AdditionTask, build_tokenizer
from spinal_callback.tools.cli import main

from ._events import summary


def test_demo_saves_the_policy_and_spinal_audit_runs_on_sft_and_dpo(tiny_flags, tmp_path, capsys) -> None:
    from transformers import AutoModelForCausalLM

    assert main(["demo", *tiny_flags, "--interval", "2", "--num-probe-pairs", "4"]) == 0
    out = capsys.readouterr().out
    result = summary(tmp_path / "run")
    sft, policy = Path(result["sft_model"]), Path(result["dpo_policy"])
    assert policy == (tmp_path / "run" / "dpo_policy").resolve()
    assert f"SFT model (start of DPO): {sft}" in out and f"DPO policy (end of DPO):  {policy}" in out
    assert "spinal alerts: 0, rollbacks: 0" in out and result["alerts"] == result["rollbacks"] == []
    assert result["audit_command"] in out

    before = AutoModelForCausalLM.from_pretrained(sft)
    after = AutoModelForCausalLM.from_pretrained(policy)  # reloads, with its tokenizer next to it
    assert (policy / "tokenizer.json").is_file() or (policy / "tokenizer_config.json").is_file()
    assert type(after) is type(before) and after.config.num_hidden_layers == before.config.num_hidden_layers
    changed = [
        name
        for (name, a), (_, b) in zip(before.named_parameters(), after.named_parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    assert changed  # four DPO steps moved the weights

    command = shlex.split(result["audit_command"])
    assert command[:2] == ["spinal", "audit"] and command[2:4] == [str(sft), str(policy)]
    capsys.readouterr()
    assert main([*command[1:], "--num-probe-pairs", "4", "--no-progress"]) == 0
    audit = json.loads((tmp_path / "run" / "audit" / "audit.json").read_text())
    assert [entry["label"] for entry in audit["checkpoints"]] == ["SFT", "DPO"]
    assert [entry["kind"] for entry in audit["checkpoints"]] == ["hf", "hf"]


def test_summary_lists_alerts_and_rollbacks(tmp_path, capsys) -> None:
    trace = tmp_path / "spinal_trace.jsonl"
    records = [
        {"type": "trace", "step": 0, "layers": []},
        {"type": "alert", "step": 62, "reason": "trend_break", "signal": "pairs/margin", "message": "margin jumped"},
        {"type": "rollback", "step": 64, "to_step": 40, "message": "rolled back from step 64 to step 40"},
    ]
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    inputs = type("Inputs", (), {"sft": None})()
    result = write_summary(
        "t",
        inputs,
        0.5,
        0.6,
        {},
        None,
        str(trace),
        str(tmp_path),
        1.0,  # type: ignore[arg-type]
        sft_model="sft",
        policy_path="dpo",
    )
    out = capsys.readouterr().out
    assert "spinal alerts: 1, rollbacks: 1:" in out
    assert "step 62: alert (trend_break on pairs/margin) — margin jumped" in out
    assert "step 64: rollback to step 40 — rolled back from step 64 to step 40" in out
    assert f"spinal audit sft dpo --labels SFT,DPO --out {tmp_path / 'audit'}" in out
    assert [a["step"] for a in result["alerts"]] == [62] and [r["step"] for r in result["rollbacks"]] == [64]


def test_sft_progress_bar_ends_full_when_the_target_is_reached(capsys) -> None:
    pytest.importorskip("tqdm")
    tokenizer = build_tokenizer()
    model = build_model(demo_config(len(tokenizer), num_layers=2, hidden_size=32), seed=0)
    settings = SFTSettings(max_steps=100, batch_size=4, warmup_steps=1, check_every=3, target_accuracy=0.0)
    steps = supervised_pretrain(model, tokenizer, AdditionTask(seed=0), settings, progress=True)
    assert steps == 3
    err = capsys.readouterr().err
    assert "SFT steps (ends early at 0% val. accuracy)" in err  # says what it counts and when it stops
    assert "3/3" in err and "val. accuracy reached" in err and "3/100" not in err.rsplit("\r", 1)[-1]
