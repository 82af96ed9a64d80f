"""The tag list both adapters put in their docstrings (the rest they share lives in ``monitor.session``)."""

from __future__ import annotations

#: Every TensorBoard tag the callbacks write (``<metric>`` ∈ contraction, transport, entropy,
#: effective_rank, transport_curvature, hidden_curvature; ``<band>`` ∈ early, mid, late).
LOGGED_TAGS = """
    - ``spinal/<metric>/L<ℓ>`` — per-layer value at each probe step.
    - ``spinal/band/<band>/<metric>`` — band mean; ``…/<metric>_min`` and ``…/<metric>_max`` — band range.
    - ``spinal/heatmap/<metric>`` — image: layer (rows, layer 1 at the bottom) × probe step (columns).
    - ``spinal/probe/seconds`` — wall time of the last probe; ``spinal/probe/failures`` — failed probes so far.
    - ``spinal/detector/<signal>/<score>`` — the detector's latest z / cusum / variance_ratio / forecast / noise per
      signal, t2 / pattern per per-layer vector.
    - ``spinal/head/log_z``, ``spinal/head/max_logit``, ``spinal/pairs/<quantity>`` — the output head and the probe
      pairs' log-likelihoods, margin and log-ratios against the reference, from the probe's own forward.
    - ``spinal/alerts`` (text) and ``spinal/alerts/total`` — each alert, with its message; alerts so far.
    - ``spinal/rollbacks`` (text) and ``spinal/rollbacks/total`` — each rollback; rollbacks so far.
    - ``spinal/rollback/failures`` — snapshot writes and restores that failed so far (training went on).
    - ``spinal/config`` — text: the configuration and the monitored model.
    - ``spinal/patch/<direction>/effect/L<ℓ>``, ``…/normalized_effect/L<ℓ>``, ``spinal/patch/low_rank/L<ℓ>/k<k>``,
      ``spinal/patch/lasso/L<ℓ>``, ``spinal/patch/lasso/r2``, ``spinal/patch/attribution/L<ℓ>``,
      ``spinal/patch/attribution/spearman``, ``spinal/patch/seconds``, ``spinal/patch/failures`` and the image
      ``spinal/heatmap/patch_normalized_effect`` — patching probes (``patch_interval > 0``).
    - Custom-scalars layout: one multi-line chart per metric over layers, one margin chart per band and metric.
"""
