"""Run by test_sharding.py in 2 gloo CPU processes: the probe of a sharded model on every rank.

Usage: python sharded_probe_script.py OUT_DIR KIND   (KIND: fsdp1-orig, fsdp1-flat, fsdp2)

Each rank builds the same tiny Llama (same seed) and a reference model (its copy with deterministically
perturbed weights), writes the single-process measurements (the depth trace and the head readout of the
unsharded model, the monitor's probe and patching probe, a training step's loss and gradient norm) and then
the same measurements with the policy and the reference sharded the same way, as JSON, to
OUT_DIR/<KIND>-rank<r>.json.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spinal_callback import SpinalConfig, SpinalMonitor
from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.sharding import sharding_of
from spinal_callback.monitor.probing import measure_geometry
from spinal_callback.monitor.signals import ScoredPositions
from tests.conftest import make_batch, tiny_causal_lm
from tests.distributed.ranks import finish_rank


def measure(model: torch.nn.Module, batch: dict, config: SpinalConfig) -> dict:
    layout = resolve_layout(model)
    m = measure_geometry(model, layout, batch, config, ScoredPositions.from_batch(batch))
    assert m.readout is not None
    return {
        "trace": m.trace.to_dict(),
        "logprobs": m.readout.logprobs.tolist(),
        "log_z": m.readout.log_z,
        "max_logit": m.readout.max_logit,
        "vocab": layout.vocab_size,
        "sharding": sharding_of(model),
    }


#: The patching probe: both exact directions, low-rank at 2 layers, LASSO (3 pairs) and attribution patching.
PATCH_CONFIG = SpinalConfig(interval=1, patch_interval=1, num_probe_pairs=3, max_tokens=4096, patch_low_rank_layers=2,
                            patch_ranks=(1, 4), patch_lasso=True, patch_attribution=True, strict=True)
PATCH_RECORDS = [{"prompt_ids": [3, 4, 5], "chosen_ids": [6, 7], "rejected_ids": [8, 9, 10]},
                 {"prompt_ids": [11, 12], "chosen_ids": [13], "rejected_ids": [14, 15]},
                 {"prompt_ids": [16, 17, 18, 19], "chosen_ids": [20, 21, 22], "rejected_ids": [23]}]


def perturbed_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference: ``model`` with seeded Gaussian noise on every weight (policy and reference differ)."""
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return reference


def patching(model: torch.nn.Module, reference: torch.nn.Module, rank: int) -> dict:
    """The monitor's patching probe (set up with ``patch_interval > 0``), run twice; record, scalars, seconds."""
    monitor = SpinalMonitor(PATCH_CONFIG)
    monitor.setup(model, records=PATCH_RECORDS, rank_zero=rank == 0, reference=reference)
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        result = monitor.patch(1, model, reference)
        seconds = time.perf_counter() - start
        assert result.failure is None, result.failure
        runs.append({"record": result.outcome.record, "scalars": result.outcome.scalars, "seconds": seconds})
    return {"first": runs[0], "again": runs[1]}


def train_step(model: torch.nn.Module, batch: dict) -> dict:
    """One forward + backward in train mode: the loss and the global gradient norm (local shards all-reduced)."""
    model.train()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["input_ids"])
    out.loss.backward()
    total = torch.zeros((), dtype=torch.float64)
    for param in model.parameters():
        if param.grad is not None:
            grad = param.grad.to_local() if hasattr(param.grad, "to_local") else param.grad
            total += grad.double().pow(2).sum()
    if dist.is_initialized() and sharding_of(model) is not None:
        dist.all_reduce(total)
    return {"loss": float(out.loss), "grad_norm": float(total.sqrt())}


def main(out_dir: str, kind: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = tiny_causal_lm("llama", num_layers=4, initializer_range=0.2)
    batch = make_batch(batch_size=4, seq_len=9, left_pad=(0, 2))
    config = SpinalConfig(max_tokens=4096)
    reference = measure(model, batch, config)
    records = [{"prompt_ids": [3, 4, 5], "chosen_ids": [6, 7], "rejected_ids": [8, 9, 10]},
               {"prompt_ids": [11, 12], "chosen_ids": [13], "rejected_ids": [14, 15]}]
    unsharded_monitor = SpinalMonitor(SpinalConfig(interval=1, num_probe_pairs=2, max_tokens=4096))
    unsharded_monitor.setup(model, records=records)
    single = unsharded_monitor.probe(0, model)
    reference_model = perturbed_copy(model)
    single_patch = patching(model, reference_model, rank)
    single_step = train_step(copy.deepcopy(model), batch)

    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    if kind.startswith("fsdp1"):
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        def shard(module: torch.nn.Module) -> torch.nn.Module:
            return FullyShardedDataParallel(
                module, auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}), use_orig_params=kind == "fsdp1-orig",
                device_id=torch.device("cpu"),
            )
    else:
        from torch.distributed.fsdp import fully_shard

        def shard(module: torch.nn.Module) -> torch.nn.Module:
            for layer in module.model.layers:
                fully_shard(layer)
            # as accelerate does: the root too reshards after forward (its norm and unembedding must be gathered)
            return fully_shard(module, reshard_after_forward=True)

    sharded, sharded_reference = shard(model), shard(reference_model)  # as TRL / accelerate shard both
    refusals = []
    try:
        SpinalMonitor(SpinalConfig(on_alert=("log", "rollback"))).setup(sharded, records=records, rank_zero=rank == 0)
    except ValueError as exc:
        refusals.append(str(exc))
    monitor = SpinalMonitor(SpinalConfig(interval=1, num_probe_pairs=2, max_tokens=4096))
    monitor.setup(sharded, records=records, rank_zero=rank == 0)
    monitored = monitor.probe(0, sharded)
    got = measure(sharded, batch, config)
    again = measure(sharded, batch, config)  # the state after a probe is clean: a second probe is the same
    sharded_patch = patching(sharded, sharded_reference, rank)
    # a training step after the probes (and attribution patching's backward) is the single-process one
    step = train_step(sharded, batch)
    Path(out_dir, f"{kind}-rank{rank}.json").write_text(
        json.dumps({
            "reference": reference, "sharded": got, "again": again, "refusals": refusals,
            "step": {"single": single_step, "sharded": step},
            "patch": {"single": single_patch, "sharded": sharded_patch},
            "monitor": {"single": [single.trace.to_dict(), single.signals],  # type: ignore[union-attr]
                        "sharded": [monitored.trace.to_dict(), monitored.signals]},  # type: ignore[union-attr]
        })
    )
    finish_rank(out_dir)


if __name__ == "__main__":
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    main(sys.argv[1], sys.argv[2])
