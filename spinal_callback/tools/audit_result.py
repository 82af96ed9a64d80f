"""What ``spinal audit`` found: the checkpoints' depth traces on one probe set, and the files it writes.

:class:`AuditResult` holds one :class:`~spinal_callback.tools.audit_entry.AuditEntry` per checkpoint with the
probe set and settings; it writes ``audit.json`` itself and the table and figures through
:mod:`spinal_callback.tools.audit_report`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spinal_callback.tools import audit_report
from spinal_callback.tools.audit_entry import AuditEntry

__all__ = ["AUDIT_FILENAME", "AuditResult"]

#: Name of the JSON file :meth:`AuditResult.write_json` writes.
AUDIT_FILENAME = "audit.json"
_FORMAT_VERSION = 1


@dataclass
class AuditResult:
    """Depth traces of several checkpoints on one probe set.

    Attributes:
        entries: one :class:`AuditEntry` per checkpoint, in the order given.
        probe_set: ``source``, ``num_pairs``, ``num_sequences``, ``tokenizer`` and the text ``pairs``.
        settings: the measurement settings (``max_tokens``, ``max_length``, ``tail``, ``rtol``, ``bands``,
            ``chunk_size``, ``seed``, ``device``, ``dtype``).
    """

    entries: list[AuditEntry]
    probe_set: dict[str, Any]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``{"version", "checkpoints": [AuditEntry.to_dict(), …], "probe_set", "settings"}``."""
        return {
            "version": _FORMAT_VERSION,
            "checkpoints": [entry.to_dict() for entry in self.entries],
            "probe_set": self.probe_set,
            "settings": self.settings,
        }

    def band_table(self) -> str:
        """Plain-text table of band means per checkpoint (:func:`spinal_callback.tools.audit_report.band_table`)."""
        return audit_report.band_table(self.entries)

    def write_json(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` to ``<out_dir>/audit.json`` (NaN as ``null``); returns the path."""
        path = Path(out_dir) / AUDIT_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return path

    def write_plots(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write ``depth_traces.png`` and ``bands.png`` (:func:`spinal_callback.tools.audit_report.write_plots`).

        Raises:
            ImportError: matplotlib is missing (the message says how to install it).
        """
        return audit_report.write_plots(self.entries, out_dir, bands=tuple(self.settings.get("bands", (1 / 3, 2 / 3))))
