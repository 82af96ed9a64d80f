"""The study drivers are scripts (``scripts/study<N>_early_warning.py``), not a package: tests import them by path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def study_script(number: int) -> Any:
    """The module ``scripts/study<number>_early_warning.py``, freshly imported."""
    spec = importlib.util.spec_from_file_location(f"study{number}_script", SCRIPTS / f"study{number}_early_warning.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script
