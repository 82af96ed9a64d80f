"""Checks of :class:`~spinal_callback.config.spinal.SpinalConfig`'s structured fields — the alert actions, the
patching directions and ranks, the probe pairs, the fraction pairs, the output paths and the nested detector and
rollback sections — each raising ``ValueError`` that names the field, what is allowed and the value received.

Kept apart from the dataclass so that :mod:`~spinal_callback.config.spinal` holds the fields and their help text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spinal_callback.config.validation import check_writable_dir

__all__ = [
    "ALERT_ACTIONS", "PAIR_FIELDS", "PATCH_DIRECTIONS", "check_actions", "check_directions", "check_pairs",
    "check_ranks", "coerce_section", "fraction_pair", "output_path",
]

#: Named actions ``on_alert`` accepts (callables are accepted too).
ALERT_ACTIONS = ("log", "stop", "rollback")
#: Exact patching directions (as in :data:`spinal_callback.probes.DIRECTIONS`).
PATCH_DIRECTIONS = ("policy_to_reference", "reference_to_policy")
#: The keys of one probe pair.
PAIR_FIELDS = ("prompt", "chosen", "rejected")


def fraction_pair(name: str, value: object, strict_order: bool) -> tuple[float, float]:
    """``(a, b)`` with ``0 <= a < b <= 1`` (``strict_order``: ``0 < a < b < 1``)."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair of fractions (a, b), got {value!r}") from None
    if not (0.0 <= a < b <= 1.0) or (strict_order and not 0.0 < a < b < 1.0):
        bounds = "0 < a < b < 1" if strict_order else "0 <= a < b <= 1"
        raise ValueError(f"`{name}` must satisfy {bounds}, got {value!r}")
    return a, b


def coerce_section(cls: type, name: str, value: object) -> Any:
    """A ``cls`` (a nested section such as ``DetectorConfig``) from itself, a dict of its fields, a JSON object as
    text, or the path of a JSON file."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        text = value
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"`{name}` is not a valid JSON object ({err.msg} at character {err.pos}): "
                             f"{text[:80]!r}") from None
    if isinstance(value, Mapping):
        return cls.from_dict(value) if hasattr(cls, "from_dict") else cls(**dict(value))
    if isinstance(value, (str, os.PathLike)) and hasattr(cls, "from_json"):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise ValueError(f"`{name}` {path!r} is not a file; give a {cls.__name__}, a dict of its fields, a JSON "
                             "object or the path of a JSON file (for the detector, one written by `spinal calibrate`)")
        try:
            return cls.from_json(path)
        except json.JSONDecodeError as err:
            raise ValueError(f"`{name}` {path!r} is not valid JSON ({err.msg}, line {err.lineno})") from None
    raise ValueError(f"`{name}` must be a {cls.__name__}, a dict of its fields, a JSON object or a JSON file path, "
                     f"got {value!r:.80}")


def check_actions(actions: object) -> tuple[str | Callable[..., Any], ...]:
    """``on_alert``: one action or a list of them, each a name in :data:`ALERT_ACTIONS` or a callable."""
    if isinstance(actions, str) or callable(actions):
        actions = (actions,)
    if not isinstance(actions, Sequence):
        raise ValueError(f"`on_alert` must be a list of {ALERT_ACTIONS} or callables, got {actions!r}")
    for action in actions:
        if callable(action):
            continue
        if action not in ALERT_ACTIONS:
            raise ValueError(
                f"`on_alert` entries must be one of {', '.join(ALERT_ACTIONS)} or a callable, got {action!r}"
            )
    return tuple(actions)


def check_directions(directions: object) -> tuple[str, ...]:
    """``patch_directions``: one or more of :data:`PATCH_DIRECTIONS`, repeats dropped."""
    if isinstance(directions, str):
        directions = (directions,)
    if not isinstance(directions, Sequence) or not directions:
        raise ValueError(f"`patch_directions` must be a non-empty list of {PATCH_DIRECTIONS}, got {directions!r}")
    for direction in directions:
        if direction not in PATCH_DIRECTIONS:
            raise ValueError(
                f"`patch_directions` entries must be one of {', '.join(PATCH_DIRECTIONS)}, got {direction!r}"
            )
    return tuple(dict.fromkeys(directions))


def check_ranks(ranks: object) -> tuple[int, ...] | None:
    """``patch_ranks``: ``None`` or positive integers, returned sorted without repeats."""
    if ranks is None:
        return None
    checked = tuple(ranks) if isinstance(ranks, Sequence) else ()
    if not checked or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in checked):
        raise ValueError(f"`patch_ranks` must be None or a non-empty list of positive integers, got {ranks!r}")
    return tuple(sorted(set(checked)))


def check_pairs(pairs: object) -> list[dict[str, str]]:
    """``probe_pairs``: a non-empty list of ``{'prompt', 'chosen', 'rejected'}`` text dicts with non-blank
    completions (extra keys dropped)."""
    if not isinstance(pairs, Sequence) or isinstance(pairs, (str, bytes)) or len(pairs) == 0:
        raise ValueError(
            "`probe_pairs` must be a non-empty list of {'prompt', 'chosen', 'rejected'} dicts, "
            f"got {pairs!r:.80}"
        )
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, Mapping):
            raise ValueError(f"`probe_pairs[{i}]` must be a dict with keys {PAIR_FIELDS}, got {pair!r:.80}")
        missing = [k for k in PAIR_FIELDS if k not in pair]
        if missing:
            raise ValueError(f"`probe_pairs[{i}]` is missing {', '.join(missing)} (needs {PAIR_FIELDS})")
        for key in PAIR_FIELDS:
            if not isinstance(pair[key], str):
                raise ValueError(f"`probe_pairs[{i}]['{key}']` must be a string, got {pair[key]!r:.80}")
        for key in ("chosen", "rejected"):
            if not pair[key].strip():
                raise ValueError(f"`probe_pairs[{i}]['{key}']` is an empty completion; give it text to score")
        checked.append({k: pair[k] for k in PAIR_FIELDS})
    return checked


def output_path(name: str, value: object, *, directory: bool) -> str | None:
    """An output location (``directory``: a folder to write in, else a file) as an absolute path, refused when it
    cannot be written — without creating anything. ``None`` stays ``None``."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a path (str or os.PathLike) or None, got {value!r}")
    path = os.path.abspath(os.path.expanduser(os.fspath(value)))
    if not directory and os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file path, got the directory {path!r}")
    check_writable_dir(name, path if directory else os.path.dirname(path))
    return path
