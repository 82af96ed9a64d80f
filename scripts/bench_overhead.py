"""Benchmark the spinal callback's overhead on a real DPO run (TRL ``DPOTrainer``, the ``spinal demo`` recipe).

The demo's tiny Llama (9 blocks, width 96) is pre-trained once (cached in ``--cache-dir``), then DPO
runs of ``--steps`` optimizer steps are timed in one process, arms side by side:

- ``without``: ``--no-spinal`` (HF's own TensorBoard logging only);
- ``with, interval N``: ``SpinalTrainerCallback`` at the library's default probe interval (``--interval``, 50), its
  forward-free readings (update size and turn, TRL's metrics, the detector) at the default reading interval (2);
- ``with, interval M``: the same at another probe interval (``--compare-interval``, 2: a probe at every reading, the
  setting of the lead-time studies; 0 leaves the arm out).

Every run trains a fresh deep copy of the same pre-trained weights (and its own frozen reference
copy) with the same seed. Arms are interleaved in a palindromic order (A B C, C B A, A B C, …) so
that a linear drift of the machine's speed affects every arm alike; one short untimed warm-up run
comes first. Only ``trainer.train()`` is timed (not pre-training, model copies or the trainer's
set-up, which tokenizes the data); the time includes the step-0 baseline probe and the callback's
set-up in ``on_train_begin``.

Reported per arm: median ``train()`` seconds, the amortized overhead ``(with − without) / without``
of the medians; probes per run (the monitor's ``probes_done``, checked against the ``"trace"``
records of the trace file and the ``spinal/probe/seconds`` points in TensorBoard), the median probe
time (``monitor.last_probe_seconds``: the hooked forward + metrics) and the callback's whole time
(its ``on_train_begin`` / ``on_step_end`` events: probe, TensorBoard and trace writes, detector);
the overhead they predict (probes × probe time / ``without``, and callback time / ``without``); and a
check that the callback costs nothing off its probe steps: median step time on steps that are not
multiples of the interval, with vs without (same step indices), and ``with − callback time`` vs
``without``.

Last, one ``update/size`` reading (the gather of the sampled weights and their norm, which the monitor does at
each probe outside ``spinal/probe/seconds``) is timed alone on the demo model and given as a share of a step.

On the CPU the default is one torch thread (``--threads``), as in the demo; the load average of the
machine is printed with the results. Usage::

    python scripts/bench_overhead.py --quick        # smoke run, < 1 min on 2 CPU cores (after pre-training)
    python scripts/bench_overhead.py                # 120 steps × 6 reps × 3 arms, ~5 min
    python scripts/bench_overhead.py --steps 120 --reps 5 --interval 10 --json overhead.json
    python scripts/bench_overhead.py --batch-size 64 --interval 2 --interval-large 8   # a larger training batch

The first run pre-trains the demo model (about a minute on 2 cores) into ``--cache-dir``; later
runs load it.

Whole runs one after the other drift by ±10 % on a shared machine; ``scripts/bench_overhead_turns.py`` measures the
default's overhead with two runs that take turns every 10 steps, and splits it into a steady state and a one-time
part (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

try:
    import spinal_callback  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinal_callback.demo.inputs import RunInputs, prepare_inputs, silence_known_warnings
from spinal_callback.demo.trl_recipe import build_parser, build_trainer

TARGET_PERCENT = 2.0


# ---------------------------------------------------------------------------------------------------
# Instrumentation


def _step_timer() -> Any:
    """A ``TrainerCallback`` that records when each optimizer step begins and when training ends.

    Added after the spinal callback, so a step's span (its ``on_step_begin`` to the next one's) holds
    the forward/backward/update, every callback's ``on_step_end`` (the probe on probe steps) and HF's
    logging.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begins: list[float] = []
            self.end = math.nan

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begins.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.end = time.perf_counter()

        def step_seconds(self) -> list[float]:
            marks = [*self.begins, self.end]
            return [b - a for a, b in itertools.pairwise(marks)]

    return StepTimer()


def _instrument(callback: Any) -> dict[str, Any]:
    """Wrap the spinal callback's events that can probe; returns the record they fill.

    ``callback_s``: seconds spent in every event the callback handles: ``on_train_begin`` (set-up +
    step-0 probe; also alone in ``setup_and_first_probe_s``), ``on_step_end`` (probes), ``on_log`` and ``on_train_end``
    (closing its writers; also alone in ``train_end_s``);
    ``probe_s``: ``monitor.last_probe_seconds`` of every probe; ``probe_steps``: their global steps.
    """
    record: dict[str, Any] = {"callback_s": 0.0, "setup_and_first_probe_s": math.nan, "train_end_s": math.nan,
                              "probe_s": [], "probe_steps": []}
    monitor = callback.monitor

    def wrap(name: str) -> None:
        inner = getattr(callback, name)

        def timed(args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            before = monitor.probes_done
            start = time.perf_counter()
            try:
                return inner(args, state, control, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                record["callback_s"] += seconds
                if name == "on_train_begin":
                    record["setup_and_first_probe_s"] = seconds
                elif name == "on_train_end":
                    record["train_end_s"] = seconds
                if monitor.probes_done > before:
                    record["probe_s"].append(monitor.last_probe_seconds)
                    record["probe_steps"].append(state.global_step)

        setattr(callback, name, timed)

    for name in ("on_train_begin", "on_step_end", "on_log", "on_train_end"):
        wrap(name)
    return record


def _trace_record_count(path: str | None, kind: str = "trace") -> int | None:
    """Records of ``kind`` in the trace file: ``"trace"`` (probes) or ``"signals"`` (readings between probes)."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip() and json.loads(line).get("type") == kind)


def _tensorboard_probe_seconds(log_dir: str | None) -> list[float] | None:
    """Every ``spinal/probe/seconds`` point in ``log_dir`` (``None`` if it cannot be read)."""
    if not log_dir or not os.path.isdir(log_dir):
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    except ImportError:
        return None
    accumulator = EventAccumulator(log_dir, size_guidance={SCALARS: 0})
    accumulator.Reload()
    if "spinal/probe/seconds" not in accumulator.Tags().get("scalars", []):
        return []
    return [event.value for event in accumulator.Scalars("spinal/probe/seconds")]


# ---------------------------------------------------------------------------------------------------
# Runs


def _demo_args(args: argparse.Namespace, interval: int | None, steps: int, output_dir: str) -> argparse.Namespace:
    argv = ["--max-steps", str(steps), "--threads", str(args.threads), "--seed", str(args.seed),
            "--cache-dir", args.cache_dir, "--output-dir", output_dir, "--batch-size", str(args.batch_size)]
    argv += ["--no-spinal"] if interval is None else ["--interval", str(interval)]
    if interval is not None and args.heatmap_interval is not None:
        argv += ["--heatmap-interval", str(args.heatmap_interval)]
    if interval is not None and getattr(args, "signal_interval", None) is not None:
        argv += ["--signal-interval", str(args.signal_interval)]
    return build_parser().parse_args(argv)


def run_once(args: argparse.Namespace, inputs: RunInputs, interval: int | None, steps: int,
             output_dir: str, attach: Callable[[Any, Any], None] | None = None) -> dict[str, Any]:
    """One DPO run of a fresh copy of the pre-trained weights; times ``trainer.train()`` only.

    ``attach(trainer, callback)``, when given, is called last before training (``callback`` is the spinal
    callback, ``None`` without it): ``bench_overhead_turns.py`` adds its turn-taking callbacks there."""
    model = copy.deepcopy(inputs.model)  # inputs.model itself is never trained
    run_inputs = dataclasses.replace(inputs, model=model)
    demo_args = _demo_args(args, interval, steps, output_dir)
    gc.collect()
    with silence_known_warnings():
        trainer, callback = build_trainer(demo_args, run_inputs)
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)  # no progress bar or printed logs, in either arm
        timer = _step_timer()
        trainer.add_callback(timer)
        record = _instrument(callback) if callback is not None else None
        if attach is not None:
            attach(trainer, callback)
        torch.manual_seed(args.seed)
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        cpu_start = time.process_time()
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
    result: dict[str, Any] = {
        "interval": interval,
        "train_s": seconds,
        "cpu_s": cpu_seconds,
        "steps_done": trainer.state.global_step,
        "loop_start_s": (timer.begins[0] - start) if timer.begins else math.nan,
        "step_s": timer.step_seconds(),
        "load1": load_before,
    }
    if record is not None:
        result.update(record)
        result["probes_done"] = callback.monitor.probes_done
        result["trace_probes"] = _trace_record_count(callback.trace_path)
        result["readings"] = _trace_record_count(callback.trace_path, "signals")
        result["tensorboard_probe_s"] = _tensorboard_probe_seconds(callback.log_dir)
    del trainer, callback, model, run_inputs
    gc.collect()
    return result


def schedule(arms: Sequence[Any], reps: int) -> list[Any]:
    """Palindromic interleaving: A B C, C B A, A B C, … (cancels a linear drift over each pair of reps)."""
    order: list[Any] = []
    for rep in range(reps):
        order.extend(arms if rep % 2 == 0 else list(reversed(arms)))
    return order


def time_update_size(model: torch.nn.Module, coordinates: int, reps: int = 200) -> dict[str, float]:
    """Median seconds of one ``update/size`` reading (the gather of ``coordinates`` sampled weights and the
    norm; the monitor does it once per probe, outside ``spinal/probe/seconds``) on a copy of ``model``."""
    from spinal_callback.monitor.update_size import UpdateSampler

    copy_ = copy.deepcopy(model)
    sampler = UpdateSampler(copy_, coordinates)
    sampler.measure(0)
    seconds = []
    for step in range(1, reps + 1):
        with torch.no_grad():
            next(p for p in copy_.parameters() if p.requires_grad).add_(1e-6)
        start = time.perf_counter()
        sampler.measure(step)
        seconds.append(time.perf_counter() - start)
    return {"coordinates": sampler.coordinates, "median_s": statistics.median(seconds)}


# ---------------------------------------------------------------------------------------------------
# Summary


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _paired_pct(mine: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> float:
    """Median over repetitions of ``100 · (with − without) / without`` within each repetition."""
    without = {r["rep"]: r[key] for r in base}
    return _median([100 * (r[key] - without[r["rep"]]) / without[r["rep"]] for r in mine if r["rep"] in without])


def summarize(runs: list[dict[str, Any]], intervals: Sequence[int]) -> dict[str, Any]:
    base = [r for r in runs if r["interval"] is None]
    base_train = _median([r["train_s"] for r in base])
    base_cpu = _median([r["cpu_s"] for r in base])
    base_steps = [r["step_s"] for r in base]
    out: dict[str, Any] = {
        "without": {
            "train_s": [r["train_s"] for r in base],
            "cpu_s": [r["cpu_s"] for r in base],
            "median_train_s": base_train,
            "median_cpu_s": base_cpu,
            "median_step_s": _median([s for steps_ in base_steps for s in steps_]),
        },
        "with": {},
    }
    for interval in intervals:
        mine = [r for r in runs if r["interval"] == interval]
        median_train = _median([r["train_s"] for r in mine])
        median_cpu = _median([r["cpu_s"] for r in mine])
        probe_s = [s for r in mine for s in r["probe_s"]]
        probes = _median([r["probes_done"] for r in mine])
        probe_median = _median(probe_s)
        callback_median = _median([r["callback_s"] for r in mine])
        # global step k (1-based) is a probe step when k % interval == 0; compare the same indices without
        off_with = [s for r in mine for k, s in enumerate(r["step_s"], 1) if k % interval]
        off_without = [s for steps_ in base_steps for k, s in enumerate(steps_, 1) if k % interval]
        on_with = [s for r in mine for k, s in enumerate(r["step_s"], 1) if not k % interval]
        on_without = [s for steps_ in base_steps for k, s in enumerate(steps_, 1) if not k % interval]
        off_median, off_median_without = _median(off_with), _median(off_without)
        # the step right after each probe (k − 1 ≡ 0 mod interval): where deferred work (event-file writes
        # of the TensorBoard thread, allocator or cache effects) would show
        after_with = [s for r in mine for k, s in enumerate(r["step_s"], 1) if not (k - 1) % interval]
        after_without = [s for steps_ in base_steps for k, s in enumerate(steps_, 1) if not (k - 1) % interval]
        far_with = [s for r in mine for k, s in enumerate(r["step_s"], 1) if k % interval and (k - 1) % interval]
        far_without = [s for steps_ in base_steps for k, s in enumerate(steps_, 1)
                       if k % interval and (k - 1) % interval]
        out["with"][str(interval)] = {
            "interval": interval,
            "train_s": [r["train_s"] for r in mine],
            "cpu_s": [r["cpu_s"] for r in mine],
            "median_train_s": median_train,
            "median_cpu_s": median_cpu,
            "overhead_pct": 100 * (median_train - base_train) / base_train,
            "overhead_pct_paired": _paired_pct(mine, base, "train_s"),
            "cpu_overhead_pct": 100 * (median_cpu - base_cpu) / base_cpu,
            "cpu_overhead_pct_paired": _paired_pct(mine, base, "cpu_s"),
            "probes_per_run": probes,
            "readings_between_probes_per_run": _median([r.get("readings") or 0 for r in mine]),
            "probe_s_median": probe_median,
            "probe_s_min": min(probe_s) if probe_s else math.nan,
            "probe_s_max": max(probe_s) if probe_s else math.nan,
            "first_probe_incl_setup_s_median": _median([r["setup_and_first_probe_s"] for r in mine]),
            "callback_s_median": callback_median,
            "callback_s_per_probe": callback_median / probes,
            "predicted_pct_probe": 100 * probes * probe_median / base_train,
            "predicted_pct_callback": 100 * callback_median / base_train,
            "off_probe_step_s_median": off_median,
            "off_probe_step_s_median_without": off_median_without,
            "off_probe_step_pct": 100 * (off_median - off_median_without) / off_median_without,
            "after_probe_step_pct": 100 * (_median(after_with) - _median(after_without)) / _median(after_without),
            "other_step_pct": 100 * (_median(far_with) - _median(far_without)) / _median(far_without),
            "probe_step_s_median": _median(on_with),
            "probe_step_s_median_without": _median(on_without),
            "train_minus_callback_s_median": _median([r["train_s"] - r["callback_s"] for r in mine]),
            "probe_counts_consistent": all(
                r["probes_done"] == len(r["probe_s"]) and r["trace_probes"] in (None, r["probes_done"])
                and (r["tensorboard_probe_s"] is None or len(r["tensorboard_probe_s"]) == r["probes_done"])
                for r in mine
            ),
            "probe_to_step_ratio": probe_median / off_median_without,
            "callback_to_step_ratio": callback_median / probes / off_median_without,
        }
    return out


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


def format_table(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    base = summary["without"]
    rows = list(summary["with"].values())
    lines = [
        f"demo tiny Llama ({meta['model']}), DPO {meta['steps']} steps × batch {meta['batch_size']} pairs, "
        f"probe set {meta['num_probe_pairs']} pairs (2K={2 * meta['num_probe_pairs']} rows), "
        f"{meta['device']}, torch {meta['torch']}, {meta['threads']} thread(s), {meta['reps']} interleaved reps, "
        f"load avg {meta['loadavg_start']} → {meta['loadavg_end']} (1/5/15 min, {meta['cpus']} CPUs)",
        "",
        "| arm | median train() wall s | overhead (medians) | overhead (paired) | median train() CPU s "
        "| CPU overhead (medians) | CPU overhead (paired) |",
        "|---|---|---|---|---|---|---|",
        f"| without (--no-spinal) | {base['median_train_s']:.2f} |  |  | {base['median_cpu_s']:.2f} |  |  |",
    ]
    for row in rows:
        lines.append(
            f"| with, interval {row['interval']} | {row['median_train_s']:.2f} | {_pct(row['overhead_pct'])} "
            f"| {_pct(row['overhead_pct_paired'])} | {row['median_cpu_s']:.2f} | {_pct(row['cpu_overhead_pct'])} "
            f"| {_pct(row['cpu_overhead_pct_paired'])} |"
        )
    lines += [
        "",
        "| arm | probes/run | probe s (median) | callback s/run | predicted: probes × probe s "
        "| predicted: callback s | off-probe step s, with / without | probe-step s, with / without "
        "| train − callback s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| with, interval {row['interval']} | {row['probes_per_run']:g} | {row['probe_s_median']:.3f} "
            f"| {row['callback_s_median']:.2f} | {_pct(row['predicted_pct_probe'])} "
            f"| {_pct(row['predicted_pct_callback'])} "
            f"| {row['off_probe_step_s_median']:.4f} / {row['off_probe_step_s_median_without']:.4f} "
            f"| {row['probe_step_s_median']:.3f} / {row['probe_step_s_median_without']:.3f} "
            f"| {row['train_minus_callback_s_median']:.2f} (without: {base['median_train_s']:.2f}) |"
        )
    arms = [str(row["interval"]) for row in rows]
    order = ", ".join(["without", *arms, *arms[::-1]])
    lines += ["", f"per-run train() wall s (run order is palindromic: {order}, without, …):",
              "  without: " + ", ".join(f"{s:.2f}" for s in base["train_s"])]
    for row in rows:
        lines.append(f"  interval {row['interval']}: " + ", ".join(f"{s:.2f}" for s in row["train_s"]))
    for row in rows:
        verdict = "met" if row["overhead_pct_paired"] <= TARGET_PERCENT else "NOT met"
        lines.append(
            f"interval {row['interval']}: overhead {row['overhead_pct_paired']:+.2f}% wall / "
            f"{row['cpu_overhead_pct_paired']:+.2f}% CPU (paired medians; target ≤ {TARGET_PERCENT:g}%: {verdict}); "
            f"off-probe steps {_pct(row['off_probe_step_pct'])} (the step after a probe "
            f"{_pct(row['after_probe_step_pct'])}, the others {_pct(row['other_step_pct'])}); callback per probe "
            f"{row['callback_s_per_probe']:.3f} s, the probe itself {row['probe_s_median']:.3f} s; first probe + "
            f"set-up {row['first_probe_incl_setup_s_median']:.3f} s; readings between probes "
            f"{row['readings_between_probes_per_run']:g}/run; probe counts agree (monitor, trace file, "
            f"TensorBoard): {'yes' if row['probe_counts_consistent'] else 'NO'}"
        )
    if rows:
        probe_ratio = _median([row["probe_to_step_ratio"] for row in rows])
        callback_ratio = _median([row["callback_to_step_ratio"] for row in rows])
        # amortized overhead ≈ ratio / interval  ⇒  ≤ target for interval ≥ ratio / target
        lines.append(
            f"one probe ≈ {probe_ratio:.2f} training steps (all callback work per probe ≈ {callback_ratio:.2f}); "
            f"≤ {TARGET_PERCENT:g}% needs interval ≥ {math.ceil(probe_ratio / (TARGET_PERCENT / 100))} "
            f"(≥ {math.ceil(callback_ratio / (TARGET_PERCENT / 100))} counting the callback's writes)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Main


def build_arg_parser() -> argparse.ArgumentParser:
    from spinal_callback import SpinalConfig

    default_interval = SpinalConfig().interval
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 30 steps, 2 reps (< 1 min, plus ~1 min of pre-training the first time).")
    parser.add_argument("--steps", type=int, default=None,
                        help="DPO optimizer steps per run (default: the demo's 120; 30 quick).")
    parser.add_argument("--interval", type=int, default=default_interval,
                        help=f"Probe interval of the main arm (default: the library's, {default_interval}).")
    parser.add_argument("--compare-interval", "--interval-large", dest="interval_large", type=int, default=2,
                        help="Probe interval of the second arm (default: 2, a probe at every reading; 0 leaves the "
                        "arm out).")
    parser.add_argument("--heatmap-interval", type=int, default=None,
                        help="Steps between heatmap images in the arms with the callback (default: the library's).")
    parser.add_argument("--signal-interval", type=int, default=None,
                        help="Steps between readings in the arms with the callback (default: the library's, 2 for "
                        "an even interval); every probe interval must be a multiple of it.")
    parser.add_argument("--reps", type=int, default=None, help="Repetitions per arm (default: 6; 2 quick).")
    parser.add_argument("--batch-size", type=int, default=build_parser().get_default("batch_size"),
                        help="Preference pairs per optimizer step (default: the demo's). The probe's cost is "
                        "fixed by the probe set, so its share falls as the training batch grows.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1; 0: torch's default).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the task, model and training (default: 0).")
    parser.add_argument("--cache-dir", default=os.path.join("spinal_runs", "trl_dpo", "sft_cache"),
                        help="Cache of the pre-trained demo model (default: spinal_runs/trl_dpo/sft_cache, "
                        "the one `spinal demo` fills when run from the same folder).")
    parser.add_argument("--output-dir", default=None,
                        help="Where the runs write logs and traces (default: a temporary folder, removed after).")
    parser.add_argument("--json", metavar="PATH", default=None, help="Also write every measurement as JSON.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    steps = args.steps or (30 if args.quick else build_parser().get_default("max_steps"))
    reps = args.reps or (2 if args.quick else 6)
    intervals = [args.interval] + ([args.interval_large] if args.interval_large else [])
    if steps <= 0 or reps <= 0 or any(i <= 0 for i in intervals):
        parser.error("--steps, --reps and --interval must be positive")
    if args.threads < 0:
        parser.error("--threads must be 0 or positive")
    from spinal_callback import SpinalConfig

    for interval in intervals:  # the library's own check of the two intervals, before any run
        try:
            SpinalConfig(interval=interval, signal_interval=args.signal_interval)
        except ValueError as exc:
            second = interval != args.interval
            parser.error(f"{exc}{' (--compare-interval 0 leaves the second arm out)' if second else ''}")

    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []
    output_root = args.output_dir or tempfile.mkdtemp(prefix="bench_overhead_")
    os.makedirs(output_root, exist_ok=True)
    import datasets

    datasets.disable_progress_bars()  # TRL's tokenization bars, at every trainer's set-up
    print(f"preparing the demo model (cache: {args.cache_dir}) …", flush=True)
    inputs = prepare_inputs(_demo_args(args, None, steps, output_root))
    params = sum(p.numel() for p in inputs.model.parameters())
    config = inputs.model.config

    arms: list[int | None] = [None, *intervals]
    runs: list[dict[str, Any]] = []
    try:
        warm = min(steps, 2 * args.interval)
        print(f"warm-up run ({warm} steps, with the callback, untimed) …", flush=True)
        run_once(args, inputs, args.interval, warm, os.path.join(output_root, "warmup"))
        for index, interval in enumerate(schedule(arms, reps)):
            name = "without" if interval is None else f"with, interval {interval}"
            result = run_once(args, inputs, interval, steps, os.path.join(output_root, f"run{index:02d}"))
            result["order"] = index
            result["rep"] = index // len(arms)
            runs.append(result)
            extra = "" if interval is None else (
                f", {result['probes_done']} probes, median probe {_median(result['probe_s']):.3f} s, "
                f"callback {result['callback_s']:.2f} s")
            print(f"  [{index + 1}/{len(arms) * reps}] {name}: train() {result['train_s']:.2f} s{extra} "
                  f"(CPU {result['cpu_s']:.2f} s, load {result['load1']:.2f})", flush=True)
    finally:
        if args.output_dir is None:
            shutil.rmtree(output_root, ignore_errors=True)

    meta = {
        "model": f"{config.num_hidden_layers} blocks, width {config.hidden_size}, vocab {config.vocab_size}, "
                 f"{params / 1e6:.2f}M params",
        "steps": steps,
        "reps": reps,
        "batch_size": args.batch_size,
        "num_probe_pairs": build_parser().get_default("num_probe_pairs"),
        "intervals": intervals,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "device": "cpu (float32)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        "wall_s": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", "scripts/bench_overhead.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    summary = summarize(runs, intervals)
    summary["update_size"] = time_update_size(inputs.model, SpinalConfig().update_coordinates)
    print()
    print(format_table(summary, meta))
    size = summary["update_size"]
    print(f"update/size: one reading of {size['coordinates']} sampled weights {1e6 * size['median_s']:.0f} µs "
          f"(median of 200) = {100 * size['median_s'] / summary['without']['median_step_s']:.2f} % of a training "
          "step without the callback")
    print(f"(total wall time {meta['wall_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2,
                                              default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
