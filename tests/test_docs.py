"""The documentation names every config field and every tag family the code writes."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

from spinal_callback import DetectorConfig, RollbackConfig, SpinalConfig
from spinal_callback.geometry import LAYER_METRICS
from spinal_callback.integrations._common import LOGGED_TAGS

ROOT = Path(__file__).resolve().parents[1]
USAGE = (ROOT / "docs" / "usage.md").read_text()
README = (ROOT / "README.md").read_text()


def test_usage_documents_every_config_field() -> None:
    missing = [f"`{f.name}`" for f in fields(SpinalConfig) if f"`{f.name}`" not in USAGE]
    missing += [f"`detector.{f.name}`" for f in fields(DetectorConfig) if f"`detector.{f.name}`" not in USAGE]
    missing += [f"`rollback.{f.name}`" for f in fields(RollbackConfig) if f"`rollback.{f.name}`" not in USAGE]
    assert not missing, f"docs/usage.md lacks {missing}"


def test_every_tag_family_is_documented_in_usage_readme_and_docstrings() -> None:
    families = ["spinal/<metric>/L", "spinal/band/<band>/<metric>", "spinal/heatmap/<metric>",
                "spinal/probe/seconds", "spinal/probe/failures", "spinal/detector/<signal>/<score>",
                "spinal/alerts", "spinal/rollbacks", "spinal/config", "spinal/patch/"]
    for family in families:
        assert family in USAGE, family
        assert family in README, family
        assert family.split("<")[0].rstrip("/") in LOGGED_TAGS, family
    for metric in LAYER_METRICS:
        assert metric in USAGE


def test_readme_opens_with_the_two_commands() -> None:
    lines = [line for line in README.splitlines() if line.startswith("python3 -m venv")]
    assert lines[0].endswith("spinal demo")
    assert lines[1].endswith("python -m pytest -q tests")
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[1] in ci  # CI runs exactly the README's test command


def test_import_loads_no_framework() -> None:
    code = ("import sys, spinal_callback, spinal_callback.geometry, spinal_callback.monitor.monitor; "
            "print(sorted(m for m in ('lightning', 'transformers', 'trl', 'matplotlib', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _same(shown: object, value: object) -> bool:
    """Equal, floats to the 4 significant digits a table shows."""
    if isinstance(shown, (tuple, list)) and isinstance(value, (tuple, list)):
        return len(shown) == len(value) and all(_same(a, b) for a, b in zip(shown, value))
    if isinstance(shown, float) and isinstance(value, float):
        return math.isclose(shown, value, rel_tol=1e-3)
    return shown == value


def test_usage_tables_show_the_current_defaults() -> None:
    """Each config table row's default column is the field's current default (``repr``), so a recalibration or
    a changed default cannot leave the documentation behind."""
    stale = []
    for prefix, config in (("", SpinalConfig()), ("detector.", DetectorConfig()), ("rollback.", RollbackConfig())):
        for f in fields(config):
            row = next((line for line in USAGE.splitlines() if line.startswith(f"| `{prefix}{f.name}` |")), None)
            if row is None:
                continue  # test_usage_documents_every_config_field reports it
            shown, value = row.split(" | ")[1].strip(), getattr(config, f.name)
            if not shown.startswith("`") or is_dataclass(value):
                continue  # "see the help", or a nested config with its own table
            if not _same(ast.literal_eval(shown.strip("`")), value):
                stale.append(f"{prefix}{f.name}: docs {shown}, code {value!r}")
    assert not stale, stale
