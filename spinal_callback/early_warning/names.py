"""Which configured names a fed signal answers to, and the setup-time check of those names.

A configured name is either exact (``"band/late/transport"``) or a glob pattern (``"band/late/*"``,
``fnmatch`` rules: ``*``, ``?``, ``[...]``). An exact name wins over patterns; among patterns the first
listed wins.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping

from spinal_callback.config.detector import DetectorConfig

__all__ = ["NameResolver", "check_signal_names", "is_pattern"]


def is_pattern(name: str) -> bool:
    """Whether ``name`` is a glob pattern rather than an exact signal name."""
    return any(ch in name for ch in "*?[")


class NameResolver:
    """Maps fed signal names to the value configured for them (a direction prior, or ``True``)."""

    def __init__(self, configured: Mapping[str, str] | Iterable[str]) -> None:
        items = configured.items() if isinstance(configured, Mapping) else ((name, "both") for name in configured)
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[str, str]] = []
        for name, value in items:
            if is_pattern(name):
                self._patterns.append((name, value))
            else:
                self._exact[name] = value
        self._cache: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        """The configured value for ``name``, or ``None`` when it is not watched."""
        if name not in self._cache:
            found = self._exact.get(name)
            if found is None:
                found = next((value for pattern, value in self._patterns if fnmatch.fnmatchcase(name, pattern)), None)
            self._cache[name] = found
        return self._cache[name]


def check_signal_names(config: DetectorConfig, available: Collection[str]) -> None:
    """Refuse configured signal and vector names that match nothing the monitor can produce.

    Call it at setup with every name the run can feed (band tags from
    :func:`~spinal_callback.early_warning.inputs.signals_from_bands`, vector names from
    :func:`~spinal_callback.early_warning.inputs.vectors_from_trace`, and the trainer's metrics, e.g.
    :data:`~spinal_callback.config.detector.DPO_METRICS` under TRL).

    Raises:
        ValueError: ``"unknown signal 'band/late/transprt'; available: band/late/contraction, …"`` — every
            exact name not in ``available`` and every pattern that matches none of it, with the sorted list
            of available names.
    """
    names = set(available)
    problems = []
    kinds = (("signal", list(config.signals)), ("vector", list(config.vectors)),
             ("variance signal", [n for n in config.variance_signals if n != "*"]),
             ("speed signal", list(config.speed_signals)), ("update signal", list(config.update_signals)),
             ("turn signal", list(config.turn_signals)), ("finite signal", list(config.finite_signals)))
    for kind, configured in kinds:
        for name in configured:
            if is_pattern(name):
                if not fnmatch.filter(names, name):
                    problems.append(f"{kind} pattern {name!r} matches nothing")
            elif name not in names:
                problems.append(f"unknown {kind} {name!r}")
    if problems:
        raise ValueError(f"{'; '.join(problems)}; available: {', '.join(sorted(names)) or '(none)'}")
