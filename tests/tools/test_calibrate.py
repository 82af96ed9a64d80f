"""``spinal calibrate``: thresholds from healthy trace files, loadable into SpinalConfig."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from spinal_callback.tools.calibrate import observations_from_records, run_calibrate
from spinal_callback.tools.cli import main

SIGNALS = {"band/late/transport": "both", "pairs/logp_chosen": "both", "rewards/chosen": "both"}


def _record(step: int, rng: random.Random, drift: float) -> dict:
    transport = 1.0 + drift * step + rng.gauss(0, 0.002)
    return {
        "type": "trace", "step": step,
        "layers": [{"layer": i, "transport": transport + 0.01 * i, "contraction": 2.0 - 0.001 * step + 0.02 * i}
                   for i in (1, 2, 3)],
        "bands": {"late": {"layers": [1, 3], "transport": transport, "contraction": 2.0}},
        "signals": {"pairs/logp_chosen": -3.0 - 0.004 * step + rng.gauss(0, 0.01)},
        "metrics": {"rewards/chosen": -0.001 * step + rng.gauss(0, 0.02)},
    }


def _healthy_files(tmp_path: Path, runs: int = 4, steps: int = 80) -> list[Path]:
    paths = []
    for seed in range(runs):
        rng = random.Random(seed)
        path = tmp_path / f"run{seed}.jsonl"
        drift = (-1) ** seed * 0.0005 * (seed + 1)
        path.write_text("".join(json.dumps(_record(2 * s, rng, drift)) + "\n" for s in range(steps)))
        paths.append(path)
    return paths


def test_observations_replay_bands_signals_metrics_and_vectors(tmp_path: Path) -> None:
    records = [_record(0, random.Random(0), 0.0), {"type": "alert", "step": 0}]
    [(step, signals, vectors, noise)] = observations_from_records(records)
    assert step == 0 and signals["band/late/transport"] == records[0]["bands"]["late"]["transport"]
    assert signals["pairs/logp_chosen"] == records[0]["signals"]["pairs/logp_chosen"]
    assert signals["rewards/chosen"] == records[0]["metrics"]["rewards/chosen"]
    assert len(vectors["layers/late/transport"]) == 3 and noise == {}


def test_calibrate_writes_settings_that_spinal_config_loads(tmp_path: Path) -> None:
    paths = _healthy_files(tmp_path)
    base = tmp_path / "base.json"
    DetectorConfig(signals=SIGNALS, vectors=()).to_json(base)
    output = tmp_path / "detector.json"
    code = main(["calibrate", *map(str, paths), "-o", str(output), "--config", str(base)])
    assert code == 0 and output.is_file()
    loaded = SpinalConfig(detector=str(output)).detector
    assert loaded == DetectorConfig.from_json(output) and dict(loaded.signals) == SIGNALS
    summary = run_calibrate(paths, tmp_path / "again.json", base=DetectorConfig(signals=SIGNALS, vectors=()))
    assert summary["runs"] == 4 and summary["probe_steps"] == 320
    assert summary["false_alarms_per_1000_in_sample"] <= 0.5
    assert summary["thresholds"]["z_threshold"] == pytest.approx(loaded.z_threshold)


def test_bad_inputs_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "d.json")]) == 2
    assert "cannot read trace file" in capsys.readouterr().err
    empty = tmp_path / "alerts_only.jsonl"
    empty.write_text(json.dumps({"type": "alert", "step": 3}) + "\n")
    assert main(["calibrate", str(empty)]) == 2
    assert "holds a 'trace' or 'signals' record" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a file"):
        SpinalConfig(detector=str(tmp_path / "nope.json"))
