"""The fixed probe set: records from a training set, collated into TRL's (2K, T) layout."""

from __future__ import annotations

import pytest
import torch

from spinal_callback.model.probe_batch import collate_pairs, pairs_from_records


class MapStyle(torch.utils.data.Dataset):
    """Indexable with a length, but indexing past the end raises KeyError, not IndexError."""

    def __init__(self, n: int) -> None:
        self.items = {i: {"prompt_ids": [1, 5 + i], "chosen_ids": [7], "rejected_ids": [8, 9]} for i in range(n)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_map_style_dataset_is_indexed_up_to_count() -> None:
    assert [p["prompt_ids"] for p in pairs_from_records(MapStyle(5), 3)] == [[1, 5], [1, 6], [1, 7]]
    assert len(pairs_from_records(MapStyle(2), 16)) == 2  # fewer records than asked for


def test_plain_iterables_and_errors() -> None:
    records = iter([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3]}] * 4)
    assert len(pairs_from_records(records, 2)) == 2
    with pytest.raises(ValueError, match="expected"):
        pairs_from_records([{"text": "x"}], 1)
    with pytest.raises(ValueError, match="empty"):
        pairs_from_records([], 1)


def test_collate_layout_and_truncation() -> None:
    pairs = pairs_from_records(MapStyle(2), 2)
    batch = collate_pairs(pairs, pad_token_id=0, max_length=3)
    assert batch["input_ids"].shape == (4, 3)
    assert batch["input_ids"][0].tolist() == [1, 5, 7] and batch["input_ids"][2].tolist() == [5, 8, 9]
    assert batch["completion_mask"][2].tolist() == [0, 1, 1]  # prompt cut from the left to fit
    with pytest.raises(ValueError, match="empty rejected"):
        collate_pairs([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": []}])
