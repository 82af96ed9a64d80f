"""Figures of the lead-time study (matplotlib, drawn on an Agg canvas; the ``plots`` extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from spinal_callback.tools.report import agg_figure, require_matplotlib
from studies.analysis import RunRecord, RunScore

__all__ = ["plot_lead_times", "plot_run"]

_GEOMETRY = ("contraction", "transport", "entropy", "transport_curvature")


def plot_lead_times(scores: Sequence[RunScore], path: str | os.PathLike[str]) -> Path:
    """Lead time of every detector on every fault run: one panel per scenario, one row per detector.

    A dot is a detected run at ``onset − alarm`` (right of 0: before held-out behaviour degraded); a cross
    at the left edge is a run the detector missed or flagged too late; the count of stable-run false alarms
    is written next to each detector's name.
    """
    require_matplotlib()
    detectors = list(dict.fromkeys(s.detector for s in scores))
    scenarios = [s for s in dict.fromkeys(x.scenario for x in scores) if s != "stable"]
    stable = [s for s in scores if s.scenario == "stable"]
    false = {d: sum(1 for s in stable if s.detector == d and s.false_alarms) for d in detectors}
    runs = {d: sum(1 for s in stable if s.detector == d) for d in detectors}
    leads = [s.lead for s in scores if s.lead is not None]
    low = min([-25, *leads]) - 5
    high = max([25, *leads]) + 5
    fig = agg_figure(4.2 * len(scenarios) + 3.5, 0.42 * len(detectors) + 1.6, left=0.26, right=0.98, bottom=0.16,
                     top=0.88, wspace=0.08)
    axes = fig.subplots(1, len(scenarios), sharey=True, squeeze=False)[0]
    for ax, scenario in zip(axes, scenarios):
        for row, detector in enumerate(detectors):
            group = [s for s in scores if s.scenario == scenario and s.detector == detector and s.onset is not None]
            hits = [s.lead for s in group if s.detected]
            misses = sum(1 for s in group if not s.detected)
            jitter = np.linspace(-0.15, 0.15, len(hits)) if len(hits) > 1 else np.zeros(len(hits))
            ax.scatter(hits, row + jitter, s=22, color="tab:blue", zorder=3)
            if misses:
                ax.scatter([low + 2] * misses, row + np.linspace(-0.15, 0.15, misses), marker="x", s=22,
                           color="tab:red", zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(low, high)
        ax.set_title(scenario)
        ax.set_xlabel("lead time (steps before onset)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(detectors)))
    axes[0].set_yticklabels([f"{d}  [stable FA {false[d]}/{runs[d]}]" for d in detectors], fontsize=8)
    axes[0].set_ylim(len(detectors) - 0.5, -0.5)
    fig.suptitle("Early warning: lead time per fault run (dots) and misses (crosses at the left)")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_run(run: RunRecord, onset: int | None, alarms: Mapping[str, Sequence[int]],
             path: str | os.PathLike[str]) -> Path:
    """One run over training: held-out behaviour, loss and grad norm, late-band geometry, and every alarm."""
    mpl = require_matplotlib()
    fig = agg_figure(11, 10, left=0.3, right=0.92, bottom=0.06, top=0.94, hspace=0.12)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1, 1.2, 1.3]})
    steps = [e["step"] for e in run.evals]
    axes[0].plot(steps, [e["accuracy"] for e in run.evals], color="tab:green", label="held-out greedy accuracy")
    axes[0].set_ylabel("accuracy")
    twin = axes[0].twinx()
    twin.plot(steps, [e["chosen_logp"] for e in run.evals], color="tab:purple", label="held-out log π(y⁺|x)")
    twin.set_ylabel("chosen log-prob")
    axes[0].legend(loc="lower left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    loss = run.series("loss")
    grad = run.series("grad_norm")
    axes[1].plot(*zip(*loss), color="tab:blue", lw=0.8, label="loss")
    axes[1].set_ylabel("DPO loss")
    twin = axes[1].twinx()
    twin.plot(*zip(*grad), color="tab:orange", lw=0.8, label="grad norm")
    twin.set_ylabel("grad norm")
    twin.set_yscale("log")
    axes[1].legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    trace_steps = [step for step, _ in run.traces]
    for metric in _GEOMETRY:
        values = np.array([bands["late"].get(metric) or np.nan for _, bands in run.traces], dtype=float)
        base = values[: max(5, len(values) // 10)]
        spread = np.nanstd(base) or 1.0
        axes[2].plot(trace_steps, (values - np.nanmean(base)) / spread, lw=1, label=metric)
    axes[2].set_ylabel("late band, z vs first probes")
    axes[2].legend(loc="upper left", fontsize=8, ncol=2)
    names = list(alarms)
    for row, name in enumerate(names):
        axes[3].scatter(alarms[name], [row] * len(alarms[name]), marker="|", s=120, color="tab:red")
    axes[3].set_yticks(range(len(names)))
    axes[3].set_yticklabels(names, fontsize=8)
    axes[3].set_ylim(len(names) - 0.5, -0.5)
    axes[3].set_xlabel("optimizer step")
    for ax in axes:
        if run.is_fault and run.fault_start:
            ax.axvline(run.fault_start, color="gray", ls="--", lw=1)
        if onset is not None:
            ax.axvline(onset, color="black", lw=1.2)
        ax.grid(alpha=0.25)
    axes[3].xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    fault = f"fault at step {run.fault_start}" if run.is_fault and run.fault_start else "fault from the start"
    fig.suptitle(f"{run.name}: {fault if run.is_fault else 'no fault'} (dashed), behavioural onset "
                 f"{onset if onset is not None else 'none'} (solid)")
    fig.savefig(path, dpi=90)
    return Path(path)
