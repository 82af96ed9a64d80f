"""``--dataset`` loading: files, save_to_disk folders, and clear errors."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from spinal_callback.demo.data import DatasetError, load_preference_dataset

ROWS = [{"prompt": f"{i}+1=", "chosen": str(i + 1), "rejected": str(i + 2)} for i in range(6)]


def test_jsonl_json_parquet(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    Dataset.from_list(ROWS).to_parquet(str(tmp_path / "a.parquet"))
    for name in ("a.jsonl", "a.json", "a.parquet"):
        data = load_preference_dataset(str(tmp_path / name))
        assert len(data) == 6 and data[0]["chosen"] == "1", name


def test_save_to_disk_dataset_and_dict(tmp_path) -> None:
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "flat"))
    DatasetDict({"train": Dataset.from_list(ROWS[:4]), "test": Dataset.from_list(ROWS[4:])}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert len(load_preference_dataset(str(tmp_path / "flat"))) == 6
    assert len(load_preference_dataset(str(tmp_path / "dict"))) == 4
    assert len(load_preference_dataset(str(tmp_path / "dict"), split="test")) == 2
    with pytest.raises(DatasetError, match="no 'validation' split"):
        load_preference_dataset(str(tmp_path / "dict"), split="validation")


def test_missing_columns_are_named(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": r["prompt"], "answer": r["chosen"]}) for r in ROWS))
    with pytest.raises(DatasetError, match="missing the column\\(s\\) chosen, rejected") as err:
        load_preference_dataset(str(path))
    assert "answer" in str(err.value)  # says what it has


def test_missing_file_and_bad_suffix(tmp_path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_preference_dataset(str(tmp_path / "nope.jsonl"))
    (tmp_path / "pairs.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.txt'"):
        load_preference_dataset(str(tmp_path / "pairs.txt"))


def test_empty_file(tmp_path) -> None:
    Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}).to_parquet(str(tmp_path / "e.parquet"))
    with pytest.raises(DatasetError, match=r"e\.parquet"):
        load_preference_dataset(str(tmp_path / "e.parquet"))


def test_non_text_columns_are_refused(tmp_path) -> None:
    path = tmp_path / "numbers.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "1+1=", "chosen": 2, "rejected": 3}) for _ in range(3)))
    with pytest.raises(DatasetError, match="column 'chosen' holds int64 values"):
        load_preference_dataset(str(path))
