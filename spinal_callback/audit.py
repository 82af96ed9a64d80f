"""``spinal audit``: depth traces of saved checkpoints side by side, on one probe set.

Each checkpoint — a Hugging Face model directory, a PEFT adapter directory, a Lightning ``.ckpt``
file or a Hub name (see :mod:`spinal_callback.checkpoints`) — is loaded in turn, measured with
:func:`~spinal_callback.geometry.compute_depth_trace` on the same tokenized probe set (built exactly as
:class:`~spinal_callback.SpinalMonitor` builds its own, with :class:`~spinal_callback.SpinalConfig`'s
measurement defaults) and freed before the next one. :func:`audit_checkpoints` returns an
:class:`AuditResult`, which writes ``audit.json``; :mod:`spinal_callback.audit_report` draws the figures
and the table of band means; :func:`run_audit` is the ``spinal audit`` command.

transformers, PEFT, matplotlib and tqdm are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .architectures import UnsupportedArchitectureError, resolve_layout
from .checkpoints import (
    CheckpointInputError,
    CheckpointLoadError,
    CheckpointSpec,
    UnsafeCheckpointWarning,
    load_checkpoint,
    load_tokenizer,
    resolve_checkpoint,
)
from .config import SpinalConfig
from .geometry import DepthTrace, compute_depth_trace
from .monitor import _pad_id
from .probe_set import collate_pairs, tokenize_pairs

__all__ = [
    "AUDIT_FILENAME",
    "DTYPES",
    "AuditEntry",
    "AuditInputError",
    "AuditResult",
    "CheckpointInputError",
    "CheckpointLoadError",
    "audit_checkpoints",
    "default_labels",
    "default_probe_pairs",
    "read_probe_pairs",
    "run_audit",
]

#: Name of the JSON file :meth:`AuditResult.write_json` writes.
AUDIT_FILENAME = "audit.json"
#: ``--dtype`` values.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_FORMAT_VERSION = 1


class AuditInputError(ValueError):
    """Audit arguments that cannot work as given (labels, probe pairs, device, dtype, settings); ``spinal audit``
    exits with status 2."""


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
        notes: how it was loaded, when a person should know (prefix choice, unsafe unpickling).
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
        """Plain-text table of band means per checkpoint (:func:`spinal_callback.audit_report.band_table`)."""
        from .audit_report import band_table

        return band_table(self.entries)

    def write_json(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` to ``<out_dir>/audit.json`` (NaN as ``null``); returns the path."""
        path = Path(out_dir) / AUDIT_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return path

    def write_plots(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write ``depth_traces.png`` and ``bands.png`` (:func:`spinal_callback.audit_report.write_plots`).

        Raises:
            ImportError: matplotlib is missing (the message says how to install it).
        """
        from .audit_report import write_plots

        return write_plots(self.entries, out_dir, bands=tuple(self.settings.get("bands", (1 / 3, 2 / 3))))


# -- probe set ------------------------------------------------------------------------------------
def default_probe_pairs(count: int, seed: int = 0) -> list[dict[str, str]]:
    """``count`` preference pairs of the built-in addition task, from its held-out problems.

    ``chosen`` is the correct sum, ``rejected`` a plausible wrong one
    (:meth:`spinal_callback.demo.task.AdditionTask.eval_pairs`); the draw is fixed by ``seed``.
    """
    from .demo.task import AdditionTask

    return AdditionTask(seed=seed).eval_pairs(count)


def read_probe_pairs(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Preference pairs from a ``.jsonl`` file (one object a line) or a JSON file holding a list.

    Records need ``prompt``, ``chosen`` and ``rejected`` strings (other keys are ignored).

    Raises:
        AuditInputError: the file is missing, not valid JSON, or its records are malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AuditInputError(f"Cannot read the probe pairs {str(path)!r}: {err.strerror or err}") from None
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as err:
        raise AuditInputError(f"The probe pairs {str(path)!r} are not valid JSON{'L' * (path.suffix == '.jsonl')}: "
                              f"{err}") from None
    if not isinstance(records, list):
        raise AuditInputError(f"The probe pairs {str(path)!r} must hold a list of {{prompt, chosen, rejected}} records")
    try:
        return list(SpinalConfig(probe_pairs=records).probe_pairs or [])
    except ValueError as err:
        raise AuditInputError(f"The probe pairs {str(path)!r}: {err}") from None


def _probe_pairs(
    probe_pairs: Sequence[Mapping[str, str]] | str | os.PathLike[str] | None, count: int | None, cfg: SpinalConfig
) -> tuple[list[dict[str, str]], str]:
    """The text pairs and a description of where they came from."""
    if probe_pairs is None:
        source = f"addition task, held-out problems (seed {cfg.seed})"
        return default_probe_pairs(cfg.num_probe_pairs, cfg.seed), source
    if isinstance(probe_pairs, (str, os.PathLike)):
        pairs, source = read_probe_pairs(probe_pairs), os.fspath(probe_pairs)
    else:
        try:  # SpinalConfig checks every record (mappings with three strings, non-empty completions)
            checked = SpinalConfig(probe_pairs=list(probe_pairs)).probe_pairs  # type: ignore[arg-type]
        except ValueError as err:
            raise AuditInputError(str(err)) from None
        pairs, source = list(checked or []), "probe_pairs argument"
    return (pairs if count is None else pairs[:count]), source


# -- checkpoints ----------------------------------------------------------------------------------
def default_labels(paths: Sequence[str]) -> list[str]:
    """Short unique names: the last path component (``.ckpt`` suffix dropped), with parent folders added
    where two would clash (``run1/checkpoint-10``, ``run2/checkpoint-10``), ``#<position>`` as a last resort."""
    named = [Path(p).with_suffix("") if p.endswith(".ckpt") else Path(p) for p in paths]
    parts = [path.parts[1:] if path.anchor else path.parts for path in named]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) or path for p, d, path in zip(parts, depth, paths)]
        counts = Counter(labels)
        clashing = [i for i, label in enumerate(labels) if counts[label] > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    return [f"{label}#{i + 1}" if counts[label] > 1 else label for i, label in enumerate(labels)]


def _check_labels(labels: Sequence[str] | None, paths: Sequence[str]) -> list[str]:
    if labels is None:
        return default_labels(paths)
    labels = [str(label).strip() for label in labels]
    if len(labels) != len(paths):
        raise AuditInputError(
            f"{len(labels)} labels given for {len(paths)} checkpoints (--labels); give one label per checkpoint"
        )
    if not all(labels) or len(set(labels)) != len(labels):
        raise AuditInputError(f"Labels (--labels) must be non-empty and unique, got {labels}")
    return labels


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """transformers' per-model "Loading weights" bars off (the audit has its own bar), restored afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _progress(items: Sequence[Any], enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with the `demo` extra; without it, no bar
        return None
    return tqdm(total=len(items), desc="spinal audit", unit="checkpoint", file=sys.stderr)


def audit_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str]],
    *,
    probe_pairs: Sequence[Mapping[str, str]] | str | os.PathLike[str] | None = None,
    num_probe_pairs: int | None = None,
    tokenizer: Any = None,
    base: str | None = None,
    prefix: str | None = None,
    labels: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    max_tokens: int | None = None,
    seed: int | None = None,
    config: SpinalConfig | None = None,
    progress: bool = False,
) -> AuditResult:
    """Depth traces of saved checkpoints on one probe set, loaded and measured one at a time.

    Args:
        checkpoints: Hugging Face model directories, PEFT adapter directories, Lightning ``.ckpt`` files
            or Hub names (see :func:`spinal_callback.checkpoints.resolve_checkpoint`).
        probe_pairs: ``{"prompt", "chosen", "rejected"}`` text pairs, or a ``.json`` / ``.jsonl`` file of
            them; default: :func:`default_probe_pairs` (held-out addition problems).
        num_probe_pairs: pairs used: the first ones of ``probe_pairs``, or the size of the default draw
            (16 when ``None``; ``None`` with ``probe_pairs`` keeps them all).
        tokenizer: a tokenizer, or its name or path; default: the first checkpoint directory (or base
            model directory) holding one.
        base: base model of Lightning files (required for them) and of adapters (instead of the base
            named in ``adapter_config.json``).
        prefix: state-dict key prefix of Lightning checkpoints; default: found automatically.
        labels: one unique name per checkpoint; default: :func:`default_labels`.
        device: where the models run.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or the ``torch.dtype``).
        max_tokens: cap on measured token positions; default ``config.max_tokens`` (512).
        seed: seed of the default probe pairs and of the ``max_tokens`` subsample; default ``config.seed``.
        config: the other measurement settings (``max_length``, ``tail``, ``rtol``, ``bands``,
            ``chunk_size``); default :class:`SpinalConfig`'s.
        progress: show a tqdm progress bar over the checkpoints on stderr.

    Returns:
        The :class:`AuditResult`, entries in the order of ``checkpoints``.

    Raises:
        CheckpointInputError: a checkpoint path that does not exist or cannot be loaded as given, or no
            tokenizer to be found.
        AuditInputError: bad labels, probe pairs or settings.
        CheckpointLoadError: a checkpoint or tokenizer failed to load, or the checkpoints do not share
            the vocabulary.
    """
    paths = [os.fspath(p) for p in checkpoints]
    if not paths:
        raise AuditInputError("No checkpoint to audit")
    names = _check_labels(labels, paths)
    specs = [resolve_checkpoint(p, base) for p in paths]
    torch_dtype = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise AuditInputError(f"`dtype` (--dtype) must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise AuditInputError(f"Unknown device {str(device)!r} (--device): {err}") from None
    try:
        cfg = config or SpinalConfig()
        cfg = replace(cfg, max_tokens=cfg.max_tokens if max_tokens is None else max_tokens,
                      seed=cfg.seed if seed is None else seed)
        if num_probe_pairs is not None:
            cfg = replace(cfg, num_probe_pairs=num_probe_pairs)
    except ValueError as err:
        raise AuditInputError(str(err)) from None
    pairs, source = _probe_pairs(probe_pairs, num_probe_pairs, cfg)
    tok, tokenizer_source = load_tokenizer(specs, tokenizer)
    try:
        batch = collate_pairs(tokenize_pairs(pairs, tok), pad_token_id=_pad_id(tok), max_length=cfg.max_length)
    except ValueError as err:
        raise AuditInputError(f"Probe set ({source}): {err}") from None
    max_id = int(batch["input_ids"].max())

    entries: list[AuditEntry] = []
    bar = _progress(specs, progress)
    try:
        with _quiet_weight_loading():
            for label, spec in zip(names, specs):
                if bar is not None:
                    bar.set_postfix_str(label)
                entries.append(_audit_one(label, spec, batch, max_id, entries[0] if entries else None,
                                          cfg=cfg, prefix=prefix, device=device, dtype=torch_dtype))
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    probe_set = {"source": source, "num_pairs": len(pairs), "num_sequences": int(batch["input_ids"].shape[0]),
                 "tokenizer": tokenizer_source, "pairs": pairs}
    settings = {"max_tokens": cfg.max_tokens, "max_length": cfg.max_length, "tail": list(cfg.tail), "rtol": cfg.rtol,
                "bands": list(cfg.bands), "chunk_size": cfg.chunk_size, "seed": cfg.seed, "device": str(device),
                "dtype": str(torch_dtype).removeprefix("torch.")}
    return AuditResult(entries, probe_set, settings)


def _audit_one(
    label: str,
    spec: CheckpointSpec,
    batch: dict[str, torch.Tensor],
    max_id: int,
    first: AuditEntry | None,
    *,
    cfg: SpinalConfig,
    prefix: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> AuditEntry:
    loaded = load_checkpoint(spec, prefix=prefix, device=device, dtype=dtype)
    try:
        layout = resolve_layout(loaded.model)
    except UnsupportedArchitectureError as err:
        raise CheckpointLoadError(f"{spec.path!r}: {err}") from None
    vocab = layout.vocab_size
    if first is not None and vocab != first.vocab_size:
        raise CheckpointLoadError(
            f"The checkpoints do not share the vocabulary: {label!r} ({spec.path}) has {vocab} tokens, "
            f"{first.label!r} ({first.path}) {first.vocab_size}; audit checkpoints of one model family"
        )
    if max_id >= vocab:
        raise CheckpointLoadError(
            f"The tokenizer gives token id {max_id}, outside the vocabulary of {label!r} ({spec.path}, {vocab} "
            "tokens): give the checkpoints' own tokenizer with --tokenizer"
        )
    trace = compute_depth_trace(
        loaded.model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
        max_tokens=cfg.max_tokens, tail=cfg.tail, rtol=cfg.rtol, bands=cfg.bands, chunk_size=cfg.chunk_size,
        seed=cfg.seed, layout=layout,
    )
    entry = AuditEntry(label, spec.path, spec.kind, layout.architecture, vocab, trace, spec.base, loaded.prefix,
                       loaded.notes)
    del loaded, layout
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return entry


def run_audit(
    checkpoints: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] = "spinal_audit", **options: Any
) -> int:
    """``spinal audit``: run :func:`audit_checkpoints`, write ``audit.json`` and the plots, print the table.

    Notes on how checkpoints were loaded go to stderr, the table and the paths written to stdout.

    Args:
        checkpoints: as in :func:`audit_checkpoints`.
        out_dir: output folder (created if needed).
        **options: keyword arguments of :func:`audit_checkpoints`.

    Returns:
        0 on success; 1 when a checkpoint or tokenizer fails to load (message on stderr, nothing written)
        or when matplotlib is missing (``audit.json`` is still written).

    Raises:
        CheckpointInputError, AuditInputError: arguments that cannot work as given (the command line
            turns them into a usage error, status 2).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnsafeCheckpointWarning)  # printed below, as a note
            result = audit_checkpoints(checkpoints, **options)
    except (CheckpointLoadError, ImportError) as err:
        print(f"spinal audit: error: {err}", file=sys.stderr)
        return 1
    for entry in result.entries:
        for note in entry.notes:
            print(f"spinal audit: {entry.label}: {note}", file=sys.stderr)
    written = [result.write_json(out_dir)]
    status = 0
    try:
        written += result.write_plots(out_dir)
    except ImportError as err:
        print(f"spinal audit: no plots written: {err}", file=sys.stderr)
        status = 1
    print(result.band_table())
    print()
    print("Wrote:")
    for path in written:
        print(f"  {path}")
    return status
