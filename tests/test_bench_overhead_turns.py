"""The analysis and the turn-taking of ``scripts/bench_overhead_turns.py``, on synthetic timings with known answers."""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")  # the script imports the demo recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_overhead_turns", ROOT / "scripts" / "bench_overhead_turns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_step_classes_follow_the_schedule(bench: Any) -> None:
    classes = bench.step_classes(steps=12, interval=4, reading_interval=2, heatmap_interval=8)
    assert classes == ["none", "reading", "none", "probe", "none", "reading", "none", "heatmap", "none", "reading",
                       "none"]  # steps 1 … 11; the last step runs into the closing


def test_a_constant_ratio_of_turns_is_found_with_a_tight_interval(bench: Any) -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.5, size=60)  # a noisy machine: turns of 1 to 2.5 s
    pair = bench.PairedTurns(list(1.05 * base), list(base))
    assert bench.overhead_pct([pair]) == pytest.approx(5.0)
    lo, hi = bench.bootstrap_interval([pair])
    assert lo == pytest.approx(5.0) and hi == pytest.approx(5.0)  # every resample keeps the ratio
    assert bench.overhead_pct([pair.middle]) == pytest.approx(5.0) and len(pair.middle.measured) == 58
    with pytest.raises(ValueError, match="same number"):
        bench.PairedTurns([1.0, 2.0, 3.0], [1.0, 2.0])


def test_step_quantiles_find_a_known_cost_more_precisely_than_the_mean_under_bursts(bench: Any) -> None:
    """Steps of 100 ms with small jitter and, at random, 3× slow-downs (another tenant, as often in both arms); the
    measured arm costs 2 ms more at every reading step and 40 ms more at every probe step. Truth:
    (2·n_reading + 40·n_probe) / (100·n)."""
    rng = np.random.default_rng(1)
    classes = bench.step_classes(steps=601, interval=50, reading_interval=2, heatmap_interval=10**6)
    extra = np.array([{"reading": 2e-3, "probe": 40e-3}.get(c, 0.0) for c in classes])

    def run(cost: np.ndarray) -> list[float]:
        steps = 0.1 + rng.normal(0, 2e-3, len(classes)) + cost
        return list(np.where(rng.random(len(classes)) < 0.1, 3 * steps, steps))

    measured = [run(extra) for _ in range(4)]
    baseline = [run(np.zeros(len(classes))) for _ in range(4)]
    truth = 100 * extra.sum() / (0.1 * len(classes))
    point, (lo, hi), extra_ms = bench.quantile_overhead(measured, baseline, classes, q=0.5, block=10, draws=300)
    assert lo <= truth <= hi and abs(point - truth) < 0.5
    assert extra_ms["reading"] == pytest.approx(2.0, abs=0.5) and extra_ms["probe"] == pytest.approx(40.0, abs=8)
    turns = [bench.PairedTurns([sum(m[i:i + 10]) for i in range(0, 600, 10)],
                               [sum(b[i:i + 10]) for i in range(0, 600, 10)]) for m, b in zip(measured, baseline)]
    mean_lo, mean_hi = bench.bootstrap_interval(turns, draws=300)
    assert mean_lo <= truth <= mean_hi
    assert hi - lo < (mean_hi - mean_lo) / 3  # the quantiles see through the bursts


def test_runs_long_enough_to_stay_under_the_target(bench: Any) -> None:
    # 1 % steady + 0.5 s once over 0.1 s steps: 1 + 50/n ≤ 2 ⇔ n ≥ 500
    assert bench.steps_under_target(1.0, 0.5, 0.1, 2.0) == pytest.approx(500)
    assert math.isinf(bench.steps_under_target(2.5, 0.5, 0.1, 2.0))
    assert bench.steps_under_target(1.0, -0.1, 0.1, 2.0) == 0


def test_two_workers_take_turns_in_blocks_and_time_only_their_own_steps(bench: Any) -> None:
    """Two ``Turns`` on the ends of one pipe, driven as the trainer's callbacks would be, in two threads: the
    steps alternate in blocks, every token is received, and the time spent waiting is in no step."""
    import multiprocessing

    left, right = multiprocessing.Pipe()
    order: list[tuple[int, int]] = []
    turns = [bench.Turns(left, first=True, block=3, run=7), bench.Turns(right, first=False, block=3, run=7)]
    flushes: list[int] = []
    images = SimpleNamespace(flush=lambda: flushes.append(1))  # the with-arm's heatmap images
    turns[0]._monitor = SimpleNamespace(outputs=SimpleNamespace(sink=SimpleNamespace(images=images)))

    def train(index: int) -> None:
        mine = turns[index]
        mine.train_begins()
        for done in range(9):  # 9 optimizer steps
            mine.step_begins(done)
            order.append((index, done + 1))
            time.sleep(0.01)
        mine.train_ends()

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert [who for who, _ in order] == [0] * 3 + [1] * 3 + [0] * 3 + [1] * 3 + [0] * 3 + [1] * 3
    for mine in turns:
        assert len(mine.wall_s) == 3 and len(mine.step_s) == 8
        assert all(0.009 <= s < 0.05 for s in mine.step_s)  # no step holds the other's 30 ms turn
        assert 0.009 <= mine.closing_s < 0.05  # the last step (and on_train_end, nothing here)
    assert not left.poll() and not right.poll()  # nothing left in the pipe
    assert len(flushes) == 3  # background images waited for at each of the with-arm's hand-overs


def test_the_report_states_the_estimates_of_synthetic_pairs(bench: Any) -> None:
    """Runs of 60 steps in turns of 10 with a known 2 ms reading cost: the summary finds it and the report prints
    every table and the verdict lines."""
    rng = np.random.default_rng(3)
    classes = bench.step_classes(steps=60, interval=20, reading_interval=2, heatmap_interval=1000)
    extra = np.array([2e-3 if c == "reading" else 0.0 for c in classes])

    def run(cost: np.ndarray, callback: bool) -> dict[str, Any]:
        steps = list(0.1 + rng.normal(0, 1e-3, len(classes)) + cost)
        turns = [sum(steps[i:i + 10]) for i in range(0, len(steps), 10)]
        record = {"turn_wall_s": turns, "turn_cpu_s": turns, "step_s": steps, "setup_s": 0.3 if callback else 0.2,
                  "closing_s": 0.1, "steps_done": 60}
        if callback:
            record.update(probes_done=3, callback_s=0.1 + float(cost.sum()), setup_and_first_probe_s=0.08,
                          train_end_s=0.02)
        return record

    with_pairs = [{"measured": run(extra, True), "baseline": run(0 * extra, False)} for _ in range(2)]
    aa_pairs = [{"measured": run(0 * extra, False), "baseline": run(0 * extra, False)} for _ in range(2)]
    arms = {bench.ARM_NAMES["with"]: bench.summarize(with_pairs, classes, block=10),
            bench.ARM_NAMES["A/A"]: bench.summarize(aa_pairs, classes, block=10)}
    truth = 100 * extra.sum() / (0.1 * len(classes))
    measured = arms[bench.ARM_NAMES["with"]]
    assert measured["steps_q50"]["pct"] == pytest.approx(truth, abs=0.3)
    assert measured["one_time_s"] == pytest.approx(0.1)
    assert measured["accounting_one_time_s"] == pytest.approx(0.1)
    assert measured["accounting_steady_pct"] == pytest.approx(truth, rel=0.05)
    meta = {"model": "m", "steps": 60, "block": 10, "batch_size": 16, "interval": 20, "reading_interval": 2,
            "heatmap_interval": 1000, "device": "cpu", "torch": "t", "threads": 1, "cpus": 2, "loadavg_start": [],
            "loadavg_end": []}
    report = bench.format_report(meta, arms)
    assert "A/A: without vs without (2)" in report and "steady state" in report and "a run of 120 steps" in report
    assert f"the rest {measured['accounting_steady_pct']:+.2f}%" in report


def test_a_reading_interval_reaches_the_demo_run_and_is_checked(bench: Any) -> None:
    args = bench.build_arg_parser().parse_args(["--signal-interval", "5"])
    demo = bench.bench_overhead._demo_args(args, args.interval, 60, "out")
    assert demo.signal_interval == 5 and demo.interval == args.interval
    assert bench.bench_overhead._demo_args(args, None, 60, "out").signal_interval is None  # the arm without
    with pytest.raises(SystemExit):  # 50 is no multiple of 8: refused before any run
        bench.main(["--signal-interval", "8", "--interval", "50"])
    with pytest.raises(SystemExit):  # the second arm's probe interval, 2, is no multiple of 5: refused alike
        bench.bench_overhead.main(["--signal-interval", "5"])
