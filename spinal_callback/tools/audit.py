"""``spinal audit``: depth traces of saved checkpoints side by side, on one probe set.

Each checkpoint — a Hugging Face model directory, a PEFT adapter directory, a Lightning ``.ckpt``
file or a Hub name (see :mod:`spinal_callback.tools.checkpoints`) — is loaded in turn, measured with
:func:`~spinal_callback.geometry.compute_depth_trace` on the same tokenized probe set (built exactly as
:class:`~spinal_callback.SpinalMonitor` builds its own, with :class:`~spinal_callback.SpinalConfig`'s
measurement defaults) and freed before the next one. :func:`audit_checkpoints` returns an
:class:`AuditResult` (:mod:`spinal_callback.tools.audit_result`), which writes ``audit.json``;
:mod:`spinal_callback.tools.audit_report` draws the figures and the table of band means;
:mod:`spinal_callback.tools.audit_inputs` checks the probe set and labels; :func:`run_audit` is the
``spinal audit`` command. The names of those modules that callers use are re-exported here.

transformers, PEFT, matplotlib and tqdm are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from spinal_callback.config.spinal import SpinalConfig
from spinal_callback.geometry import compute_depth_trace
from spinal_callback.model.architectures import UnsupportedArchitectureError, resolve_layout
from spinal_callback.model.probe_batch import collate_pairs, pad_token_id, tokenize_pairs
from spinal_callback.tools.audit_entry import AuditEntry
from spinal_callback.tools.audit_inputs import (
    AuditInputError,
    check_labels,
    default_labels,
    default_probe_pairs,
    read_probe_pairs,
    select_probe_pairs,
)
from spinal_callback.tools.audit_result import AUDIT_FILENAME, AuditResult
from spinal_callback.tools.checkpoints import (
    CheckpointInputError,
    CheckpointLoadError,
    CheckpointSpec,
    UnsafeCheckpointWarning,
    load_checkpoint,
    load_tokenizer,
    resolve_checkpoint,
)

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

#: ``--dtype`` values.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    trust_checkpoint: bool = False,
) -> AuditResult:
    """Depth traces of saved checkpoints on one probe set, loaded and measured one at a time.

    Args:
        checkpoints: Hugging Face model directories, PEFT adapter directories, Lightning ``.ckpt`` files
            or Hub names (see :func:`spinal_callback.tools.checkpoints.resolve_checkpoint`).
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
        trust_checkpoint: read Lightning files that hold objects besides tensors, plain values and Lightning's
            hyper-parameter containers with ``torch.load(weights_only=False)`` — which runs code from them —
            instead of refusing them. Only for files you trust.

    Returns:
        The :class:`AuditResult`, entries in the order of ``checkpoints``.

    Raises:
        CheckpointInputError: a checkpoint path that does not exist or cannot be loaded as given, or no
            tokenizer to be found.
        AuditInputError: bad labels, probe pairs or settings.
        CheckpointLoadError: a checkpoint or tokenizer failed to load, or the checkpoints do not share
            the vocabulary; :class:`~spinal_callback.tools.checkpoints.UntrustedCheckpointError` for a file
            that would run code when read, without ``trust_checkpoint``.
    """
    paths = [os.fspath(p) for p in checkpoints]
    if not paths:
        raise AuditInputError("No checkpoint to audit")
    names = check_labels(labels, paths)
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
    pairs, source = select_probe_pairs(probe_pairs, num_probe_pairs, cfg)
    tok, tokenizer_source = load_tokenizer(specs, tokenizer)
    try:
        batch = collate_pairs(tokenize_pairs(pairs, tok), pad_token_id=pad_token_id(tok), max_length=cfg.max_length)
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
                                          cfg=cfg, prefix=prefix, device=device, dtype=torch_dtype,
                                          trust_checkpoint=trust_checkpoint))
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
    trust_checkpoint: bool,
) -> AuditEntry:
    loaded = load_checkpoint(spec, prefix=prefix, device=device, dtype=dtype, trust_checkpoint=trust_checkpoint)
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
        **options: keyword arguments of :func:`audit_checkpoints` (``trust_checkpoint=True`` reads files that
            would run code when read, instead of refusing them).

    Returns:
        0 on success; 1 when a checkpoint or tokenizer fails to load or is refused as unsafe to read (message
        on stderr, nothing written) or when matplotlib is missing (``audit.json`` is still written).

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
