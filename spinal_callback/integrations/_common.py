"""The tag list both adapters put in their docstrings (the rest they share lives in ``monitor.session``)."""

from __future__ import annotations

#: Every TensorBoard tag the callbacks write (``<metric>`` ∈ contraction, transport, entropy,
#: effective_rank, transport_curvature, hidden_curvature; ``<band>`` ∈ early, mid, late).
LOGGED_TAGS = """
    - ``spinal/<metric>/L<ℓ>`` — per-layer value at each probe step.
    - ``spinal/band/<band>/<metric>`` — band mean; ``…/<metric>_min`` and ``…/<metric>_max`` — band range.
    - ``spinal_by_layer/<metric>`` and ``spinal_by_layer/<metric>_change`` in one run per layer,
      ``<log dir>/spinal_layers/L<ℓ>`` — the per-layer value and its change since the layer's first probe; a run per
      layer so that TensorBoard draws each layer in its own colour.
    - ``spinal/heatmap/<metric>`` — image: layer × optimizer step of the full depth traces, the value next to its
      change since the first probe, with axes, colour bars (name and unit), hatched undefined layers and alert /
      rollback lines.
    - ``spinal/probe/seconds`` — wall time of the last probe; ``spinal/probe/failures`` — failed probes so far.
    - ``spinal/detector/<signal>/<score>`` — the detector's latest z / cusum / variance_ratio / forecast / noise per
      signal, t2 / pattern per per-layer vector.
    - ``spinal/head/log_z``, ``spinal/head/max_logit``, ``spinal/pairs/<quantity>`` — the output head and the probe
      pairs' log-likelihoods, margin and log-ratios against the reference, from the probe's own forward.
    - ``spinal/alerts`` (text) and ``spinal/alerts/total`` — each alert, with its message; alerts so far.
    - ``spinal/rollbacks`` (text) and ``spinal/rollbacks/total`` — each rollback; rollbacks so far.
    - ``spinal/alerts/marker``, ``spinal/rollbacks/marker`` — at every step the detector ran: alerts raised there /
      1 if training was rolled back there, else 0 (they line up with the metrics).
    - ``spinal/rollback/failures`` — snapshot writes and restores that failed so far (training went on).
    - ``spinal/config`` — text: the configuration and the monitored model.
    - ``spinal/patch/<direction>/effect/L<ℓ>``, ``…/normalized_effect/L<ℓ>``, ``spinal/patch/low_rank/L<ℓ>/k<k>``,
      ``spinal/patch/lasso/L<ℓ>``, ``spinal/patch/lasso/r2``, ``spinal/patch/attribution/L<ℓ>``,
      ``spinal/patch/attribution/spearman``, ``spinal/patch/seconds``, ``spinal/patch/failures`` and the image
      ``spinal/heatmap/patch_normalized_effect`` — patching probes (``patch_interval > 0``).
    - Custom-scalars layout: one multi-line chart per metric over layers (one colour per layer run) and one of its
      change since the first probe, one margin chart per band and metric, one chart of the two marker series.
"""
