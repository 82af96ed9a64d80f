"""SpinalConfig from the command line: HfArgumentParser, TrlParser next to DPOConfig, the TRL recipe, LightningCLI."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from spinal_callback.config import DetectorConfig, RollbackConfig, SpinalArguments, SpinalConfig, cli_name

pytest.importorskip("transformers")
from transformers import HfArgumentParser

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> SpinalConfig:
    (arguments,) = HfArgumentParser(SpinalArguments).parse_args_into_dataclasses(list(argv))
    return arguments.to_config()


# ------------------------------------------------------------------------------------- SpinalArguments
def test_every_field_has_a_prefixed_option_with_its_help_and_default() -> None:
    options = {f.name: f for f in fields(SpinalArguments)}
    for spec in fields(SpinalConfig):
        option = options[f"spinal_{spec.name}"]
        assert option.metadata["help"].startswith(spec.metadata["help"]), spec.name
    assert len(options) == len(fields(SpinalConfig))
    assert parse().to_dict() == SpinalConfig().to_dict()
    assert cli_name("max_length") == "--spinal_max_length"


def test_sequences_tuples_and_nested_configs_parse() -> None:
    config = parse(
        "--spinal_on_alert",
        "log",
        "rollback",
        "--spinal_tail",
        "0.2",
        "0.8",
        "--spinal-bands",
        "0.25",
        "0.75",
        "--spinal_patch_directions",
        "reference_to_policy",
        "--spinal_patch_ranks",
        "4",
        "2",
        "--spinal_detector",
        '{"window": 30, "signals": ["pairs/margin"]}',
        "--spinal_rollback",
        '{"snapshot_interval": 7, "keep": 2}',
        "--spinal_max_length",
        "64",
        "--spinal_seed",
        "5",
        "--spinal_strict",
        "--no_spinal_heatmaps",
    )
    assert config.on_alert == ("log", "rollback")
    assert config.tail == (0.2, 0.8) and config.bands == (0.25, 0.75)
    assert config.patch_directions == ("reference_to_policy",) and config.patch_ranks == (2, 4)
    assert config.detector.window == 30 and config.detector.signals == {"pairs/margin": "both"}
    assert config.rollback.snapshot_interval == 7 and config.rollback.keep == 2
    assert (config.max_length, config.seed, config.strict, config.heatmaps) == (64, 5, True, False)


def test_nested_configs_and_probe_pairs_from_files(tmp_path: Path) -> None:
    DetectorConfig(window=40).to_json(tmp_path / "detector.json")
    (tmp_path / "rollback.json").write_text(json.dumps(RollbackConfig(keep=5).to_dict()))
    pairs = [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}, {"prompt": "1+1=", "chosen": "2", "rejected": "3"}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    config = parse(
        "--spinal_detector",
        str(tmp_path / "detector.json"),
        "--spinal_rollback",
        str(tmp_path / "rollback.json"),
        "--spinal_probe_pairs",
        str(tmp_path / "pairs.jsonl"),
    )
    assert config.detector.window == 40 and config.rollback.keep == 5 and config.probe_pairs == pairs
    assert parse("--spinal_probe_pairs", json.dumps(pairs[:1])).probe_pairs == pairs[:1]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--spinal_interval", "0"], r"`interval` must be an integer >= 1, got 0 \(command-line option --spinal_int"),
        (["--spinal_tail", "0.1", "0.5", "0.9"], r"`tail` must be a pair .*--spinal_tail"),
        (["--spinal_detector", '{"window": 30'], r"`detector` is not a valid JSON object.*--spinal_detector"),
        (["--spinal_detector", "missing.json"], r"`detector` 'missing.json' is not a file.*--spinal_detector"),
        (["--spinal_rollback", '{"keep": 0}'], r"`keep` must be an integer >= 1"),
        (["--spinal_rollback", '{"kept": 2}'], r"unknown RollbackConfig field\(s\) kept"),
        (["--spinal_probe_pairs", "nothing.jsonl"], r"--spinal_probe_pairs 'nothing.jsonl' is neither a JSON list"),
        (["--spinal_on_alert", "rollback", "--spinal_rollback", '{"enabled": false}'], r"'rollback'.*on_alert"),
    ],
)
def test_bad_values_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(*argv)


def test_an_unknown_action_is_an_argparse_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        parse("--spinal_on_alert", "log", "explode")
    assert info.value.code == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err


def test_the_python_api_keeps_its_names_and_takes_json() -> None:
    config = SpinalConfig(max_length=32, seed=4, detector='{"window": 25}', rollback='{"keep": 4}')
    assert (config.max_length, config.seed, config.detector.window, config.rollback.keep) == (32, 4, 25, 4)


# ---------------------------------------------------------------------------------- next to DPOConfig
def test_next_to_dpo_config_in_trl_parser_without_clashes(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from trl import DPOConfig, TrlParser

    (tmp_path / "run.yaml").write_text(
        "max_length: 512\nspinal_max_length: 96\nspinal_on_alert: [log, stop]\n"
        "spinal_detector: {window: 33}\nspinal_tail: [0.05, 0.95]\n"
    )
    argv = [
        "--output_dir",
        str(tmp_path / "out"),
        "--use_cpu",
        "--bf16",
        "false",
        "--seed",
        "3",
        "--spinal_seed",
        "5",
        "--spinal_interval",
        "4",
        "--config",
        str(tmp_path / "run.yaml"),
    ]
    dpo, spinal = TrlParser((DPOConfig, SpinalArguments)).parse_args_and_config(argv)
    config = spinal.to_config()
    assert (dpo.max_length, dpo.seed) == (512, 3)
    assert (config.max_length, config.seed, config.interval) == (96, 5, 4)
    assert config.on_alert == ("log", "stop") and config.detector.window == 33 and config.tail == (0.05, 0.95)


def _recipe():
    spec = importlib.util.spec_from_file_location("trl_dpo_recipe", ROOT / "recipes" / "trl_dpo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def test_the_trl_recipe_parses_with_trl_parser(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    recipe = _recipe()
    args, dpo, spinal = recipe.parse(
        [
            "--output_dir",
            str(tmp_path),
            "--max_length",
            "128",
            "--spinal_max_length",
            "64",
            "--seed",
            "2",
            "--spinal_on_alert",
            "log",
            "rollback",
            "--spinal_rollback",
            '{"snapshot_interval": 20}',
            "--use_peft",
            "--lr_spike",
            "60:30",
        ]
    )
    config = spinal.to_config()
    assert (dpo.max_length, dpo.seed, dpo.max_steps, dpo.report_to) == (128, 2, 120, ["tensorboard"])
    assert dpo.learning_rate == pytest.approx(5e-4)  # built-in model default, x10 with LoRA
    assert (config.max_length, config.trace_interval, config.on_alert) == (64, 10, ("log", "rollback"))
    assert config.rollback.snapshot_interval == 20 and args.use_peft and args.lr_spike == "60:30"
    _, pretrained, _ = recipe.parse(["--output_dir", str(tmp_path), "--model_name_or_path", "some/model"])
    assert pretrained.learning_rate == pytest.approx(5e-6)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--spinal_interval", "0"], "--spinal_interval"),
        (["--lr_spike", "sixty"], "STEP:FACTOR"),
        (["--num_pairs", "0"], "--num_pairs must be positive"),
    ],
)
def test_the_trl_recipe_refuses_bad_options_with_a_usage_error(tmp_path: Path, capsys, argv, message) -> None:
    pytest.importorskip("trl")
    with pytest.raises(SystemExit) as info:
        _recipe().parse(["--output_dir", str(tmp_path), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ LightningCLI
def _documented_yaml() -> str:
    usage = (ROOT / "docs" / "usage.md").read_text()
    section = usage[usage.index("### LightningCLI") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match is not None, "docs/usage.md has no YAML block under ### LightningCLI"
    return match.group(1)


def _lightning_cli(tmp_path: Path, text: str):
    try:
        import jsonargparse  # noqa: F401  (LightningCLI's parser)
    except ImportError:  # a failure, not a skip: the documented example must stay tested
        pytest.fail('LightningCLI needs jsonargparse: pip install "jsonargparse[signatures]>=4.42" (the dev extra)')
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringModel

    path = tmp_path / "spinal.yaml"
    path.write_text(text)
    return LightningCLI(
        BoringModel,
        run=False,
        save_config_callback=None,
        args=[
            "--config",
            str(path),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
        ],
    )


def test_the_documented_lightning_cli_yaml_builds_the_callback(tmp_path: Path) -> None:
    from spinal_callback import SpinalLightningCallback

    cli = _lightning_cli(tmp_path, _documented_yaml())
    [callback] = [c for c in cli.trainer.callbacks if isinstance(c, SpinalLightningCallback)]
    config = callback.config
    assert isinstance(config, SpinalConfig) and cli.trainer.max_steps == 200
    assert (config.interval, config.max_length, config.seed) == (2, 256, 1)
    assert config.on_alert == ("log", "rollback") and config.tail == (0.1, 0.9)
    assert config.detector.window == 30
    assert config.detector.signals == {"rewards/margins": "both", "pairs/margin": "both"}
    assert (config.rollback.snapshot_interval, config.rollback.keep) == (50, 2)


def test_lightning_cli_takes_a_detector_file_and_refuses_bad_values(tmp_path: Path) -> None:
    DetectorConfig(window=44).to_json(tmp_path / "detector.json")
    text = _documented_yaml()
    nested = r"          detector:\n(?:            .*\n)+"
    with_file = re.sub(nested, f"          detector: {tmp_path / 'detector.json'}\n", text)
    assert "detector.json" in with_file
    from spinal_callback import SpinalLightningCallback

    cli = _lightning_cli(tmp_path, with_file)
    [callback] = [c for c in cli.trainer.callbacks if isinstance(c, SpinalLightningCallback)]
    assert callback.config.detector.window == 44
    with pytest.raises(ValueError, match=r"`interval` must be an integer >= 1, got 0"):
        _lightning_cli(tmp_path, text.replace("interval: 2 ", "interval: 0 "))
