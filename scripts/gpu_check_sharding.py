"""GPU check of the sharded probe: FSDP1, FSDP2 and DeepSpeed ZeRO-3 against the unsharded model, on NCCL.

The CPU test suite runs FSDP1 (``use_orig_params`` on and off) and FSDP2 on two gloo ranks
(``tests/distributed/test_sharding.py``); DeepSpeed does not run on these CPU machines, so its ZeRO-3
path (``deepspeed.zero.GatheredParameters`` around the logit lens, the forward through the engine's
module) is exercised here, on a machine with GPUs::

    torchrun --nproc_per_node 2 scripts/gpu_check_sharding.py --kinds fsdp1-orig fsdp1-flat fsdp2 zero3

Every rank builds the same model from a config (random weights, bf16 by default; no download), measures
the probe unsharded (rank-local copy), shards it, measures again and compares: the depth trace, the
output head's log Z and the probe pairs' log-likelihoods must agree within ``--tol`` (relative). Rank 0
prints one line per kind and exits non-zero on any mismatch. ``--kinds zero3`` needs ``pip install
deepspeed``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinal_callback import SpinalConfig
from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.sharding import sharding_of
from spinal_callback.monitor.probing import measure_geometry
from spinal_callback.monitor.signals import ScoredPositions


def build(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "qwen2", hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=max(1, args.heads // 4), intermediate_size=4 * args.hidden, vocab_size=args.vocab,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    return AutoModelForCausalLM.from_config(config, torch_dtype=dtype).to(device).eval()


def probe_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    rows, length = 2 * args.pairs, args.seq
    ids = torch.randint(0, args.vocab, (rows, length), generator=gen)
    completion = torch.zeros(rows, length, dtype=torch.long)
    completion[:, length // 2 :] = 1
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "completion_mask": completion.to(device)}


def measure(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    m = measure_geometry(model, resolve_layout(model), batch, SpinalConfig(), ScoredPositions.from_batch(batch))
    assert m.readout is not None
    return {"trace": m.trace.to_dict()["layers"], "log_z": m.readout.log_z, "logprobs": m.readout.logprobs.tolist()}


def worst(a: Any, b: Any) -> float:
    """Largest relative difference between two nested results (NaN where only one side is NaN: inf)."""
    if isinstance(a, dict):
        return max((worst(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list):
        return max((worst(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
        return abs(a - b) / max(1.0, abs(a), abs(b))
    return 0.0 if a == b else math.inf


def shard(kind: str, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    blocks = resolve_layout(model).blocks
    if kind.startswith("fsdp1"):
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return FullyShardedDataParallel(
            model, auto_wrap_policy=ModuleWrapPolicy({type(blocks[0])}), use_orig_params=kind == "fsdp1-orig",
            device_id=device,
        )
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in blocks:
            fully_shard(block)
        return fully_shard(model)
    if kind == "zero3":
        import deepspeed  # type: ignore[import-not-found]

        ds_config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
                     "bf16": {"enabled": next(model.parameters()).dtype == torch.bfloat16}}
        engine, *_ = deepspeed.initialize(model=model, config=ds_config, model_parameters=model.parameters())
        return engine.module
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["fsdp1-orig", "fsdp1-flat", "fsdp2"],
                        choices=["fsdp1-orig", "fsdp1-flat", "fsdp2", "zero3"])
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--heads", type=int, default=14)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--tol", type=float, default=None, help="relative tolerance (default 2e-2 bf16, 1e-4 fp32)")
    args = parser.parse_args()
    tol = args.tol if args.tol is not None else (2e-2 if args.dtype == "bfloat16" else 1e-4)
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    torch.cuda.set_device(device)
    batch = probe_batch(args, device)
    failed = False
    for kind in args.kinds:
        model = build(args, device)
        expected = measure(copy.deepcopy(model), batch)
        sharded = shard(kind, model, device)
        got = measure(sharded, batch)
        diff = worst(got, expected)
        ok = diff <= tol and sharding_of(sharded) == kind.split("-")[0]
        failed |= not ok
        if rank == 0:
            print(f"{kind}: sharding {sharding_of(sharded)}, worst relative difference {diff:.2e} "
                  f"(tol {tol:g}): {'OK' if ok else 'MISMATCH'}", flush=True)
        del model, sharded
        torch.cuda.empty_cache()
    dist.destroy_process_group()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
