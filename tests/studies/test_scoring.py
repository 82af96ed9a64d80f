"""Study 2's scoring rules and intervals against known answers."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("scipy")

from studies.replay import Run, first_divergence
from studies.scoring import clopper_pearson, paired, poisson_interval, score, sign_test, summarise


def _run(name: str, fault_step: int | None, scenario: str = "lr_jump") -> Run:
    spec = {"scenario": scenario if fault_step is not None else "healthy", "fault_step": fault_step, "seed": 1}
    return Run(name, spec, [], [], [], [], [])


def test_clopper_pearson_matches_known_values() -> None:
    low, high = clopper_pearson(8, 10)
    assert low == pytest.approx(0.4439, abs=1e-4) and high == pytest.approx(0.9748, abs=1e-4)
    assert clopper_pearson(0, 5)[0] == 0.0 and clopper_pearson(5, 5)[1] == 1.0
    assert clopper_pearson(0, 25)[1] == pytest.approx(1 - 0.025 ** (1 / 25), abs=1e-9)


def test_poisson_interval_matches_garwood() -> None:
    assert poisson_interval(0) == pytest.approx((0.0, 3.6889), abs=1e-4)
    low, high = poisson_interval(3)
    assert low == pytest.approx(0.6187, abs=1e-4) and high == pytest.approx(8.7673, abs=1e-4)


def test_sign_test_is_two_sided_binomial() -> None:
    assert sign_test(8, 0) == pytest.approx(2 * 0.5**8)
    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == pytest.approx(1.0)


def test_score_rules() -> None:
    fault = _run("f", 130)
    hit = score(fault, "d", [40, 150, 160], onset=170)
    assert hit.false_alarms == [40] and hit.first == 150 and hit.before_onset and hit.lead == 20
    late = score(fault, "d", [180], onset=170)
    assert late.first == 180 and not late.before_onset and late.lead == -10
    assert not score(fault, "d", [], onset=170).before_onset
    healthy = score(_run("h", None), "d", [10, 12, 200], onset=None)
    assert healthy.false_alarms == [10, 12, 200] and healthy.first is None


def test_summary_counts_episodes_and_excludes_runs_without_onset() -> None:
    scores = [
        score(_run("a", 130), "d", [140], 170),
        score(_run("b", 130), "d", [], 170),
        score(_run("c", 130), "d", [140], None),  # no onset: not in the rate
        score(_run("h", None), "d", [10, 12, 14, 100], None),  # two episodes at interval 2
    ]
    summary = summarise(scores, probe_steps=2000, interval=2)
    assert summary["fault_runs"] == 2 and summary["detected_before_onset"] == 1 and summary["median_lead"] == 30
    assert summary["false_alarms"] == 2 and summary["false_per_1000"] == pytest.approx(1.0)
    assert summary["runs_with_false_alarm"] == 1


def test_paired_counts_a_miss_as_worse_than_any_lead() -> None:
    a = [score(_run("x", 130), "a", [140], 170), score(_run("y", 130), "a", [], 170)]
    b = [score(_run("x", 130), "b", [], 170), score(_run("y", 130), "b", [165], 170)]
    better, worse, p = paired(a, b)
    assert (better, worse) == (1, 1) and p == pytest.approx(1.0)


def test_first_divergence_needs_two_consecutive_departures() -> None:
    twin = {s: 0.01 * ((-1) ** s) for s in range(0, 100, 2)}
    run = dict(twin)
    run[60] += 1.0  # one outlier: not a divergence
    for s in range(80, 100, 2):
        run[s] += 1.0
    assert first_divergence(run, twin, start=50) == 80
    assert first_divergence(run, twin, start=90) == 90
    assert math.isnan(clopper_pearson(0, 0)[0])
