import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = ("lightning", "pytorch_lightning", "transformers", "matplotlib")


def test_sinks_and_report_import_no_optional_framework():
    code = (
        "import sys, spinal_callback.sinks, spinal_callback.tools.report\n"
        f"heavy = [m for m in {OPTIONAL!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
