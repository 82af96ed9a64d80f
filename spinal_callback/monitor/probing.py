"""Running the probes of one step and returning what happened as typed results — no side channels.

:func:`measure_geometry` measures a depth trace on the fixed probe batch; :func:`attempt` runs a probe and
returns any exception as a :class:`ProbeFailure` (with ``strict=True`` the exception propagates instead),
so the monitor decides what a failure means: a non-finite failure is a signal for the detector, any
failure is a warning and a counter. :class:`GeometryResult` and :class:`PatchingResult` carry the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.geometry.selection import LayerPlan
from spinal_callback.geometry.trace import DepthTrace, capture_layers, trace_from_hidden
from spinal_callback.model.architectures import DecoderLayout
from spinal_callback.model.sharding import gathered_head
from spinal_callback.monitor.signals import HeadReadout, ScoredPositions, head_readout

__all__ = [
    "GeometryResult",
    "Measurement",
    "NonFiniteActivations",
    "PatchingResult",
    "ProbeFailure",
    "attempt",
    "is_out_of_memory",
    "measure_geometry",
]


class NonFiniteActivations(RuntimeError):
    """A probe pass met NaN or ±inf in the decoder blocks' outputs."""

    def __init__(self, layers: list[int]) -> None:
        super().__init__(f"non-finite activations (NaN/inf) at layers {layers}")
        self.layers = layers


def _out_of_memory_types() -> tuple[type[BaseException], ...]:
    """``torch.OutOfMemoryError`` (torch ≥ 2.5) and ``torch.cuda.OutOfMemoryError`` (older), where present."""
    found = (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, BaseException))


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator out-of-memory error, on every torch version the package admits."""
    types = _out_of_memory_types()
    return (bool(types) and isinstance(exc, types)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


@dataclass(frozen=True)
class ProbeFailure:
    """A probe that produced no usable measurement.

    Attributes:
        what: ``"geometry probe"`` or ``"patching probe"``.
        step: the optimizer step.
        error: the exception raised.
    """

    what: str
    step: int
    error: BaseException

    @property
    def non_finite(self) -> bool:
        """The policy's activations held NaN/inf: the detector treats this as an instability."""
        return isinstance(self.error, NonFiniteActivations)

    @property
    def out_of_memory(self) -> bool:
        return is_out_of_memory(self.error)

    def message(self, count: int) -> str:
        """The warning a person reads: what failed, why, and that training goes on."""
        return (
            f"spinal: {self.what} at step {self.step} failed ({type(self.error).__name__}: {self.error}); "
            f"training goes on ({count} failure(s) so far). Set SpinalConfig(strict=True) to raise instead."
        )


@dataclass(frozen=True)
class Measurement:
    """What one probe forward yields: the depth trace, and the output head's readout on the probe pairs."""

    trace: DepthTrace
    readout: HeadReadout | None = None


@dataclass(frozen=True)
class GeometryResult:
    """One geometry probe: a trace and the probe-forward signals, or the failure that prevented them.

    Attributes:
        signals: ``head/…`` and ``pairs/…`` values (:func:`~spinal_callback.monitor.signals.probe_signals`).
        noise: measured noise floors of the ``pairs/…`` signals (:func:`~spinal_callback.monitor.signals.pair_noise`).
    """

    step: int
    trace: DepthTrace | None
    failure: ProbeFailure | None
    seconds: float
    signals: dict[str, float] = field(default_factory=dict)
    noise: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PatchingResult:
    """One patching probe: its outcome (:class:`~spinal_callback.probes.protocol.PatchingOutcome`) or failure."""

    step: int
    outcome: Any
    failure: ProbeFailure | None
    seconds: float


def measure_geometry(
    policy: nn.Module,
    layout: DecoderLayout,
    batch: dict[str, torch.Tensor],
    config: SpinalConfig,
    positions: ScoredPositions | None = None,
    compute_layers: Sequence[int] | None = None,
) -> Measurement:
    """The depth trace of ``policy`` on the probe ``batch`` (one no-grad eval forward), and — when the
    scored ``positions`` are given — the output head's readout from the same forward.

    ``compute_layers`` (1-based) measures only those layers (and captures only what they need); the others
    are NaN in the trace (``None``: every layer).

    Raises:
        NonFiniteActivations: a block's output holds NaN/inf at the measured positions.
    """
    plan = LayerPlan.of(compute_layers, layout.num_layers)
    kept: list[torch.Tensor] = []
    readers = {layout.num_layers - 1: lambda hidden: kept.append(positions.take(hidden))} if positions else {}
    hidden = capture_layers(
        policy,
        batch["input_ids"],
        batch["attention_mask"],
        batch["completion_mask"],
        layers=plan.hidden,
        layout=layout,
        max_tokens=config.max_tokens,
        seed=config.seed,
        readers=readers,
    )
    captured = sorted(hidden)
    device = hidden[captured[0]].device  # blocks may sit on several devices (device_map="auto")
    finite = torch.stack([torch.isfinite(hidden[layer]).all().to(device) for layer in captured]).tolist()  # one sync
    bad = [layer for layer, ok in zip(captured, finite) if not ok]
    if bad:
        raise NonFiniteActivations(bad)
    with gathered_head(policy, layout):  # a sharded model's norm and unembedding, gathered once (every rank)
        return _measurement(hidden, layout, plan, config, positions, kept)


def _measurement(
    hidden: dict[int, torch.Tensor],
    layout: DecoderLayout,
    plan: LayerPlan,
    config: SpinalConfig,
    positions: ScoredPositions | None,
    kept: list[torch.Tensor],
) -> Measurement:
    trace = trace_from_hidden(
        hidden, layout, compute_layers=None if plan.is_full else plan.computed,
        tail=config.tail, rtol=config.rtol, bands=config.bands, chunk_size=config.chunk_size,
    )
    readout = head_readout(layout, kept[0], positions) if positions is not None and kept else None
    return Measurement(trace, readout)


def attempt(what: str, step: int, measure: Callable[[], Any], strict: bool) -> tuple[Any, ProbeFailure | None, float]:
    """Run ``measure()``, timed; an exception comes back as a :class:`ProbeFailure` (raised if ``strict``).

    Returns:
        ``(value or None, failure or None, seconds)``.
    """
    started = time.perf_counter()
    try:
        value = measure()
    except Exception as exc:
        if strict:
            raise
        return None, ProbeFailure(what, step, exc), time.perf_counter() - started
    return value, None, time.perf_counter() - started
