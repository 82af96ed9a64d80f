"""Preference data for the recipes: the built-in addition pairs, or the user's ``--dataset``.

``--dataset`` accepts a local ``.json`` / ``.jsonl`` / ``.parquet`` file, a directory
written by ``datasets.Dataset.save_to_disk``, or a Hub dataset name (loaded with
``datasets.load_dataset``, which needs the network). Every source must have the columns
``prompt``, ``chosen`` and ``rejected``, holding text (or, for the TRL recipe, chat messages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["REQUIRED_COLUMNS", "DatasetError", "load_preference_dataset", "task_dataset"]

#: Columns a preference dataset must have.
REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
_FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DatasetError(ValueError):
    """A ``--dataset`` that cannot be used; the message says why and what is expected."""


def _check_columns(dataset: Any, source: str) -> Any:
    names = list(dataset.column_names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DatasetError(
            f"--dataset {source!r} is missing the column(s) {', '.join(missing)}: a preference dataset needs "
            f"{', '.join(REQUIRED_COLUMNS)} (it has {', '.join(names) or 'no columns'})"
        )
    if len(dataset) == 0:
        raise DatasetError(f"--dataset {source!r} has no rows")
    for column in REQUIRED_COLUMNS:
        feature = dataset.features[column]
        dtype = getattr(feature, "dtype", None)
        if dtype is not None and dtype not in ("string", "large_string"):
            raise DatasetError(
                f"--dataset {source!r}: column {column!r} holds {dtype} values; prompt, chosen and rejected must be "
                "text (or lists of chat messages)"
            )
    return dataset


def _pick_split(data: Any, source: str, split: str) -> Any:
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        if split not in data:
            raise DatasetError(f"--dataset {source!r} has no {split!r} split (splits: {', '.join(data)})")
        return data[split]
    return data


def load_preference_dataset(source: str, split: str = "train") -> Any:
    """Load a prompt/chosen/rejected dataset from a file, a ``save_to_disk`` folder or the Hub.

    Args:
        source: path of a ``.json``/``.jsonl``/``.parquet`` file or of a ``save_to_disk``
            directory; anything else is taken as a Hub dataset name.
        split: split to use when the source has several (``save_to_disk`` DatasetDict, Hub).

    Returns:
        A ``datasets.Dataset`` with at least the columns :data:`REQUIRED_COLUMNS`.

    Raises:
        DatasetError: the file is missing or has an unsupported suffix, the split does not exist,
            required columns are missing or not text, the data is empty, or loading failed.
    """
    import datasets

    path = Path(source).expanduser()
    looks_local = path.suffix.lower() in _FILE_FORMATS or source.startswith((".", "/", "~")) or path.exists()
    try:
        if path.is_dir():
            data = _pick_split(datasets.load_from_disk(str(path)), source, split)
        elif path.is_file():
            fmt = _FILE_FORMATS.get(path.suffix.lower())
            if fmt is None:
                raise DatasetError(
                    f"--dataset {source!r}: unsupported file type {path.suffix or '(none)'!r}; use one of "
                    f"{', '.join(sorted(_FILE_FORMATS))} or a save_to_disk directory"
                )
            data = datasets.load_dataset(fmt, data_files=str(path), split="train")
        elif looks_local:
            raise DatasetError(f"--dataset {source!r}: no such file or directory")
        else:
            data = _pick_split(datasets.load_dataset(source, split=split), source, split)
    except DatasetError:
        raise
    except Exception as err:  # datasets raises many types; say which source failed and why
        raise DatasetError(f"--dataset {source!r} could not be loaded: {type(err).__name__}: {err}") from err
    return _check_columns(data, source)


def task_dataset(pairs: list[dict[str, str]]) -> Any:
    """The built-in text pairs as a ``datasets.Dataset`` (columns prompt, chosen, rejected)."""
    import datasets

    return datasets.Dataset.from_list(pairs)
