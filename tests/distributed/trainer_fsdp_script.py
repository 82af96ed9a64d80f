"""Run by test_trainer_fsdp.py in 2 gloo CPU processes: TRL's ``DPOTrainer`` under accelerate's FSDP with
``SpinalTrainerCallback`` attached.

Usage: python trainer_fsdp_script.py OUT_DIR KIND   (KIND: fsdp2, fsdp1-orig, fsdp1-flat)

Every rank builds the same tiny Llama (same seed), probes a copy of it in this one process (the
single-process reference of the initial weights), then trains it for a few steps under FSDP with the
callback. At the end the full state dict is gathered (accelerate's ``get_state_dict`` for FSDP2, FSDP1's
``FULL_STATE_DICT`` for FSDP1) and the trained weights are probed in this one process too. Each rank writes
what it saw to OUT_DIR/<KIND>-rank<r>.json; rank 0's callback writes the trace file
OUT_DIR/<KIND>-out/spinal/spinal_trace.jsonl.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from spinal_callback import SpinalConfig, SpinalMonitor, SpinalTrainerCallback
from spinal_callback.model.sharding import sharding_of
from spinal_callback.model.unwrap import unwrap_model
from tests.distributed.ranks import Recorder, finish_rank
from tests.integrations.helpers import pairs, tiny_llama, tokenizer

MAX_STEPS = 3


def spinal_config() -> SpinalConfig:
    return SpinalConfig(interval=1, trace_interval=0, num_probe_pairs=4, on_alert=("log",))  # full traces


def single_process_probe(model: torch.nn.Module, reference: torch.nn.Module, records: Any, tok: Any) -> dict:
    """The callback's first probe, done by a plain monitor on an unsharded copy in this one process."""
    monitor = SpinalMonitor(spinal_config())
    monitor.setup(model, records=records, tokenizer=tok, reference=reference)
    result = monitor.probe(0, model)
    assert result.trace is not None, result.failure
    return {"trace": result.trace.to_dict(), "signals": result.signals}


def fsdp_args(kind: str) -> dict[str, Any]:
    fsdp_config: dict[str, Any] = {"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]}
    if kind == "fsdp2":
        fsdp_config["version"] = 2
    else:
        # sync_module_states (transformers' default for FSDP1) makes accelerate's plugin look for an accelerator
        # device and raise on CPU; every rank builds the same weights from the same seed anyway
        fsdp_config.update(version=1, use_orig_params=kind == "fsdp1-orig", sync_module_states=False)
    return {"fsdp": "full_shard", "fsdp_config": fsdp_config}


def full_state_dict(trainer: DPOTrainer, kind: str) -> dict[str, torch.Tensor]:
    """The trained weights gathered into one full state dict (a collective: every rank takes part; rank 0's
    is complete).

    FSDP2: accelerate's ``get_state_dict``. FSDP1: the same ``FULL_STATE_DICT`` but with
    ``offload_to_cpu=False`` — accelerate asks for ``offload_to_cpu=True``, and with parameters already on CPU
    FSDP1's ``FlatParamHandle.to_cpu`` moves the gathered parameter nowhere and then frees it, so the state
    dict fails ("setStorage: … out of bounds for storage of size 0") and the other rank is left in a collective.
    """
    model = trainer.model_wrapped
    if kind == "fsdp2":
        return trainer.accelerator.get_state_dict(model)
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, config):
        return {k: v.clone() for k, v in model.state_dict().items()}


class CpuFsdpDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose accelerator keeps its FSDP plugin on CPU.

    accelerate drops the plugin without a word when the processes run on CPU: ``AcceleratorState`` sets
    ``distributed_type = FSDP`` only inside its branch for accelerator devices (``MULTI_GPU``, ``MULTI_NPU``,
    …); a ``MULTI_CPU`` (gloo) state keeps ``fsdp_plugin`` unset, so the Trainer trains with DDP. This puts
    the plugin back right after the accelerator is built — everything else (the Trainer's and TRL's FSDP
    preparation, training, the callbacks) runs unchanged.
    """

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        from accelerate.state import AcceleratorState, PartialState
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = self.accelerator.state
        assert state.distributed_type == DistributedType.MULTI_CPU and getattr(state, "fsdp_plugin", None) is None, (
            "accelerate no longer drops the FSDP plugin on CPU: remove this shim", state.distributed_type)
        state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        # AcceleratorState holds a copy of PartialState's fields: set both. A MULTI_CPU state's device is
        # `cpu:0`, while FSDP1 computes on `cpu` and refuses `device_id=cpu:0` ("Inconsistent compute device
        # and `device_id` on rank 0: cpu vs cpu:0")
        for shared in (AcceleratorState._shared_state, PartialState._shared_state):
            shared["distributed_type"] = DistributedType.FSDP
            shared["device"] = torch.device("cpu")
        self.is_fsdp_enabled = True


def main(out_dir: str, kind: str) -> None:
    out = Path(out_dir)
    tok = tokenizer()
    model = tiny_llama(len(tok), num_layers=4)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    initial = copy.deepcopy(model)  # the single-process reference: same weights, never wrapped
    callback = SpinalTrainerCallback(spinal_config())
    # fp32 training: TRL's default bf16=True makes accelerate run the model's forward under bf16 autocast, and
    # the probe, which calls that forward, then measures in the training precision — not comparable, to 1e-4,
    # with the fp32 single-process probe. TRL's default activation checkpointing stays on.
    args = DPOConfig(
        output_dir=str(out / f"{kind}-out"), max_steps=MAX_STEPS, per_device_train_batch_size=2,
        learning_rate=1e-2, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
        max_length=32, bf16=False, **fsdp_args(kind),  # type: ignore[arg-type]
    )
    trainer = CpuFsdpDPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(pairs(16)),
        processing_class=tok, callbacks=[callback],
    )
    callback.set_trainer(trainer)
    rank = trainer.args.process_index
    before = single_process_probe(initial, copy.deepcopy(initial), trainer.train_dataset, tok)

    seen: list[dict] = []  # what the callback was handed, and every probe's outcome, on this rank
    probe = callback.monitor.probe

    def recording_probe(step: int, policy: torch.nn.Module) -> Any:
        result = probe(step, policy)
        seen.append({"step": step, "wrapper": type(policy).__name__, "sharding": sharding_of(policy),
                     "failed": result.trace is None,
                     "trace": result.trace.to_dict() if result.trace is not None else None,
                     "signals": result.signals})
        return result

    callback.monitor.probe = recording_probe  # type: ignore[method-assign]
    handler = Recorder()
    logging.getLogger("spinal_callback").addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    spinal_warnings = [str(w.message) for w in caught if "spinal" in str(w.message)]
    spinal_warnings += [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]

    state = full_state_dict(trainer, kind)
    after = None
    if rank == 0:
        trained = tiny_llama(len(tok), num_layers=4)
        trained.load_state_dict(state)
        after = single_process_probe(trained, copy.deepcopy(initial), trainer.train_dataset, tok)
    Path(out, f"{kind}-rank{rank}.json").write_text(json.dumps({
        "rank": rank, "global_step": trainer.state.global_step, "seen": seen, "warnings": spinal_warnings,
        "failures": callback.monitor.failures, "trace_path": callback.trace_path,
        "checkpointing": bool(unwrap_model(trainer.model_wrapped).is_gradient_checkpointing),
        "before": before, "after": after,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }))
    finish_rank(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
