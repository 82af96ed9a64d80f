"""Activation-patching probes between a policy and its reference (SPEC §2, arXiv 2510.16167).

- :func:`patch_layers` — exact layer patching, both directions, batched over layers.
- :func:`low_rank_patch` — patching only the top-k singular directions of the policy activations.
- :func:`lasso_probe` / :func:`lasso_attribution` — cross-validated L1 regression of the per-example
  margin gain on per-layer activation distances (needs ``spinal-callback[probes]``).
- :func:`attribution_patching` — first-order estimate of every layer's effect from one backward,
  with its Spearman agreement with an exact probe (scipy, ``spinal-callback[probes]``).
- :func:`unpatched_runs` — the unpatched policy and reference runs, computed once per patching step
  and passed to each of the above as ``unpatched=``.

Importing this package imports neither scikit-learn, scipy nor transformers.
"""

from spinal_callback.probes.attribution import AttributionResult, attribution_patching, rank_agreement
from spinal_callback.probes.exact import DIRECTIONS, Direction, PatchResult, patch_layers
from spinal_callback.probes.lasso import LassoResult, activation_distances, lasso_attribution, lasso_probe
from spinal_callback.probes.low_rank import LowRankResult, default_ranks, low_rank_patch
from spinal_callback.probes.margins import ProbeBatch, completion_logprobs, pair_margins, validate_probe_batch
from spinal_callback.probes.unpatched import UnpatchedRuns, unpatched_runs

__all__ = [
    "DIRECTIONS",
    "AttributionResult",
    "Direction",
    "LassoResult",
    "LowRankResult",
    "PatchResult",
    "ProbeBatch",
    "UnpatchedRuns",
    "activation_distances",
    "attribution_patching",
    "completion_logprobs",
    "default_ranks",
    "lasso_attribution",
    "lasso_probe",
    "low_rank_patch",
    "pair_margins",
    "patch_layers",
    "rank_agreement",
    "unpatched_runs",
    "validate_probe_batch",
]
