"""One audited checkpoint: where it came from, how it was loaded and its depth trace.

:class:`AuditEntry` is what :func:`spinal_callback.tools.audit.audit_checkpoints` measures per checkpoint,
what :mod:`spinal_callback.tools.audit_report` draws and what :class:`~spinal_callback.tools.audit_result.AuditResult`
writes to ``audit.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spinal_callback.geometry import DepthTrace

__all__ = ["AuditEntry"]


@dataclass
class AuditEntry:
    """One audited checkpoint.

    Attributes:
        label: its name in the table, plots and JSON.
        path: the path or Hub name it was loaded from.
        kind: ``"hf"``, ``"peft"``, ``"lightning"`` or ``"hub"``.
        architecture: the registry key of its layout (e.g. ``"llama"``).
        vocab_size: rows of its unembedding.
        trace: its depth trace on the probe set.
        base: the base model (adapters and Lightning files), else ``None``.
        prefix: the state-dict key prefix stripped from a Lightning checkpoint, else ``None``.
        notes: how it was loaded, when a person should know (prefix choice, trusted unpickling).
    """

    label: str
    path: str
    kind: str
    architecture: str
    vocab_size: int
    trace: DepthTrace
    base: str | None = None
    prefix: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return self.trace.num_layers

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields, the trace as :meth:`DepthTrace.to_dict` under ``"trace"``."""
        return {
            "label": self.label, "path": self.path, "kind": self.kind, "base": self.base, "prefix": self.prefix,
            "architecture": self.architecture, "num_layers": self.num_layers, "vocab_size": self.vocab_size,
            "notes": list(self.notes), "trace": self.trace.to_dict(),
        }
