"""``DPOLightningModule``: sigmoid DPO (Rafailov et al., 2023) as a plain LightningModule.

The loss for a pair (x, y⁺, y⁻) with policy π and frozen reference π_ref is::

    L = −log σ(β · [(log π(y⁺|x) − log π_ref(y⁺|x)) − (log π(y⁻|x) − log π_ref(y⁻|x))])

with token log-probabilities summed over the completion. Batches use TRL's collator layout,
built by :func:`spinal_callback.model.probe_batch.collate_pairs`: ``input_ids``, ``attention_mask`` and
``completion_mask``, each ``(2B, T)``, rows ``0..B-1`` prompt + chosen, ``B..2B-1`` prompt + rejected.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

__all__ = ["DPOLightningModule", "sequence_logps"]


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probabilities of the completion tokens of each row, shape ``(2B,)``.

    Position t predicts token t+1, so the logits are shifted by one against ``input_ids`` and the
    ``completion_mask``; log-softmax is taken as ``logit − logsumexp`` on the gathered token only.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].to(logits.dtype)
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (token_logps * mask).sum(-1)


class DPOLightningModule(pl.LightningModule):
    """Sigmoid DPO on a Hugging Face causal LM.

    Attributes:
        policy: the model being trained.
        reference: a frozen copy of the initial policy (eval mode, ``requires_grad`` off, kept in
            eval mode even when Lightning switches the module to training).
        tokenizer: the policy's tokenizer (the spinal callback tokenizes text probe pairs with it).
        history: one dict of DPO metrics per training step, for the end-of-run summary.

    Logged metrics (every step, through the trainer's loggers): ``train/loss``,
    ``rewards/chosen``, ``rewards/rejected`` (β · policy/reference log-ratio), ``rewards/margins``,
    ``rewards/accuracies`` (share of pairs with chosen reward > rejected reward),
    ``logps/chosen``, ``logps/rejected``.

    Args:
        policy: a causal LM (``model(input_ids, attention_mask).logits``).
        tokenizer: its tokenizer.
        beta: DPO β.
        learning_rate: AdamW learning rate (5-step linear warm-up, then constant).
        reference: the reference model; default: a frozen deep copy of ``policy``.
    """

    def __init__(
        self,
        policy: Any,
        tokenizer: Any,
        beta: float = 0.1,
        learning_rate: float = 5e-5,
        reference: Any = None,
    ) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"`beta` must be positive, got {beta!r}")
        if learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be positive, got {learning_rate!r}")
        self.policy = policy.train()
        self.reference = reference if reference is not None else copy.deepcopy(policy)
        self.reference.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.beta = beta
        self.learning_rate = learning_rate
        self.history: list[dict[str, float]] = []

    def train(self, mode: bool = True) -> DPOLightningModule:
        """Switch the policy to ``mode``; the reference stays in eval mode."""
        super().train(mode)
        self.reference.eval()
        return self

    def dpo_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sigmoid DPO loss of a collated batch and its metrics (detached)."""
        half = batch["input_ids"].shape[0] // 2
        policy_logps = sequence_logps(self.policy, batch)
        with torch.no_grad():
            reference_logps = sequence_logps(self.reference, batch)
        rewards = self.beta * (policy_logps - reference_logps)
        chosen, rejected = rewards[:half], rewards[half:]
        loss = -F.logsigmoid(chosen - rejected).mean()
        metrics = {
            "train/loss": loss.detach(),
            "rewards/chosen": chosen.detach().mean(),
            "rewards/rejected": rejected.detach().mean(),
            "rewards/margins": (chosen - rejected).detach().mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "logps/chosen": policy_logps[:half].detach().mean(),
            "logps/rejected": policy_logps[half:].detach().mean(),
        }
        return loss, metrics

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, metrics = self.dpo_loss(batch)
        size = batch["input_ids"].shape[0] // 2
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=size)
        self.log("reward_acc", metrics["rewards/accuracies"], prog_bar=True, logger=False, batch_size=size)
        self.history.append({name: float(value) for name, value in metrics.items()})
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad], lr=self.learning_rate, weight_decay=0.0
        )
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 5))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
