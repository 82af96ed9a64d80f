"""Scoring rules and the monitor's observation order, on hand-made run records."""

from __future__ import annotations

from studies.analysis import RunRecord, score_run, spinal_observations, summarise, twin_divergence


def _run(scenario="lr_ramp", fault=100, steps=200):
    bands = {"late": {"layers": [5, 6], "contraction": 2.0, "transport": 0.2, "entropy": 0.4,
                      "transport_curvature": 0.3}}
    return RunRecord(
        name=f"{scenario}-s0", spec={"scenario": scenario, "seed": 0, "fault_step": fault},
        logs=[{"step": s, "loss": 0.6, "logps/chosen": -float(s)} for s in range(1, steps + 1)],
        evals=[], traces=[(s, bands) for s in range(0, steps + 1, 2)], online_alerts=[], seconds=1.0,
    )


def test_alarm_before_the_fault_is_false_and_lead_is_onset_minus_alarm():
    run = _run()
    score = score_run(run, "d", [40, 104, 150], onset=120)
    assert score.false_alarms == [40]
    assert score.first_alarm == 104 and score.detected and score.lead == 16


def test_late_alarm_is_a_miss_and_stable_alarms_are_all_false():
    score = score_run(_run(), "d", [141], onset=120, late_tolerance=20)
    assert not score.detected and score.lead is None and score.first_alarm == 141
    assert score_run(_run(), "d", [140], onset=120, late_tolerance=20).lead == -20
    stable = score_run(_run("stable", fault=None), "d", [10, 180], onset=None)
    assert stable.false_alarms == [10, 180] and not stable.detected


def test_fault_from_the_start_counts_every_alarm_as_a_detection_candidate():
    run = _run("small_beta", fault=None)
    assert run.fault_start == 0
    assert score_run(run, "d", [3], onset=50).lead == 47


def test_summary_counts():
    runs = [_run(), _run("stable", fault=None)]
    scores = [score_run(runs[0], "d", [110], 120), score_run(runs[1], "d", [5], None)]
    rows = {r["scenario"]: r for r in summarise(scores)}
    assert rows["lr_ramp"]["detected"] == 1 and rows["lr_ramp"]["median_lead"] == 10
    assert rows["lr_ramp"]["before_onset"] == 1
    assert rows["stable"]["false_alarm_runs"] == 1


def test_observations_see_metrics_logged_before_the_probe_step():
    run = _run()
    observations = dict(spinal_observations(run, {"logps/chosen": "down", "band/late/entropy": "up"}))
    assert "logps/chosen" not in observations[0]  # nothing logged before step 0
    assert observations[10]["logps/chosen"] == -9.0  # HF logs step 10 after on_step_end(10)
    assert observations[10]["band/late/entropy"] == 0.4
    assert set(observations[10]) == {"logps/chosen", "band/late/entropy"}


def test_twin_divergence_finds_where_the_fault_run_leaves_its_twin():
    import dataclasses

    twin = _run("stable", fault=None)
    noisy = [(s, 0.6 + 0.01 * (-1) ** s) for s in range(1, 201)]  # fluctuation: |Δ| = 0.02 every step
    twin = dataclasses.replace(twin, logs=[{"step": s, "loss": v} for s, v in noisy])
    shifted = [{"step": s, "loss": v + (0.1 if s >= 120 else 0.0) + (0.03 if s == 110 else 0.0)} for s, v in noisy]
    run = dataclasses.replace(_run(fault=100), logs=shifted)
    # Threshold 3 × 1.4826 × MAD(Δ) = 3 × 0.0297 ≈ 0.089: the 0.03 blip at step 110 stays under it, the shift
    # of 0.1 from step 120 on exceeds it.
    assert twin_divergence(run, twin, "loss", k=3.0) == 120
    assert twin_divergence(run, twin, "band/late/entropy") is None  # identical geometry never diverges
