"""Benchmark the geometry probe: what one depth trace costs against a forward, in time and memory.

Measured side by side in one process (repetitions interleaved, medians after warm-up) so that the
ratios it prints are robust to a machine that speeds up or slows down:

**Depth trace vs forward, vs its floor, and the late-band tier.** One
   :func:`spinal_callback.geometry.compute_depth_trace` (default options, ``max_tokens=512``) against
   one plain no-grad forward of the same batch (whole model, LM head included, ``use_cache=False``),
   over model sizes from tiny to ~100M parameters (and 0.5B-1B configs on a GPU). The trace's
   *floor* is timed in the same run, part by part: the capture forward
   (:func:`~spinal_callback.geometry.trace.capture_hidden`), the L unembedding matmuls
   ``W_U·norm(h)`` over the traced tokens (same chunks as the trace) and the spectral metrics; the
   lens statistics are what the trace costs beyond it. The late-band tier
   (``compute_layers=band_layers("late", L)``) is timed alongside. Peak memory:
   ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU a dispatch-mode counter of the bytes of
   tensors allocated (and still alive) during the call (tensor storages only: allocator slack and
   kernel scratch space are not seen), for the probe's two phases and for one training step
   (forward + backward + AdamW, steady state) of the same model and batch.
Off the probe schedule the callbacks register no hook and run nothing (the adapters' tests count hook
registrations, module calls and host syncs on those steps: all zero), so there is no idle cost to
time; what a probe schedule costs a whole DPO run is ``scripts/bench_overhead.py``.

Models are built from configs with random weights (no network). Usage::

    python scripts/bench_geometry.py --quick                 # smoke run, < 1 min on 2 CPU cores
    python scripts/bench_geometry.py --threads 1 --json bench.json   # full run, ~8 min of CPU (11 min, 2 shared cores)
    python scripts/bench_geometry.py --device cuda --dtype bfloat16   # adds 0.5B and 1B configs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

try:
    import spinal_callback  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinal_callback.geometry.curvature import hidden_curvature
from spinal_callback.geometry.lens import block_rows
from spinal_callback.geometry.selection import band_layers
from spinal_callback.geometry.spectral import (
    centered_spectrum,
    contraction_from_spectrum,
    effective_rank_from_spectrum,
)
from spinal_callback.geometry.trace import capture_hidden, compute_depth_trace, trace_from_hidden
from spinal_callback.model.architectures import DecoderLayout, resolve_layout

MAX_TOKENS = 512  # compute_depth_trace's default
CHUNK_SIZE = 64  # trace_from_hidden's default
MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------
# Model configurations


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only config built from scratch (random weights)."""

    name: str
    hidden: int
    layers: int
    vocab: int
    heads: int
    intermediate: int
    kv_heads: int | None = None
    model_type: str = "llama"
    tied: bool = False

    def build(self, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.for_model(
            self.model_type,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            vocab_size=self.vocab,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads or self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=4096,
            tie_word_embeddings=self.tied,
            use_cache=False,
        )
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        return model.to(device=device, dtype=dtype)


SIZES: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("tiny", hidden=64, layers=4, vocab=1_000, heads=4, intermediate=176),
        ModelSpec("small-8k", hidden=128, layers=4, vocab=8_192, heads=4, intermediate=352),
        ModelSpec("h256-L8-V32k", hidden=256, layers=8, vocab=32_000, heads=4, intermediate=704),
        ModelSpec("h512-L12-V50k", hidden=512, layers=12, vocab=50_257, heads=8, intermediate=1_408),
        ModelSpec("h256-L6-V152k", hidden=256, layers=6, vocab=151_936, heads=4, intermediate=704),
        ModelSpec("h256-L24-V32k", hidden=256, layers=24, vocab=32_000, heads=4, intermediate=704),
        # GPU-sized configs shaped like Qwen2.5-0.5B and Llama-3.2-1B (random weights).
        ModelSpec(
            "qwen0.5b-like", hidden=896, layers=24, vocab=151_936, heads=14, intermediate=4_864,
            kv_heads=2, model_type="qwen2", tied=True,
        ),
        ModelSpec(
            "llama1b-like", hidden=2048, layers=16, vocab=128_256, heads=32, intermediate=8_192,
            kv_heads=8, tied=True,
        ),
        # Training-step configs.
        ModelSpec("train-17m", hidden=384, layers=6, vocab=8_192, heads=6, intermediate=1_024),
        ModelSpec("train-tiny", hidden=128, layers=4, vocab=2_048, heads=4, intermediate=352),
    )
}
TRACE_PRESETS = {
    "quick": ["tiny", "small-8k"],
    "cpu": ["tiny", "h256-L8-V32k", "h512-L12-V50k", "h256-L6-V152k", "h256-L24-V32k"],
    "gpu": [
        "tiny", "h256-L8-V32k", "h512-L12-V50k", "h256-L6-V152k", "h256-L24-V32k", "qwen0.5b-like",
        "llama1b-like",
    ],
}


# ---------------------------------------------------------------------------------------------------
# Timing and memory helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_sys(fn: Callable[[], object], device: torch.device) -> tuple[float, float, float]:
    """Wall-clock, process CPU and kernel (system) CPU seconds of one call."""
    _sync(device)
    sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Run every function once per repetition, rotating the order; wall, CPU and system seconds."""
    names = list(fns)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    kernel: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            w, c, k = _timed_sys(fns[name], device)
            wall[name].append(w)
            cpu[name].append(c)
            kernel[name].append(k)
    return wall, cpu, kernel


def _storages(obj: object) -> Iterable[torch.UntypedStorage]:
    if isinstance(obj, torch.Tensor):
        yield obj.untyped_storage()
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _storages(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _storages(item)


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages allocated inside the context and still alive (any device).

    Every storage an ATen op returns that is not one of its inputs' storages (so not a view or an
    in-place result) is counted until it is freed. Allocator rounding, caching slack and scratch
    space inside kernels (oneDNN/MKL workspaces) are not seen; storages alive before the context
    are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {id(s) for s in _storages((args, kwargs))}
        for storage in _storages(out):
            key = id(storage)
            if key in inputs or key in self._seen:
                continue
            nbytes = storage.nbytes()
            self._seen.add(key)
            self.live += nbytes
            weakref.finalize(storage, self._free, key, nbytes)
        self.peak = max(self.peak, self.live)
        return out


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> tuple[int, str]:
    """Peak bytes allocated by ``fn`` above what was allocated before it, and how it was measured."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base, "cuda.max_memory_allocated"
    with LiveTensorBytes() as counter:
        fn()
    return counter.peak, "live tensor storages (dispatch mode)"


def _median_ms(values: Sequence[float]) -> float:
    return 1e3 * statistics.median(values)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# 1. Depth trace vs forward


@dataclass
class TraceResult:
    """Part 1 for one model. Times are medians in ms; ``*_derived`` are differences of medians.

    ``floor_ms`` = capture + unembed + spectral (each measured); ``late_*`` is the late-band tier.
    Memory: ``probe_peak_mib`` = the larger of the probe's two phases (capture, then lens + spectra),
    ``step_peak_mib`` = one steady-state training step's extra peak on the same model and batch.
    """

    model: str
    params: int
    layers: int
    vocab: int
    hidden: int
    tokens_forward: int
    tokens_traced: int
    reps: int
    forward_ms: float
    trace_ms: float
    ratio: float
    ratio_of_mins: float
    ratio_cpu_time: float
    trace_sys_share: float
    forward_sys_share: float
    capture_ms: float
    spectral_ms: float
    unembed_ms: float
    floor_ms: float
    trace_over_floor: float
    trace_over_floor_cpu: float
    late_layers: list[int]
    late_ms: float
    late_over_trace: float
    late_over_trace_cpu: float
    lens_ms_derived: float
    lens_stats_ms_derived: float
    cpu_share: float
    forward_peak_mib: float
    capture_peak_mib: float
    analysis_peak_mib: float
    late_peak_mib: float
    probe_peak_mib: float
    step_peak_mib: float
    probe_over_step: float
    analytic_lens_buffers_mib: float
    analytic_captured_mib: float
    analytic_forward_logits_mib: float
    memory_method: str
    raw_s: dict[str, list[float]] = field(default_factory=dict)
    raw_cpu_s: dict[str, list[float]] = field(default_factory=dict)


def spectral_part(hidden: Sequence[torch.Tensor]) -> None:
    """The non-lens work of ``trace_from_hidden``: spectra, α, effective rank, hidden curvature."""
    for h in hidden:
        sigma = centered_spectrum(h)
        float(contraction_from_spectrum(sigma))
        float(effective_rank_from_spectrum(sigma))
    hidden_curvature(hidden)


def unembed_part(hidden: Sequence[torch.Tensor], layout: DecoderLayout) -> None:
    """The unembedding matmuls of the logit lens alone (``W_U·norm(h)``, same chunks as the trace)."""
    with torch.no_grad():
        for start in range(0, int(hidden[0].shape[0]), CHUNK_SIZE):
            for h in hidden:
                layout.lens_logits(h[start : start + CHUNK_SIZE])


def _share(part: Sequence[float], whole: Sequence[float]) -> float:
    return statistics.median(part) / max(statistics.median(whole), 1e-9)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def training_step_peak(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, device: torch.device
) -> int:
    """Extra peak bytes of one steady-state training step (forward + backward + AdamW) on the batch.

    One untimed step first creates AdamW's moment buffers, so the measured step sees the resident
    state of a running training (weights and optimizer moments exist before it); the model is back
    in eval mode, without gradients, afterwards.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, use_cache=False)
        out.loss.backward()
        optimizer.step()

    try:
        step()
        peak, _ = peak_extra_bytes(step, device)
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.eval()
    return peak


def bench_trace(
    spec: ModelSpec,
    *,
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    seq: int,
    reps: int | None,
    budget_s: float,
    max_reps: int,
) -> TraceResult:
    model = spec.build(device, dtype).eval()
    layout: DecoderLayout = resolve_layout(model)
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, spec.vocab, (batch, seq), generator=gen).to(device)
    attention_mask = torch.ones_like(input_ids)
    late = band_layers("late", spec.layers)

    def forward() -> None:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    def trace() -> None:
        compute_depth_trace(model, input_ids, attention_mask, max_tokens=MAX_TOKENS)

    def late_trace() -> None:
        compute_depth_trace(model, input_ids, attention_mask, max_tokens=MAX_TOKENS, compute_layers=late)

    def capture() -> None:
        capture_hidden(model, input_ids, attention_mask, layout=layout, max_tokens=MAX_TOKENS)

    # Warm-up, untimed, doubling as the memory pass: a forward, a trace in its two parts, the late tier.
    warm_start = time.perf_counter()
    fwd_peak, method = peak_extra_bytes(forward, device)
    holder: list[list[torch.Tensor]] = []
    cap_peak, _ = peak_extra_bytes(
        lambda: holder.append(
            capture_hidden(model, input_ids, attention_mask, layout=layout, max_tokens=MAX_TOKENS)
        ),
        device,
    )
    hidden = holder.pop()
    ana_peak, _ = peak_extra_bytes(lambda: trace_from_hidden(hidden, layout), device)
    late_peak, _ = peak_extra_bytes(late_trace, device)
    unembed_part(hidden, layout)
    warm_s = time.perf_counter() - warm_start
    step_peak = training_step_peak(model, input_ids, attention_mask, device)

    if reps is None:  # one rep costs about a warm-up plus one more trace; at least 3 reps
        reps = max(3, min(max_reps, int(budget_s / max(1.5 * warm_s, 1e-6))))
    fns: dict[str, Callable[[], object]] = {
        "forward": forward,
        "trace": trace,
        "late": late_trace,
        "capture": capture,
        "spectral": lambda: spectral_part(hidden),
        "unembed": lambda: unembed_part(hidden, layout),
    }
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    times, cpu_times, sys_times = interleaved(fns, reps, device)
    cpu_share = (_cpu_seconds() - cpu0) / ((time.perf_counter() - wall0) * torch.get_num_threads())
    med = {k: _median_ms(v) for k, v in times.items()}
    med_cpu = {k: _median_ms(v) for k, v in cpu_times.items()}
    floor = med["capture"] + med["unembed"] + med["spectral"]
    floor_cpu = med_cpu["capture"] + med_cpu["unembed"] + med_cpu["spectral"]
    lens = med["trace"] - med["capture"] - med["spectral"]

    n = int(hidden[0].shape[0])
    d = int(hidden[0].shape[1])
    element = torch.empty((), dtype=dtype).element_size()
    chunk = min(CHUNK_SIZE, n)
    probe_peak = max(cap_peak, ana_peak, late_peak)
    return TraceResult(
        model=spec.name,
        params=_num_params(model),
        layers=spec.layers,
        vocab=spec.vocab,
        hidden=spec.hidden,
        tokens_forward=batch * seq,
        tokens_traced=n,
        reps=reps,
        forward_ms=med["forward"],
        trace_ms=med["trace"],
        ratio=med["trace"] / med["forward"],
        ratio_of_mins=min(times["trace"]) / min(times["forward"]),
        ratio_cpu_time=med_cpu["trace"] / med_cpu["forward"],
        trace_sys_share=_share(sys_times["trace"], cpu_times["trace"]),
        forward_sys_share=_share(sys_times["forward"], cpu_times["forward"]),
        capture_ms=med["capture"],
        spectral_ms=med["spectral"],
        unembed_ms=med["unembed"],
        floor_ms=floor,
        trace_over_floor=med["trace"] / floor,
        trace_over_floor_cpu=med_cpu["trace"] / floor_cpu,
        late_layers=late,
        late_ms=med["late"],
        late_over_trace=med["late"] / med["trace"],
        late_over_trace_cpu=med_cpu["late"] / med_cpu["trace"],
        lens_ms_derived=lens,
        lens_stats_ms_derived=lens - med["unembed"],
        cpu_share=cpu_share,
        forward_peak_mib=fwd_peak / MiB,
        capture_peak_mib=cap_peak / MiB,
        analysis_peak_mib=ana_peak / MiB,
        late_peak_mib=late_peak / MiB,
        probe_peak_mib=probe_peak / MiB,
        step_peak_mib=step_peak / MiB,
        probe_over_step=probe_peak / max(step_peak, 1),
        analytic_lens_buffers_mib=(2 * chunk + 2 * block_rows(chunk, spec.vocab, device)) * spec.vocab * 4 / MiB,
        analytic_captured_mib=spec.layers * n * d * element / MiB,
        analytic_forward_logits_mib=batch * seq * spec.vocab * 4 / MiB,
        memory_method=method,
        raw_s={k: [round(x, 6) for x in v] for k, v in times.items()},
        raw_cpu_s={k: [round(x, 6) for x in v] for k, v in cpu_times.items()},
    )


def print_trace_results(results: Sequence[TraceResult]) -> None:
    print(
        f"\n## 1. One depth trace vs one forward (median over reps, interleaved; "
        f"max_tokens={MAX_TOKENS}, chunk_size={CHUNK_SIZE})"
    )
    rows = [
        [
            r.model, _fmt_params(r.params), r.layers, r.vocab, f"{r.tokens_forward}/{r.tokens_traced}",
            r.reps, f"{r.forward_ms:.1f}", f"{r.trace_ms:.1f}", f"{r.ratio:.2f}x", f"{r.ratio_of_mins:.2f}x",
            f"{r.ratio_cpu_time:.2f}x",
            f"{100 * r.forward_sys_share:.0f}%/{100 * r.trace_sys_share:.0f}%",
            f"{100 * r.cpu_share:.0f}%",
        ]
        for r in results
    ]
    header = [
        "model", "params", "layers", "vocab", "tokens fwd/traced", "reps", "forward ms", "trace ms",
        "trace/fwd", "(of mins)", "(cpu time)", "sys fwd/trace", "cpu",
    ]
    print(_table(header, rows))
    print(
        "  trace = compute_depth_trace; trace/fwd = ratio of the medians, (of mins) = ratio of the\n"
        "  fastest reps, (cpu time) = ratio of the median process CPU times (both less sensitive to a\n"
        "  shared CPU). sys = share of the CPU time spent in the kernel (page faults of fresh large\n"
        "  buffers), forward / trace. cpu = process CPU time / (wall time x threads) during the reps\n"
        "  (well under 100% means other work shared the CPU)."
    )
    print("\n   The trace against its floor, and the late-band tier (same reps)")
    rows = [
        [
            r.model, r.layers, f"{r.capture_ms:.1f}", f"{r.unembed_ms:.1f}", f"{r.spectral_ms:.1f}",
            f"{r.floor_ms:.1f}", f"{r.trace_ms:.1f}", f"{r.lens_stats_ms_derived:.1f}",
            f"{r.trace_over_floor:.2f}x", f"{r.trace_over_floor_cpu:.2f}x",
            f"{r.late_layers[0]}-{r.late_layers[-1]}" if r.late_layers else "-", f"{r.late_ms:.1f}",
            f"{r.late_over_trace:.2f}x", f"{r.late_over_trace_cpu:.2f}x",
        ]
        for r in results
    ]
    header = [
        "model", "layers", "capture ms", "unembed ms", "spectral ms", "floor ms", "trace ms",
        "lens stats ms*", "trace/floor", "(cpu time)", "late layers", "late ms", "late/trace", "(cpu time)",
    ]
    print(_table(header, rows))
    print(
        "  floor = capture + unembed + spectral, each measured: capture = capture_hidden (forward up to\n"
        "  the last block, no LM head); unembed = the L matmuls W_U·norm(h) over the traced tokens in the\n"
        "  trace's chunks; spectral = spectra, α, erank, hidden curvature. lens stats* = trace - floor\n"
        "  (derived): entropy and Fisher-Rao statistics in float32. late = compute_depth_trace(...,\n"
        "  compute_layers=band_layers('late', L)). Targets: trace/floor <= 1.3; late/trace <= 0.5 at L >= 12."
    )
    method = results[0].memory_method if results else ""
    print(f"\n   Peak extra memory, MiB (measured: {method}; analytic: formula)")
    rows = [
        [
            r.model, f"{r.forward_peak_mib:.1f}", f"{r.capture_peak_mib:.1f}", f"{r.analysis_peak_mib:.1f}",
            f"{r.late_peak_mib:.1f}", f"{r.step_peak_mib:.1f}", f"{100 * r.probe_over_step:.1f}%",
            f"{r.analytic_forward_logits_mib:.1f}", f"{r.analytic_captured_mib:.1f}",
            f"{r.analytic_lens_buffers_mib:.1f}",
        ]
        for r in results
    ]
    header = [
        "model", "forward", "probe: capture", "probe: lens+spectral", "late tier", "train step",
        "probe/step", "fwd logits BxTxVx4", "captured LxNxd", "lens (2xchunk+2xrows)xVx4",
    ]
    print(_table(header, rows))
    print(
        "  probe/step = max(probe phases) / one steady-state training step (forward + backward + AdamW,\n"
        "  same model and batch; weights and AdamW moments already allocated). Target: <= 10%."
    )


# ---------------------------------------------------------------------------------------------------
# Driver


def _machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - the benchmark needs transformers anyway
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    info["cpu_pressure_start"] = _cpu_pressure()
    info["commit"] = _git_commit()
    return info


def _git_commit() -> str | None:
    """The checked-out commit of the repository this script lives in (read-only), if any."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, check=False, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _cpu_pressure() -> str | None:
    """Linux PSI: share of the last 60 s in which some runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as fh:
            some = fh.readline().split()
    except OSError:
        return None
    fields = dict(item.split("=", 1) for item in some[1:] if "=" in item)
    return f"some avg60={fields['avg60']}%" if "avg60" in fields else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fast smoke run (tiny models, few reps)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="model dtype")
    parser.add_argument(
        "--models", nargs="+", choices=sorted(SIZES), default=None,
        help="trace-vs-forward models (default: a preset for --quick / cpu / cuda)",
    )
    parser.add_argument("--batch", type=int, default=None, help="sequences per batch (default 8; quick 4)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 128; quick 64)")
    parser.add_argument("--reps", type=int, default=None, help="timed reps per model (default: adaptive)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds of timed reps per model, for adaptive reps"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="also write results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available in this torch build")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or cores)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the library computes its spectra in float64 anyway

    gpu = device.type == "cuda"
    preset = "quick" if args.quick else "gpu" if gpu else "cpu"
    models = args.models or TRACE_PRESETS[preset]
    budget = args.budget if args.budget is not None else (3.0 if args.quick else 20.0)
    max_reps = 5 if args.quick else 15
    batch = args.batch or (4 if args.quick else 8)
    seq = args.seq or (64 if args.quick else 128)

    started, cpu_start = time.perf_counter(), _cpu_seconds()
    meta = _machine(device)
    command = " ".join(["python", *sys.argv])
    meta.update(command=command, dtype=args.dtype, preset=preset)
    print(
        f"# bench_geometry: torch {meta['torch']}, transformers {meta.get('transformers', '?')}, "
        f"{meta['device']} ({meta.get('gpu', meta['cpu'])}), {meta['cpu_cores']} cores, "
        f"{meta['torch_threads']} threads, dtype {args.dtype}, commit {meta['commit']}, "
        f"load avg {meta.get('loadavg_start')}, "
        f"cpu pressure {meta.get('cpu_pressure_start')}"
    )
    out: dict[str, Any] = {"meta": meta}

    results = []
    for name in models:
        t0 = time.perf_counter()
        results.append(
            bench_trace(
                SIZES[name], device=device, dtype=dtype, batch=batch, seq=seq,
                reps=args.reps, budget_s=budget, max_reps=max_reps,
            )
        )
        print(f"  [{name}: {time.perf_counter() - t0:.0f}s]", flush=True)
        if gpu:
            torch.cuda.empty_cache()
    print_trace_results(results)
    out["trace_vs_forward"] = [asdict(r) for r in results]

    elapsed = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["cpu_pressure_end"] = _cpu_pressure()
    meta["elapsed_s"] = round(elapsed, 1)
    meta["cpu_share"] = round((_cpu_seconds() - cpu_start) / (elapsed * torch.get_num_threads()), 3)
    print(
        f"\n# total {elapsed:.0f}s; this process got {100 * meta['cpu_share']:.0f}% of "
        f"{torch.get_num_threads()} threads' CPU time; load avg at end {meta.get('loadavg_end')}, "
        f"cpu pressure {meta['cpu_pressure_end']}"
    )
    if device.type == "cpu" and meta["cpu_share"] < 0.8:
        print(
            "# WARNING: other processes shared the CPU during this run: wall-clock times are inflated and\n"
            "# noisy (OpenMP threads wait for each other when one is descheduled, and their spinning also\n"
            "# inflates CPU time). Rerun on an idle machine, or with --threads 1, where the (cpu time)\n"
            "# ratios and the process-CPU row measure the work itself."
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
