"""Run by test_sharding.py in 2 gloo CPU processes: the probe of a sharded model on every rank.

Usage: python sharded_probe_script.py OUT_DIR KIND   (KIND: fsdp1-orig, fsdp1-flat, fsdp2)

Each rank builds the same tiny Llama (same seed), writes the single-process reference (the depth trace
and the head readout of the unsharded model) and then the same measurements of the sharded model, as
JSON, to OUT_DIR/<KIND>-rank<r>.json.
"""

from __future__ import annotations

import json
import os
import sys
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

    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    if kind.startswith("fsdp1"):
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        sharded = FullyShardedDataParallel(
            model, auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}), use_orig_params=kind == "fsdp1-orig",
            device_id=torch.device("cpu"),
        )
    else:
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        sharded = fully_shard(model)
    refusals = []
    for bad in (SpinalConfig(on_alert=("log", "rollback")), SpinalConfig(patch_interval=5)):
        try:
            SpinalMonitor(bad).setup(sharded, records=records, rank_zero=rank == 0)
        except ValueError as exc:
            refusals.append(str(exc))
    monitor = SpinalMonitor(SpinalConfig(interval=1, num_probe_pairs=2, max_tokens=4096))
    monitor.setup(sharded, records=records, rank_zero=rank == 0)
    monitored = monitor.probe(0, sharded)
    got = measure(sharded, batch, config)
    again = measure(sharded, batch, config)  # the state after a probe is clean: a second probe is the same
    # a training step still works after the probes
    sharded.train()
    out = sharded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["input_ids"])
    out.loss.backward()
    Path(out_dir, f"{kind}-rank{rank}.json").write_text(
        json.dumps({
            "reference": reference, "sharded": got, "again": again, "loss": float(out.loss), "refusals": refusals,
            "monitor": {"single": [single.trace.to_dict(), single.signals],  # type: ignore[union-attr]
                        "sharded": [monitored.trace.to_dict(), monitored.signals]},  # type: ignore[union-attr]
        })
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    main(sys.argv[1], sys.argv[2])
