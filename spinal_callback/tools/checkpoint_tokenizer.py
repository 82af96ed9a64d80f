"""The one tokenizer a set of checkpoints shares, found in their directories (or their bases') or given.

:func:`load_tokenizer` loads every tokenizer found in a checkpoint directory and refuses checkpoints whose
vocabularies differ; transformers is imported inside the functions only, and a Hub name comes from the local
cache first (:mod:`spinal_callback.tools.hub`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spinal_callback.tools.checkpoint_errors import CheckpointInputError, CheckpointLoadError
from spinal_callback.tools.checkpoint_spec import CheckpointSpec
from spinal_callback.tools.hub import HubUnavailableError, load_pretrained

__all__ = ["load_tokenizer"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _has_tokenizer(path: str) -> bool:
    return any((Path(path) / name).is_file() for name in _TOKENIZER_FILES)


def _tokenizer_sources(specs: Iterable[CheckpointSpec]) -> list[str]:
    """Checkpoint directories (then their bases) holding tokenizer files, and Hub names, in order."""
    sources: list[str] = []
    for spec in specs:
        for candidate in (spec.path, spec.base):
            if candidate is None or candidate in sources:
                continue
            local = Path(candidate)
            if (local.is_dir() and _has_tokenizer(candidate)) or not local.exists():  # a Hub name
                sources.append(candidate)
    return sources


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return load_pretrained(AutoTokenizer.from_pretrained, source)
    except HubUnavailableError as err:
        raise CheckpointLoadError(f"Could not load the tokenizer {source!r}: {err}") from None
    except Exception as err:
        raise CheckpointLoadError(f"Could not load the tokenizer {source!r}: {type(err).__name__}: {err}") from err


def load_tokenizer(specs: Sequence[CheckpointSpec], tokenizer: Any = None) -> tuple[Any, str]:
    """The tokenizer for ``specs`` and where it came from.

    Args:
        specs: the checkpoints.
        tokenizer: a tokenizer object, or its name or path; default: the first checkpoint directory, then
            base model directory, holding tokenizer files (or the first Hub name among ``specs``).

    Raises:
        CheckpointInputError: no tokenizer given or found.
        CheckpointLoadError: a tokenizer failed to load, or two checkpoint directories hold different
            vocabularies.
    """
    sources = _tokenizer_sources(specs)
    own = {source: _load_tokenizer(source) for source in sources if Path(source).is_dir()}
    first, reference = next(iter(own.items()), ("", None))
    for source, other in own.items():
        if reference is not None and other.get_vocab() != reference.get_vocab():
            raise CheckpointLoadError(
                f"The checkpoints do not share the vocabulary: the tokenizer in {source!r} ({len(other)} tokens) "
                f"differs from the one in {first!r} ({len(reference)} tokens)"
            )
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if tokenizer is not None:
        return _load_tokenizer(os.fspath(tokenizer)), os.fspath(tokenizer)
    if not sources:
        searched = ", ".join(repr(c) for s in specs for c in (s.path, s.base) if c is not None)
        raise CheckpointInputError(f"No tokenizer found in {searched}: give one with --tokenizer")
    return (own[sources[0]] if sources[0] in own else _load_tokenizer(sources[0])), sources[0]
