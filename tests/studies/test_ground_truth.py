"""The behavioural onset definition on hand-made evaluation series."""

from __future__ import annotations

import pytest

from studies.ground_truth import behavioural_onset, degraded_steps


def _evals(accuracy, logp):
    return [{"step": 2 * i, "accuracy": a, "chosen_logp": c} for i, (a, c) in enumerate(zip(accuracy, logp))]


def test_accuracy_drop_from_the_best_so_far():
    evals = _evals([0.8, 0.9, 0.85, 0.79, 0.78, 0.9], [-0.3] * 6)
    assert degraded_steps(evals) == [6, 8]
    assert behavioural_onset(evals) == 6


def test_one_bad_evaluation_is_not_an_onset():
    evals = _evals([0.9, 0.7, 0.9, 0.9], [-0.3] * 4)
    assert degraded_steps(evals) == [2]
    assert behavioural_onset(evals) is None
    assert behavioural_onset(evals, confirm=1) == 2


def test_chosen_logp_drop():
    evals = _evals([0.9] * 5, [-0.4, -0.2, -0.69, -0.71, -0.75])
    assert degraded_steps(evals) == [6, 8]
    assert behavioural_onset(evals) == 6


def test_healthy_run_has_no_onset_and_bad_confirm_is_refused():
    evals = _evals([0.8, 0.85, 0.9, 0.9], [-0.5, -0.4, -0.3, -0.35])
    assert behavioural_onset(evals) is None
    with pytest.raises(ValueError, match="confirm"):
        behavioural_onset(evals, confirm=0)
