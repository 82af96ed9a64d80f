"""One study run: DPO on a demo model with the spinal callback, a fault, and a recorder of everything.

The spec (:class:`~studies.scenarios.RunSpec`) picks the pre-trained policy (``M1``, ``M2``, ``M1p``), the
learning rate, β and schedule, the fault (a learning-rate ramp or jump, an Adam fault, gradient noise, flipped
or ramped label noise; :mod:`studies.faults`) and whether the live callback rolls back on an alert.

The run writes, into its own folder, as it goes (a crash loses nothing already written):

- ``logs.jsonl``: every HF/TRL log record (``loss``, ``grad_norm``, ``learning_rate``, TRL's
  ``rewards/*`` and ``logps/*``), one per optimizer step (``logging_steps=1``), with its ``step``;
- ``evals.jsonl``: held-out behaviour every ``eval_every`` steps and at step 0 — greedy accuracy on
  held-out addition problems and the mean log-probability of the correct answer on held-out pairs (empty
  when ``eval_every`` is 0: runs that only count false alarms need no behavioural onset);
- ``spinal_trace.jsonl``: the callback's trace (depth traces every ``interval`` steps and its alerts);
- ``run.json``: the run's spec, settings, model, the live detector's and rollback settings and the last
  step reached, written last (its presence marks a finished run).

Needs the ``demo`` extra (transformers, TRL, datasets).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from studies.scenarios import MODELS, RunSpec

__all__ = ["ROLLBACK", "StudySettings", "held_out_chosen_logp", "load_model", "run_study"]

#: Rollback settings of the live callback (used when ``spec.rollback``): a snapshot every 10 steps, the
#: newest 3 kept, the learning rate halved at each rollback.
ROLLBACK: dict[str, Any] = {"snapshot_interval": 10, "keep": 3, "lr_scale": 0.5}


@dataclass(frozen=True)
class StudySettings:
    """Settings shared by every run of the study.

    Attributes:
        batch_size: preference pairs per optimizer step.
        interval: spinal geometry probe every N steps.
        signal_interval: spinal's forward-free readings (and its detector) every N steps (``None``: the library's
            default for ``interval``; with ``interval=2``, every probe).
        watch_probe_pairs: the detector of studies 2–11, which watched the probe pairs' DPO quantities besides
            TRL's metrics (``DEFAULT_SIGNALS`` + ``PROBE_PAIR_SIGNALS``); ``False``: the library's default
            detector since study 12 (TRL's metrics and the update tests).
        num_probe_pairs: pairs in spinal's probe set (the first training records, as by default).
        eval_every: held-out evaluation every N steps and at step 0; 0: none (``evals.jsonl`` stays empty).
        eval_problems: held-out problems for greedy accuracy.
        eval_pairs: held-out (correct, wrong) pairs for the chosen log-probability.
        threads: torch CPU threads per run.
        read_every_log: the callback feeds its detector every logged value at its own step
            (``SpinalConfig.read_every_log``, study 15).
    """

    batch_size: int = 16
    interval: int = 2
    signal_interval: int | None = None
    watch_probe_pairs: bool = True
    num_probe_pairs: int = 16
    eval_every: int = 2
    eval_problems: int = 200
    eval_pairs: int = 128
    threads: int = 1
    read_every_log: bool = False

    def __post_init__(self) -> None:
        if self.eval_every < 0:
            raise ValueError(f"`eval_every` must be >= 0 (0: no held-out evaluations), got {self.eval_every}")


def _training_pairs(spec: RunSpec, settings: StudySettings, task: Any) -> list[dict[str, str]]:
    """Rows in the order training consumes them (sequential sampling); flipped rows from the fault step on.

    ``flip_fraction``: each row from the fault step's first on is swapped with that probability.
    ``label_noise_ramp``: :func:`studies.faults.label_noise_ramp` (the probability rises from 0 at the fault
    step to 1 ``label_noise_ramp`` steps later). Both draw from RNGs seeded with the run's seed.
    """
    pairs = task.preference_pairs(spec.max_steps * settings.batch_size)
    if spec.flip_fraction > 0 and spec.fault_step is not None:
        rng = random.Random(f"flip:{spec.seed}")
        for i in range((spec.fault_step - 1) * settings.batch_size, len(pairs)):
            if rng.random() < spec.flip_fraction:
                pair = pairs[i]
                pairs[i] = {"prompt": pair["prompt"], "chosen": pair["rejected"], "rejected": pair["chosen"]}
    if spec.label_noise_ramp > 0 and spec.fault_step is not None:
        from studies.faults import label_noise_ramp

        pairs = label_noise_ramp(pairs, spec.fault_step, spec.label_noise_ramp, settings.batch_size,
                                 random.Random(f"label_noise_ramp:{spec.seed}"))
    return pairs


def _fault_callbacks(spec: RunSpec) -> list[Any]:
    """The Trainer callbacks that inject the spec's optimizer-side faults (none for data faults)."""
    from spinal_callback.demo.faults import LearningRateRamp
    from studies.faults import AdamFault, GradientAscent, GradientNoise, LearningRateJump, WeightNoise

    if spec.fault_step is None:
        return []
    out: list[Any] = []
    if spec.lr_growth != 1.0:
        out.append(LearningRateRamp(spec.fault_step, spec.lr_growth))
    if spec.lr_jump != 1.0:
        out.append(LearningRateJump(spec.fault_step, spec.lr_jump))
    if spec.adam_beta2 is not None or spec.adam_eps is not None:
        out.append(AdamFault(spec.fault_step, spec.adam_beta2, spec.adam_eps))
    if spec.grad_noise > 0:
        out.append(GradientNoise(spec.fault_step, spec.grad_noise,
                                 seed=random.Random(f"grad_noise:{spec.seed}").randrange(2**63)))
    if spec.weight_noise > 0:
        out.append(WeightNoise(spec.fault_step, spec.weight_noise,
                               seed=random.Random(f"weight_noise:{spec.seed}").randrange(2**63)))
    if spec.grad_ascent:
        out.append(GradientAscent(spec.fault_step))
    return out


def load_model(model: str, cache_dir: str | os.PathLike[str], sft: Any = None,
               progress: bool = False) -> tuple[Any, Any, Any]:
    """``(policy, tokenizer, SFTResult)`` of study model ``model`` (a key of :data:`~studies.scenarios.MODELS`),
    pre-trained once into ``cache_dir`` and loaded from there afterwards.

    Args:
        model: a key of :data:`~studies.scenarios.MODELS` (``"M1"``, ``"M2"``, ``"M1p"``, ``"G1"``, ``"Q1"``, ``"M3"``,
            ``"G2"``).
        cache_dir: cache of the pre-trained demo models (one sub-folder per shape, settings and seed).
        sft: the :class:`~spinal_callback.demo.model.SFTSettings` (default: the demo's).
        progress: show a progress bar while pre-training.
    """
    from spinal_callback.demo.model import pretrained_demo_model

    shape = MODELS[model]
    return pretrained_demo_model(cache_dir, seed=shape.sft_seed, settings=sft, num_layers=shape.num_layers,
                                 hidden_size=shape.hidden_size, progress=progress, architecture=shape.architecture)


@torch.no_grad()
def held_out_chosen_logp(model: Any, batch: Mapping[str, torch.Tensor]) -> float:
    """Mean over pairs of log π(y⁺|x), summed over the completion tokens (EOS included).

    ``batch`` is a :func:`~spinal_callback.model.probe_batch.collate_pairs` batch; only its first half (the
    chosen rows) is scored.
    """
    k = batch["input_ids"].shape[0] // 2
    ids, attention, completion = (batch[key][:k] for key in ("input_ids", "attention_mask", "completion_mask"))
    was_training = model.training
    model.eval()
    try:
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    finally:
        model.train(was_training)
    token_logp = logits.log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
    return float((token_logp * completion[:, 1:]).sum(1).mean())


def _recorder(run_dir: Path, settings: StudySettings, tokenizer: Any, problems: list[Any], pairs: dict) -> Any:
    from transformers import TrainerCallback

    from spinal_callback.demo.task import greedy_accuracy

    class Recorder(TrainerCallback):
        """Appends log records and held-out evaluations to the run's JSON-lines files."""

        def __init__(self) -> None:
            self.logs = open(run_dir / "logs.jsonl", "a", encoding="utf-8")  # closed at train end
            self.evals = open(run_dir / "evals.jsonl", "a", encoding="utf-8")

        def _evaluate(self, step: int, model: Any) -> None:
            record = {
                "step": step,
                "accuracy": greedy_accuracy(model, tokenizer, problems),
                "chosen_logp": held_out_chosen_logp(model, pairs),
            }
            self.evals.write(json.dumps(record) + "\n")
            self.evals.flush()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if settings.eval_every:
                self._evaluate(0, kwargs["model"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if settings.eval_every and state.global_step % settings.eval_every == 0:
                self._evaluate(state.global_step, kwargs["model"])

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> None:
            values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            self.logs.write(json.dumps({"step": state.global_step, **values}) + "\n")
            self.logs.flush()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logs.close()
            self.evals.close()

    return Recorder()


def _dpo_config(spec: RunSpec, settings: StudySettings, run_dir: Path) -> Any:
    """The demo recipe's ``DPOConfig`` with the spec's learning rate, β and schedule (5 warm-up steps), one log
    record per step, sequential data and no TensorBoard of HF's."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(run_dir / "trainer"),
        max_steps=spec.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.schedule,
        warmup_steps=5,
        beta=spec.beta,
        max_length=256,
        bf16=False,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=spec.seed,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )


def run_study(spec: RunSpec, out_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str],
              settings: StudySettings | None = None, sft: Any = None) -> Path:
    """Train one study run into ``out_dir/<spec.name>`` and return that folder.

    The policy is the spec's pre-trained tiny Llama (:data:`~studies.scenarios.MODELS`; built once into
    ``cache_dir`` and shared by every run); the reference is a frozen copy of it. The spinal callback probes
    every ``settings.interval`` steps with the detector ``settings.watch_probe_pairs`` names and only logs alerts,
    or logs and rolls back
    (:data:`ROLLBACK`) when ``spec.rollback``. Existing files of an unfinished run are replaced.

    Args:
        spec: the run (scenario, seed, model, recipe, fault, rollback).
        out_dir: parent folder of the run folders.
        cache_dir: cache of the pre-trained demo model (the same as ``spinal demo``'s ``--cache-dir``).
        settings: shared settings (defaults: :class:`StudySettings`).
        sft: the demo model's :class:`~spinal_callback.demo.model.SFTSettings` (default: the demo's).
    """
    import copy

    from trl import DPOTrainer

    from spinal_callback import RollbackConfig, SpinalConfig, SpinalTrainerCallback
    from spinal_callback.config.detector import DetectorConfig
    from spinal_callback.demo.data import task_dataset
    from spinal_callback.demo.inputs import silence_known_warnings
    from spinal_callback.demo.task import AdditionTask
    from spinal_callback.model.probe_batch import collate_pairs, tokenize_pairs
    from studies.replay import studied_defaults

    settings = settings or StudySettings()
    run_dir = Path(out_dir) / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("logs.jsonl", "evals.jsonl", "spinal_trace.jsonl", "run.json"):
        (run_dir / name).unlink(missing_ok=True)
    torch.set_num_threads(settings.threads)
    model, tokenizer, sft_result = load_model(spec.model, cache_dir, sft)
    task = AdditionTask(seed=spec.seed)
    problems = task.eval_problems(settings.eval_problems)
    held_out = tokenize_pairs(task.eval_pairs(settings.eval_pairs), tokenizer)  # only the chosen rows are scored
    held_out_batch = collate_pairs(held_out, pad_token_id=tokenizer.pad_token_id)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    with silence_known_warnings():
        config = _dpo_config(spec, settings, run_dir)
    detector = studied_defaults() if settings.watch_probe_pairs else DetectorConfig()
    spinal_config = SpinalConfig(  # trace_interval=0: a full depth trace at every probe, as in every study so far
        interval=settings.interval, signal_interval=settings.signal_interval, trace_interval=0,
        num_probe_pairs=settings.num_probe_pairs, detector=detector,
        on_alert=("log", "rollback") if spec.rollback else ("log",), rollback=RollbackConfig(**ROLLBACK),
        log_dir=str(run_dir / "tensorboard"), trace_path=str(run_dir / "spinal_trace.jsonl"), heatmaps=False,
        read_every_log=settings.read_every_log,
    )
    spinal = SpinalTrainerCallback(spinal_config)
    callbacks: list[Any] = [spinal, _recorder(run_dir, settings, tokenizer, problems, held_out_batch)]
    callbacks += _fault_callbacks(spec)
    started = time.perf_counter()
    with silence_known_warnings():
        trainer = DPOTrainer(
            model=model,
            ref_model=copy.deepcopy(model).eval().requires_grad_(False),
            args=config,
            train_dataset=task_dataset(_training_pairs(spec, settings, task)),
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        spinal.set_trainer(trainer)
        trainer.train()
    shape = MODELS[spec.model]
    meta = {
        "spec": spec.to_dict(), "settings": asdict(settings), "seconds": time.perf_counter() - started,
        "torch_threads": torch.get_num_threads(), "final_step": int(trainer.state.global_step),
        "model": {"name": spec.model, **asdict(shape), "sft_accuracy": sft_result.accuracy_after,
                  "sft_steps": sft_result.steps, "sft_path": sft_result.path},
        "on_alert": [a for a in spinal_config.on_alert if isinstance(a, str)],
        "detector": spinal_config.detector.to_dict(), "rollback": spinal_config.rollback.to_dict(),
        # since study 14 the callback reads a step with the trainer's log of that step (replay: studies.replay)
        "metrics_at_step": True,
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    return run_dir
