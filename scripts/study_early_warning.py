"""The lead-time studies: does spinal's geometry warn earlier than the detectors users already have?

**Study 1** (``--set study1``, the default) trains the study's runs of the demo model (``studies``), each
with the spinal callback, a recorder of every training metric and held-out evaluations every 2 steps, then
scores every detector on the same runs and writes the table and figures ``docs/evidence.md`` shows:

- scenarios: ``stable`` (5 seeds by default), ``lr_ramp``, ``label_flip``, ``small_beta`` (3 seeds each);
- ground truth: the behavioural onset from held-out accuracy / held-out chosen log-probability
  (:mod:`studies.ground_truth`);
- detectors: spinal (default, geometry only, TRL metrics only), Lightning's ``SpikeDetection`` on the loss,
  OLMo-core's 6σ / 128-step z-score on the loss and on the grad norm, and drop-from-best thresholds on TRL's
  reward accuracy and chosen log-probability (:mod:`studies.baselines`).

**Study 2** (pre-registered in ``docs/evidence.md``) trains one of its run sets, exactly as the protocol lists
them (:mod:`studies.scenarios`): ``--set calibration`` (C: 21 runs), ``--set test`` (T: 57 runs) or
``--set rollback`` (the 8 rollback-value runs). The models they need (M1, M2, M1′) are pre-trained first, once
each, in parallel. Study-2 sets are trained only; scoring them is not part of this script yet.

Runs go to ``--out`` (default ``spinal_runs/study`` for study 1, ``spinal_runs/study2`` for study 2; one folder
each; finished runs — those with a ``run.json`` — are reused, ``--force`` retrains them), ``--jobs`` processes at
a time with one torch thread each; every run's output goes to ``<out>/<run>.log``. Usage::

    python scripts/study_early_warning.py                   # study 1, ~12 min on 2 idle cores
    python scripts/study_early_warning.py --analyse-only    # re-score study 1's runs already in --out
    python scripts/study_early_warning.py --quick           # smoke run: one short run per scenario
    python scripts/study_early_warning.py --set calibration --jobs 2
    python scripts/study_early_warning.py --set test --jobs 2
    python scripts/study_early_warning.py --set rollback --jobs 2
    python scripts/study_early_warning.py --set test --quick  # smoke: a few 30-step runs, into <out>-quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package

from studies.scenarios import SCENARIOS, RunSpec, calibration_set, rollback_set, run_spec, shorten, test_set

#: ``--set`` values: study 1, and study 2's calibration, test and rollback-value sets.
SETS = ("study1", "calibration", "test", "rollback")
#: Steps of a ``--quick`` study-2 run (fault steps and the label-noise ramp are scaled down with them).
QUICK_STEPS = 30


def _train(job: tuple[RunSpec, str, str, int, Any]) -> tuple[str, float]:
    """Worker: one run, its stdout/stderr (and the traceback of a failure) into ``<run>.log`` beside its folder."""
    from spinal_callback.demo.model import SFTSettings
    from studies.runner import StudySettings, run_study

    spec, out, cache, sft_steps, settings = job
    started = time.perf_counter()
    with open(Path(out) / f"{spec.name}.log", "w", encoding="utf-8") as log:
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    run_study(spec, out, cache, settings or StudySettings(), SFTSettings(max_steps=sft_steps))
                except BaseException:
                    traceback.print_exc()
                    raise
        finally:
            _detach_logging(log)
    return spec.name, time.perf_counter() - started


def _detach_logging(stream: Any) -> None:
    """Point every logging handler that a run bound to its log file ``stream`` (a library's handler created while
    stderr was redirected) back at stderr: the worker process trains the next run after this file is closed."""
    import logging

    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                handler.setStream(sys.stderr)


def _pretrain(job: tuple[str, str, int]) -> tuple[str, float, float]:
    """Worker: pre-train (or load) one study model with one torch thread; ``(model, accuracy, seconds)``."""
    import torch

    from spinal_callback.demo.model import SFTSettings
    from studies.runner import load_model

    model, cache, sft_steps = job
    torch.set_num_threads(1)
    _, _, result = load_model(model, cache, SFTSettings(max_steps=sft_steps))
    return model, result.accuracy_after, result.seconds


def pretrain_models(models: list[str], cache: str, sft_steps: int, jobs: int) -> None:
    """Pre-train every model in ``models`` once into ``cache`` (distinct models in parallel, ``jobs`` at a time),
    so that no two run workers ever pre-train the same model at once."""
    if not models:
        return
    if len(models) == 1 or jobs == 1:
        from spinal_callback.demo.model import SFTSettings
        from studies.runner import load_model

        for model in models:
            _, _, result = load_model(model, cache, SFTSettings(max_steps=sft_steps), progress=True)
            print(f"model {model}: held-out accuracy {result.accuracy_after:.3f} "
                  f"({'cached' if result.cached else f'pre-trained in {result.seconds:.0f} s'})", flush=True)
        return
    with ProcessPoolExecutor(min(jobs, len(models))) as pool:
        for model, accuracy, seconds in pool.map(_pretrain, [(m, cache, sft_steps) for m in models]):
            done = f"pre-trained in {seconds:.0f} s" if seconds else "cached"
            print(f"model {model}: held-out accuracy {accuracy:.3f} ({done})", flush=True)


def interleave(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` round-robin over their scenarios, each scenario in its own order."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.scenario, []).append(spec)
    out: list[RunSpec] = []
    while any(groups.values()):
        for group in groups.values():
            if group:
                out.append(group.pop(0))
    return out


def train_runs(specs: list[RunSpec], out: Path, cache: str, sft_steps: int, jobs: int,
               settings_of: Callable[[RunSpec], Any] | None = None) -> list[str]:
    """Train ``specs`` into ``out``, ``jobs`` at a time; return the names of the runs that failed.

    ``settings_of``: the :class:`~studies.runner.StudySettings` of each run (default: the defaults for all).
    """
    failed = []
    with ProcessPoolExecutor(jobs) as pool:
        jobs_of = {s.name: (s, str(out), cache, sft_steps, settings_of(s) if settings_of else None) for s in specs}
        futures = {pool.submit(_train, job): name for name, job in jobs_of.items()}
        for future in as_completed(futures):
            name = futures[future]
            try:
                _, seconds = future.result()
            except Exception as err:  # one broken run must not stop the others
                failed.append(name)
                print(f"FAILED {name}: {type(err).__name__}: {err} (see {out / (name + '.log')})", flush=True)
            else:
                print(f"trained {name} in {seconds:.0f} s", flush=True)
    return failed


def train_missing(specs: list[RunSpec], out: Path, cache: str, sft_steps: int, jobs: int, force: bool = False,
                  settings_of: Callable[[RunSpec], Any] | None = None) -> int:
    """The training phase of studies 3 and 4: train the runs of ``specs`` not finished in ``out`` (all with
    ``force``), scenarios interleaved, after pre-training their models once; 1 if a run failed, else 0."""
    todo = interleave([s for s in specs if force or not (out / s.name / "run.json").is_file()])
    if todo:
        pretrain_models(list(dict.fromkeys(s.model for s in todo)), cache, sft_steps, jobs)
        failed = train_runs(todo, out, cache, sft_steps, jobs, settings_of)
        if failed:
            print(f"failed: {', '.join(failed)}")
            return 1
    print(f"{len(todo)} runs trained, {len(specs) - len(todo)} already finished")
    return 0


def one_per_scenario(specs: list[RunSpec], steps: int) -> list[RunSpec]:
    """The ``--quick`` smoke selection of studies 3 and 4: the first run of each scenario, shortened to ``steps``
    steps (:func:`~studies.scenarios.shorten`)."""
    picked: dict[str, RunSpec] = {}
    for spec in specs:
        picked.setdefault(spec.scenario, spec)
    return [shorten(spec, steps) for spec in picked.values()]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_training_options(parser: argparse.ArgumentParser, cache_help: str) -> None:
    """The options of studies 3 and 4's drivers: ``--cache-dir``, ``--jobs`` (refused below 1), ``--sft-steps``,
    ``--force``, ``--quick``."""
    parser.add_argument("--cache-dir", default=None, help=cache_help)
    parser.add_argument("--jobs", type=_positive_int, default=2, help="runs trained at once, one torch thread each")
    parser.add_argument("--sft-steps", type=int, default=800, help="pre-training steps of the demo models")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run into <out>-quick: {QUICK_STEPS}-step runs, short pre-training")


def choose_or_evaluate(parser: argparse.ArgumentParser, phase: str, study: Any,
                       calibration_table: Callable[..., str] | None, out: Path, calibration: Path) -> None:
    """The analysis phases of studies 3-8: ``choose`` (the calibration set only) writes and prints
    ``calibration.md``; ``evaluate`` (the test set, once, with the choices of ``<out>/calibration.json``, for a study
    that has a ``choose``) ``table.md``. ``study`` is the study's module (its ``evaluate``, and ``choose`` if it
    chooses anything; ``calibration_table`` is then its table)."""
    from studies.tables import test_tables

    if phase == "choose":
        if calibration_table is None or not hasattr(study, "choose"):
            parser.error(f"{study.__name__} chooses nothing: it has no choose phase")
        text, name = calibration_table(study.choose(calibration, out)), "calibration.md"
    else:
        if hasattr(study, "choose") and not (out / "calibration.json").is_file():
            parser.error(f"{out / 'calibration.json'} is missing: run the choose phase first")
        text, name = test_tables(study.evaluate(out, calibration), in_time=True), "table.md"
    (out / name).write_text(text)
    print(text)


def run_phase(parser: argparse.ArgumentParser, args: argparse.Namespace, study: str, table: str | None, out: Path,
              calibration: Path, specs: Callable[[], list[RunSpec]], runs: Path, cache: str,
              settings_of: Callable[[RunSpec], Any] | None = None) -> int:
    """The body of studies 3-8's drivers, after their own options are parsed into ``args`` (``phase``, and those of
    :func:`add_training_options`): ``choose`` / ``evaluate`` with ``studies.<study>`` and the calibration table
    ``studies.tables.<table>`` (``None`` for a study that chooses nothing); a training phase trains ``specs()`` into
    ``runs``. Prints the elapsed time; returns the exit status (1 if a run failed)."""
    import importlib

    started = time.perf_counter()
    if args.phase in ("choose", "evaluate"):
        from studies import tables

        choose_or_evaluate(parser, args.phase, importlib.import_module(f"studies.{study}"),
                           getattr(tables, table) if table else None, out, calibration)
    else:
        runs.mkdir(parents=True, exist_ok=True)
        if train_missing(specs(), runs, cache, 60 if args.quick else args.sft_steps, args.jobs, args.force,
                         settings_of):
            return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0


def study2_specs(which: str, quick: bool = False) -> list[RunSpec]:
    """The runs of study 2's set ``which`` (``"calibration"``, ``"test"`` or ``"rollback"``), in protocol order.

    ``quick``: a smoke selection instead — the first run of each scenario, plus the first run of each model
    not yet covered — shortened to :data:`QUICK_STEPS` steps (:func:`~studies.scenarios.shorten`).
    """
    specs = {"calibration": calibration_set, "test": test_set, "rollback": rollback_set}[which]()
    if not quick:
        return specs
    picked: dict[str, RunSpec] = {}
    for spec in specs:
        picked.setdefault(spec.scenario, spec)
    for spec in specs:
        if spec.model not in {p.model for p in picked.values()}:
            picked[spec.name] = spec
    return [shorten(spec, QUICK_STEPS) for spec in picked.values()]


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
    from studies.analysis import twin_divergence

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
    from studies.analysis import DETECTORS, load_run, onsets, score_run, summarise
    from studies.plots import plot_lead_times, plot_run

    runs = [load_run(out / name) for name in names]
    onset = onsets(runs)
    scores: list[Any] = []
    per_run: dict[str, dict[str, Any]] = {}
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


def analyse_study2(which: str, out: Path) -> None:
    """Study 2's protocol: the calibration set makes every choice (``calibration.json``); the test and rollback
    sets are scored with those choices (``results.json``); both write a Markdown table beside them."""
    from studies.study2 import choose, evaluate
    from studies.tables import calibration_table, test_tables

    if which == "calibration":
        text = calibration_table(choose(out))
        (out / "calibration.md").write_text(text)
    elif (out / "calibration.json").is_file():
        text = test_tables(evaluate(out))
        (out / "table.md").write_text(text)
    else:
        print(f"no {out / 'calibration.json'}: run --set calibration first; the test set is scored with its choices")
        return
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="which", choices=SETS, default="study1",
                        help="study 1 (default), or study 2's calibration, test or rollback-value set")
    parser.add_argument("--out", default=None,
                        help="run folders and results (default: spinal_runs/study, spinal_runs/study2 for study 2)")
    parser.add_argument("--cache-dir", default=None, help="pre-trained demo model cache (default: <out>/sft_cache)")
    parser.add_argument("--img-dir", default=os.path.join("docs", "img"), help="figures ('' for none; study 1)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one torch thread each")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS, help="study 1 only")
    parser.add_argument("--stable-seeds", type=int, default=5, help="seeds of study 1's stable scenario (default 5)")
    parser.add_argument("--fault-seeds", type=int, default=3, help="seeds of each study-1 fault scenario (default 3)")
    parser.add_argument("--steps", type=int, default=240, help="DPO steps per study-1 run (default 240)")
    parser.add_argument("--fault-window", type=int, nargs=2, default=(130, 160), metavar=("LOW", "HIGH"),
                        help="study 1's mid-run faults start at a seeded step in [LOW, HIGH] (default 130 160)")
    parser.add_argument("--sft-steps", type=int, default=800, help="pre-training steps of the demo models")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--analyse-only", action="store_true", help="score the finished runs, train nothing")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: study 1: 1 seed per scenario, 40 steps, faults at 20-25; study 2: the first "
                        f"run of each scenario and model, {QUICK_STEPS} steps, faults scaled down, into <out>-quick; "
                        "short pre-training")
    args = parser.parse_args(argv)
    study1 = args.which == "study1"
    if args.quick:
        args.sft_steps = 60
        if study1:
            args.stable_seeds, args.fault_seeds, args.steps, args.fault_window = 1, 1, 40, (20, 25)
    if args.jobs < 1:
        parser.error(f"--jobs must be positive, got {args.jobs}")
    if args.out is None:
        args.out = os.path.join("spinal_runs", "study" if study1 else "study2" + ("-quick" if args.quick else ""))
    out = Path(args.out)
    if args.analyse_only and args.which in ("test", "rollback") and not (out / "calibration.json").is_file():
        parser.error(f"{out / 'calibration.json'} is missing: score the calibration set first "
                     "(--set calibration); the test set is scored with its choices")
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or str(out / "sft_cache")
    if study1:
        specs = _specs(args)
    else:
        specs = study2_specs(args.which, quick=args.quick)
    todo = [s for s in specs if args.force or not (out / s.name / "run.json").is_file()]
    if not study1:
        todo = interleave(todo)  # every scenario advances together, so a stopped study is still balanced
    if args.analyse_only:
        todo = []
    started = time.perf_counter()
    failed: list[str] = []
    if todo:
        # Pre-train the shared models once, before the workers race to build them.
        pretrain_models(list(dict.fromkeys(s.model for s in todo)), cache, args.sft_steps, args.jobs)
        print(f"training {len(todo)} of {len(specs)} runs ({len(specs) - len(todo)} already finished), "
              f"{args.jobs} at a time, into {out}", flush=True)
        failed = train_runs(todo, out, cache, args.sft_steps, args.jobs)
    names = [s.name for s in specs if (out / s.name / "run.json").is_file()]
    print(f"training: {len(todo)} runs in {time.perf_counter() - started:.0f} s ({args.jobs} jobs); "
          f"{len(names)}/{len(specs)} runs of the set finished" + (f"; failed: {', '.join(failed)}" if failed else ""))
    if study1:
        analyse(out, Path(args.img_dir) if args.img_dir else None, names)
    else:
        analyse_study2(args.which, out)
    print(f"elapsed: {_duration(time.perf_counter() - started)}")
    return 1 if failed else 0


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


if __name__ == "__main__":
    raise SystemExit(main())
