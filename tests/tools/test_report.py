import json
import sys

import numpy as np
import pytest

from spinal_callback.geometry.trace import LAYER_METRICS
from spinal_callback.sinks.heatmap import change_since_baseline
from spinal_callback.sinks.jsonl import read_trace_file
from spinal_callback.tools.report import plot_depth_traces, run_report, summary_table
from spinal_callback.tools.report_heatmaps import heatmap_matrix, patching_matrices, trace_events

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ["depth_traces.png", "bands.png", *(f"heatmap_{m}.png" for m in LAYER_METRICS)]


def _trace_line(step: int, a: float) -> dict:
    """Three layers (one per band); contraction_ℓ = a·ℓ; curvature undefined (null)."""
    rows = [
        {
            "layer": layer,
            "contraction": a * layer,
            "transport": 0.1 * layer * a if layer < 3 else None,
            "entropy": 2.0,
            "effective_rank": 4.0 + layer,
            "transport_curvature": None,
            "hidden_curvature": 0.3 if layer == 2 else None,
        }
        for layer in (1, 2, 3)
    ]
    bands = {
        band: {"layers": [layer, layer], **{k: v for k, v in rows[layer - 1].items() if k != "layer"}}
        for band, layer in (("early", 1), ("mid", 2), ("late", 3))
    }
    return {"type": "trace", "step": step, "layers": rows, "bands": bands, "num_tokens": 16}


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "run" / "spinal_trace.jsonl"
    path.parent.mkdir()
    lines = [
        _trace_line(5, 1.0),
        _trace_line(15, 2.0),
        {"type": "alert", "step": 20, "message": "late-band transport curvature rose"},
        _trace_line(25, 4.0),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_report_writes_plots_and_summary(trace_file, capsys):
    assert run_report(str(trace_file)) == 0
    out_dir = trace_file.parent / "report"
    for name in PLOTS:
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, name
    summary = (out_dir / "summary.md").read_text()
    assert "| band | metric | step 5 | step 25 | change |" in summary
    assert "| early | contraction | 1 | 4 | 3 |" in summary
    assert "| late | contraction | 3 | 12 | 9 |" in summary
    assert "| mid | transport | 0.2 | 0.8 | 0.6 |" in summary
    assert "| late | transport | n/a | n/a | n/a |" in summary
    assert "| mid | hidden_curvature | 0.3 | 0.3 | 0 |" in summary
    assert "step 20: alert late-band transport curvature rose" in summary
    printed = capsys.readouterr().out
    assert "| late | contraction | 3 | 12 | 9 |" in printed
    for name in [*PLOTS, "summary.md"]:
        assert str(out_dir / name) in printed


def test_summary_table_rows():
    from spinal_callback.sinks.jsonl import load_traces

    table = summary_table(load_traces([_trace_line(1, 1.0), _trace_line(2, 3.0)]))
    lines = table.splitlines()
    assert len(lines) == 2 + 3 * len(LAYER_METRICS)
    assert "| early | effective_rank | 5 | 5 | 0 |" in lines


def test_missing_and_empty_trace_files_exit_2(tmp_path, capsys):
    missing = tmp_path / "absent.jsonl"
    assert run_report(missing) == 2
    assert "absent.jsonl" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run_report(empty) == 2
    assert "no trace records" in capsys.readouterr().err
    alerts_only = tmp_path / "alerts.jsonl"
    alerts_only.write_text('{"type": "alert", "step": 3}\n')
    assert run_report(alerts_only) == 2
    assert not (tmp_path / "report").exists()


def test_without_matplotlib_summary_is_still_written(trace_file, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    with pytest.raises(ImportError, match=r"pip install \"spinal-callback\[plots\]\""):
        plot_depth_traces([], tmp_path / "x.png")
    out_dir = tmp_path / "elsewhere"
    assert run_report(trace_file, out_dir=out_dir) == 1
    assert (out_dir / "summary.md").is_file()
    assert not list(out_dir.glob("*.png"))
    assert "spinal-callback[plots]" in capsys.readouterr().err


def _patch_line(step: int, scale: float) -> dict:
    effect = [0.1 * scale, None, 0.7 * scale]
    return {
        "type": "patch",
        "step": step,
        "exact": {
            "policy_to_reference": {
                "direction": "policy_to_reference",
                "layers": [1, 2, 3],
                "normalized_effect": effect,
            },
        },
    }


def _red_pixels(path) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array([214, 39, 40])).sum(axis=-1) < 30).sum())


def test_alerts_and_rollbacks_are_on_the_time_axis(tmp_path, capsys):
    quiet = tmp_path / "quiet.jsonl"
    quiet.write_text("".join(json.dumps(_trace_line(s, a)) + "\n" for s, a in ((5, 1.0), (15, 2.0), (25, 4.0))))
    eventful = tmp_path / "eventful.jsonl"
    lines = [
        _trace_line(5, 1.0),
        _trace_line(15, 2.0),
        {"type": "alert", "step": 20, "message": "moved"},
        {"type": "rollback", "step": 22, "message": "rolled back to step 10"},
        _trace_line(25, 4.0),
    ]
    eventful.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert run_report(quiet, tmp_path / "q") == 0 and run_report(eventful, tmp_path / "e") == 0
    for name in ("heatmap_contraction.png", "bands.png"):
        assert _red_pixels(tmp_path / "q" / name) == 0, name
        assert _red_pixels(tmp_path / "e" / name) > 100, name  # the red alert line
    assert "No alert and no rollback" in (tmp_path / "q" / "summary.md").read_text()
    summary = (tmp_path / "e" / "summary.md").read_text()
    assert "step 20: alert moved" in summary and "step 22: rollback rolled back to step 10" in summary
    assert trace_events(read_trace_file(eventful)) == ([20], [22])


def test_change_view_of_an_unchanged_run_is_zero_and_partial_traces_are_left_out():
    from spinal_callback.sinks.jsonl import load_traces

    partial = _trace_line(10, 9.0)
    partial["computed_layers"] = [3]
    for row in partial["layers"][:2]:
        row.update({k: None for k in LAYER_METRICS})
    traces = load_traces([_trace_line(0, 2.0), partial, _trace_line(20, 2.0), _trace_line(30, 2.0)])
    steps, layers, matrix = heatmap_matrix(traces, "contraction")
    assert steps == [0, 20, 30] and layers == [1, 2, 3]  # the partial trace (step 10) adds no column
    assert np.array_equal(change_since_baseline(matrix), np.zeros((3, 3)))


def test_patching_heatmap_only_when_the_trace_has_patching_records(trace_file, tmp_path):
    assert run_report(trace_file) == 0
    assert not (trace_file.parent / "report" / "patching.png").exists()
    with_patch = tmp_path / "patch.jsonl"
    records = [_trace_line(5, 1.0), _patch_line(5, 0.0), _trace_line(15, 2.0), _patch_line(15, 1.0)]
    with_patch.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run_report(with_patch, tmp_path / "out") == 0
    assert (tmp_path / "out" / "patching.png").read_bytes().startswith(PNG_SIGNATURE)
    [(direction, (steps, layers, matrix))] = patching_matrices(read_trace_file(with_patch)).items()
    assert direction == "policy_to_reference" and steps == [5, 15] and layers == [1, 2, 3]
    assert np.isnan(matrix[1]).all() and matrix[2].tolist() == [0.0, 0.7]
