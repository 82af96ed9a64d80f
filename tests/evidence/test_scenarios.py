"""Scenario specs: seeded fault steps inside the window, validation."""

from __future__ import annotations

import pytest

from spinal_callback.evidence.scenarios import SCENARIOS, run_spec


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
