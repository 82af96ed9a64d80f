"""The demo task: two-number addition, generated locally and checked exactly.

A prompt is ``"23+48="`` and its answer ``"071"``: operands and answer are zero-padded to a fixed
width (``"07+05=012"``), which lets a tiny model learn the carry within a few hundred steps.
Preference pairs put the correct answer as ``chosen`` and a *plausible* wrong one as ``rejected``
— the carry forgotten, a digit off by one, the tens off by ten — the mistakes a half-trained model
actually makes, so DPO has a real signal to push on. Everything is deterministic given a seed and
needs no network: the tokenizer is a character-level :class:`transformers.PreTrainedTokenizerFast`
built in memory.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "SPECIAL_TOKENS",
    "AdditionTask",
    "Problem",
    "build_tokenizer",
    "greedy_accuracy",
    "wrong_answers",
]

#: Special tokens of the demo tokenizer, in id order (pad is 0).
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class Problem:
    """One addition problem ``a + b`` with ``width``-digit operands."""

    a: int
    b: int
    width: int = 2

    @property
    def prompt(self) -> str:
        """The text the model is given, e.g. ``"23+48="``."""
        return f"{self.a:0{self.width}d}+{self.b:0{self.width}d}="

    def format_answer(self, value: int) -> str:
        """``value`` written as a completion: zero-padded to ``width + 1`` digits."""
        return f"{value:0{self.width + 1}d}"

    @property
    def answer(self) -> str:
        """The correct completion, e.g. ``"071"``."""
        return self.format_answer(self.a + self.b)


def build_tokenizer(model_max_length: int = 64) -> Any:
    """A character-level tokenizer over printable ASCII, built locally (no download).

    Every printable ASCII character is one token; ``<pad>``, ``<bos>``, ``<eos>`` and ``<unk>`` are
    special tokens, and ``<bos>`` is prepended to every encoded text, so a prompt's ids are always a
    prefix of the prompt + completion ids (what TRL's tokenization expects). It round-trips through
    ``save_pretrained`` / ``AutoTokenizer.from_pretrained``.

    Args:
        model_max_length: the tokenizer's ``model_max_length``.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    chars = [c for c in string.printable if c.isprintable()]  # drops \t\n\r\x0b\x0c, keeps " "
    vocab = {token: i for i, token in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    bos = SPECIAL_TOKENS["bos_token"]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, model_max_length=model_max_length, padding_side="right", **SPECIAL_TOKENS
    )


def wrong_answers(problem: Problem) -> list[str]:
    """Plausible wrong answers to ``problem``, most plausible first, none equal to the answer.

    Candidates: the sum with every carry dropped (``27+48 → 065``), the last digit off by one, the
    tens off by ten, and the two last digits swapped.
    """
    a, b, total = problem.a, problem.b, problem.a + problem.b
    no_carry, place = 0, 1
    x, y = a, b
    while x or y:
        no_carry += ((x % 10 + y % 10) % 10) * place
        x, y, place = x // 10, y // 10, place * 10
    candidates = [no_carry, total + 1, total - 1, total + 10, total - 10]
    digits = problem.answer
    if digits[-1] != digits[-2]:
        candidates.append(int(digits[:-2] + digits[-1] + digits[-2]))
    out: list[str] = []
    for value in candidates:
        text = problem.format_answer(value)
        if 0 <= value < 10 ** (problem.width + 1) and value != total and text not in out:
            out.append(text)
    return out


class AdditionTask:
    """Deterministic generator of addition problems, SFT examples and preference pairs.

    Train and eval problems are disjoint: a problem is in the eval split when a hash of ``(a, b)``
    falls in the held-out fraction, independent of the seed.

    Args:
        max_operand: operands are drawn from ``0..max_operand``.
        seed: seed of every draw made by this task.
        eval_fraction: share of all ``(a, b)`` problems held out for evaluation.
    """

    def __init__(self, max_operand: int = 99, seed: int = 0, eval_fraction: float = 0.2) -> None:
        if not isinstance(max_operand, int) or max_operand < 9:
            raise ValueError(f"`max_operand` must be an integer >= 9, got {max_operand!r}")
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"`eval_fraction` must be in (0, 1), got {eval_fraction!r}")
        self.max_operand = max_operand
        self.seed = seed
        self.eval_fraction = eval_fraction
        width = len(str(max_operand))
        everything = [Problem(a, b, width) for a in range(max_operand + 1) for b in range(max_operand + 1)]
        held_out = [p for p in everything if self._is_eval(p)]
        self._eval = held_out
        self._train = [p for p in everything if not self._is_eval(p)]

    def _is_eval(self, problem: Problem) -> bool:
        # Knuth multiplicative hash: a fixed, seed-independent split.
        key = (problem.a * 1009 + problem.b) * 2654435761 % 2**32
        return key / 2**32 < self.eval_fraction

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}")

    def train_problems(self, n: int, purpose: str = "train") -> list[Problem]:
        """``n`` problems from the training split (with repetition), one fixed draw per ``purpose``."""
        rng = self._rng(purpose)
        return [rng.choice(self._train) for _ in range(n)]

    def eval_problems(self, n: int = 200) -> list[Problem]:
        """``n`` held-out problems, never seen in training (fewer if the split is smaller)."""
        rng = self._rng("eval")
        return rng.sample(self._eval, min(n, len(self._eval)))

    def sft_stream(self) -> Iterator[Problem]:
        """An endless stream of training problems for supervised pre-training."""
        rng = self._rng("sft")
        while True:
            yield rng.choice(self._train)

    def preference_pairs(self, n: int) -> list[dict[str, str]]:
        """``n`` text preference pairs ``{"prompt", "chosen", "rejected"}`` from training problems.

        ``chosen`` is the correct answer; ``rejected`` one of :func:`wrong_answers`, drawn uniformly:
        a skewed draw (say, mostly forgotten carries) teaches the opposite mistake (spurious carries).
        """
        return _pairs(self.train_problems(n), self._rng("pairs"))

    def eval_pairs(self, n: int = 64) -> list[dict[str, str]]:
        """``n`` held-out preference pairs: the problems of :meth:`eval_problems` ``(n)``, never trained on.

        Built like :meth:`preference_pairs` (``chosen`` right, ``rejected`` a uniform draw from
        :func:`wrong_answers`), from a draw of their own: a fixed probe set for comparing checkpoints.
        """
        return _pairs(self.eval_problems(n), self._rng("eval-pairs"))


def _pairs(problems: Sequence[Problem], rng: random.Random) -> list[dict[str, str]]:
    """Text pairs of ``problems``: the right answer chosen, a wrong one drawn with ``rng`` rejected."""
    return [
        {"prompt": p.prompt, "chosen": p.answer, "rejected": rng.choice(wrong_answers(p))} for p in problems
    ]


@torch.no_grad()
def greedy_accuracy(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    batch_size: int = 128,
    max_new_tokens: int = 5,
) -> float:
    """Share of ``problems`` the model answers exactly right with greedy decoding.

    The completion is decoded up to the first EOS (special tokens skipped, whitespace stripped) and
    compared with :attr:`Problem.answer`. The model's train/eval mode is restored afterwards.

    Args:
        model: a Hugging Face causal LM (PEFT-wrapped too).
        tokenizer: its tokenizer (needs a pad or EOS token).
        problems: the problems to score.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: generation budget per prompt (answers have at most 4 characters + EOS).

    Returns:
        Accuracy in ``[0, 1]``; ``0.0`` for an empty problem list.
    """
    if not problems:
        return 0.0
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    correct = 0
    try:
        for start in range(0, len(problems), batch_size):
            chunk = problems[start : start + batch_size]
            batch = tokenizer([p.prompt for p in chunk], return_tensors="pt", padding=True).to(device)
            out = model.generate(  # no token_type_ids: transformers 4.x refuses kwargs the model does not take
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=False)
            for problem, text in zip(chunk, texts):
                if tokenizer.eos_token:
                    text = text.split(tokenizer.eos_token)[0]
                for special in tokenizer.all_special_tokens:
                    text = text.replace(special, "")
                correct += text.strip() == problem.answer
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return correct / len(problems)
