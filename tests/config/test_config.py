"""SpinalConfig validation: every bad value is refused at construction with a message naming it."""

from __future__ import annotations

import os

import pytest

from spinal_callback import SpinalConfig

PAIR = {"prompt": "1+1=", "chosen": "2", "rejected": "3"}


def test_defaults_are_valid() -> None:
    cfg = SpinalConfig()
    assert cfg.interval > 0 and cfg.on_alert == ("log",) and cfg.patch_interval == 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"interval": 0}, "`interval` must be an integer >= 1, got 0"),
        ({"interval": -3}, "`interval`"),
        ({"interval": 2.5}, "`interval`"),
        ({"interval": True}, "`interval`"),
        ({"num_probe_pairs": 0}, "`num_probe_pairs`"),
        ({"max_tokens": 0}, "`max_tokens`"),
        ({"max_length": -1}, "`max_length`"),
        ({"chunk_size": 0}, "`chunk_size`"),
        ({"patch_interval": -1}, "`patch_interval`"),
        ({"patch_directions": ("sideways",)}, "got 'sideways'"),
        ({"patch_directions": ()}, "`patch_directions`"),
        ({"patch_ranks": [0, 2]}, "`patch_ranks`"),
        ({"patch_low_rank_layers": -1}, "`patch_low_rank_layers`"),
        ({"patch_lasso": "yes"}, "`patch_lasso`"),
        ({"on_alert": ("rollback",), "rollback": {"enabled": False}}, "snapshots are disabled"),
        ({"rollback": {"lr_scale": 2.0}}, "`lr_scale`"),
        ({"detector": {"warmup": 1}}, "`warmup`"),
        ({"detector": 5}, "`detector`"),
        ({"tail": (0.9, 0.1)}, "`tail`"),
        ({"tail": "abc"}, "`tail`"),
        ({"bands": (0.0, 0.5)}, "`bands`"),
        ({"bands": (0.5, 0.5)}, "`bands`"),
        ({"rtol": -1.0}, "`rtol`"),
        ({"strict": "yes"}, "`strict`"),
        ({"on_alert": ("log", "explode")}, "got 'explode'"),
        ({"on_alert": 5}, "`on_alert`"),
        ({"probe_pairs": []}, "`probe_pairs`"),
        ({"probe_pairs": [{"prompt": "x", "chosen": "y"}]}, "missing rejected"),
        ({"probe_pairs": [{**PAIR, "chosen": "  "}]}, "empty completion"),
        ({"probe_pairs": [{**PAIR, "rejected": 3}]}, "must be a string"),
        ({"probe_pairs": ["not a dict"]}, "must be a dict"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        SpinalConfig(**kwargs)
    assert needle.lower() in str(info.value).lower()


def test_on_alert_accepts_names_and_callables() -> None:
    def notify(alert: object) -> None:
        pass

    cfg = SpinalConfig(on_alert=["log", notify])
    assert cfg.on_alert == ("log", notify)
    assert SpinalConfig(on_alert="stop").on_alert == ("stop",)
    assert cfg.to_dict()["on_alert"] == ["log", "notify"]


def test_unwritable_log_dir_is_refused(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"`log_dir`.*not a directory"):
        SpinalConfig(log_dir=str(blocker / "tb"))
    with pytest.raises(ValueError, match="`trace_path`"):
        SpinalConfig(trace_path=str(blocker / "t.jsonl"))
    with pytest.raises(ValueError, match="directory"):
        SpinalConfig(trace_path=str(tmp_path))


def test_writable_paths_are_not_created_by_validation(tmp_path) -> None:
    target = tmp_path / "not" / "yet"
    cfg = SpinalConfig(log_dir=str(target))
    assert cfg.log_dir == os.path.abspath(target)
    assert not target.exists()


def test_fingerprint_tracks_what_is_measured() -> None:
    assert SpinalConfig().fingerprint() == SpinalConfig(strict=True).fingerprint()
    assert SpinalConfig().fingerprint() != SpinalConfig(interval=7).fingerprint()
    assert SpinalConfig(probe_pairs=[PAIR]).fingerprint() != SpinalConfig().fingerprint()


def test_round_trip_through_dict() -> None:
    cfg = SpinalConfig(interval=3, tail=(0.2, 0.8), probe_pairs=[PAIR])
    again = SpinalConfig(**cfg.to_dict())
    assert again == cfg


def test_help_documents_every_field() -> None:
    helps = SpinalConfig.help()
    assert all(text for text in helps.values()), [k for k, v in helps.items() if not v]
