"""The addition task: tokenizer, answers, preference pairs, splits and the greedy-accuracy scorer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spinal_callback.demo.task import AdditionTask, Problem, build_tokenizer, greedy_accuracy, wrong_answers


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _operands(prompt: str) -> tuple[int, int]:
    a, b = prompt.rstrip("=").split("+")
    return int(a), int(b)


def test_tokenizer_round_trip(tok) -> None:
    text = "07+48=055"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1  # one token per character
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(tok(text + tok.eos_token)["input_ids"]) == "<bos>" + text + "<eos>"
    assert tok(" ")["input_ids"][1] != tok.unk_token_id
    assert tok("é")["input_ids"][1] == tok.unk_token_id
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4


def test_prompt_ids_are_a_prefix_of_prompt_plus_completion(tok) -> None:
    """What TRL's tokenization relies on to find where the completion starts."""
    for pair in AdditionTask(seed=3).preference_pairs(20):
        prompt = tok(pair["prompt"])["input_ids"]
        for side in ("chosen", "rejected"):
            joint = tok(pair["prompt"] + pair[side] + tok.eos_token)["input_ids"]
            assert joint[: len(prompt)] == prompt
            assert joint[-1] == tok.eos_token_id


def test_tokenizer_save_and_reload(tok, tmp_path) -> None:
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "12+34=046" + tok.eos_token
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.pad_token_id, again.eos_token, again.bos_token) == (tok.pad_token_id, tok.eos_token, tok.bos_token)
    batch = again(["1+1=", "12+34="], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 7) and batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 2


def test_problem_format() -> None:
    problem = Problem(7, 48)
    assert (problem.prompt, problem.answer) == ("07+48=", "055")
    assert Problem(99, 99).answer == "198"


def test_wrong_answers_are_wrong_and_well_formed() -> None:
    for a in range(0, 100, 7):
        for b in range(0, 100, 11):
            problem = Problem(a, b)
            wrong = wrong_answers(problem)
            assert wrong and problem.answer not in wrong and len(set(wrong)) == len(wrong)
            assert all(len(w) == 3 and w.isdigit() for w in wrong)
    assert "065" in wrong_answers(Problem(27, 48))  # the forgotten carry


def test_chosen_is_correct_and_rejected_wrong() -> None:
    pairs = AdditionTask(seed=0).preference_pairs(300)
    for pair in pairs:
        a, b = _operands(pair["prompt"])
        assert int(pair["chosen"]) == a + b
        assert int(pair["rejected"]) != a + b and len(pair["rejected"]) == len(pair["chosen"])
    assert len({p["rejected"] for p in pairs}) > 50  # varied mistakes, not one pattern


def test_deterministic_given_seed() -> None:
    assert AdditionTask(seed=1).preference_pairs(50) == AdditionTask(seed=1).preference_pairs(50)
    assert AdditionTask(seed=1).preference_pairs(50) != AdditionTask(seed=2).preference_pairs(50)
    assert AdditionTask(seed=1).eval_problems(30) == AdditionTask(seed=1).eval_problems(30)


def test_eval_problems_are_held_out() -> None:
    task = AdditionTask(seed=0)
    held_out = set(task.eval_problems(10_000))
    assert held_out and held_out.isdisjoint(task.train_problems(5_000))
    pair_problems = {Problem(*_operands(p["prompt"])) for p in task.preference_pairs(2_000)}
    assert held_out.isdisjoint(pair_problems)


def test_eval_pairs_are_held_out_right_vs_wrong_and_fixed() -> None:
    task = AdditionTask(seed=0)
    pairs = task.eval_pairs(40)
    assert [p["prompt"] for p in pairs] == [q.prompt for q in task.eval_problems(40)]
    for pair, problem in zip(pairs, task.eval_problems(40)):
        assert pair["chosen"] == problem.answer and pair["rejected"] in wrong_answers(problem)
    assert pairs == AdditionTask(seed=0).eval_pairs(40)


def test_bad_task_arguments() -> None:
    with pytest.raises(ValueError, match="max_operand"):
        AdditionTask(max_operand=3)
    with pytest.raises(ValueError, match="eval_fraction"):
        AdditionTask(eval_fraction=1.5)


class _Oracle(nn.Module):
    """A stand-in LM whose ``generate`` answers right (or off by one): tests the scorer alone."""

    def __init__(self, tokenizer, offset: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.tokenizer, self.offset = tokenizer, offset

    def generate(self, input_ids, attention_mask, **kwargs):
        assert self.tokenizer.padding_side == "left" and not self.training
        rows = []
        for ids in input_ids.tolist():
            prompt = self.tokenizer.decode(ids, skip_special_tokens=True)
            a, b = _operands(prompt)
            answer = Problem(a, b).format_answer(a + b + self.offset)
            rows.append(ids + self.tokenizer(answer)["input_ids"][1:] + [self.tokenizer.eos_token_id])
        return torch.tensor(rows)


def test_greedy_accuracy_scores_exact_answers(tok) -> None:
    problems = AdditionTask(seed=0).eval_problems(40)
    oracle = _Oracle(tok).train()
    assert greedy_accuracy(oracle, tok, problems, batch_size=16) == 1.0
    assert oracle.training and tok.padding_side == "right"  # both restored
    assert greedy_accuracy(_Oracle(tok, offset=1), tok, problems) == 0.0
    assert greedy_accuracy(oracle, tok, []) == 0.0
