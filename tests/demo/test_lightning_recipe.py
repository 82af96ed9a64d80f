"""The Lightning recipe end to end (``--no-spinal``) and its sigmoid-DPO LightningModule."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("lightning")

from spinal_callback.demo.lightning_module import DPOLightningModule, sequence_logps
from spinal_callback.demo.lightning_recipe import main, preference_records
from spinal_callback.demo.model import build_model, demo_config
from spinal_callback.demo.task import AdditionTask, build_tokenizer
from spinal_callback.model.probe_batch import collate_pairs

from ._events import scalars, summary


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_default_task_runs_and_logs_through_the_tensorboard_logger(tiny_flags, tmp_path, capsys) -> None:
    assert main([*tiny_flags, "--no-spinal", "--log-every-n-steps", "1"]) == 0
    assert "greedy accuracy after DPO" in capsys.readouterr().out
    log_dir = tmp_path / "run" / "lightning" / "version_0"
    tags = scalars(log_dir)
    for tag in ("train/loss", "rewards/accuracies", "rewards/margins", "logps/chosen"):
        assert len(tags[tag]) == 4 and all(math.isfinite(v) for _, v in tags[tag]), tag
    result = summary(tmp_path / "run")
    assert result["log_dir"] == str(log_dir) and result["trace_path"] is None
    assert result["dpo"]["train/loss"]["start"] == pytest.approx(math.log(2), abs=1e-4)


def test_model_path_and_jsonl_dataset(tiny_flags, tmp_path, tok) -> None:
    model = build_model(demo_config(len(tok), num_layers=3, hidden_size=32), seed=0)
    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    tok.save_pretrained(checkpoint)
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in AdditionTask(seed=5).preference_pairs(24)))
    assert main([*tiny_flags, "--no-spinal", "--model", str(checkpoint), "--dataset", str(data)]) == 0
    result = summary(tmp_path / "run")
    assert result["sft"] is None and result["accuracy_after_dpo"] is None
    assert result["dpo"]["rewards/accuracies"] is not None


def test_gradient_checkpointing_flag(tiny_flags, tmp_path) -> None:
    assert main([*tiny_flags, "--no-spinal", "--gradient-checkpointing", "--log-every-n-steps", "1"]) == 0
    assert "train/loss" in scalars(tmp_path / "run" / "lightning")


def test_conversational_rows_are_refused_with_a_message(tiny_flags, tmp_path, capsys) -> None:
    data = tmp_path / "chat.jsonl"
    row = {"prompt": [{"role": "user", "content": "1+1="}], "chosen": [{"role": "assistant", "content": "2"}],
           "rejected": [{"role": "assistant", "content": "3"}]}
    data.write_text(json.dumps(row) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main([*tiny_flags, "--no-spinal", "--dataset", str(data)])
    assert exit_.value.code == 2 and "not text" in capsys.readouterr().err


def test_preference_records_match_trl_tokenization(tok) -> None:
    pairs = AdditionTask(seed=0).preference_pairs(3)
    records = preference_records(pairs, tok)
    for pair, record in zip(pairs, records):
        assert record["prompt"] == pair["prompt"]
        assert record["prompt_ids"] == tok(pair["prompt"])["input_ids"]
        assert record["chosen_ids"] == tok(pair["chosen"], add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]


def test_dpo_module_starts_at_log2_and_keeps_the_reference_frozen(tok) -> None:
    policy = build_model(demo_config(len(tok), num_layers=2, hidden_size=32), seed=0)
    module = DPOLightningModule(policy, tok, beta=0.1, learning_rate=1e-3)
    batch = collate_pairs(preference_records(AdditionTask(seed=0).preference_pairs(4), tok), tok.pad_token_id)
    loss, metrics = module.dpo_loss(batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6) and metrics["rewards/margins"].item() == 0.0
    module.train()
    assert module.policy.training and not module.reference.training
    assert not any(p.requires_grad for p in module.reference.parameters())
    loss.backward()
    assert all(p.grad is None for p in module.reference.parameters())


def test_sequence_logps_sum_over_completion_tokens_only(tok) -> None:
    policy = build_model(demo_config(len(tok), num_layers=2, hidden_size=32), seed=0).eval()
    batch = collate_pairs(preference_records(AdditionTask(seed=0).preference_pairs(2), tok), tok.pad_token_id)
    logps = sequence_logps(policy, batch)
    with torch.no_grad():
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = []
    for row in range(batch["input_ids"].shape[0]):
        total = 0.0
        for t in range(1, batch["input_ids"].shape[1]):
            if batch["completion_mask"][row, t]:
                total += logits[row, t - 1].log_softmax(-1)[batch["input_ids"][row, t]].item()
        expected.append(total)
    assert logps.tolist() == pytest.approx(expected, abs=1e-4)


def test_bad_module_arguments(tok) -> None:
    policy = build_model(demo_config(len(tok), num_layers=2, hidden_size=32), seed=0)
    with pytest.raises(ValueError, match="beta"):
        DPOLightningModule(policy, tok, beta=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        DPOLightningModule(policy, tok, learning_rate=-1.0)
