"""Both recipes WITH the spinal callback attached (the only demo tests that need it).

These exercise the integration end to end — SpinalTrainerCallback inside TRL's DPOTrainer and
SpinalLightningCallback inside a Lightning fit — and fail if either callback is missing or broken,
unlike the ``--no-spinal`` recipe tests. They check the trace file has ``"trace"`` records at the
scheduled steps (step 0 and every ``--interval`` steps; a full depth trace at each: ``--trace-interval``
equal to it) and that TensorBoard holds finite
``spinal/contraction/L1`` and ``spinal/band/late/transport`` scalars next to the framework's own.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spinal_callback.tools.cli import main as cli_main

from ._events import scalars, summary, trace_records

STEPS, INTERVAL = 6, 2
SCHEDULED = set(range(0, STEPS + 1, INTERVAL))  # {0, 2, 4, 6}
SPINAL_TAGS = ("spinal/contraction/L1", "spinal/band/late/transport")


def _check_run(output_dir: Path, framework_tag: str) -> None:
    result = summary(output_dir)
    trace_path, log_dir = result["trace_path"], result["log_dir"]
    assert trace_path and Path(trace_path).is_file(), result
    traces = [r for r in trace_records(trace_path) if r.get("type") == "trace"]
    assert {r["step"] for r in traces} == SCHEDULED
    assert all(len(r["layers"]) == 9 and set(r["bands"]) == {"early", "mid", "late"} for r in traces)
    tags = scalars(log_dir)
    assert framework_tag in tags  # the framework's own scalars share the directory
    for tag in SPINAL_TAGS:
        points = tags.get(tag, [])
        assert {step for step, _ in points} == SCHEDULED, (tag, sorted(tags))
        assert all(math.isfinite(value) for _, value in points), (tag, points)


def test_trl_recipe_with_the_callback(tiny_flags, tmp_path) -> None:
    pytest.importorskip("trl")
    from spinal_callback.demo.trl_recipe import main

    flags = [*tiny_flags, "--max-steps", str(STEPS), "--interval", str(INTERVAL), "--trace-interval", str(INTERVAL),
             "--num-probe-pairs", "4"]
    assert main([*flags, "--logging-steps", "1"]) == 0
    _check_run(tmp_path / "run", "train/rewards/accuracies")
    trace = summary(tmp_path / "run")["trace_path"]
    assert Path(trace).parent == Path(summary(tmp_path / "run")["log_dir"])  # inside HF's run directory
    assert cli_main(["report", trace, "--out", str(tmp_path / "report")]) == 0


def test_trl_recipe_with_the_callback_under_peft(tiny_flags, tmp_path) -> None:
    pytest.importorskip("peft")
    from spinal_callback.demo.trl_recipe import main

    flags = [*tiny_flags, "--max-steps", str(STEPS), "--interval", str(INTERVAL), "--trace-interval", str(INTERVAL),
             "--num-probe-pairs", "4"]
    assert main([*flags, "--peft", "--logging-steps", "1"]) == 0
    _check_run(tmp_path / "run", "train/rewards/accuracies")


def test_lightning_recipe_with_the_callback(tiny_flags, tmp_path) -> None:
    pytest.importorskip("lightning")
    from spinal_callback.demo.lightning_recipe import main

    flags = [*tiny_flags, "--max-steps", str(STEPS), "--interval", str(INTERVAL), "--trace-interval", str(INTERVAL),
             "--num-probe-pairs", "4"]
    assert main([*flags, "--log-every-n-steps", "1"]) == 0
    _check_run(tmp_path / "run", "rewards/accuracies")
    assert summary(tmp_path / "run")["log_dir"] == str(tmp_path / "run" / "lightning" / "version_0")
