"""Study 2's scoring: detection before the behavioural onset, leads, false alarms, and their intervals.

Rules (``docs/evidence.md``, study 2 protocol): a fault run is *detected before the onset* when the first
alarm at or after the fault step comes before the onset; lead = onset − that alarm. Study 3 also counts a
run *detected in time* when that alarm comes no later than the onset (lead ≥ 0). Any alarm in a healthy
run, or before the fault step of a fault run, is a false alarm. Fault runs without an onset are left out of
detection rates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from studies.baselines import drop_from_best_alarms, lightning_spike_alarms, window_zscore_alarms
from studies.replay import Run

__all__ = [
    "BASELINES",
    "Score",
    "clopper_pearson",
    "matched_threshold",
    "poisson_interval",
    "score",
    "sign_test",
    "summarise",
]


@dataclass
class Score:
    """One detector on one run."""

    run: str
    family: str
    detector: str
    onset: int | None
    fault_start: int
    alarms: list[int]
    false_alarms: list[int] = field(default_factory=list)
    first: int | None = None
    before_onset: bool = False
    in_time: bool = False
    lead: int | None = None


def score(run: Run, detector: str, alarms: Sequence[int], onset: int | None) -> Score:
    """Score ``alarms`` on ``run`` (rules in the module docstring)."""
    alarms = sorted(alarms)
    family = str(run.spec["scenario"])
    out = Score(run.name, family, detector, onset, run.fault_start, list(alarms))
    out.false_alarms = [a for a in alarms if a < run.fault_start]
    after = [a for a in alarms if a >= run.fault_start]
    if run.is_fault and after:
        out.first = after[0]
        if onset is not None:
            out.lead = onset - after[0]
            out.before_onset = after[0] < onset
            out.in_time = after[0] <= onset
    return out


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided binomial interval for ``k`` successes in ``n`` trials."""
    from scipy.stats import beta

    if n == 0:
        return (math.nan, math.nan)
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def poisson_interval(k: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson count ``k``."""
    from scipy.stats import chi2

    low = 0.0 if k == 0 else float(chi2.ppf(alpha / 2, 2 * k) / 2)
    return low, float(chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2)


def sign_test(better: int, worse: int) -> float:
    """Two-sided sign test p-value (ties dropped)."""
    from scipy.stats import binomtest

    n = better + worse
    return float(binomtest(better, n, 0.5).pvalue) if n else 1.0


def _lead_key(s: Score, in_time: bool = False) -> float:
    """A run's lead for paired comparison: a miss (or an alarm after the onset; with ``in_time``, strictly
    after it) ranks below any lead."""
    hit = s.in_time if in_time else s.before_onset
    return float(s.lead) if hit and s.lead is not None else -math.inf


def paired(a: Sequence[Score], b: Sequence[Score], in_time: bool = False) -> tuple[int, int, float]:
    """Paired per-run comparison of two detectors' leads on the same runs: (a better, b better, sign-test p)."""
    by_run = {s.run: s for s in b}
    better = worse = 0
    for s in a:
        other = by_run.get(s.run)
        if other is None or s.onset is None:
            continue
        x, y = _lead_key(s, in_time), _lead_key(other, in_time)
        better += x > y
        worse += x < y
    return better, worse, sign_test(better, worse)


def summarise(scores: Sequence[Score], probe_steps: int, interval: int) -> dict[str, object]:
    """One detector over a set of runs: detection before onset with its interval, leads, false alarms."""
    faults = [s for s in scores if s.fault_start < 10**9 and s.onset is not None]
    hits = [s for s in faults if s.before_onset]
    timely = [s for s in faults if s.in_time]
    leads = [s.lead for s in hits if s.lead is not None]
    false = sum(len(_episodes(s.false_alarms, interval)) for s in scores)
    low, high = clopper_pearson(len(hits), len(faults))
    t_low, t_high = clopper_pearson(len(timely), len(faults))
    timely_leads = [s.lead for s in timely if s.lead is not None]
    f_low, f_high = poisson_interval(false)
    per_1000 = 1000.0 / probe_steps if probe_steps else math.nan
    return {
        "fault_runs": len(faults), "detected_before_onset": len(hits),
        "rate": len(hits) / len(faults) if faults else None, "rate_ci": (low, high),
        "median_lead": statistics.median(leads) if leads else None, "leads": leads,
        "detected_in_time": len(timely), "in_time_rate": len(timely) / len(faults) if faults else None,
        "in_time_ci": (t_low, t_high),
        "median_in_time_lead": statistics.median(timely_leads) if timely_leads else None,
        "false_alarms": false, "false_per_1000": false * per_1000,
        "false_per_1000_ci": (f_low * per_1000, f_high * per_1000),
        "runs_with_false_alarm": sum(1 for s in scores if s.false_alarms),
    }


def _episodes(steps: Sequence[int], interval: int) -> list[int]:
    """Alarm steps grouped into episodes (a new episode after a gap of more than 5 probes)."""
    out: list[int] = []
    last = -(10**9)
    for step in sorted(steps):
        if step - last > 5 * interval:
            out.append(step)
        last = step
    return out


# ---------------------------------------------------------------------------------------------- baselines
def _olmo(key: str) -> Callable[[Run, float], list[int]]:
    return lambda run, threshold: window_zscore_alarms(run.series(key), threshold=threshold)


def _trl(key: str) -> Callable[[Run, float], list[int]]:
    return lambda run, drop: drop_from_best_alarms(run.series(key), drop=drop)


def _lightning(run: Run, rtol: float) -> list[int]:
    return lightning_spike_alarms(run.series("loss"), rtol=rtol)


#: name → (alarms(run, threshold), shipped threshold, grid for the matched threshold, increasing = quieter).
BASELINES: dict[str, tuple[Callable[[Run, float], list[int]], float, tuple[float, ...]]] = {
    "Lightning SpikeDetection (loss)": (_lightning, 2.0, (2.0, 3.0, 5.0, 10.0, 20.0, 50.0)),
    "OLMo-core z (loss)": (_olmo("loss"), 6.0, tuple(float(x) for x in range(3, 21))),
    "OLMo-core z (grad norm)": (_olmo("grad_norm"), 6.0, tuple(float(x) for x in range(3, 41))),
    "TRL reward-accuracy drop": (_trl("rewards/accuracies"), 0.2, (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)),
    "TRL chosen log-prob drop": (_trl("logps/chosen"), 0.5, (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)),
}


def matched_threshold(name: str, healthy: Sequence[Run], allowed: int) -> float | None:
    """The smallest grid threshold of baseline ``name`` with at most ``allowed`` false alarms on ``healthy``."""
    detect, _, grid = BASELINES[name]
    for threshold in grid:
        if sum(len(_episodes(detect(run, threshold), 1)) for run in healthy) <= allowed:
            return threshold
    return None
