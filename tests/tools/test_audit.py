"""``spinal audit``: every checkpoint kind loaded, measured exactly like ``compute_depth_trace``, and refused
clearly when it cannot be."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from spinal_callback.geometry import LAYER_METRICS, DepthTrace, compute_depth_trace
from spinal_callback.model.probe_batch import collate_pairs, tokenize_pairs
from spinal_callback.tools.audit import AuditInputError, audit_checkpoints, default_labels, default_probe_pairs
from spinal_callback.tools.checkpoints import (
    CheckpointLoadError,
    UnsafeCheckpointWarning,
    resolve_checkpoint,
    resolve_prefix,
)
from spinal_callback.tools.cli import main
from tests.conftest import tiny_causal_lm

pytest.importorskip("peft")
pytest.importorskip("lightning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _save_lightning_checkpoint(module, path: Path) -> None:
    """What ``ModelCheckpoint`` writes: a real ``Trainer.save_checkpoint`` of ``module``."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny checkpoints of every kind, the in-memory models they hold, and the probe batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from spinal_callback.demo.lightning_module import DPOLightningModule
    from spinal_callback.demo.task import build_tokenizer

    root = tmp_path_factory.mktemp("audit")
    tokenizer = build_tokenizer()
    models = {"base": tiny_causal_lm(num_layers=4, seed=0), "deep": tiny_causal_lm(num_layers=6, seed=1)}
    models["base"].save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    models["deep"].save_pretrained(root / "deep")  # no tokenizer of its own

    torch.manual_seed(3)
    lora_config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    models["lora"] = get_peft_model(AutoModelForCausalLM.from_pretrained(root / "base"), lora_config)
    models["lora"].save_pretrained(root / "lora")  # adapter_config names root/base as its base

    models["policy"], models["reference"] = tiny_causal_lm(num_layers=4, seed=2), tiny_causal_lm(num_layers=4, seed=4)
    module = DPOLightningModule(models["policy"], tokenizer, reference=models["reference"])
    _save_lightning_checkpoint(module, root / "epoch=0-step=3.ckpt")

    tiny_causal_lm(num_layers=4, seed=5, vocab_size=112).save_pretrained(root / "small_vocab")
    (root / "empty").mkdir()

    pairs = default_probe_pairs(16, seed=0)
    batch = collate_pairs(tokenize_pairs(pairs, tokenizer), pad_token_id=tokenizer.pad_token_id, max_length=256)
    paths = {name: str(root / name) for name in ("base", "deep", "lora", "small_vocab", "empty")}
    paths["ckpt"] = str(root / "epoch=0-step=3.ckpt")
    return {"root": root, "paths": paths, "models": models, "batch": batch, "tokenizer": tokenizer}


def expected_trace(model, batch) -> DepthTrace:
    """``compute_depth_trace`` run directly, with ``SpinalConfig``'s defaults."""
    return compute_depth_trace(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], max_tokens=512, seed=0
    )


def max_difference(a: DepthTrace, b: DepthTrace) -> float:
    """Largest absolute difference over every layer metric (NaN must sit in the same places)."""
    assert a.layers == b.layers
    worst = 0.0
    for metric in LAYER_METRICS:
        for x, y in zip(a.metric(metric), b.metric(metric)):
            assert math.isnan(x) == math.isnan(y), (metric, x, y)
            if not math.isnan(x):
                worst = max(worst, abs(x - y))
    return worst


@pytest.fixture(scope="module")
def cli_run(saved, tmp_path_factory):
    """One ``spinal audit`` over every kind: an HF dir, a deeper HF dir, a PEFT adapter and a Lightning file."""
    out = tmp_path_factory.mktemp("audit_out") / "report"
    p = saved["paths"]
    argv = ["audit", p["base"], p["deep"], p["lora"], p["ckpt"], "--base", p["base"], "--out", str(out),
            "--no-progress"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    report = json.loads((out / "audit.json").read_text())
    traces = {entry["label"]: DepthTrace.from_dict(entry["trace"]) for entry in report["checkpoints"]}
    return {"status": status, "out": out, "report": report, "traces": traces, "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue()}


def test_cli_writes_json_plots_and_table(cli_run) -> None:
    assert cli_run["status"] == 0, cli_run["stderr"]
    report = cli_run["report"]
    entries = report["checkpoints"]
    assert [e["label"] for e in entries] == ["base", "deep", "lora", "epoch=0-step=3"]
    assert [e["kind"] for e in entries] == ["hf", "hf", "peft", "lightning"]
    assert [e["num_layers"] for e in entries] == [4, 6, 4, 4]
    assert entries[3]["prefix"] == "policy." and "'reference.'" in entries[3]["notes"][0]
    assert set(entries[0]["trace"]) == {"layers", "bands", "num_tokens"}
    assert set(entries[0]["trace"]["layers"][0]) == {"layer", *LAYER_METRICS}
    assert set(entries[0]["trace"]["bands"]) == {"early", "mid", "late"}
    assert report["probe_set"]["num_pairs"] == 16 and report["probe_set"]["num_sequences"] == 32
    assert report["probe_set"]["tokenizer"].endswith("base")
    assert report["settings"]["max_tokens"] == 512 and report["settings"]["dtype"] == "float32"
    for name in ("depth_traces.png", "bands.png"):
        data = (cli_run["out"] / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    table = cli_run["stdout"]
    for label in ("base", "deep", "lora", "epoch=0-step=3"):
        assert sum(line.startswith(label + " ") for line in table.splitlines()) == 3, label
    assert "κ^𝓛" in table and str(cli_run["out"] / "audit.json") in table
    assert "epoch=0-step=3: weights under the key prefix 'policy.'" in cli_run["stderr"]


def test_hf_traces_equal_compute_depth_trace(saved, cli_run) -> None:
    for name in ("base", "deep"):
        assert max_difference(cli_run["traces"][name], expected_trace(saved["models"][name], saved["batch"])) < 1e-6


def test_peft_trace_differs_from_base_and_equals_merged_model(saved, cli_run) -> None:
    lora, base = cli_run["traces"]["lora"], cli_run["traces"]["base"]
    assert max_difference(lora, expected_trace(saved["models"]["lora"], saved["batch"])) < 1e-6
    assert max_difference(lora, base) > 1e-3
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(saved["paths"]["base"]), saved["paths"]["lora"]
    ).merge_and_unload()
    assert max_difference(lora, expected_trace(merged, saved["batch"])) < 1e-5


def test_lightning_trace_is_the_policy_and_prefix_selects_the_reference(saved, cli_run) -> None:
    policy = cli_run["traces"]["epoch=0-step=3"]
    assert max_difference(policy, expected_trace(saved["models"]["policy"], saved["batch"])) < 1e-6
    reference = audit_checkpoints([saved["paths"]["ckpt"]], base=saved["paths"]["base"], prefix="reference.")
    assert reference.entries[0].prefix == "reference."
    expected = expected_trace(saved["models"]["reference"], saved["batch"])
    assert max_difference(reference.entries[0].trace, expected) < 1e-6


def test_bare_state_dict_with_hyper_parameters_loads_without_running_code(saved, tmp_path) -> None:
    """A Namespace of hyper-parameters is on the allow-list: the file loads with weights_only=True, no fallback."""
    model = saved["models"]["policy"]
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeCheckpointWarning)
        result = audit_checkpoints([path], base=saved["paths"]["base"], labels=["plain"])
    entry = result.entries[0]
    assert entry.prefix == "model." and not any("weights_only" in note for note in entry.notes)
    assert max_difference(entry.trace, expected_trace(model, saved["batch"])) < 1e-6


def test_probe_pairs_file_labels_and_count(saved, tmp_path) -> None:
    pairs = [{"prompt": f"{a}+1=", "chosen": str(a + 1), "rejected": str(a + 2), "id": a} for a in range(5)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    result = audit_checkpoints([saved["paths"]["base"]], probe_pairs=path, num_probe_pairs=3, labels=["mine"])
    assert result.probe_set["source"] == str(path) and result.probe_set["num_pairs"] == 3
    assert result.probe_set["pairs"][0] == {"prompt": "0+1=", "chosen": "1", "rejected": "2"}
    batch = collate_pairs(tokenize_pairs(pairs[:3], saved["tokenizer"]), pad_token_id=0, max_length=256)
    assert max_difference(result.entries[0].trace, expected_trace(saved["models"]["base"], batch)) < 1e-6
    assert result.entries[0].label == "mine" and "mine" in result.band_table()


def test_default_labels_are_short_and_unique() -> None:
    paths = ["/a/run1/checkpoint-10", "/a/run2/checkpoint-10", "/x/epoch=0-step=5.ckpt", "org/model"]
    assert default_labels(paths) == ["run1/checkpoint-10", "run2/checkpoint-10", "epoch=0-step=5", "model"]
    assert default_labels(["/a/b", "/a/b"]) == ["a/b#1", "a/b#2"]


def test_resolve_prefix() -> None:
    model = ["model.layers.0.w", "lm_head.weight"]
    demo = [f"{p}.{k}" for p in ("policy", "reference") for k in model]
    assert resolve_prefix(demo, model) == "policy."
    assert resolve_prefix(model, model) == ""
    assert resolve_prefix(demo, model, "reference.") == "reference."
    with pytest.raises(CheckpointLoadError, match=r"Several key prefixes .*'student\.', 'teacher\.'"):
        resolve_prefix([f"{p}.{k}" for p in ("student", "teacher") for k in model], model)
    with pytest.raises(CheckpointLoadError, match=r"No key prefix .*'policy\.' \(1/2\)"):
        resolve_prefix(["policy.lm_head.weight"], model)


def test_adapter_without_base_needs_base(tmp_path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match=r"names no base_model_name_or_path.*--base"):
        resolve_checkpoint(str(tmp_path))
    assert resolve_checkpoint("org/some-model").kind == "hub"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["{root}/absent"], 2, "No such file or directory: '{root}/absent'"),
        (["{paths[empty]}"], 2, "'{paths[empty]}' is a directory without config.json"),
        (["{paths[ckpt]}"], 2, "give --base"),
        (["{paths[deep]}"], 2, "No tokenizer found in '{paths[deep]}': give one with --tokenizer"),
        (["{paths[base]}", "--labels", "a,b"], 2, "2 labels given for 1 checkpoints"),
        (["{paths[base]}", "--probe-pairs", "{root}/nope.json"], 2, "Cannot read the probe pairs '{root}/nope.json'"),
        (["{paths[base]}", "--max-tokens", "0"], 2, "argument --max-tokens: must be a positive integer"),
        (["{paths[ckpt]}", "--base", "{paths[base]}", "--prefix", "policy_model."], 1,
         "--prefix 'policy_model.' misses"),
        (["{paths[ckpt]}", "--base", "{paths[deep]}", "--tokenizer", "{paths[base]}"], 1,
         "No key prefix of the checkpoint holds all"),
        (["{paths[base]}", "{paths[small_vocab]}"], 1, "do not share the vocabulary"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(saved, capsys, args, status, message) -> None:
    fields = {"root": saved["root"], "paths": saved["paths"]}
    out = saved["root"] / "should_not_exist"
    assert main(["audit", *(a.format(**fields) for a in args), "--out", str(out), "--no-progress"]) == status
    err = capsys.readouterr().err
    assert message.format(**fields) in err
    assert err.startswith("usage: spinal audit") == (status == 2)
    assert not out.exists()


def test_wrong_prefix_lists_the_candidates(saved, capsys) -> None:
    p = saved["paths"]
    assert main(["audit", p["ckpt"], "--base", p["base"], "--prefix", "net.", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "'policy.' (39/39)" in err and "'reference.' (39/39)" in err and p["ckpt"] in err


def test_probe_pairs_must_be_well_formed(saved, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "1+1=", "chosen": "2"}]))
    with pytest.raises(AuditInputError, match=r"bad\.json.*missing rejected"):
        audit_checkpoints([saved["paths"]["base"]], probe_pairs=bad)


def test_help(capsys) -> None:
    assert main(["audit", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spinal audit")
    for flag in ("--base", "--prefix", "--tokenizer", "--probe-pairs", "--num-probe-pairs", "--max-tokens", "--seed",
                 "--labels", "--device", "--dtype", "--out", "--no-progress"):
        assert flag in out, flag
    assert main(["--help"]) == 0 and "audit" in capsys.readouterr().out


def test_import_stays_light() -> None:
    code = ("import sys, spinal_callback.tools.audit, spinal_callback.tools.audit_report, "
            "spinal_callback.tools.checkpoints; "
            "print(sorted(m for m in ('lightning', 'transformers', 'peft', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_usage_documents_every_flag() -> None:
    from spinal_callback.tools.cli import _audit_parser

    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    section = usage[usage.index("## `spinal audit`"):]
    flags = [s for action in _audit_parser()._actions for s in action.option_strings if s.startswith("--")]
    missing = [flag for flag in flags if f"`{flag}" not in section and flag != "--help"]
    assert not missing, f"docs/usage.md's spinal audit section lacks {missing}"
