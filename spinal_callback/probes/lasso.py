"""LASSO attribution: which layers' activation shifts explain the per-example margin gain (arXiv 2510.16167).

Features ``F[x, ℓ] = mean_t ‖h_pol,ℓ,t − h_ref,ℓ,t‖₂`` over the real (non-padding) tokens of both
sequences of pair x (prompt + chosen and prompt + rejected); target ``y[x] = m_policy(x) − m_ref(x)``.
A cross-validated L1 regression (scikit-learn's ``LassoCV`` on standardized features, ``min(5, K)``
shuffled folds with a fixed seed) keeps the few layers whose distances predict the gain.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from spinal_callback.model.pairing import resolve_layers
from spinal_callback.model.runner import probe_mode
from spinal_callback.probes._json import json_float, json_list
from spinal_callback.probes.margins import pair_margins, validate_probe_batch
from spinal_callback.probes.unpatched import UnpatchedRuns, shared_runs, unpatched_or_compute

__all__ = ["LassoResult", "activation_distances", "lasso_attribution", "lasso_probe"]

_INSTALL = 'LASSO attribution needs scikit-learn: pip install "spinal-callback[probes]"'


def _sklearn() -> tuple[Any, Any]:
    """``(LassoCV, KFold)``, imported on first use."""
    try:
        from sklearn.linear_model import LassoCV
        from sklearn.model_selection import KFold
    except ImportError as error:
        raise ImportError(_INSTALL) from error
    return LassoCV, KFold


@dataclass
class LassoResult:
    """Result of :func:`lasso_attribution` / :func:`lasso_probe`.

    Attributes:
        layers: 1-based layer of each feature column.
        coefficients: ``[L]`` coefficients on the standardized features (margin change per standard
            deviation of the layer's distance); exactly 0 for layers the L1 penalty dropped.
        raw_coefficients: ``[L]`` the same per unit of distance (``coefficient / feature std``).
        intercept: intercept in target units (for the unstandardized features).
        selected_layers: layers with a non-zero coefficient, by decreasing ``|coefficient|``.
        alpha: the cross-validated L1 penalty (NaN when the target is constant and nothing is fitted).
        r2: in-sample coefficient of determination of the selected model (NaN when not fitted).
        cv_folds: number of cross-validation folds.
        features: ``[K, L]`` the features. target: ``[K]`` the target.
    """

    layers: list[int]
    coefficients: torch.Tensor
    raw_coefficients: torch.Tensor
    intercept: float
    selected_layers: list[int]
    alpha: float
    r2: float
    cv_folds: int
    features: torch.Tensor
    target: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN/±inf become ``None``."""
        return {
            "layers": list(self.layers),
            "coefficients": json_list(self.coefficients),
            "raw_coefficients": json_list(self.raw_coefficients),
            "intercept": json_float(self.intercept),
            "selected_layers": list(self.selected_layers),
            "alpha": json_float(self.alpha),
            "r2": json_float(self.r2),
            "cv_folds": int(self.cv_folds),
            "features": json_list(self.features),
            "target": json_list(self.target),
        }


def lasso_attribution(
    features: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    layers: Sequence[int] | None = None,
    *,
    cv: int | None = None,
    random_state: int = 0,
    max_iter: int = 100_000,
) -> LassoResult:
    """Cross-validated LASSO of the margin gain on per-layer features.

    ``min_β ‖y − β₀ − Z β‖² / 2K + α ‖β‖₁`` with ``Z`` the standardized features (zero mean, unit
    variance per column; constant columns stay 0) and α chosen by ``LassoCV`` over ``cv`` shuffled
    folds (default ``min(5, K)``; seeded by ``random_state``, so results are deterministic).

    Args:
        features: ``[K, L]`` per-example, per-layer features.
        target: ``[K]`` per-example target (the margin gain ``m_policy − m_ref``).
        layers: 1-based layer of each column (default ``1..L``).
        cv: number of folds, 2..K (default ``min(5, K)``).
        random_state: seed of the fold shuffling and of ``LassoCV``.
        max_iter: coordinate-descent iterations.

    Raises:
        ValueError: fewer than 3 examples, mismatched shapes, non-finite values, or a bad ``cv``.
        ImportError: scikit-learn is missing (``pip install "spinal-callback[probes]"``).
    """
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    y = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"`features` must be [K, L] and `target` [K], got shapes {x.shape} and {y.shape}")
    k, num = x.shape
    if k < 3:
        raise ValueError(
            f"LASSO attribution needs at least 3 preference pairs for cross-validation, got K={k}; "
            "use a larger probe set (SpinalConfig(num_probe_pairs=...))"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("`features` and `target` must be finite")
    layer_ids = list(layers) if layers is not None else list(range(1, num + 1))
    if len(layer_ids) != num:
        raise ValueError(f"`layers` has {len(layer_ids)} entries for {num} feature columns")
    folds = min(5, k) if cv is None else int(cv)
    if not 2 <= folds <= k:
        raise ValueError(f"`cv` must be an integer in 2..K={k} or None, got {cv!r}")
    lasso_cv, k_fold = _sklearn()
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, np.inf)
    z = (x - mean) / scale
    coef = np.zeros(num)
    alpha = r2 = float("nan")
    intercept = float(y.mean())
    if y.std() > 1e-12 * max(1.0, float(np.abs(y).mean())):
        model = lasso_cv(
            cv=k_fold(n_splits=folds, shuffle=True, random_state=random_state),
            random_state=random_state,
            max_iter=max_iter,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny K; the result is still reported
            model.fit(z, y)
        coef = np.asarray(model.coef_, dtype=np.float64)
        alpha, r2 = float(model.alpha_), float(model.score(z, y))
        intercept = float(model.intercept_ - (coef * mean / scale).sum())
    raw = coef / scale
    order = np.argsort(-np.abs(coef), kind="stable")
    return LassoResult(
        layers=layer_ids,
        coefficients=torch.from_numpy(coef),
        raw_coefficients=torch.from_numpy(raw),
        intercept=intercept,
        selected_layers=[layer_ids[i] for i in order if coef[i] != 0.0],
        alpha=alpha,
        r2=r2,
        cv_folds=folds,
        features=torch.from_numpy(x),
        target=torch.from_numpy(y),
    )


def activation_distances(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[int] | None = None,
    chunk_size: int = 256,
    unpatched: UnpatchedRuns | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """LASSO features and target from the unpatched policy and reference runs.

    ``F[x, ℓ] = Σ_{t real, both rows of x} ‖h_pol,ℓ,t − h_ref,ℓ,t‖₂ / #tokens`` and
    ``y[x] = m_policy(x) − m_ref(x)``. Two no-grad forwards (policy, then reference) recording the
    chosen blocks' outputs, or none with ``unpatched`` (as for :func:`~spinal_callback.probes.patch_layers`).

    Returns:
        ``(features [K, L] float64, target [K] float64, layers 1-based)``, CPU tensors.
    """
    probe = validate_probe_batch(batch)
    policy_run, reference_run = shared_runs(policy, reference, probe, unpatched)
    blocks = resolve_layers(layers, policy_run.layout.num_layers)
    k = probe.num_pairs
    sums: dict[int, torch.Tensor] = {}
    with probe_mode(policy_run, reference_run), torch.no_grad():
        runs = unpatched_or_compute(unpatched, policy_run, reference_run, probe, blocks, blocks, chunk_size=chunk_size)
        device = reference_run.device
        mask = probe.attention_mask.to(device=device, dtype=torch.float64)
        for b in blocks:
            diff = runs.policy_hidden[b].to(device).float() - runs.reference_hidden[b].float()
            sums[b] = (diff.norm(dim=-1).double() * mask).sum(dim=1).cpu()
    counts = probe.attention_mask.double().sum(dim=1)
    pair_counts = counts[:k] + counts[k:]
    features = torch.stack([(sums[b][:k] + sums[b][k:]) / pair_counts for b in blocks], dim=1)
    target = (pair_margins(runs.policy_logprobs) - pair_margins(runs.reference_logprobs)).cpu()
    return features, target, [b + 1 for b in blocks]


def lasso_probe(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[int] | None = None,
    cv: int | None = None,
    random_state: int = 0,
    chunk_size: int = 256,
    unpatched: UnpatchedRuns | None = None,
) -> LassoResult:
    """:func:`activation_distances` then :func:`lasso_attribution` (two forwards in all, none with ``unpatched``).

    Args:
        policy, reference, batch, layers, chunk_size, unpatched: as for
            :func:`~spinal_callback.probes.patch_layers`.
        cv, random_state: as for :func:`lasso_attribution`.

    Raises:
        ValueError: as ``patch_layers``; K < 3.
        ImportError: scikit-learn is missing.
    """
    probe = validate_probe_batch(batch)
    if probe.num_pairs < 3:
        raise ValueError(
            f"LASSO attribution needs at least 3 preference pairs for cross-validation, got K={probe.num_pairs}"
        )
    _sklearn()  # fail before the forwards
    features, target, layer_ids = activation_distances(
        policy, reference, batch, layers=layers, chunk_size=chunk_size, unpatched=unpatched
    )
    return lasso_attribution(features, target, layer_ids, cv=cv, random_state=random_state)
