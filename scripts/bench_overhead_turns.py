"""The spinal callback's training-time overhead on the demo, measured by two runs that take turns.

``bench_overhead.py`` times whole runs one after the other; on a shared machine their times drift by ±10 %
within one benchmark, more than the 2 % this is about. Here the two arms run **at the same time, in turns**:
two worker processes each train the demo recipe (a fresh copy of the same pre-trained weights, same seed), one
with ``SpinalTrainerCallback`` at the library's defaults and one without it, and hand a token back and forth
every ``--block`` optimizer steps, so that only one of them computes at any moment. A turn is timed from the
moment a worker gets the token to the moment it passes it on; the two arms' turns ``k`` are a few seconds apart,
so a slow minute of the machine slows both alike. Everything of a step counts: the forward, backward and
optimizer step, the trainer's callbacks and logging, and the spinal callback's work at that step (set-up and the
step-0 probe in the first turn, probes, readings, TensorBoard and trace writes, and the final images and
flushes in the last turn, which ends after the spinal callback's ``on_train_end``).

The with-callback worker waits for its heatmap drawing thread before it passes the token, so images drawn in
the background are charged to its own turn (in a real run they share the interpreter lock with training; here
they would otherwise run free while the other worker computes). The figure is therefore an upper bound on
that part.

Reported, per pair of runs and pooled over ``--reps`` pairs (which worker has the callback and which one starts
alternate, so a difference between the two processes cancels):

- **whole run**: the with arm's summed turns over the without arm's, minus 1, wall clock and process CPU
  (the CPU time includes the callback's threads);
- **steady state**: the same without the first and last turns (set-up and closing: the one-time part);
- **one-time seconds**: the first and last turns' difference, with vs without;
- 95 % intervals from a bootstrap over paired turns (resampled within each pair of runs);
- the run length from which the whole-run overhead stays under the 2 % target, from the two parts;
- **A/A**: ``--aa`` pairs in which both workers train without the callback: the method's own error, whose
  interval must hold 0.

Usage::

    python scripts/bench_overhead_turns.py --quick            # smoke run, ~2 min on 2 cores (after pre-training)
    python scripts/bench_overhead_turns.py                    # 600 steps, 4 pairs + 2 A/A pairs, ~20 min
    python scripts/bench_overhead_turns.py --steps 120 --reps 4 --aa 0 --json turns.json

The first run pre-trains the demo model (about a minute on 2 cores) into ``--cache-dir``; later runs load it.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_overhead, also in the spawned workers

import bench_overhead

TARGET_PERCENT = bench_overhead.TARGET_PERCENT
_median = bench_overhead._median  # NaN-skipping median
ARM_NAMES = {"with": "with the callback vs without", "A/A": "A/A: without vs without"}
_TIMEOUT_S = 1800.0  # a worker that waits longer for its turn assumes the other one died


# ---------------------------------------------------------------------------------------------------
# Taking turns (in the workers)


@dataclass
class Turns:
    """Pass a token to the peer worker every ``block`` optimizer steps; time the turns and the steps in them.

    ``step_s[k-1]``: optimizer step ``k``'s time, from its ``on_step_begin`` to the next one (its forward, backward,
    optimizer step and every callback's ``on_step_end`` / ``on_log``), less the time spent waiting for the token;
    the last step has no entry (it runs into ``on_train_end``). ``setup_s``: ``on_train_begin`` up to the first
    step; ``closing_s``: from the last step's ``on_step_begin`` to the end of ``on_train_end``."""

    peer: Any  # multiprocessing Connection to the other worker
    first: bool
    block: int
    run: int
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    setup_s: float = math.nan
    closing_s: float = math.nan
    _wall0: float = 0.0
    _cpu0: float = 0.0
    _train_begin: float = math.nan
    _step_begin: float = math.nan
    _monitor: Any = None
    _last_end: float = math.nan

    def attach(self, trainer: Any, callback: Any) -> None:
        """Add the turn-taking callbacks (first and last in the trainer's list) and meet the peer."""
        from transformers import TrainerCallback

        turns = self

        class TakeTurn(TrainerCallback):  # first: a turn starts before any other callback's event
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                turns.train_begins()

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                turns.step_begins(state.global_step)

        class EndTurn(TrainerCallback):  # last: the final turn ends after the spinal callback has closed
            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                turns.train_ends()

        self._monitor = callback.monitor if callback is not None else None
        trainer.callback_handler.callbacks.insert(0, TakeTurn())
        trainer.add_callback(EndTurn())
        self.peer.send(("ready", self.run))
        self._expect("ready")

    def train_begins(self) -> None:
        """``on_train_begin``: the first turn starts (the second worker waits for it)."""
        self.begin()
        self._train_begin = time.perf_counter()

    def train_ends(self) -> None:
        """``on_train_end``, after every other callback: the last turn ends; the first worker waits for the
        other's last turn, so that every token sent is received within the run."""
        self.hand_over()
        self.closing_s = self._last_end - self._step_begin
        if self.first:
            self.wait()

    def step_begins(self, done: int) -> None:
        """``on_step_begin`` with ``done`` optimizer steps done: close the previous step; hand over every block."""
        if done and done % self.block == 0:
            self.hand_over()
            arrived = self._last_end
            self.begin()
        else:
            arrived = time.perf_counter()
        if done == 0:
            self.setup_s = arrived - self._train_begin
        else:
            self.step_s.append(arrived - self._step_begin)
        self._step_begin = time.perf_counter()

    def begin(self) -> None:
        if not self.first or self.wall_s:
            self.wait()
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def hand_over(self) -> None:
        images = getattr(getattr(self._monitor, "outputs", None), "sink", None)  # set up in on_train_begin
        images = getattr(images, "images", None)
        if images is not None:
            images.flush()  # charge images drawn in the background to this turn
        self._last_end = time.perf_counter()
        self.wall_s.append(self._last_end - self._wall0)
        self.cpu_s.append(time.process_time() - self._cpu0)
        self.peer.send(("turn", self.run))

    def wait(self) -> None:
        self._expect("turn")

    def _expect(self, kind: str) -> None:
        if not self.peer.poll(_TIMEOUT_S):
            raise TimeoutError(f"no {kind!r} from the other worker in {_TIMEOUT_S:.0f} s (did it fail?)")
        message = self.peer.recv()
        if message != (kind, self.run):
            raise RuntimeError(f"expected {(kind, self.run)!r} from the other worker, got {message!r}")


def _worker(index: int, parent: Any, peer: Any, options: dict[str, Any]) -> None:
    """One worker: load the cached demo model, warm up, then train the runs the parent sends."""
    try:
        import datasets

        datasets.disable_progress_bars()
        args = argparse.Namespace(**options)
        inputs = bench_overhead.prepare_inputs(
            bench_overhead._demo_args(args, None, args.steps, os.path.join(args.output_root, f"w{index}")))
        warm = min(args.steps, 2 * args.interval)
        bench_overhead.run_once(args, inputs, args.interval, warm, os.path.join(args.output_root, f"warm{index}"))
        parent.send(("warm", index))
        while True:
            command = parent.recv()
            if command is None:
                return
            run, interval, first = command
            turns = Turns(peer, first=first, block=args.block, run=run)
            result = bench_overhead.run_once(args, inputs, interval, args.steps,
                                             os.path.join(args.output_root, f"run{run:02d}-w{index}"),
                                             attach=turns.attach)
            result.update(turn_wall_s=turns.wall_s, turn_cpu_s=turns.cpu_s, step_s=turns.step_s,
                          setup_s=turns.setup_s, closing_s=turns.closing_s)
            parent.send(("result", result))
    except BaseException as exc:  # reported to the parent, which stops the other worker
        import traceback

        parent.send(("error", f"worker {index}: {exc!r}\n{traceback.format_exc()}"))


# ---------------------------------------------------------------------------------------------------
# Analysis (pure; tested in tests/scripts/test_bench_overhead_turns.py)


@dataclass(frozen=True)
class PairedTurns:
    """One pair of runs taken in turns: the turn times of the arm measured and of its baseline."""

    measured: Sequence[float]
    baseline: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.measured) != len(self.baseline) or len(self.measured) < 3:
            raise ValueError(f"a pair needs the same number (≥ 3) of turns in both runs, got "
                             f"{len(self.measured)} and {len(self.baseline)}")

    @property
    def middle(self) -> PairedTurns:
        """The turns between the first (set-up) and the last (closing)."""
        return PairedTurns(self.measured[1:-1], self.baseline[1:-1]) if len(self.measured) > 4 else self


def overhead_pct(pairs: Sequence[PairedTurns]) -> float:
    """``100 · (Σ measured / Σ baseline − 1)`` over every turn of every pair."""
    measured = sum(sum(p.measured) for p in pairs)
    baseline = sum(sum(p.baseline) for p in pairs)
    return 100.0 * (measured / baseline - 1.0)


def bootstrap_interval(pairs: Sequence[PairedTurns], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of :func:`overhead_pct`, resampling paired turns with replacement within each pair."""
    rng = random.Random(seed)
    estimates = []
    for _ in range(draws):
        measured = baseline = 0.0
        for pair in pairs:
            n = len(pair.measured)
            for _ in range(n):
                i = rng.randrange(n)
                measured += pair.measured[i]
                baseline += pair.baseline[i]
        estimates.append(100.0 * (measured / baseline - 1.0))
    return _percentile_interval(estimates)


def _percentile_interval(estimates: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    ordered = sorted(estimates)
    last = len(ordered) - 1
    return ordered[math.floor((1 - level) / 2 * last)], ordered[math.ceil((1 + level) / 2 * last)]


def steps_under_target(steady_pct: float, one_time_s: float, step_s: float, target_pct: float) -> float:
    """Run length (optimizer steps) from which ``steady + one-time / (steps · step_s)`` is at most the target
    (``inf`` when the steady part alone is above it, 0 when even one step is under)."""
    room = target_pct - steady_pct
    if room <= 0:
        return math.inf
    return max(0.0, 100.0 * one_time_s / (room * step_s))


def step_classes(steps: int, interval: int, reading_interval: int, heatmap_interval: int) -> list[str]:
    """What the callback does after optimizer step ``k`` (``k = 1 … steps − 1``; the last step runs into the
    closing): ``"heatmap"`` (a probe whose images are drawn), ``"probe"``, ``"reading"`` or ``"none"``."""
    def kind(k: int) -> str:
        if k % interval == 0:
            return "heatmap" if k % heatmap_interval == 0 else "probe"
        return "reading" if k % reading_interval == 0 else "none"

    return [kind(k) for k in range(1, steps)]


def quantile_overhead(measured: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
                      classes: Sequence[str], q: float, block: int, draws: int = 2000,
                      seed: int = 0) -> tuple[float, tuple[float, float], dict[str, float]]:
    """Steady-state overhead from step-time quantiles: per class of step (:func:`step_classes`) the ``q``-quantile
    of the measured arm's steps against the baseline's at the same step indices (pooled over pairs), weighted by
    how many steps of each class a run has::

        100 · (Σ_c n_c · Q_q(measured, c) / Σ_c n_c · Q_q(baseline, c) − 1)

    A quantile ignores the slow steps that another tenant's work causes on a shared machine, as long as both arms
    meet the same machine (they take turns). Returns the estimate, a 95 % bootstrap interval and the extra
    milliseconds per step of each class. The bootstrap resamples whole turns (``block`` consecutive steps) of each
    run, so that a slow spell that lasts a turn counts once, not once per step."""
    import numpy as np

    labels = np.array(classes)
    names = sorted(set(classes))
    counts = {c: int((labels == c).sum()) for c in names}
    arms = (np.asarray(measured, dtype=np.float64), np.asarray(baseline, dtype=np.float64))
    blocks = [np.arange(start, min(start + block, len(labels))) for start in range(0, len(labels), block)]

    def estimate(picks: Sequence[Sequence[np.ndarray]]) -> tuple[float, dict[str, float]]:
        totals, extra = [0.0, 0.0], {}
        for c in names:
            quantiles = []
            for arm, (data, runs) in enumerate(zip(arms, picks)):
                pooled = np.concatenate([data[r, idx[labels[idx] == c]] for r, idx in enumerate(runs)])
                quantiles.append(float(np.quantile(pooled, q)) if pooled.size else math.nan)
                totals[arm] += counts[c] * quantiles[-1]
            extra[c] = 1e3 * (quantiles[0] - quantiles[1])
        return 100.0 * (totals[0] / totals[1] - 1.0), extra

    everything = np.arange(len(labels))
    point, extra_ms = estimate([[everything] * len(data) for data in arms])
    rng = np.random.default_rng(seed)

    boots = []
    for _ in range(draws):
        picks = [[np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
                  for _ in range(len(data))] for data in arms]
        value = estimate(picks)[0]
        if math.isfinite(value):
            boots.append(value)
    return point, _percentile_interval(boots), extra_ms


def summarize(results: Sequence[dict[str, Any]], classes: Sequence[str], block: int) -> dict[str, Any]:
    """Every estimate for one kind of pair (``results``: the parent's ``{"measured": run, "baseline": run}``
    records): turn sums (whole run and middle turns, wall and CPU), step quantiles and one-time seconds."""
    out: dict[str, Any] = {"pairs": len(results)}
    for clock, key in (("wall", "turn_wall_s"), ("cpu", "turn_cpu_s")):
        pairs = [PairedTurns(r["measured"][key], r["baseline"][key]) for r in results]
        middles = [p.middle for p in pairs]
        out[clock] = {
            "whole_pct": overhead_pct(pairs),
            "whole_ci": bootstrap_interval(pairs),
            "middle_pct": overhead_pct(middles),
            "middle_ci": bootstrap_interval(middles),
            "per_pair_whole_pct": [overhead_pct([p]) for p in pairs],
        }
    measured = [r["measured"]["step_s"] for r in results]
    baseline = [r["baseline"]["step_s"] for r in results]
    for q in (0.5, 0.25):
        point, ci, extra_ms = quantile_overhead(measured, baseline, classes, q, block)
        out[f"steps_q{int(100 * q)}"] = {"pct": point, "ci": ci, "extra_ms": extra_ms}
    one_time = [(r["measured"]["setup_s"] - r["baseline"]["setup_s"]) + (r["measured"]["closing_s"]
                                                                          - r["baseline"]["closing_s"])
                for r in results]
    out["one_time_s"] = _median(one_time)
    out["setup_extra_s"] = _median([r["measured"]["setup_s"] - r["baseline"]["setup_s"] for r in results])
    out["closing_extra_s"] = _median([r["measured"]["closing_s"] - r["baseline"]["closing_s"]
                                            for r in results])
    out["baseline_step_s"] = _median([_median(run) for run in baseline])
    # accounting: the callback's own time, timed inside its events, against the baseline's steps of the same pair
    steady_own, once_own = [], []
    for r in results:
        m = r["measured"]
        if "callback_s" in m:
            once = m["setup_and_first_probe_s"] + m.get("train_end_s", math.nan)
            steady_own.append(100.0 * (m["callback_s"] - once) / sum(r["baseline"]["step_s"]))
            once_own.append(once)
    out["accounting_steady_pct"] = _median(steady_own)
    out["accounting_one_time_s"] = _median(once_own)
    out["probes"] = results[0]["measured"].get("probes_done")
    out["callback_s"] = _median([r["measured"].get("callback_s", math.nan) for r in results])
    return out


def _plan(reps: int, aa: int, interval: int) -> list[tuple[str, int | None, int | None, int]]:
    """``(kind, interval of worker 0, interval of worker 1, first worker)`` per pair of runs: which worker has
    the callback and which one starts go through all four combinations; A/A pairs alternate the start."""
    plan: list[tuple[str, int | None, int | None, int]] = []
    for rep in range(reps):
        with_worker, first = rep % 2, (rep // 2) % 2
        plan.append(("with", interval if with_worker == 0 else None, interval if with_worker == 1 else None, first))
    plan += [("A/A", None, None, rep % 2) for rep in range(aa)]
    return plan


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:+.2f}%, {ci[1]:+.2f}%]"


def format_report(meta: dict[str, Any], arms: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"demo tiny Llama ({meta['model']}), DPO {meta['steps']} steps × batch {meta['batch_size']} pairs, turns of "
        f"{meta['block']} steps, probe interval {meta['interval']}, readings every {meta['reading_interval']}, "
        f"heatmaps every {meta['heatmap_interval']}; {meta['device']}, torch {meta['torch']}, {meta['threads']} "
        f"thread(s) per worker, load avg {meta['loadavg_start']} → {meta['loadavg_end']} (1/5/15 min, "
        f"{meta['cpus']} CPUs)",
        "",
        "Sums of turns (every second of the runs; the mean, which another tenant's bursts move):",
        "",
        "| pairs of runs | clock | whole run | 95 % CI | middle turns (no set-up, no closing) | 95 % CI "
        "| per pair: whole run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        for clock in ("wall", "cpu"):
            s = arm[clock]
            lines.append(
                f"| {name} ({arm['pairs']}) | {'wall' if clock == 'wall' else 'process CPU'} | {s['whole_pct']:+.2f}% "
                f"| {_fmt_ci(s['whole_ci'])} | {s['middle_pct']:+.2f}% | {_fmt_ci(s['middle_ci'])} "
                f"| {', '.join(f'{v:+.1f}' for v in s['per_pair_whole_pct'])} |"
            )
    lines += [
        "",
        "Steps (wall clock; per class of step, a quantile of the step times of each arm at the same step indices):",
        "",
        "| pairs of runs | steady state, medians | 95 % CI | steady state, lower quartiles | 95 % CI "
        "| extra ms per step (medians) | one-time s (set-up + closing) | step s without |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        q50, q25 = arm["steps_q50"], arm["steps_q25"]
        extra = ", ".join(f"{c} {v:+.2f}" for c, v in q50["extra_ms"].items())
        lines.append(
            f"| {name} ({arm['pairs']}) | {q50['pct']:+.2f}% | {_fmt_ci(q50['ci'])} | {q25['pct']:+.2f}% "
            f"| {_fmt_ci(q25['ci'])} | {extra} | {arm['one_time_s']:+.3f} (set-up {arm['setup_extra_s']:+.3f}, "
            f"closing {arm['closing_extra_s']:+.3f}) | {arm['baseline_step_s']:.4f} |"
        )
    measured = arms.get(ARM_NAMES["with"])
    if measured is not None:
        steady = measured["steps_q50"]
        one_time, step_s = measured["one_time_s"], measured["baseline_step_s"]
        verdict = "met" if steady["ci"][1] <= TARGET_PERCENT else "NOT shown met"
        lines += [
            "",
            f"steady state {steady['pct']:+.2f}% (95 % CI {_fmt_ci(steady['ci'])}; target ≤ {TARGET_PERCENT:g}% with "
            f"the upper bound: {verdict}); one-time {one_time:.2f} s (set-up and step-0 probe "
            f"{measured['setup_extra_s']:.2f} s, closing {measured['closing_extra_s']:.2f} s) over a step of "
            f"{step_s * 1e3:.0f} ms without the callback",
        ]
        for n in sorted({120, meta["steps"], 1000}):
            total = steady["pct"] + 100.0 * one_time / (n * step_s)
            upper = steady["ci"][1] + 100.0 * one_time / (n * step_s)
            lines.append(f"  a run of {n} steps: {total:+.2f}% (upper {upper:+.2f}%)")
        n_min = steps_under_target(steady["ci"][1], one_time, step_s, TARGET_PERCENT)
        lines += [
            (f"runs of at least {math.ceil(n_min)} steps stay under {TARGET_PERCENT:g}% (steady upper bound + "
             "one-time)" if math.isfinite(n_min) else
             f"no run length stays under {TARGET_PERCENT:g}%: the steady state's upper bound alone is above it")
            + f"; probes {measured['probes']}/run",
            f"accounting (the callback's own time, timed inside its events; medians over pairs): "
            f"{measured['callback_s']:.2f} s/run, of which {measured['accounting_one_time_s']:.2f} s in on_train_begin "
            f"and on_train_end; the rest {measured['accounting_steady_pct']:+.2f}% of the steps without the callback",
        ]
    return "\n".join(lines)


def build_arg_parser() -> argparse.ArgumentParser:
    base = bench_overhead.build_arg_parser()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smoke run: 40 steps, 1 pair + 1 A/A pair.")
    parser.add_argument("--steps", type=int, default=None, help="DPO optimizer steps per run (default: 600; 40 "
                        "quick). Long enough for the steady state; the demo's own runs are 120 steps.")
    parser.add_argument("--block", type=int, default=10, help="Optimizer steps per turn (default: 10).")
    parser.add_argument("--reps", type=int, default=None, help="Pairs of runs with vs without the callback "
                        "(default: 4, every combination of which worker has it and which one starts; 1 quick).")
    parser.add_argument("--aa", type=int, default=None, help="A/A pairs, both without the callback (default: 2; "
                        "1 quick).")
    parser.add_argument("--interval", type=int, default=base.get_default("interval"),
                        help="Probe interval of the arm with the callback (default: the library's).")
    parser.add_argument("--heatmap-interval", type=int, default=None,
                        help="Steps between heatmap images (default: the library's).")
    parser.add_argument("--signal-interval", type=int, default=None,
                        help="Steps between readings (default: the library's, 2 for an even --interval); "
                        "--interval must be a multiple of it.")
    for option in ("--batch-size", "--threads", "--seed", "--cache-dir"):
        action = next(a for a in base._actions if option in a.option_strings)
        parser.add_argument(option, type=action.type, default=action.default, help=action.help)
    parser.add_argument("--json", metavar="PATH", default=None, help="Also write every measurement as JSON.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    args.steps = args.steps or (40 if args.quick else 600)
    reps = args.reps if args.reps is not None else (1 if args.quick else 4)
    aa = args.aa if args.aa is not None else (1 if args.quick else 2)
    if args.steps < 3 * args.block or args.block <= 0 or reps < 0 or aa < 0 or reps + aa == 0:
        parser.error("need --block > 0, --steps ≥ 3 × --block and at least one pair of runs")
    from spinal_callback import SpinalConfig

    try:
        config = SpinalConfig(interval=args.interval, signal_interval=args.signal_interval)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench_turns_") as output_root:
        options = {**vars(args), "output_root": output_root}
        import datasets

        datasets.disable_progress_bars()
        print(f"preparing the demo model (cache: {args.cache_dir}) …", flush=True)
        inputs = bench_overhead.prepare_inputs(
            bench_overhead._demo_args(argparse.Namespace(**options), None, args.steps, output_root))
        model_config = inputs.model.config
        params = sum(p.numel() for p in inputs.model.parameters())
        del inputs
        # a terminated benchmark stops its workers too (the finally below), instead of leaving them training
        signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_overhead_turns: terminated"))
        context = multiprocessing.get_context("spawn")
        peer_ends = context.Pipe()
        parents, workers = [], []
        for index in range(2):
            mine, theirs = context.Pipe()
            worker = context.Process(target=_worker, args=(index, theirs, peer_ends[index], options), daemon=True)
            worker.start()
            parents.append(mine)
            workers.append(worker)
        finished = False
        try:
            for index in range(2):
                _receive(parents[index], "warm")
            print("workers warmed up", flush=True)
            records: dict[str, list[dict[str, Any]]] = {}
            for run, (kind, interval0, interval1, first) in enumerate(_plan(reps, aa, args.interval)):
                parents[0].send((run, interval0, first == 0))
                parents[1].send((run, interval1, first == 1))
                results = [_receive(parents[i], "result")[1] for i in range(2)]
                if kind == "with":
                    measured, baseline = (results[0], results[1]) if interval0 is not None else (results[1],
                                                                                              results[0])
                else:
                    measured, baseline = results[1 - first], results[first]  # the second mover "measured"
                records.setdefault(kind, []).append({"measured": measured, "baseline": baseline, "first": first})
                print(f"  [{run + 1}] {kind}: turns {len(measured['turn_wall_s'])}, measured "
                      f"{sum(measured['turn_wall_s']):.2f} s vs {sum(baseline['turn_wall_s']):.2f} s "
                      f"({100 * (sum(measured['turn_wall_s']) / sum(baseline['turn_wall_s']) - 1):+.2f}%)",
                      flush=True)
            finished = True
        finally:
            for index in range(2):
                try:
                    parents[index].send(None)
                except (BrokenPipeError, OSError):
                    pass
            for worker in workers:  # idle workers stop on None; one still training (after a failure) is stopped
                worker.join(timeout=30 if finished else 0)
                if worker.is_alive():
                    worker.terminate()

    heatmap_interval = args.heatmap_interval or config.heatmap_interval
    classes = step_classes(args.steps, config.interval, config.reading_interval, heatmap_interval)
    arms = {ARM_NAMES[kind]: summarize(rows, classes, args.block) for kind, rows in records.items()}
    import torch

    meta = {
        "model": f"{model_config.num_hidden_layers} blocks, width {model_config.hidden_size}, vocab "
                 f"{model_config.vocab_size}, {params / 1e6:.2f}M params",
        "steps": args.steps, "block": args.block, "batch_size": args.batch_size, "interval": config.interval,
        "reading_interval": config.reading_interval,
        "heatmap_interval": heatmap_interval, "device": "cpu (float32)",
        "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
        "cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", "scripts/bench_overhead_turns.py",
                             *(argv if argv is not None else sys.argv[1:])]),
    }
    print()
    print(format_report(meta, arms))
    print(f"(total wall time {meta['wall_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "arms": arms, "runs": records}, indent=2, default=str))
    return 0


def _receive(connection: Any, kind: str) -> tuple[Any, ...]:
    if not connection.poll(_TIMEOUT_S):
        raise TimeoutError(f"no {kind!r} from a worker in {_TIMEOUT_S:.0f} s")
    message = connection.recv()
    if message[0] == "error":
        raise RuntimeError(message[1])
    if message[0] != kind:
        raise RuntimeError(f"expected {kind!r} from a worker, got {message[0]!r}")
    return message


if __name__ == "__main__":
    raise SystemExit(main())
