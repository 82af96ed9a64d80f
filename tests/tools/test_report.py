import json
import sys

import pytest

from spinal_callback.geometry.trace import LAYER_METRICS
from spinal_callback.tools.report import plot_depth_traces, run_report, summary_table

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
