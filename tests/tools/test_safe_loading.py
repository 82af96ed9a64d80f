"""``spinal audit`` never runs code from a file unless told to: crafted ``.ckpt`` files are refused (and run
with ``--trust-checkpoint`` only), real Lightning checkpoints load without the opt-in, and a Hub name that is
neither local nor cached fails at once with a message that says so."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spinal_callback.tools.audit import audit_checkpoints, run_audit
from spinal_callback.tools.checkpoints import (
    UnsafeCheckpointWarning,
    UntrustedCheckpointError,
    read_state_dict,
)
from spinal_callback.tools.cli import main
from spinal_callback.tools.safe_load import CHECKPOINT_SAFE_GLOBALS, RefusedPickleError, load_weights_only
from tests.conftest import tiny_causal_lm

pytest.importorskip("lightning")

REPO = Path(__file__).resolve().parents[2]


class TouchOnUnpickle:
    """Unpickling it creates ``marker``: what a crafted checkpoint does instead of something worse."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return pathlib.Path(self.marker).touch, ()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A tiny Hugging Face model directory with a tokenizer, and the model itself."""
    from spinal_callback.demo.task import build_tokenizer

    root = tmp_path_factory.mktemp("safe_loading")
    model = tiny_causal_lm(num_layers=2, seed=0)
    model.save_pretrained(root / "base")
    build_tokenizer().save_pretrained(root / "base")
    return {"path": str(root / "base"), "model": model}


def _crafted_checkpoint(base: dict, path: Path, marker: Path) -> Path:
    state = {f"model.{k}": v for k, v in base["model"].state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"payload": TouchOnUnpickle(marker)}}, path)
    return path


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def test_crafted_checkpoint_is_refused_and_never_run(base, tmp_path) -> None:
    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(base, tmp_path / "crafted.ckpt", marker)
    with pytest.raises(UntrustedCheckpointError) as caught:
        audit_checkpoints([ckpt], base=base["path"])
    message = str(caught.value)
    assert "GLOBAL getattr" in message  # the unpickler's complaint: the callable it refused to fetch
    assert "--trust-checkpoint" in message and "trust_checkpoint=True" in message
    assert not marker.exists()

    status, _, err = _cli("audit", str(ckpt), "--base", base["path"], "--out", str(tmp_path / "out"),
                          "--no-progress")
    assert status == 1 and "--trust-checkpoint" in err and "weights_only=True" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_trusted_checkpoint_is_read_by_the_full_unpickler(base, tmp_path) -> None:
    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(base, tmp_path / "crafted.ckpt", marker)
    with pytest.warns(UnsafeCheckpointWarning, match="weights_only=False"):
        result = audit_checkpoints([ckpt], base=base["path"], trust_checkpoint=True)
    assert marker.exists()  # the opt-in really ran the file's pickle
    entry = result.entries[0]
    assert entry.prefix == "model." and any("weights_only=False" in note for note in entry.notes)

    marker.unlink()
    status, _, err = _cli("audit", str(ckpt), "--base", base["path"], "--out", str(tmp_path / "out"),
                          "--no-progress", "--trust-checkpoint")
    assert status == 0 and marker.exists() and "weights_only=False" in err


def test_lightning_hyper_parameters_load_without_the_opt_in(base, tmp_path) -> None:
    """A real ``Trainer.save_checkpoint`` of a module whose hyper-parameters hold a ``Namespace`` and a path,
    and a Lightning 1.x-style file whose ``hyper_parameters`` is an ``AttributeDict``."""
    import lightning.pytorch as pl
    from lightning.fabric.utilities.data import AttributeDict
    from pytorch_lightning.utilities.parsing import AttributeDict as LegacyAttributeDict

    class Module(pl.LightningModule):
        def __init__(self, args: argparse.Namespace, data_dir: Path, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = tiny_causal_lm(num_layers=2, seed=0)

    module = Module(argparse.Namespace(beta=0.1, run="x"), tmp_path / "data")
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "hparams.ckpt")
    legacy = {"state_dict": module.state_dict(), "epoch": 3,
              "hyper_parameters": LegacyAttributeDict(lr=0.1, nested=AttributeDict(data_dir=tmp_path / "d"))}
    torch.save(legacy, tmp_path / "legacy.ckpt")

    for name in ("hparams.ckpt", "legacy.ckpt"):
        with pytest.raises(pickle.UnpicklingError):  # torch's own default refuses them
            torch.load(tmp_path / name, weights_only=True)
        state, notes = read_state_dict(tmp_path / name)
        assert notes == [] and torch.equal(state["model.lm_head.weight"], base["model"].lm_head.weight)
        result = audit_checkpoints([tmp_path / name], base=base["path"])
        assert result.entries[0].prefix == "model." and not any("weights_only" in n for n in result.entries[0].notes)


def test_the_allow_list_does_not_leak_into_the_process(tmp_path) -> None:
    path = tmp_path / "namespace.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    assert load_weights_only(path)["args"].lr == 0.1
    allowed = {entry if isinstance(entry, tuple) else (entry, "") for entry in torch.serialization.get_safe_globals()}
    assert not allowed & set(CHECKPOINT_SAFE_GLOBALS)
    with pytest.raises(pickle.UnpicklingError, match=r"argparse\.Namespace"):
        torch.load(path, weights_only=True)
    with pytest.raises(RefusedPickleError, match="GLOBAL getattr"):
        marker = tmp_path / "marker"
        torch.save(TouchOnUnpickle(marker), tmp_path / "crafted.pt")
        load_weights_only(tmp_path / "crafted.pt")
    assert not marker.exists()


def _offline(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _no_network(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there


@pytest.mark.parametrize("network", [_offline, _no_network], ids=["HF_HUB_OFFLINE", "unreachable"])
def test_unknown_hub_name_fails_fast_and_says_where_it_looked(network, monkeypatch, capsys, tmp_path) -> None:
    network(monkeypatch)
    assert run_audit(["some-org/no-such-model"], tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "'some-org/no-such-model' is neither a local path nor in the local Hugging Face cache" in err
    assert ("HF_HUB_OFFLINE is set" if network is _offline else "cannot be reached") in err
    assert "Retrying" not in err and not (tmp_path / "out").exists()


def test_cached_hub_name_loads_without_the_network(base, tmp_path) -> None:
    """A Hub name in the local cache (the layout ``huggingface_hub`` writes) is audited with the Hub unreachable
    — no request, so no retries."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf_cache" / "models--some-org--tiny"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in Path(base["path"]).iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf_cache"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    code = "import sys; from spinal_callback.tools.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "audit", "some-org/tiny", "--out", str(tmp_path / "out"),
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr and (tmp_path / "out" / "audit.json").is_file()


def test_unknown_hub_base_of_a_checkpoint_fails_fast(base, monkeypatch, tmp_path) -> None:
    _no_network(monkeypatch)
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": base["model"].state_dict()}, ckpt)
    status, _, err = _cli("audit", str(ckpt), "--base", "some-org/no-such-base", "--tokenizer", base["path"],
                          "--out", str(tmp_path / "out"), "--no-progress")
    assert status == 1 and "the base of" in err and "neither a local path nor in the local Hugging Face cache" in err
