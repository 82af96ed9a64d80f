"""Run by test_lightning_fsdp.py in 2 gloo CPU processes: a Lightning fit under FSDP whose root is the
``LightningModule`` (so the root unit owns the policy's embedding, final norm and unembedding), with
``SpinalLightningCallback`` attached.

Usage: python lightning_fsdp_script.py OUT_DIR KIND   (KIND: fsdp1-orig, fsdp1-flat, fsdp2)

- ``fsdp1-orig``: Lightning's ``FSDPStrategy`` (``auto_wrap_policy={LlamaDecoderLayer}``, ``use_orig_params=True``)
  around the demo ``DPOLightningModule`` (policy and frozen reference; a frozen reference needs
  ``use_orig_params=True``, since the root's flat parameter would mix trainable and frozen parameters).
- ``fsdp1-flat``: the same strategy with ``use_orig_params=False`` around a policy-only module (likelihood training,
  its optimizer over ``self.trainer.model.parameters()`` as Lightning asks for flat parameters).
- ``fsdp2``: Lightning's ``ModelParallelStrategy`` (``data_parallel_size=2``) with ``configure_model`` applying
  ``fully_shard`` to the decoder layers of the policy and the reference and then to the ``LightningModule``
  itself; its ``training_step`` calls ``self(batch)`` so the root's hooks gather (calling ``self.policy``
  directly fails in training already: the root's parameters stay sharded).

Lightning refuses ``FSDPStrategy`` on CPU twice: ``Trainer(accelerator="cpu", strategy=FSDPStrategy(...))`` raises
"The strategy `fsdp` requires a GPU accelerator" (``_check_strategy_and_fallback`` in
``lightning/pytorch/trainer/connectors/accelerator_connector.py``; the check is ``type(strategy) is FSDPStrategy``,
so a subclass passes it), and ``FSDPStrategy._setup_model`` passes ``device_id=root_device.index`` (``None`` for
CPU), for which torch's FSDP1 raises "FSDP needs a non-CPU accelerator device, but no accelerator device is
detected." (``torch/distributed/fsdp/_init_utils.py``, ``_init_device_handle``). :class:`CpuFSDPStrategy` does the
same wrap with ``device_id=cpu`` and hands the wrapped module to Lightning's own ``_setup_model``; the rest is
Lightning's. ``ModelParallelStrategy`` runs on CPU as it is.

Every rank builds the same tiny Llama (same seed). Rank 0 probes a copy of the initial weights in this one
process (a plain ``SpinalMonitor``, the callback's config), the fit runs 3 steps probing every step (with a
reference, the patching probe at step 3), then the full state dict is gathered (a collective) and rank 0 probes
the trained weights in this one process too (and, with a reference, patches them against the initial weights). Each rank
writes what its callback saw to OUT_DIR/<KIND>-rank<r>.json; rank 0's callback writes the trace file
OUT_DIR/<KIND>-out/spinal/spinal_trace.jsonl.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning.pytorch as L
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch.utils.data import DataLoader

from spinal_callback import SpinalConfig, SpinalLightningCallback, SpinalMonitor
from spinal_callback.demo.lightning_module import DPOLightningModule
from spinal_callback.model.probe_batch import collate_pairs, tokenize_pairs
from spinal_callback.model.sharding import sharding_of
from tests.distributed.ranks import Recorder, finish_rank
from tests.integrations.helpers import pairs, tiny_llama, tokenizer

MAX_STEPS = 3
NUM_LAYERS = 4


def spinal_config(patching: bool) -> SpinalConfig:
    """Probes every step; with a reference, the patching probes (both exact directions, low-rank, LASSO and
    attribution patching) at the last step."""
    extra: dict[str, Any] = {}
    if patching:
        extra = {"patch_interval": MAX_STEPS, "patch_low_rank_layers": 2, "patch_ranks": (1, 4), "patch_lasso": True,
                 "patch_attribution": True}
    return SpinalConfig(interval=1, trace_interval=0, num_probe_pairs=4, on_alert=("log",), **extra)  # full traces


class CpuFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` on CPU: the module is wrapped as Lightning wraps it, with ``device_id=cpu``."""

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = FullyShardedDataParallel(
            module=model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs,
        )
        self.kwargs.pop("auto_wrap_policy", None)  # applied above (Lightning would warn that it is ignored)
        return super()._setup_model(wrapped)  # an already wrapped module: Lightning's own remaining set-up


def dataloader(tok: Any) -> DataLoader:
    return DataLoader(tokenize_pairs(pairs(16), tok), batch_size=2, collate_fn=collate_pairs)  # type: ignore[arg-type]


class DPOModule(DPOLightningModule):
    def train_dataloader(self) -> DataLoader:
        return dataloader(self.tokenizer)


class RootDPOModule(DPOModule):
    """FSDP2 with the ``LightningModule`` as the root; the DPO loss runs through ``self(batch)``."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for model in (self.policy, self.reference):
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
        fully_shard(self, mesh=mesh)

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.dpo_loss(batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self(batch)
        return loss


class PolicyOnlyModule(L.LightningModule):
    """Likelihood training of the chosen answers, no reference (FSDP1 flat parameters)."""

    def __init__(self, policy: torch.nn.Module, tok: Any) -> None:
        super().__init__()
        self.policy = policy
        self.tokenizer = tok

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        half = batch["input_ids"].shape[0] // 2
        ids, mask = batch["input_ids"][:half], batch["attention_mask"][:half]
        labels = ids.masked_fill(batch["completion_mask"][:half] == 0, -100)
        return self.policy(input_ids=ids, attention_mask=mask, labels=labels).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trainer.model.parameters(), lr=1e-2)  # type: ignore[union-attr]

    def train_dataloader(self) -> DataLoader:
        return dataloader(self.tokenizer)


def single_process_probe(model: torch.nn.Module, reference: torch.nn.Module, tok: Any, patching: bool) -> dict:
    """The callback's probes, done by a plain monitor on an unsharded copy in this one process (the patching probe
    when ``patching``)."""
    monitor = SpinalMonitor(spinal_config(patching))
    monitor.setup(model, records=tokenize_pairs(pairs(16), tok), tokenizer=tok, reference=reference)
    result = monitor.probe(0, model)
    assert result.trace is not None, result.failure
    out: dict[str, Any] = {"trace": result.trace.to_dict(), "signals": result.signals}
    if patching:
        patched = monitor.patch(0, model, reference)
        assert patched.outcome is not None, patched.failure
        out["patch"] = patched.outcome.record
    return out


def full_policy_state(trainer: L.Trainer, pl_module: L.LightningModule, kind: str) -> dict[str, torch.Tensor]:
    """The trained policy's full state dict (a collective: every rank takes part; rank 0's is complete)."""
    if kind == "fsdp2":
        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in pl_module.state_dict().items()}
    else:
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        root = trainer.strategy.model
        assert isinstance(root, FSDP)
        # offload_to_cpu=False: with parameters already on CPU, offloading frees the gathered parameter
        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
        with FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT, config):
            state = root.state_dict()
    return {k.removeprefix("policy."): v.detach().clone() for k, v in state.items() if k.startswith("policy.")}


def main(out_dir: str, kind: str) -> None:
    started = time.perf_counter()
    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    tok = tokenizer()
    policy = tiny_llama(len(tok), num_layers=NUM_LAYERS)
    initial = copy.deepcopy(policy)  # the single-process reference: same weights, never wrapped
    patching = kind != "fsdp1-flat"  # the modules with a reference
    before = single_process_probe(initial, copy.deepcopy(initial), tok, False) if rank == 0 else None

    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    module: L.LightningModule
    strategy: Any
    if kind == "fsdp2":
        module = RootDPOModule(policy, tok, learning_rate=1e-2)
        strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    else:
        flat = kind == "fsdp1-flat"
        module = PolicyOnlyModule(policy, tok) if flat else DPOModule(policy, tok, learning_rate=1e-2)
        strategy = CpuFSDPStrategy(auto_wrap_policy={LlamaDecoderLayer}, use_orig_params=not flat)

    callback = SpinalLightningCallback(spinal_config(patching))
    seen: list[dict] = []  # what the callback handed the monitor, and every probe's outcome, on this rank
    probe = callback.monitor.probe

    def recording_probe(step: int, model: torch.nn.Module) -> Any:
        result = probe(step, model)
        seen.append({"step": step, "wrapper": type(model).__name__, "sharding": sharding_of(model),
                     "failed": result.trace is None, "failure": repr(result.failure) if result.failure else None,
                     "trace": result.trace.to_dict() if result.trace is not None else None,
                     "signals": result.signals, "seconds": result.seconds})
        return result

    callback.monitor.probe = recording_probe  # type: ignore[method-assign]
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_steps=MAX_STEPS, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(out / f"{kind}-out"), callbacks=[callback],
    )
    handler = Recorder()
    logging.getLogger("spinal_callback").addHandler(handler)
    fit_started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module)
    fit_seconds = time.perf_counter() - fit_started
    spinal_warnings = [str(w.message) for w in caught if "spinal" in str(w.message)]
    spinal_warnings += [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]

    state = full_policy_state(trainer, module, kind)
    after = None
    if rank == 0:
        trained = tiny_llama(len(tok), num_layers=NUM_LAYERS)
        trained.load_state_dict(state)
        after = single_process_probe(trained, copy.deepcopy(initial), tok, patching)
    Path(out, f"{kind}-rank{rank}.json").write_text(json.dumps({
        "rank": trainer.global_rank, "global_step": trainer.global_step, "seen": seen, "warnings": spinal_warnings,
        "failures": callback.monitor.failures, "patch_failures": callback.monitor.patch_failures,
        "trace_path": callback.trace_path,
        "strategy_model": type(trainer.strategy.model).__name__, "before": before, "after": after,
        "fit_seconds": fit_seconds, "seconds": time.perf_counter() - started,
    }))
    finish_rank(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
