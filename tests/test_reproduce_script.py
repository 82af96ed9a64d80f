"""Smoke test of ``scripts/reproduce_papers.py``: a tiny end-to-end run writes finite results and the plots."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def _script(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("reproduce_papers", ROOT / "scripts" / "reproduce_papers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _finite(values: Any) -> bool:
    if isinstance(values, list):
        return all(_finite(v) for v in values)
    return isinstance(values, (int, float)) and math.isfinite(values)


def test_quick_run_writes_finite_results_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = [
        "--quick", "--out", str(tmp_path / "out"), "--img-dir", str(tmp_path / "img"),
        # a few seconds of everything: short pre-training, few pairs, 4 DPO steps, the spike at step 2
        "--sft-max-steps", "20", "--eval-size", "16", "--num-pairs", "64", "--max-steps", "4",
        "--spike-step", "2", "--probe-pairs", "8",
    ]
    threads = torch.get_num_threads()
    try:
        returned = _script(monkeypatch).main(flags)
    finally:
        torch.set_num_threads(threads)  # the recipe sets its own (--threads)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results) == {"config", "seeds", "claims", "plots", "wall_seconds"}
    assert results["config"]["seeds"] == [0] and results["config"]["quick"] is True
    assert _finite(results["wall_seconds"]) and returned["wall_seconds"] == results["wall_seconds"]

    run = results["seeds"]["0"]
    assert set(run) == {"accuracy", "dpo_metrics", "traces", "spinal", "patching"}
    assert set(run["accuracy"]) == {"sft", "dpo", "destabilized"}
    assert all(0.0 <= a <= 1.0 for a in run["accuracy"].values())
    assert set(run["traces"]) == {"sft", "dpo", "destabilized"}
    assert [row["layer"] for row in run["traces"]["dpo"]["layers"]] == list(range(1, 10))

    claims = {"late_contraction_rises", "late_transport_falls", "late_transport_curvature_higher",
              "hidden_curvature_higher", "entropy_higher"}
    assert set(run["spinal"]) == claims == set(results["claims"])
    for key in claims:
        assert _finite([run["spinal"][key][k] for k in ("before", "after", "change")])
        assert results["claims"][key]["seeds"] == 1 and results["claims"][key]["seeds_matching"] in (0, 1)

    patching = run["patching"]
    for direction in ("policy_to_reference", "reference_to_policy"):
        assert _finite(patching[direction]["normalized_effect"]) and len(patching[direction]["layers"]) == 9
    assert 1 <= patching["top_layer"] <= 9 and patching["top_relative_depth"] == patching["top_layer"] / 9
    assert _finite(patching["increments"]) and _finite(patching["lasso"]["coefficients"])
    assert set(patching["lasso"]["selected_layers"]) <= set(range(1, 10))
    low = patching["low_rank"]
    assert patching["top_layer"] in low["layers"] and low["ranks"][:3] == [1, 2, 4]
    assert _finite(low["fraction_recovered"])
    assert all(abs(row[-1] - 1.0) < 1e-2 for row in low["fraction_recovered"])  # k = d is the exact patch

    for name in ("repro_spinal_depth_traces.png", "repro_patching.png"):
        assert (tmp_path / "img" / name).stat().st_size > 10_000
    assert "SPINAL claims" in (tmp_path / "out" / "tables.md").read_text()
