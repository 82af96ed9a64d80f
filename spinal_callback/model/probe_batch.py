"""The fixed probe set: K preference pairs tokenized once into TRL's collator layout.

Layout (as TRL 1.16's DPO collator): ``input_ids``, ``attention_mask`` and ``completion_mask``, each
``(2K, T)``, right-padded; rows ``0..K-1`` are prompt + chosen, rows ``K..2K-1`` prompt + rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["collate_pairs", "pad_token_id", "pairs_from_records", "select_positions", "tokenize_pairs"]

_ID_FIELDS = ("prompt_ids", "chosen_ids", "rejected_ids")
_TEXT_FIELDS = ("prompt", "chosen", "rejected")


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's padding id, else its end-of-sequence id, else 0 (padding is masked out anyway)."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def _as_ids(value: object, where: str) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"{where} must be a list of token ids, got {type(value).__name__}")
    return [int(v) for v in value]


def collate_pairs(
    pairs: Sequence[Mapping[str, Any]], pad_token_id: int = 0, max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Stack tokenized pairs into the ``(2K, T)`` chosen-then-rejected layout.

    Args:
        pairs: dicts with ``prompt_ids``, ``chosen_ids`` and ``rejected_ids`` (lists of ints).
        pad_token_id: id written into padding positions (masked out; any valid id works).
        max_length: cap on prompt + completion length; the prompt is cut from the left to make room,
            the completion from the right only if it alone exceeds the cap.

    Raises:
        ValueError: a pair misses a field, has an empty completion, or ``max_length`` leaves no
            room for any completion token.
    """
    if len(pairs) == 0:
        raise ValueError("No preference pairs to collate: the probe set is empty")
    if max_length is not None and max_length < 2:
        raise ValueError(f"`max_length` must be at least 2 (one prompt and one completion token), got {max_length}")
    rows: list[tuple[list[int], int]] = []  # (ids, prompt length)
    for side in ("chosen_ids", "rejected_ids"):
        for i, pair in enumerate(pairs):
            missing = [k for k in _ID_FIELDS if k not in pair]
            if missing:
                raise ValueError(f"Preference pair {i} is missing {', '.join(missing)}")
            prompt = _as_ids(pair["prompt_ids"], f"pair {i} prompt_ids")
            completion = _as_ids(pair[side], f"pair {i} {side}")
            if not completion:
                raise ValueError(f"Preference pair {i} has an empty {side.removesuffix('_ids')} completion")
            if max_length is not None:
                completion = completion[:max_length - 1] if prompt else completion[:max_length]
                room = max_length - len(completion)
                prompt = prompt[len(prompt) - room:] if room > 0 else []
            rows.append((prompt + completion, len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), int(pad_token_id), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, prompt_len) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[r, : len(ids)] = 1
        completion_mask[r, prompt_len : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion_mask}


def tokenize_pairs(pairs: Iterable[Mapping[str, str]], tokenizer: Any) -> list[dict[str, list[int]]]:
    """Tokenize text pairs the way TRL does for non-conversational data.

    ``prompt`` is tokenized alone and ``prompt + chosen`` / ``prompt + rejected`` together; the
    completion starts where the prompt's tokens and the joint tokens diverge. An EOS token is
    appended to each completion when the tokenizer has one and does not already end with it.
    """
    if tokenizer is None:
        raise ValueError(
            "Text probe pairs need a tokenizer: pass `tokenizer=` to the callback (Lightning) or give the "
            "trainer a `processing_class` (TRL)."
        )
    eos = getattr(tokenizer, "eos_token_id", None)
    out = []
    for i, pair in enumerate(pairs):
        missing = [k for k in _TEXT_FIELDS if k not in pair]
        if missing:
            raise ValueError(f"Probe pair {i} is missing {', '.join(missing)}")
        prompt = list(tokenizer(pair["prompt"])["input_ids"])
        joint = {
            side: list(tokenizer(pair["prompt"] + pair[side])["input_ids"]) for side in ("chosen", "rejected")
        }
        split = len(prompt)
        for ids in joint.values():
            common = 0
            while common < min(split, len(ids)) and ids[common] == prompt[common]:
                common += 1
            split = common
        record = {"prompt_ids": prompt[:split]}
        for side, ids in joint.items():
            completion = ids[split:]
            if eos is not None and (not completion or completion[-1] != eos):
                completion = [*completion, int(eos)]
            if len(completion) == (1 if eos is not None else 0):
                raise ValueError(f"Probe pair {i}: the {side} completion tokenizes to no token")
            record[f"{side}_ids"] = completion
        out.append(record)
    return out


def pairs_from_records(records: Iterable[Mapping[str, Any]], count: int, tokenizer: Any = None) -> list[dict]:
    """The first ``count`` pairs of a training set, as token-id dicts.

    ``records`` may be any iterable of records or a map-style dataset (``len`` + indexing, e.g. a
    ``datasets.Dataset`` or a ``torch.utils.data.Dataset``), which is indexed from 0. Records may hold
    token ids (``prompt_ids``/``chosen_ids``/``rejected_ids``, as in a dataset TRL has processed) or
    text (``prompt``/``chosen``/``rejected``, tokenized with ``tokenizer``).
    """
    if hasattr(records, "__len__") and hasattr(records, "__getitem__"):
        # a map-style dataset: index the first records (iterating some of them runs past their end)
        dataset: Any = records
        records = (dataset[i] for i in range(min(len(dataset), count)))
    taken: list[dict] = []
    texts: list[Mapping[str, str]] = []
    for record in records:
        if len(taken) + len(texts) >= count:
            break
        if not isinstance(record, Mapping):
            raise ValueError(
                f"Training records are {type(record).__name__}, not dicts with prompt/chosen/rejected; give "
                "the probe set explicitly with SpinalConfig(probe_pairs=[...])"
            )
        if all(k in record for k in _ID_FIELDS):
            taken.append({k: _as_ids(record[k], k) for k in _ID_FIELDS})
        elif all(k in record for k in _TEXT_FIELDS):
            texts.append(record)
        else:
            raise ValueError(
                f"A training record has keys {sorted(record)}; expected {_ID_FIELDS} or {_TEXT_FIELDS}. Give the "
                "probe set explicitly with SpinalConfig(probe_pairs=[...])"
            )
    if texts:
        taken.extend(tokenize_pairs(texts, tokenizer))
    if not taken:
        raise ValueError("The training data is empty: no preference pair for the probe set")
    return taken


def select_positions(
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token positions a probe measures: completion tokens if known, else all non-padding tokens.

    When more than ``max_tokens`` positions qualify, a deterministic subsample (a permutation from a
    generator seeded with ``seed``, then sorted) keeps ``max_tokens`` of them, so the same batch
    always yields the same positions — for every layer and every training step.

    Args:
        attention_mask: ``(B, T)`` 0/1 mask of real (non-padding) tokens.
        completion_mask: optional ``(B, T)`` 0/1 mask of completion tokens (TRL's layout).
        max_tokens: cap on the number of positions, or ``None`` for no cap.
        seed: seed of the subsample.

    Returns:
        ``(rows, cols)`` long tensors on the mask's device, in row-major order.

    Raises:
        ValueError: masks are not 2-D, differ in shape, or select no position at all.
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"`attention_mask` must be 2-D (batch, seq), got shape {tuple(attention_mask.shape)}")
    mask = attention_mask.bool()
    if completion_mask is not None:
        if completion_mask.shape != attention_mask.shape:
            raise ValueError(
                f"`completion_mask` shape {tuple(completion_mask.shape)} differs from `attention_mask` "
                f"shape {tuple(attention_mask.shape)}"
            )
        mask = mask & completion_mask.bool()
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"`max_tokens` must be a positive integer or None, got {max_tokens!r}")
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        which = "attention_mask & completion_mask" if completion_mask is not None else "attention_mask"
        raise ValueError(
            f"The probe batch selects no token: {which} is all zeros (an all-padding batch or empty "
            "completions). Give sequences with at least one real completion token."
        )
    if max_tokens is not None and rows.numel() > max_tokens:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(rows.numel(), generator=gen)[:max_tokens].sort().values.to(rows.device)
        rows, cols = rows[keep], cols[keep]
    return rows, cols
