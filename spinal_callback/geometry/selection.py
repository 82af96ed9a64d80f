"""Partial depth traces: which layers a probe measures, and which it must capture and lens to do so.

A full depth trace measures every layer. A cheaper probe can measure a subset ``S`` (e.g. the late
band, where DPO concentrates its effect): the metrics of a layer ℓ ∈ S need

- α_ℓ, erank_ℓ: the spectrum of ``H_ℓ`` only;
- E_ℓ: the logit lens of layer ℓ;
- 𝓛_ℓ (ℓ < L): the lens of layers ℓ and ℓ+1;
- κ^𝓛_ℓ (2 ≤ ℓ ≤ L−2): 𝓛_{ℓ−1}, 𝓛_ℓ, 𝓛_{ℓ+1}, i.e. the lens of layers ℓ−1 … ℓ+2;
- κ^h_ℓ (2 ≤ ℓ ≤ L−1): ``H_{ℓ−1}``, ``H_ℓ``, ``H_{ℓ+1}``.

:class:`LayerPlan` collects these sets; the capture forward stops after the deepest block in
``plan.hidden``. For the late third of a 12-layer model (layers 9–12) that is the lens of 5 layers
and the spectra of 4, against 12 and 12 for the full trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spinal_callback.geometry.curvature import BAND_NAMES, band_slices

__all__ = ["LayerPlan", "band_layers"]


def band_layers(band: str, num_layers: int, boundaries: tuple[float, float] = (1 / 3, 2 / 3)) -> list[int]:
    """The 1-based layers of one band of depth (``"early"``, ``"mid"`` or ``"late"``).

    Uses the same cut points as the trace's band summaries (:func:`band_slices`), so
    ``band_layers("late", L, config.bands)`` is exactly the trace's late band. May be empty for very
    shallow models (a 1-layer model has no late third).

    Raises:
        ValueError: unknown band name, or invalid boundaries.
    """
    if band not in BAND_NAMES:
        raise ValueError(f"`band` must be one of {', '.join(BAND_NAMES)}, got {band!r}")
    return [i + 1 for i in band_slices(num_layers, boundaries)[band]]


@dataclass(frozen=True)
class LayerPlan:
    """The layers a depth trace computes (``computed``) and what that requires.

    Attributes:
        num_layers: depth ``L`` of the traced model.
        computed: sorted 1-based layers whose metrics are reported; the others are NaN.
    """

    num_layers: int
    computed: tuple[int, ...]

    @classmethod
    def of(cls, layers: Iterable[int] | None, num_layers: int) -> LayerPlan:
        """A plan for ``layers`` (1-based, any order, duplicates ignored); ``None`` means every layer.

        Raises:
            ValueError: an empty selection, or a layer outside ``1 … num_layers``.
        """
        if num_layers < 1:
            raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}")
        if layers is None:
            return cls(num_layers, tuple(range(1, num_layers + 1)))
        chosen = sorted({int(layer) for layer in layers})
        if not chosen:
            raise ValueError("The layer selection is empty: give at least one layer, or None for all layers")
        outside = [layer for layer in chosen if not 1 <= layer <= num_layers]
        if outside:
            raise ValueError(f"Layers {outside} are outside 1 … {num_layers} (1-based layer numbers)")
        return cls(num_layers, tuple(chosen))

    @classmethod
    def for_band(
        cls, band: str, num_layers: int, boundaries: tuple[float, float] = (1 / 3, 2 / 3)
    ) -> LayerPlan:
        """The plan of one band (see :func:`band_layers`); raises ``ValueError`` if the band is empty."""
        layers = band_layers(band, num_layers, boundaries)
        if not layers:
            raise ValueError(f"The {band!r} band of a {num_layers}-layer model is empty (bands {boundaries!r})")
        return cls.of(layers, num_layers)

    @property
    def is_full(self) -> bool:
        """Whether every layer is computed."""
        return len(self.computed) == self.num_layers

    @property
    def transport_steps(self) -> tuple[int, ...]:
        """Steps ℓ (𝓛_ℓ: layer ℓ → ℓ+1, ``1 ≤ ℓ ≤ L−1``) needed for 𝓛 and κ^𝓛 of the computed layers."""
        last = self.num_layers
        steps: set[int] = set()
        for layer in self.computed:
            if layer <= last - 1:
                steps.add(layer)
            if 2 <= layer <= last - 2:  # κ^𝓛_ℓ is defined
                steps.update((layer - 1, layer + 1))
        return tuple(sorted(steps))

    @property
    def lens(self) -> tuple[int, ...]:
        """Layers whose logit lens runs: the computed layers and both ends of every needed step."""
        return tuple(sorted({*self.computed, *self.transport_steps, *(s + 1 for s in self.transport_steps)}))

    @property
    def hidden(self) -> tuple[int, ...]:
        """Layers whose hidden states must be captured (the lens layers plus κ^h neighbours)."""
        needed = set(self.lens)
        for layer in self.computed:
            if 2 <= layer <= self.num_layers - 1:  # κ^h_ℓ is defined
                needed.update((layer - 1, layer + 1))
        return tuple(sorted(needed))
