"""Fixtures of the demo tests: a shared pre-training cache, tiny recipe flags, torch state restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The recipes set torch's thread count (``--threads``); give the rest of the session its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sft_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pre-training cache for every recipe run of the session (the first run fills it)."""
    return tmp_path_factory.mktemp("sft_cache")


@pytest.fixture
def tiny_flags(sft_cache: Path, tmp_path: Path) -> list[str]:
    """Recipe flags for a run of a few seconds: short pre-training, few pairs, few DPO steps."""
    return [
        "--output-dir", str(tmp_path / "run"), "--cache-dir", str(sft_cache),
        "--sft-max-steps", "30", "--num-pairs", "48", "--eval-size", "20",
        "--max-steps", "4", "--batch-size", "4", "--seed", "0",
    ]
