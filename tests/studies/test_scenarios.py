"""Scenario specs: seeded fault steps inside the window, validation, and study 2's run lists as pre-registered."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from studies import scenarios
from studies.scenarios import MODELS, SCENARIOS, SCHEDULES, TEST_FAULTS, RunSpec, run_spec, shorten
from tests.studies.drivers import study_script


@pytest.mark.parametrize("scenario", ["lr_ramp", "label_flip"])
def test_fault_step_is_seeded_and_inside_the_window(scenario):
    steps = [run_spec(scenario, seed).fault_step for seed in range(20)]
    assert steps == [run_spec(scenario, seed).fault_step for seed in range(20)]
    assert all(130 <= s <= 160 for s in steps)
    assert len(set(steps)) > 5


def test_scenario_settings():
    assert run_spec("stable", 0).fault_step is None and run_spec("stable", 0).fault_start == 0
    assert run_spec("lr_ramp", 0).lr_growth > 1
    assert 0.5 < run_spec("label_flip", 0).flip_fraction <= 1
    assert run_spec("small_beta", 0).beta < run_spec("stable", 0).beta
    assert run_spec("label_flip", 3).name == "label_flip-s3"
    assert set(SCENARIOS) == {"stable", "lr_ramp", "label_flip", "small_beta"}


def test_bad_scenarios_are_refused():
    with pytest.raises(ValueError, match="`scenario` must be one of"):
        run_spec("meltdown", 0)
    with pytest.raises(ValueError, match="`fault_window`"):
        run_spec("lr_ramp", 0, max_steps=100, fault_window=(130, 160))
    with pytest.raises(ValueError, match="`model`"):
        RunSpec("healthy", 0, 10, model="M4")
    with pytest.raises(ValueError, match="`schedule`"):
        RunSpec("healthy", 0, 10, schedule="exponential")
    with pytest.raises(ValueError, match="`family`"):
        scenarios.fault_test_spec("meltdown", 300)


# ---------------------------------------------------------------------------------------------- study 2
def test_models_are_the_protocols():
    assert {k: (m.num_layers, m.hidden_size, m.sft_seed, m.architecture) for k, m in MODELS.items()} == {
        "M1": (9, 96, 0, "llama"), "M2": (6, 128, 0, "llama"), "M1p": (9, 96, 1, "llama"),
        "G1": (9, 96, 0, "gpt2"), "Q1": (9, 96, 0, "qwen2"), "M3": (12, 64, 2, "llama"), "G2": (6, 128, 3, "gpt2"),
    }
    assert scenarios.STUDY2_MODELS == ("M1", "M2", "M1p")  # what T-healthy runs of studies 2-6 drew from
    assert SCHEDULES == ("constant_with_warmup", "cosine", "linear")


def _common(spec: RunSpec) -> None:
    assert spec.max_steps == 240 and spec.rollback is False


def test_calibration_set_is_the_protocols():
    runs = scenarios.calibration_set()
    assert len(runs) == 21
    assert Counter(r.part for r in runs) == {"C-healthy": 12, "C-stable": 3, "C-faults": 6}
    for run in runs:
        _common(run)
    healthy = [r for r in runs if r.part == "C-healthy"]
    assert [r.seed for r in healthy] == list(range(100, 112))
    assert all(r.scenario == "healthy" and r.fault_step is None and not r.is_fault for r in healthy)
    m1 = [r for r in healthy if r.model == "M1"]
    assert len(m1) == 9
    assert {(r.learning_rate, r.beta) for r in m1} == {(lr, b) for lr in (3e-5, 1e-4, 2e-4) for b in (0.05, 0.1, 0.3)}
    # Latin square: row = learning rate, column = β; every schedule once per row and once per column.
    square = {(r.learning_rate, r.beta): r.schedule for r in m1}
    for lr in (3e-5, 1e-4, 2e-4):
        assert sorted(square[lr, b] for b in (0.05, 0.1, 0.3)) == sorted(SCHEDULES)
    for b in (0.05, 0.1, 0.3):
        assert sorted(square[lr, b] for lr in (3e-5, 1e-4, 2e-4)) == sorted(SCHEDULES)
    assert [square[3e-5, b] for b in (0.05, 0.1, 0.3)] == ["constant_with_warmup", "cosine", "linear"]
    assert [square[1e-4, b] for b in (0.05, 0.1, 0.3)] == ["cosine", "linear", "constant_with_warmup"]
    m2 = [(r.learning_rate, r.beta, r.schedule) for r in healthy if r.model == "M2"]
    assert m2 == [(3e-5, 0.05, "constant_with_warmup"), (1e-4, 0.1, "cosine"), (2e-4, 0.3, "linear")]
    stable = [r for r in runs if r.part == "C-stable"]
    assert stable == [replace(run_spec("stable", s), part="C-stable") for s in range(3)]
    assert all(r.model == "M1" and r.learning_rate == 5e-5 and r.beta == 0.1 for r in stable)
    faults = [r for r in runs if r.part == "C-faults"]
    assert [(r.scenario, r.seed) for r in faults] == [(f, s) for f in ("lr_ramp", "label_flip") for s in range(3)]
    assert all(r == replace(run_spec(r.scenario, r.seed), part="C-faults") and r.model == "M1" for r in faults)


def test_test_set_is_the_protocols():
    runs = scenarios.test_set()
    assert len(runs) == 57
    assert runs == scenarios.test_set()  # seeded: the same list every time
    for run in runs:
        _common(run)
    healthy = [r for r in runs if r.part == "T-healthy"]
    assert [r.seed for r in healthy] == list(range(200, 225))
    for r in healthy:
        assert r.scenario == "healthy" and r.fault_step is None and not r.is_fault
        assert 3e-5 <= r.learning_rate <= 2e-4 and 0.05 <= r.beta <= 0.3
        assert r.schedule in SCHEDULES and r.model in MODELS
    # Drawn, not fixed: the draws spread over their ranges and categories.
    assert len({r.schedule for r in healthy}) == 3 and len({r.model for r in healthy}) == 3
    logs = [math.log(r.learning_rate) for r in healthy]
    assert max(logs) - min(logs) > 0.5 * (math.log(2e-4) - math.log(3e-5))
    faults = [r for r in runs if r.part == "T-faults"]
    assert len(faults) == 32
    seeds = {f: [r.seed for r in faults if r.scenario == f] for f in TEST_FAULTS}
    assert seeds == {"lr_jump": list(range(300, 308)), "adam_beta2": list(range(310, 318)),
                     "grad_noise": list(range(320, 328)), "label_noise_ramp": list(range(330, 338))}
    for r in faults:
        assert r.is_fault and 130 <= r.fault_step <= 160
        assert r.model == ("M1" if r.seed % 2 == 0 else "M1p")
        assert (r.learning_rate, r.beta, r.schedule) == (5e-5, 0.1, "constant_with_warmup")
        assert r.lr_growth == 1.0 and r.flip_fraction == 0.0
    assert len({r.fault_step for r in faults}) > 8
    by = {r.scenario: r for r in faults}
    assert by["lr_jump"].lr_jump == 20
    assert (by["adam_beta2"].adam_beta2, by["adam_beta2"].adam_eps) == (0.5, 1e-12)
    assert by["grad_noise"].grad_noise == 5
    assert by["label_noise_ramp"].label_noise_ramp == 60
    # Each family sets only its own fault.
    neutral = RunSpec("x", 0, 240)
    for family, spec in by.items():
        changed = {k for k in ("lr_jump", "adam_beta2", "adam_eps", "grad_noise", "label_noise_ramp")
                   if getattr(spec, k) != getattr(neutral, k)}
        assert changed == ({"adam_beta2", "adam_eps"} if family == "adam_beta2" else {family})


def test_rollback_set_mirrors_its_test_runs():
    test = {r.name: r for r in scenarios.test_set()}
    runs = scenarios.rollback_set()
    assert [(r.scenario, r.seed) for r in runs] == [
        ("lr_jump", 300), ("adam_beta2", 310), ("grad_noise", 320), ("label_noise_ramp", 330),
        ("healthy", 200), ("healthy", 201), ("healthy", 202), ("healthy", 203),
    ]
    for r in runs:
        assert r.rollback and r.name.endswith("-rb")
        twin = test[r.name.removesuffix("-rb")]
        assert replace(r, rollback=False) == twin


def test_run_names_are_unique_and_stable():
    every = scenarios.calibration_set() + scenarios.test_set() + scenarios.rollback_set()
    names = [r.name for r in every]
    assert len(names) == len(set(names)) == 21 + 57 + 8
    assert names[:2] == ["healthy-s100", "healthy-s101"] and "lr_jump-s300-rb" in names
    assert [r.name for r in scenarios.calibration_set()] == names[:21]


def test_shorten_scales_the_fault():
    spec = scenarios.fault_test_spec("label_noise_ramp", 330)
    short = shorten(spec, 30)
    assert short.max_steps == 30 and short.label_noise_ramp == round(60 / 8)
    assert short.fault_step == round(spec.fault_step / 8) and short.name == spec.name
    assert shorten(scenarios.healthy_test_spec(200), 30).fault_step is None


def test_study3_test_set_is_the_protocols():
    runs = scenarios.study3_test_set()
    assert len(runs) == 57 and runs == scenarios.study3_test_set()
    healthy = [r for r in runs if r.part == "T3-healthy"]
    assert [r.seed for r in healthy] == list(range(400, 425))
    assert all(3e-5 <= r.learning_rate <= 2e-4 and 0.05 <= r.beta <= 0.3 and not r.is_fault for r in healthy)
    faults = [r for r in runs if r.part == "T3-faults"]
    seeds = {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY3_FAULTS}
    assert seeds == {"lr_jump": list(range(500, 508)), "label_noise_ramp": list(range(510, 518)),
                     "weight_noise": list(range(520, 528)), "grad_ascent": list(range(530, 538))}
    for r in faults:
        assert 130 <= r.fault_step <= 160 and r.model == ("M1" if r.seed % 2 == 0 else "M1p")
        assert (r.learning_rate, r.beta, r.schedule) == (5e-5, 0.1, "constant_with_warmup")
    by = {r.scenario: r for r in faults}
    assert by["weight_noise"].weight_noise == 0.3 and by["grad_ascent"].grad_ascent
    assert by["lr_jump"].lr_jump == 20 and by["label_noise_ramp"].label_noise_ramp == 60
    # No seed of study 3 is a seed of study 2 (its runs are study 3's calibration set).
    earlier = {r.name for r in scenarios.calibration_set() + scenarios.test_set()}
    assert not earlier & {r.name for r in runs}
    rollback = scenarios.study3_rollback_set()
    assert [(r.scenario, r.seed) for r in rollback] == [
        ("lr_jump", 500), ("label_noise_ramp", 510), ("weight_noise", 520), ("grad_ascent", 530),
        ("healthy", 400), ("healthy", 401), ("healthy", 402), ("healthy", 403)]
    twins = {r.name: r for r in runs}
    assert all(replace(r, rollback=False) == twins[r.name.removesuffix("-rb")] for r in rollback)


def test_study3_quick_smoke_is_one_short_run_per_scenario():
    script = study_script(3)
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY3_FAULTS]
    assert all(r.max_steps == script.QUICK_STEPS for r in quick)
    assert script.specs_of("train-test") == scenarios.study3_test_set()


# ---------------------------------------------------------------------------------------------- study 4
def test_study4_calibration_set_is_study2s_fault_free_runs():
    runs = scenarios.study4_calibration_set()
    assert len(runs) == 40 and {r.part for r in runs} == {"C4-healthy"}
    fault_free = [r for r in scenarios.calibration_set() + scenarios.test_set()
                  if r.part in ("C-healthy", "C-stable", "T-healthy")]
    assert Counter(r.part for r in fault_free) == {"C-healthy": 12, "C-stable": 3, "T-healthy": 25}
    assert runs == [replace(r, part="C4-healthy") for r in fault_free]  # same seeds, models, lr, β, schedules
    assert not any(r.is_fault or r.rollback for r in runs)
    assert len({r.name for r in runs}) == 40


def test_study4_test_set_is_the_protocols():
    from spinal_callback.config.detector import DetectorConfig
    from studies.runner import StudySettings

    runs = scenarios.study4_test_set()
    assert len(runs) == 57 and runs == scenarios.study4_test_set()
    for run in runs:
        _common(run)
    assert Counter(r.part for r in runs) == {"T4-healthy": 25, "T4-faults": 32}
    healthy = [r for r in runs if r.part == "T4-healthy"]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T4-healthy") for s in range(700, 725)]
    assert all(r.scenario == "healthy" and not r.is_fault for r in healthy)
    faults = [r for r in runs if r.part == "T4-faults"]
    assert scenarios.STUDY4_FAULTS == ("lr_jump", "weight_noise", "adam_beta2", "grad_noise")
    seeds = {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY4_FAULTS}
    assert seeds == {"lr_jump": list(range(800, 808)), "weight_noise": list(range(810, 818)),
                     "adam_beta2": list(range(820, 828)), "grad_noise": list(range(830, 838))}
    warm_up = DetectorConfig().warmup * StudySettings().interval  # the detector's first possible alert
    for r in faults:
        assert r == scenarios.fault_test_spec(r.scenario, r.seed, 240, (130, 160), "T4-faults")
        assert 130 <= r.fault_step <= 160 and r.fault_step > warm_up
        assert r.model == ("M1" if r.seed % 2 == 0 else "M1p")
        assert (r.learning_rate, r.beta, r.schedule) == (5e-5, 0.1, "constant_with_warmup")
    by = {r.scenario: r for r in faults}
    assert by["lr_jump"].lr_jump == 20 and by["weight_noise"].weight_noise == 0.3
    assert (by["adam_beta2"].adam_beta2, by["adam_beta2"].adam_eps) == (0.5, 1e-12)
    assert by["grad_noise"].grad_noise == 5.0
    # No seed of study 4's test set is a test seed of studies 2 or 3, nor a seed of its calibration set.
    earlier = scenarios.test_set() + scenarios.study3_test_set() + scenarios.study4_calibration_set()
    assert not {r.seed for r in earlier} & {r.seed for r in runs}


def test_study4_script_phases_and_quick_smoke():
    script = study_script(4)
    assert script.PHASES == ("train-calibration", "choose", "train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-calibration") == scenarios.study4_calibration_set()
    assert script.specs_of("train-test") == scenarios.study4_test_set()
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY4_FAULTS]
    assert all(r.max_steps == script.QUICK_STEPS for r in quick)
    assert [r.scenario for r in script.specs_of("train-calibration", quick=True)] == ["healthy", "stable"]
    # Fault-free runs are trained without held-out evaluations, fault runs with them.
    assert [script.settings_of(r).eval_every for r in quick] == [0, 2, 2, 2, 2]
    # Rollback runs, fault-free ones included, are evaluated (their held-out accuracy at the end is the point).
    assert script.specs_of("train-rollback") == scenarios.study4_rollback_set()
    assert {script.settings_of(r).eval_every for r in script.specs_of("train-rollback")} == {2}


def test_study4_rollback_set_reruns_firsts_and_four_healthy_runs_with_rollback():
    runs = scenarios.study4_rollback_set()
    test = {r.name: r for r in scenarios.study4_test_set()}
    assert [(r.scenario, r.seed) for r in runs] == [
        ("lr_jump", 800), ("weight_noise", 810), ("adam_beta2", 820), ("grad_noise", 830),
        ("healthy", 700), ("healthy", 701), ("healthy", 702), ("healthy", 703)]
    for run in runs:
        assert run.rollback and replace(run, rollback=False) == test[replace(run, rollback=False).name]


# ---------------------------------------------------------------------------------------------- study 5
def test_study5_test_set_is_the_protocols():
    from spinal_callback.config.detector import DetectorConfig
    from studies.runner import StudySettings

    runs = scenarios.study5_test_set()
    assert len(runs) == 54 and runs == scenarios.study5_test_set()
    for run in runs:
        _common(run)
    assert Counter(r.part for r in runs) == {"T5-healthy": 30, "T5-faults": 24}
    healthy = [r for r in runs if r.part == "T5-healthy"]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T5-healthy") for s in range(900, 930)]
    faults = [r for r in runs if r.part == "T5-faults"]
    assert scenarios.STUDY5_FAULTS == ("label_noise_ramp", "label_flip", "lr_jump")
    seeds = {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY5_FAULTS}
    assert seeds == {"label_noise_ramp": list(range(1000, 1008)), "label_flip": list(range(1010, 1018)),
                     "lr_jump": list(range(1020, 1028))}
    warm_up = DetectorConfig().warmup * StudySettings().interval
    for r in faults:
        assert r == scenarios.fault_test_spec(r.scenario, r.seed, 240, (130, 160), "T5-faults")
        assert 130 <= r.fault_step <= 160 and r.fault_step > warm_up
        assert r.model == ("M1" if r.seed % 2 == 0 else "M1p")
        assert (r.learning_rate, r.beta, r.schedule) == (5e-5, 0.1, "constant_with_warmup")
    by = {r.scenario: r for r in faults}
    assert by["label_noise_ramp"].label_noise_ramp == 60 and by["label_flip"].flip_fraction == 0.75
    assert by["lr_jump"].lr_jump == 20
    # No seed of T5 is a seed of any earlier run (studies 2-4, calibration and test sets).
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_calibration_set() + scenarios.study4_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in runs}


def test_study5_script_phases_quick_smoke_and_rollback_set():
    script = study_script(5)
    assert script.PHASES == ("choose", "train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-test") == scenarios.study5_test_set()
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY5_FAULTS]
    assert [script.settings_of(r).eval_every for r in quick] == [0, 2, 2, 2]
    runs = script.specs_of("train-rollback")
    assert runs == scenarios.study5_rollback_set()
    assert [(r.scenario, r.seed) for r in runs] == [
        ("label_noise_ramp", 1000), ("label_flip", 1010), ("lr_jump", 1020),
        ("healthy", 900), ("healthy", 901), ("healthy", 902), ("healthy", 903)]
    test = {r.name: r for r in scenarios.study5_test_set()}
    for run in runs:
        assert run.rollback and replace(run, rollback=False) == test[replace(run, rollback=False).name]
    assert {script.settings_of(r).eval_every for r in runs} == {2}


# ---------------------------------------------------------------------------------------------- study 6
def test_study6_sets_are_the_protocols():
    runs = scenarios.study6_calibration_set()
    assert runs == [replace(r, part="C6-healthy") for r in scenarios.study4_calibration_set()]
    test = scenarios.study6_test_set()
    assert len(test) == 41 and Counter(r.part for r in test) == {"T6-healthy": 25, "T6-faults": 16}
    for run in test:
        _common(run)
    assert [r for r in test if r.part == "T6-healthy"] == [
        scenarios.healthy_test_spec(s, 240, "T6-healthy") for s in range(1100, 1125)]
    faults = [r for r in test if r.part == "T6-faults"]
    assert {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY6_FAULTS} == {
        "grad_ascent": list(range(1200, 1208)), "lr_jump": list(range(1210, 1218))}
    for r in faults:
        assert r == scenarios.fault_test_spec(r.scenario, r.seed, 240, (130, 160), "T6-faults")
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    rollback = scenarios.study6_rollback_set()
    assert [(r.scenario, r.seed) for r in rollback] == [
        ("grad_ascent", 1200), ("lr_jump", 1210), ("healthy", 1100), ("healthy", 1101), ("healthy", 1102),
        ("healthy", 1103)]
    by_name = {r.name: r for r in test}
    assert all(r.rollback and replace(r, rollback=False) == by_name[replace(r, rollback=False).name] for r in rollback)


def test_study6_script_phases_and_quick_smoke():
    script = study_script(6)
    assert script.PHASES == ("train-calibration", "choose", "train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-calibration") == scenarios.study6_calibration_set()
    assert script.specs_of("train-test") == scenarios.study6_test_set()
    assert script.specs_of("train-rollback") == scenarios.study6_rollback_set()
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY6_FAULTS]
    assert [script.settings_of(r).eval_every for r in quick] == [0, 2, 2]


# ---------------------------------------------------------------------------------------------- study 7
def test_study7_sets_are_the_protocols():
    test = scenarios.study7_test_set()
    assert len(test) == 42 and Counter(r.part for r in test) == {"T7-healthy": 24, "T7-faults": 18}
    for run in test:
        _common(run)
    healthy = [r for r in test if r.part == "T7-healthy"]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T7-healthy", ("G1", "Q1")) for s in range(1500, 1524)]
    assert {r.model for r in healthy} == {"G1", "Q1"} and {r.schedule for r in healthy} == set(SCHEDULES)
    assert all(3e-5 <= r.learning_rate <= 2e-4 and 0.05 <= r.beta <= 0.3 for r in healthy)
    faults = [r for r in test if r.part == "T7-faults"]
    assert {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY7_FAULTS} == {
        "lr_jump": list(range(1600, 1606)), "label_flip": list(range(1610, 1616)),
        "grad_ascent": list(range(1620, 1626))}
    for r in faults:
        assert r.model == ("G1" if r.seed % 2 == 0 else "Q1") and 130 <= r.fault_step <= 160
        assert (r.learning_rate, r.beta, r.schedule) == (5e-5, 0.1, "constant_with_warmup")
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set() + scenarios.study6_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    assert not {r.model for r in earlier} & set(scenarios.STUDY7_MODELS)
    rollback = scenarios.study7_rollback_set()
    assert [(r.scenario, r.seed) for r in rollback] == [
        ("lr_jump", 1600), ("label_flip", 1610), ("grad_ascent", 1620), ("healthy", 1500), ("healthy", 1501),
        ("healthy", 1502), ("healthy", 1503)]
    by_name = {r.name: r for r in test}
    assert all(r.rollback and replace(r, rollback=False) == by_name[replace(r, rollback=False).name] for r in rollback)


def test_study7_script_phases_and_quick_smoke():
    script = study_script(7)
    assert script.PHASES == ("train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-test") == scenarios.study7_test_set()
    assert script.specs_of("train-rollback") == scenarios.study7_rollback_set()
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY7_FAULTS]
    assert all(r.max_steps == 30 for r in quick)


# ------------------------------------------------------------------------------------------- studies 8, 9
@pytest.mark.parametrize(("study", "healthy_from", "faults_from", "per_family"),
                         [(8, 1700, 1800, 6), (9, 1900, 2000, 8)])
def test_study8_and_9_sets_are_the_protocols(study, healthy_from, faults_from, per_family):
    test = getattr(scenarios, f"study{study}_test_set")()
    assert len(test) == 30 + 4 * per_family
    assert Counter(r.part for r in test) == {f"T{study}-healthy": 30, f"T{study}-faults": 4 * per_family}
    for run in test:
        _common(run)
    healthy = [r for r in test if r.part == f"T{study}-healthy"]
    assert healthy == [scenarios.healthy_test_spec(s, 240, f"T{study}-healthy", scenarios.STUDY8_MODELS)
                       for s in range(healthy_from, healthy_from + 30)]
    assert {r.model for r in healthy} == set(scenarios.STUDY8_MODELS)
    faults = [r for r in test if r.part == f"T{study}-faults"]
    assert {f: [r.seed for r in faults if r.scenario == f] for f in scenarios.STUDY8_FAULTS} == {
        family: list(range(faults_from + 10 * i, faults_from + 10 * i + per_family))
        for i, family in enumerate(("label_noise_ramp", "label_flip", "lr_jump", "grad_ascent"))}
    for family in scenarios.STUDY8_FAULTS:
        models = Counter(r.model for r in faults if r.scenario == family)
        assert set(models) == {"M1", "G1", "Q1"} and min(models.values()) >= 2
    assert all(r.model == ("M1", "G1", "Q1")[r.seed % 3] and 130 <= r.fault_step <= 160 for r in faults)
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set() + scenarios.study6_test_set()
               + scenarios.study7_test_set() + (scenarios.study8_test_set() if study == 9 else []))
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    rollback = getattr(scenarios, f"study{study}_rollback_set")()
    assert [(r.scenario, r.seed) for r in rollback] == [
        ("label_noise_ramp", faults_from), ("label_flip", faults_from + 10), ("lr_jump", faults_from + 20),
        ("grad_ascent", faults_from + 30), *[("healthy", healthy_from + i) for i in range(4)]]
    by_name = {r.name: r for r in test}
    assert all(r.rollback and replace(r, rollback=False) == by_name[replace(r, rollback=False).name] for r in rollback)


@pytest.mark.parametrize("study", [8, 9])
def test_study8_and_9_script_phases_and_quick_smoke(study):
    script = study_script(study)
    assert script.PHASES == ("choose", "train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-test") == getattr(scenarios, f"study{study}_test_set")()
    assert script.specs_of("train-rollback") == getattr(scenarios, f"study{study}_rollback_set")()
    quick = script.specs_of("train-test", quick=True)
    assert [r.scenario for r in quick] == ["healthy", *scenarios.STUDY8_FAULTS]
