"""``SpinalConfig``: the one validated configuration shared by the Lightning and TRL callbacks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.options import (
    ALERT_ACTIONS,
    PATCH_DIRECTIONS,
    check_actions,
    check_directions,
    check_pairs,
    check_ranks,
    coerce_section,
    fraction_pair,
    output_path,
)
from spinal_callback.config.rollback import RollbackConfig
from spinal_callback.config.validation import check_float, check_int

__all__ = ["ALERT_ACTIONS", "PATCH_DIRECTIONS", "SpinalConfig"]  # the action and direction names: config.options


@dataclass
class SpinalConfig:
    """Configuration of the geometry monitor; both callbacks take one.

    Every field is validated on construction; a bad value raises ``ValueError`` naming the field,
    what is allowed and what was given. Command-line parsers (``HfArgumentParser``, ``TrlParser``) take
    :class:`~spinal_callback.config.arguments.SpinalArguments` instead: every field ``name`` as
    ``--spinal_name``, and ``to_config()`` gives this class.
    """

    interval: int = field(
        default=50,
        metadata={"help": "The probe forward every `interval` optimizer steps (plus step 0, the baseline): the "
                  "output head's and the probe pairs' signals (head/…, pairs/…) and the last layer's geometry, "
                  "with a full depth trace every `trace_interval` steps. It costs about 0.2 of a training step on "
                  "the demo model (docs/benchmarks.md). The early warning does not wait for it: its default "
                  "signals are read every `signal_interval` steps without a forward. A multiple of "
                  "`signal_interval`."},
    )
    signal_interval: int | None = field(
        default=None,
        metadata={"help": "Every N optimizer steps (and at step 0) the monitor reads the signals that need no "
                  "forward — update/size, update/turn and the trainer's logged metrics — and runs the early-warning "
                  "detector; at the probe steps the probe's signals join them. The shipped detector's thresholds "
                  "were calibrated at 2 (docs/evidence.md); recalibrate with `spinal calibrate` for another value. "
                  "The detector's warm-up counts readings: at 2 the update tests arm from step 50 (size) and 90 "
                  "(turn), at 5 from 125 and 225. "
                  "Default (None): 2 when `interval` is even, else `interval` (readings only at the probes)."},
    )
    read_every_log: bool = field(
        default=True,
        metadata={"help": "Feed the detector every value the trainer logs, at the step it is logged: a log that no "
                  "reading takes (a step off the reading schedule) is an observation of its own, the trainer's "
                  "metrics alone (update/size and update/turn keep their reading cadence), and is written as a "
                  "metrics-only \"signals\" trace record. False (the behaviour up to study 14): logged metrics wait "
                  "for the next reading, and a later log replaces an earlier unread one. Only SpinalTrainerCallback "
                  "(Hugging Face) sees the logs as they happen; the Lightning callback reads its metrics at the "
                  "readings either way. On by default since study 15 (docs/evidence.md): with TRL logging every "
                  "step, no false alarm in 32 fault-free runs and one more data-fault run answered in time."},
    )
    trace_interval: int = field(
        default=10,
        metadata={"help": "A full depth trace (every layer's geometry, the heatmap columns) every N optimizer "
                  "steps and at step 0 (default 10); the probes in between run the same forward, so every "
                  "signal the detector reads is there, but measure only the last layer and the bands the "
                  "detector watches (none by default): about 60 % of a full probe's cost on the demo "
                  "(docs/benchmarks.md). 0: every probe is a full depth trace."},
    )
    update_coordinates: int = field(
        default=16384,
        metadata={"help": "At every reading (signal_interval), the `update/size` signal: the RMS per-step change, "
                  "since the previous reading, of this many trainable weights drawn once at random (no forward; one "
                  "gather), and `update/turn`, how far that change turned from the sample's course over the 20 "
                  "readings before it. The detector's UPDATE_JUMP and TURN_JUMP tests watch them. 0 turns both off."},
    )
    num_probe_pairs: int = field(
        default=16,
        metadata={"help": "Number K of preference pairs in the fixed probe set, taken from the start of the "
                  "training data when `probe_pairs` is not given."},
    )
    probe_pairs: list[dict[str, str]] | None = field(
        default=None,
        metadata={"help": "Explicit probe set: a list of {'prompt', 'chosen', 'rejected'} text dicts, tokenized "
                  "once with the trainer's tokenizer. Overrides `num_probe_pairs`."},
    )
    max_tokens: int = field(
        default=512,
        metadata={"help": "Cap on measured token positions per probe pass (deterministic subsample of the "
                  "completion tokens)."},
    )
    max_length: int = field(
        default=256,
        metadata={"help": "Length cap (tokens) of a tokenized probe sequence, prompt + completion; the prompt is "
                  "cut from the left when needed."},
    )
    patch_interval: int = field(
        default=0,
        metadata={"help": "Run the activation-patching probe (policy vs reference on the probe set) every N "
                  "optimizer steps, step 0 excluded; 0 turns it off. Needs a reference model (the trainer's "
                  "ref_model, an explicit one, or a PEFT policy whose adapter-disabled base is the reference)."},
    )
    patch_directions: tuple[str, ...] = field(
        default=("policy_to_reference", "reference_to_policy"),
        metadata={"help": "Exact patching directions: 'policy_to_reference' (run the reference with one policy "
                  "block output), 'reference_to_policy' (the reverse)."},
    )
    patch_low_rank_layers: int = field(
        default=2,
        metadata={"help": "Low-rank patching at this many layers with the largest |normalized effect| "
                  "(policy_to_reference); 0 turns it off."},
    )
    patch_ranks: tuple[int, ...] | None = field(
        default=None,
        metadata={"help": "Numbers k of top singular directions for low-rank patching; default 1, 2, 4, 8, … "
                  "up to the hidden size."},
    )
    patch_lasso: bool = field(
        default=True,
        metadata={"help": "Cross-validated LASSO of the per-pair margin gain on per-layer activation distances "
                  "(scikit-learn; needs at least 3 probe pairs)."},
    )
    patch_attribution: bool = field(
        default=True,
        metadata={"help": "Attribution patching (one forward + one backward for all layers), reported with its "
                  "Spearman agreement with the exact probe of the same step."},
    )
    log_dir: str | None = field(
        default=None,
        metadata={"help": "TensorBoard directory used when the host trainer has none (Lightning without a "
                  "TensorBoardLogger; HF Trainer without report_to='tensorboard')."},
    )
    trace_path: str | None = field(
        default=None,
        metadata={"help": "JSON-lines trace file; default: `spinal_trace.jsonl` inside the TensorBoard directory."},
    )
    on_alert: tuple[str | Callable[..., Any], ...] = field(
        default=("log",),
        metadata={"help": "What an early-warning alert does: any of 'log' (TensorBoard text, trace record, "
                  "Python logging warning), 'stop' (end training), 'rollback' (restore the newest known-good "
                  "snapshot before the onset), or callables taking the Alert. Alerts are always written to the "
                  "trace file and TensorBoard."},
    )
    detector: DetectorConfig = field(
        default_factory=DetectorConfig,
        metadata={"help": "Early-warning detector settings (watched signals, trend window, thresholds, "
                  "hysteresis): a DetectorConfig, a dict of its fields, a JSON object, or the path of a JSON file "
                  "written by `spinal calibrate` (thresholds from your own healthy runs)."},
    )
    rollback: RollbackConfig = field(
        default_factory=RollbackConfig,
        metadata={"help": "Snapshot and rollback settings (snapshot_interval, keep, storage, snapshot_dir, "
                  "lr_scale, max_rollbacks): a RollbackConfig, a dict of its fields, a JSON object or the path of "
                  "a JSON file of them. Snapshots are taken only when 'rollback' is in on_alert."},
    )
    strict: bool = field(
        default=False,
        metadata={"help": "True: a failing probe raises. False (default): it becomes a warning plus a counter "
                  "(`spinal/probe/failures`) and training goes on."},
    )
    probe_at_start: bool = field(
        default=True,
        metadata={"help": "Probe at step 0 (before the first optimizer step) as the baseline."},
    )
    tail: tuple[float, float] = field(
        default=(0.1, 0.9),
        metadata={"help": "Tail window (a, b) of the contraction fit, as fractions of r = min(n, d)."},
    )
    rtol: float = field(
        default=1e-6,
        metadata={"help": "Singular values below rtol·σ_1 are left out of the contraction fit."},
    )
    bands: tuple[float, float] = field(
        default=(1 / 3, 2 / 3),
        metadata={"help": "Early/mid and mid/late boundaries as fractions of depth."},
    )
    chunk_size: int = field(
        default=64,
        metadata={"help": "Tokens per logit-lens chunk: the lens holds two chunk_size × vocab float32 arrays at "
                  "once (~75 MiB at 64 × 152k)."},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed of the deterministic max_tokens subsample."},
    )
    heatmaps: bool = field(
        default=True,
        metadata={"help": "Write a layer × step heatmap image per metric (see heatmap_interval for how often)."},
    )
    heatmap_interval: int = field(
        default=500,
        metadata={"help": "Steps between heatmap images (0: at every full depth trace); alerts, rollbacks and the "
                  "end of training always draw. Redrawing every heatmap costs about 0.2 s of CPU on a worker thread "
                  "(the event file is written from the training thread; closing the callback waits for every image), "
                  "which holds the interpreter lock much of that time and so slows the training thread: on the demo "
                  "model two redraws in 120 steps (every 50) cost about 4 % of the training time "
                  "(docs/benchmarks.md)."},
    )
    layer_runs: bool = field(
        default=True,
        metadata={"help": "Also write each layer to its own TensorBoard run (<log dir>/spinal_layers/L<l>) so "
                  "per-layer charts draw each layer in its own colour; one event-file writer per layer."},
    )

    def __post_init__(self) -> None:
        check_int("interval", self.interval, 1)
        if self.signal_interval is not None:
            check_int("signal_interval", self.signal_interval, 1)
            if self.interval % self.signal_interval:
                raise ValueError(
                    f"`interval` ({self.interval}) must be a multiple of `signal_interval` ({self.signal_interval}): "
                    "the probe steps are reading steps too; e.g. set interval="
                    f"{self.signal_interval * max(1, round(self.interval / self.signal_interval))} or leave "
                    "signal_interval at None"
                )
        check_int("trace_interval", self.trace_interval, 0)
        check_int("update_coordinates", self.update_coordinates, 0)
        check_int("num_probe_pairs", self.num_probe_pairs, 1)
        check_int("max_tokens", self.max_tokens, 1)
        check_int("max_length", self.max_length, 1)
        check_int("chunk_size", self.chunk_size, 1)
        check_int("patch_interval", self.patch_interval, 0)
        check_int("heatmap_interval", self.heatmap_interval, 0)
        check_int("patch_low_rank_layers", self.patch_low_rank_layers, 0)
        self.patch_directions = check_directions(self.patch_directions)
        self.patch_ranks = check_ranks(self.patch_ranks)
        for name in ("patch_lasso", "patch_attribution", "probe_at_start", "heatmaps", "layer_runs", "read_every_log",
                     "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"`seed` must be an integer, got {self.seed!r}")
        self.tail = fraction_pair("tail", self.tail, strict_order=False)
        self.bands = fraction_pair("bands", self.bands, strict_order=True)
        self.rtol = check_float("rtol", self.rtol, 0.0, 1.0, open_high=True)
        self.on_alert = check_actions(self.on_alert)
        self.detector = coerce_section(DetectorConfig, "detector", self.detector)
        self.rollback = coerce_section(RollbackConfig, "rollback", self.rollback)
        if "rollback" in self.on_alert and not self.rollback.enabled:
            raise ValueError(
                "`on_alert` includes 'rollback' but snapshots are disabled (rollback.enabled=False); enable them "
                "or remove 'rollback' from on_alert"
            )
        if self.probe_pairs is not None:
            self.probe_pairs = check_pairs(self.probe_pairs)
        self.log_dir = output_path("log_dir", self.log_dir, directory=True)
        self.trace_path = output_path("trace_path", self.trace_path, directory=False)

    @property
    def reading_interval(self) -> int:
        """Steps between readings of the forward-free signals (and detector runs): ``signal_interval``, or by
        default 2 when ``interval`` is even, else ``interval``."""
        if self.signal_interval is not None:
            return self.signal_interval
        return 2 if self.interval % 2 == 0 else self.interval

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view (callables shown by name)."""
        data = asdict(self)
        data["on_alert"] = [a if isinstance(a, str) else getattr(a, "__name__", repr(a)) for a in self.on_alert]
        return data

    def fingerprint(self) -> str:
        """Short stable hash of the fields that define what is measured (used in ``state_key``)."""
        keys = ("interval", "trace_interval", "num_probe_pairs", "max_tokens", "max_length", "tail", "rtol", "bands",
                "seed")
        payload = {k: getattr(self, k) for k in keys}
        payload["probe_pairs"] = self.probe_pairs
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:10]

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text (used by the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
