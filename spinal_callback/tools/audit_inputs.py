"""The audit's inputs, checked before any checkpoint loads: the probe set and the checkpoint labels.

The probe set is the caller's ``{prompt, chosen, rejected}`` pairs (a list, or a ``.json`` / ``.jsonl`` file),
else held-out problems of the built-in addition task (:func:`default_probe_pairs`); the labels are the caller's,
else short unique names from the paths (:func:`default_labels`). Bad input raises :class:`AuditInputError`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from spinal_callback.config.spinal import SpinalConfig

__all__ = [
    "AuditInputError",
    "check_labels",
    "default_labels",
    "default_probe_pairs",
    "read_probe_pairs",
    "select_probe_pairs",
]


class AuditInputError(ValueError):
    """Audit arguments that cannot work as given (labels, probe pairs, device, dtype, settings); ``spinal audit``
    exits with status 2."""


# -- probe set ------------------------------------------------------------------------------------
def default_probe_pairs(count: int, seed: int = 0) -> list[dict[str, str]]:
    """``count`` preference pairs of the built-in addition task, from its held-out problems.

    ``chosen`` is the correct sum, ``rejected`` a plausible wrong one
    (:meth:`spinal_callback.demo.task.AdditionTask.eval_pairs`); the draw is fixed by ``seed``.
    """
    from spinal_callback.demo.task import AdditionTask

    return AdditionTask(seed=seed).eval_pairs(count)


def read_probe_pairs(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Preference pairs from a ``.jsonl`` file (one object a line) or a JSON file holding a list.

    Records need ``prompt``, ``chosen`` and ``rejected`` strings (other keys are ignored).

    Raises:
        AuditInputError: the file is missing, not valid JSON, or its records are malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AuditInputError(f"Cannot read the probe pairs {str(path)!r}: {err.strerror or err}") from None
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as err:
        raise AuditInputError(f"The probe pairs {str(path)!r} are not valid JSON{'L' * (path.suffix == '.jsonl')}: "
                              f"{err}") from None
    if not isinstance(records, list):
        raise AuditInputError(f"The probe pairs {str(path)!r} must hold a list of {{prompt, chosen, rejected}} records")
    try:
        return list(SpinalConfig(probe_pairs=records).probe_pairs or [])
    except ValueError as err:
        raise AuditInputError(f"The probe pairs {str(path)!r}: {err}") from None


def select_probe_pairs(
    probe_pairs: Sequence[Mapping[str, str]] | str | os.PathLike[str] | None, count: int | None, cfg: SpinalConfig
) -> tuple[list[dict[str, str]], str]:
    """The text pairs and a description of where they came from.

    Args:
        probe_pairs: pairs, a ``.json`` / ``.jsonl`` file of them, or ``None`` for :func:`default_probe_pairs`.
        count: keep the first ``count`` given pairs (``None``: all); the default draw has
            ``cfg.num_probe_pairs`` pairs instead.
        cfg: the measurement settings (``num_probe_pairs`` and ``seed`` of the default draw).

    Raises:
        AuditInputError: the file cannot be read or a record is malformed.
    """
    if probe_pairs is None:
        source = f"addition task, held-out problems (seed {cfg.seed})"
        return default_probe_pairs(cfg.num_probe_pairs, cfg.seed), source
    if isinstance(probe_pairs, (str, os.PathLike)):
        pairs, source = read_probe_pairs(probe_pairs), os.fspath(probe_pairs)
    else:
        try:  # SpinalConfig checks every record (mappings with three strings, non-empty completions)
            checked = SpinalConfig(probe_pairs=list(probe_pairs)).probe_pairs  # type: ignore[arg-type]
        except ValueError as err:
            raise AuditInputError(str(err)) from None
        pairs, source = list(checked or []), "probe_pairs argument"
    return (pairs if count is None else pairs[:count]), source


# -- labels ---------------------------------------------------------------------------------------
def default_labels(paths: Sequence[str]) -> list[str]:
    """Short unique names: the last path component (``.ckpt`` suffix dropped), with parent folders added
    where two would clash (``run1/checkpoint-10``, ``run2/checkpoint-10``), ``#<position>`` as a last resort."""
    named = [Path(p).with_suffix("") if p.endswith(".ckpt") else Path(p) for p in paths]
    parts = [path.parts[1:] if path.anchor else path.parts for path in named]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) or path for p, d, path in zip(parts, depth, paths)]
        counts = Counter(labels)
        clashing = [i for i, label in enumerate(labels) if counts[label] > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    return [f"{label}#{i + 1}" if counts[label] > 1 else label for i, label in enumerate(labels)]


def check_labels(labels: Sequence[str] | None, paths: Sequence[str]) -> list[str]:
    """``labels`` stripped, one per path, non-empty and unique; :func:`default_labels` when ``None``.

    Raises:
        AuditInputError: a wrong number of labels, an empty one or two equal ones.
    """
    if labels is None:
        return default_labels(paths)
    labels = [str(label).strip() for label in labels]
    if len(labels) != len(paths):
        raise AuditInputError(
            f"{len(labels)} labels given for {len(paths)} checkpoints (--labels); give one label per checkpoint"
        )
    if not all(labels) or len(set(labels)) != len(labels):
        raise AuditInputError(f"Labels (--labels) must be non-empty and unique, got {labels}")
    return labels
