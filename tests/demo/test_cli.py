"""The ``spinal`` command line: help, unknown commands, ``demo`` and ``report`` dispatch."""

from __future__ import annotations

import pytest

from spinal_callback.tools.cli import main


def test_help_lists_the_commands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "report" in out


def test_no_command_prints_usage_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "usage: spinal" in capsys.readouterr().err


def test_unknown_command(capsys) -> None:
    assert main(["audti"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'audti'" in err and "demo, report" in err


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("spinal-callback ")


def test_demo_help_shows_the_recipe_flags(capsys) -> None:
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spinal demo") and "--no-spinal" in out and "--peft" in out


def test_demo_bad_flag_is_status_2(capsys) -> None:
    assert main(["demo", "--max-steps", "-3"]) == 2
    assert "--max-steps must be positive" in capsys.readouterr().err


def test_demo_runs_the_trl_recipe(tiny_flags, tmp_path) -> None:
    pytest.importorskip("trl")
    assert main(["demo", *tiny_flags, "--no-spinal"]) == 0
    assert (tmp_path / "run" / "run_summary.json").is_file()


def test_report_missing_trace_is_status_2(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_report_needs_a_trace_argument(capsys) -> None:
    assert main(["report"]) == 2
    assert "TRACE" in capsys.readouterr().err
