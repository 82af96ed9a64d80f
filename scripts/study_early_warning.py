"""The lead-time study: does spinal's geometry warn earlier than the detectors users already have?

Trains the study's runs of the demo model (``spinal_callback.evidence``), each with the spinal callback,
a recorder of every training metric and held-out evaluations every 2 steps, then scores every detector
on the same runs and writes the table and figures ``docs/evidence.md`` shows:

- scenarios: ``stable`` (5 seeds by default), ``lr_ramp``, ``label_flip``, ``small_beta`` (3 seeds each);
- ground truth: the behavioural onset from held-out accuracy / held-out chosen log-probability
  (:mod:`spinal_callback.evidence.ground_truth`);
- detectors: spinal (default, geometry only, TRL metrics only), Lightning's ``SpikeDetection`` on the loss,
  OLMo-core's 6σ / 128-step z-score on the loss and on the grad norm, and drop-from-best thresholds on TRL's
  reward accuracy and chosen log-probability (:mod:`spinal_callback.evidence.baselines`).

Runs go to ``--out`` (one folder each; finished runs are reused, ``--force`` retrains them), ``--jobs``
processes at a time with one torch thread each. Usage::

    python scripts/study_early_warning.py                 # the whole study, ~12 min on 2 idle cores
    python scripts/study_early_warning.py --analyse-only  # re-score the runs already in --out
    python scripts/study_early_warning.py --quick         # smoke run: one short run per scenario
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from spinal_callback.evidence.analysis import DETECTORS, load_run, onsets, score_run, summarise, twin_divergence
from spinal_callback.evidence.scenarios import SCENARIOS, RunSpec, run_spec


def _train(job: tuple[RunSpec, str, str, int]) -> tuple[str, float]:
    """Worker: one run, its stdout/stderr into ``<run>.log`` next to the run folder."""
    from spinal_callback.demo.model import SFTSettings
    from spinal_callback.evidence.runner import StudySettings, run_study

    spec, out, cache, sft_steps = job
    started = time.perf_counter()
    with open(Path(out) / f"{spec.name}.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        run_study(spec, out, cache, StudySettings(), SFTSettings(max_steps=sft_steps))
    return spec.name, time.perf_counter() - started


def _specs(args: argparse.Namespace) -> list[RunSpec]:
    specs = []
    for scenario in args.scenarios:
        seeds = args.stable_seeds if scenario == "stable" else args.fault_seeds
        for seed in range(seeds):
            specs.append(run_spec(scenario, seed, max_steps=args.steps, fault_window=tuple(args.fault_window)))
    return specs


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:+.0f}" if value == int(value) else f"{value:+.1f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Per detector: stable false alarms, then detection / median lead per fault scenario."""
    faults = [s for s in dict.fromkeys(r["scenario"] for r in rows) if s != "stable"]
    head = "| detector | stable: runs with a false alarm | " + " | ".join(
        f"{s}: detected (before onset) · median lead" for s in faults
    ) + " | fault runs: false alarms before the fault |"
    lines = [head, "|---|---:|" + "---:|" * len(faults) + "---:|"]
    for detector in dict.fromkeys(r["detector"] for r in rows):
        cells = []
        stable = next((r for r in rows if r["detector"] == detector and r["scenario"] == "stable"), None)
        cells.append(f"{stable['false_alarm_runs']}/{stable['runs']}" if stable else "–")
        pre = 0
        for scenario in faults:
            r = next(r for r in rows if r["detector"] == detector and r["scenario"] == scenario)
            cells.append(f"{r['detected']}/{r['with_onset']} ({r['before_onset']}) · {_fmt(r['median_lead'])}")
            pre += r["false_alarm_runs"]
        cells.append(str(pre))
        lines.append(f"| {detector} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Signals of the twin-divergence table: late-band geometry, the other bands' transport, what TRL and HF log.
DIVERGENCE_SIGNALS = (
    *(f"band/late/{m}" for m in ("contraction", "transport", "entropy", "transport_curvature", "effective_rank",
                                  "hidden_curvature")),
    "band/mid/transport", "band/early/transport",
    "logps/chosen", "rewards/chosen", "rewards/accuracies", "rewards/margins", "loss", "grad_norm",
)


def divergence_table(runs: list, onset: dict) -> tuple[str, dict]:
    """Per signal and mid-run fault scenario: median (onset − step the run left its stable twin), runs ahead."""
    stable = {r.spec["seed"]: r for r in runs if r.scenario == "stable"}
    paired = [r for r in runs if r.is_fault and r.spec.get("fault_step") is not None and r.spec["seed"] in stable
              and onset[r.name] is not None]
    scenarios = list(dict.fromkeys(r.scenario for r in paired))
    data: dict = {}
    for run in paired:
        for signal in DIVERGENCE_SIGNALS:
            step = twin_divergence(run, stable[run.spec["seed"]], signal)
            data.setdefault(signal, {}).setdefault(run.scenario, []).append(
                None if step is None else onset[run.name] - step)
    lines = ["| signal | " + " | ".join(f"{s}: median steps before onset (runs ahead of onset)" for s in scenarios)
             + " |", "|---|" + "---:|" * len(scenarios)]
    for signal, per in data.items():
        cells = []
        for scenario in scenarios:
            leads = per.get(scenario, [])
            known = [x for x in leads if x is not None]
            median = f"{statistics.median(known):+.0f}" if known else "–"
            cells.append(f"{median} ({sum(1 for x in known if x > 0)}/{len(leads)})")
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def analyse(out: Path, img_dir: Path | None, names: list[str]) -> dict:
    """Score every detector on the finished runs ``names`` in ``out``; write results.json, table.md, figures."""
    from spinal_callback.evidence.plots import plot_lead_times, plot_run

    runs = [load_run(out / name) for name in names]
    onset = onsets(runs)
    scores, per_run = [], {}
    for run in runs:
        alarms = {name: detect(run) for name, detect in DETECTORS.items()}
        per_run[run.name] = {"spec": run.spec, "onset": onset[run.name], "seconds": run.seconds, "alarms": alarms,
                             "online_alerts": [(a["step"], a["signal"], a["reason"]) for a in run.online_alerts]}
        scores.extend(score_run(run, name, steps, onset[run.name]) for name, steps in alarms.items())
        replay = alarms[next(iter(DETECTORS))]
        if sorted(replay) != sorted(a["step"] for a in run.online_alerts):
            print(f"warning: {run.name}: replayed spinal alerts {replay} differ from the callback's "
                  f"{[a['step'] for a in run.online_alerts]}", file=sys.stderr)
    rows = summarise(scores)
    table = markdown_table(rows)
    divergence, divergence_data = divergence_table(runs, onset)
    (out / "table.md").write_text(table + "\n\n" + divergence + "\n", encoding="utf-8")
    results = {"summary": rows, "runs": per_run, "twin_divergence": divergence_data}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print("\nonsets: " + ", ".join(f"{name} {value}" for name, value in onset.items()))
    print("\n" + table)
    print("\nwhere each signal left its fault-free twin (an oracle, not a detector):\n" + divergence)
    if img_dir is not None:
        img_dir.mkdir(parents=True, exist_ok=True)
        plot_lead_times(scores, img_dir / "evidence_lead_times.png")
        for scenario in SCENARIOS:
            example = next((r for r in runs if r.scenario == scenario), None)
            if example is not None:
                plot_run(example, onset[example.name], per_run[example.name]["alarms"],
                         img_dir / f"evidence_run_{scenario}.png")
        print(f"\nfigures in {img_dir}")
    print(f"results in {out / 'results.json'} and {out / 'table.md'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("spinal_runs", "study"), help="run folders and results")
    parser.add_argument("--cache-dir", default=None, help="pre-trained demo model cache (default: <out>/sft_cache)")
    parser.add_argument("--img-dir", default=os.path.join("docs", "img"), help="figures ('' for none)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one torch thread each")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--stable-seeds", type=int, default=5, help="seeds of the stable scenario (default 5)")
    parser.add_argument("--fault-seeds", type=int, default=3, help="seeds of each fault scenario (default 3)")
    parser.add_argument("--steps", type=int, default=240, help="DPO steps per run (default 240)")
    parser.add_argument("--fault-window", type=int, nargs=2, default=(130, 160), metavar=("LOW", "HIGH"),
                        help="mid-run faults start at a seeded step in [LOW, HIGH] (default 130 160)")
    parser.add_argument("--sft-steps", type=int, default=800, help="pre-training steps of the demo model")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--analyse-only", action="store_true", help="score the finished runs, train nothing")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed per scenario, 40 steps, faults at 20-25, short pre-training")
    args = parser.parse_args(argv)
    if args.quick:
        args.stable_seeds, args.fault_seeds, args.steps, args.fault_window, args.sft_steps = 1, 1, 40, (20, 25), 60
    if args.jobs < 1:
        parser.error(f"--jobs must be positive, got {args.jobs}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or str(out / "sft_cache")
    specs = _specs(args)
    todo = [s for s in specs if args.force or not (out / s.name / "run.json").is_file()]
    if args.analyse_only:
        todo = []
    started = time.perf_counter()
    if todo:
        from spinal_callback.demo.model import SFTSettings, pretrained_demo_model

        # Pre-train the shared model once, before the workers race to build it.
        pretrained_demo_model(cache, seed=0, settings=SFTSettings(max_steps=args.sft_steps), progress=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            for name, seconds in pool.map(_train, [(s, str(out), cache, args.sft_steps) for s in todo]):
                print(f"trained {name} in {seconds:.0f} s", flush=True)
    names = [s.name for s in specs if (out / s.name / "run.json").is_file()]
    print(f"training: {len(todo)} runs in {time.perf_counter() - started:.0f} s ({args.jobs} jobs)")
    analyse(out, Path(args.img_dir) if args.img_dir else None, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
