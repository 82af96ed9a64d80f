"""Benchmark the patching probes: batched exact patching vs a naive per-layer loop vs a peer library.

Side by side in one process, on the same model and batch (repetitions interleaved with a rotating
order, medians reported, so that a machine that speeds up or slows down affects every method alike):

- ``ours``: :func:`spinal_callback.probes.patch_layers` with its defaults (replicated batch, two
  layers per patched forward, each forward computing only the blocks above its lowest patched layer);
- ``ours, 1 forward``: the same with ``reuse_prefix=False`` (all layers in one replicated forward);
- ``naive loop``: one full forward (logits of every position, ``log_softmax``, gather) per patched
  layer with one forward hook, margins copied to the host after each layer — plus the source and base
  forwards;
- ``nnsight loop``: the same loop written with nnsight (``trace`` + ``.output`` assignment), if
  ``nnsight`` is installed;
- ``attribution``: :func:`spinal_callback.probes.attribution_patching` (1 policy forward, 1 reference
  forward with graph, 1 backward);
- ``1 forward``: one plain no-grad forward of the 2K-row batch with logits — the time unit.

A second table compares a full patching probe (``SpinalConfig`` defaults: exact patching in both
directions, low-rank patching at the 2 layers of largest effect with k = 1, 2, 4, … d, LASSO,
attribution patching) run two ways, interleaved the same way:

- ``separate calls``: each probe function on its own, each running its own unpatched policy and
  reference forwards (what ``run_patching_probe`` did before the unpatched runs were shared);
- ``shared``: :func:`spinal_callback.probes.protocol.run_patching_probe`, which computes the unpatched
  runs once (:func:`spinal_callback.probes.unpatched_runs`) and passes them to every probe.

Its columns: model forwards (forward pre-hooks on the two models), block compute in forwards of the
batch (Σ rows entering a block's MLP ÷ (2K × L)), median wall time in forward-equivalents and ms,
the largest difference between the two records, and peak memory measured as for the first table.

Columns of the first table: model passes, forward-equivalents (time ÷ time of ``1 forward``), median wall time, speed-up
over the naive loop, and the largest absolute difference of the per-example margin gains
``m_patched,ℓ − m_ref`` from the naive loop's. Peak memory, each method once in a fresh subprocess
after set-up (models built, batch made): on CUDA ``torch.cuda.max_memory_allocated`` above the
allocated level after set-up; on Linux CPUs the kernel's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs`` after set-up) above the RSS after set-up — whole-process memory, so it
includes allocator caching, library workspaces and first-call imports, not just tensors.

Models are built from configs with random weights (no network); the policy is the reference with
Gaussian noise on its decoder-block weights. On the CPU the default is one thread: on a machine
whose cores are shared with other jobs, multi-threaded timings of small models are dominated by
threads waiting for each other (10× slower and 5× more variable in our runs); pass ``--threads 0``
for torch's default. Usage::

    python scripts/bench_patching.py --quick            # smoke run, < 1 min on 2 CPU cores
    python scripts/bench_patching.py                    # llama h128 × 12 layers, V 4096, K 8, T 48
    python scripts/bench_patching.py --device cuda --dtype bfloat16 --layers 24 --hidden 1024
    python scripts/bench_patching.py --probe-only --no-memory   # only the full-probe comparison
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import spinal_callback  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinal_callback.config import SpinalConfig
from spinal_callback.model.architectures import resolve_layout
from spinal_callback.probes import attribution_patching, lasso_probe, low_rank_patch, patch_layers
from spinal_callback.probes.protocol import run_patching_probe

METHODS = ("ours", "ours, 1 forward", "naive loop", "nnsight loop", "attribution", "1 forward")


# ---------------------------------------------------------------------------------------------------
# Set-up


def build_models(args: argparse.Namespace) -> tuple[nn.Module, nn.Module]:
    """``(policy, reference)``: a random llama and a copy with noise on its decoder-block weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama", vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 32),
        num_key_value_heads=max(1, args.hidden // 64), head_dim=32, max_position_embeddings=max(128, args.seq),
        pad_token_id=0, bos_token_id=1, eos_token_id=2, use_cache=False,
    )
    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(config).eval()
    policy = copy.deepcopy(reference)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in resolve_layout(policy).blocks:
            for p in block.parameters():
                p.add_(0.1 * p.detach().abs().mean() * torch.randn(p.shape, generator=gen))
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    return policy.to(device=device, dtype=dtype), reference.to(device=device, dtype=dtype)


def build_batch(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """K pairs, T tokens, prompts of 12–23 tokens, 0–3 right-padding tokens per row."""
    gen = torch.Generator().manual_seed(2)
    rows, seq = 2 * args.pairs, args.seq
    input_ids = torch.randint(3, args.vocab, (rows, seq), generator=gen)
    attention = torch.ones(rows, seq, dtype=torch.long)
    completion = torch.zeros(rows, seq, dtype=torch.long)
    for r in range(rows):
        pad, prompt = r % 4, min(12 + (5 * r) % 12, seq // 2)
        if pad:
            input_ids[r, -pad:], attention[r, -pad:] = 0, 0
        completion[r, prompt : seq - pad] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


# ---------------------------------------------------------------------------------------------------
# The compared implementations (all return per-example margin gains [L, K] on the host)


def _margins(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = batch["input_ids"].to(logits.device)
    mask = (batch["completion_mask"] * batch["attention_mask"]).to(logits.device)[:, 1:]
    logp = logits[:, :-1].float().log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
    seq = (logp.double() * mask).sum(1)
    k = seq.shape[0] // 2
    return seq[:k] - seq[k:]


def naive_loop(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Policy → reference, one full forward per layer with one hook, host copy after each layer."""
    blocks_src, blocks_dst = resolve_layout(policy).blocks, resolve_layout(reference).blocks
    device = next(reference.parameters()).device
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    store: dict[int, Any] = {}
    handles = [b.register_forward_hook(lambda m, a, o, i=i: store.__setitem__(i, o)) for i, b in enumerate(blocks_src)]
    with torch.no_grad():
        try:
            policy(**inputs)
        finally:
            for h in handles:
                h.remove()
        base = _margins(reference(**inputs).logits, batch).cpu()
        rows = []
        for layer, block in enumerate(blocks_dst):
            handle = block.register_forward_hook(lambda m, a, o, layer=layer: store[layer])
            try:
                rows.append(_margins(reference(**inputs).logits, batch).cpu() - base)
            finally:
                handle.remove()
    return torch.stack(rows)


def nnsight_loop(src: Any, dst: Any, batch: dict[str, torch.Tensor], num_layers: int) -> torch.Tensor:
    """The naive loop written with nnsight: one ``trace`` per layer, ``.output`` assigned.

    ``src`` and ``dst`` are ``nnsight.NNsight`` wrappers of *copies* of the policy and reference:
    wrapping instruments the modules, which would slow down every other method run on them.
    """
    device = next(dst.parameters()).device
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    saved: dict[int, Any] = {}
    with torch.no_grad():
        with src.trace(**inputs):
            for i in range(num_layers):
                saved[i] = src.model.layers[i].output.save()
        with dst.trace(**inputs):
            base_logits = dst.lm_head.output.save()
        base = _margins(base_logits, batch).cpu()
        rows = []
        for layer in range(num_layers):
            replacement = saved[layer]
            with dst.trace(**inputs):
                dst.model.layers[layer].output = replacement
                logits = dst.lm_head.output.save()
            rows.append(_margins(logits, batch).cpu() - base)
    return torch.stack(rows)


def make_methods(
    policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor], with_nnsight: bool
) -> dict[str, Callable[[], Any]]:
    device = next(reference.parameters()).device
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}

    def one_forward() -> None:
        with torch.no_grad():
            reference(**inputs).logits.float().log_softmax(-1)

    methods: dict[str, Callable[[], Any]] = {
        "ours": lambda: patch_layers(policy, reference, batch),
        "ours, 1 forward": lambda: patch_layers(policy, reference, batch, reuse_prefix=False),
        "naive loop": lambda: naive_loop(policy, reference, batch),
        "attribution": lambda: attribution_patching(policy, reference, batch),
        "1 forward": one_forward,
    }
    if with_nnsight:
        import nnsight

        src, dst = nnsight.NNsight(copy.deepcopy(policy)), nnsight.NNsight(copy.deepcopy(reference))
        num_layers = len(resolve_layout(reference).blocks)
        methods["nnsight loop"] = lambda: nnsight_loop(src, dst, batch, num_layers)
    return {name: methods[name] for name in METHODS if name in methods}


# ---------------------------------------------------------------------------------------------------
# Measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each function per repetition, the order rotated every repetition."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux: ``echo 5 > clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def memory_child(args: argparse.Namespace) -> dict[str, float]:
    """In this (fresh) process: peak memory of one call of ``args.memory_method`` above the set-up level."""
    policy, reference = build_models(args)
    batch = build_batch(args)
    methods = probe_methods(policy, reference, batch)
    if args.memory_method not in methods:
        methods = make_methods(policy, reference, batch, with_nnsight=True)
    fn = methods[args.memory_method]
    device = torch.device(args.device)
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - base) / 2**20}
    gc.collect()
    if _reset_peak_rss() and _status_mib("VmHWM") is not None:
        base = _status_mib("VmRSS") or 0.0
        fn()
        return {"peak_mib": (_status_mib("VmHWM") or 0.0) - base}
    base = _maxrss_mib()  # no resettable peak: only growth above the set-up peak is seen
    fn()
    return {"peak_mib": _maxrss_mib() - base}


def memory_of(method: str, argv: Sequence[str]) -> float | None:
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--memory-method", method]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  (memory run of {method!r} failed: {done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


# ---------------------------------------------------------------------------------------------------
# The full patching probe: separate calls vs shared unpatched runs

PROBE_CONFIG = SpinalConfig(patch_interval=1)  # the defaults: everything on, low rank at 2 layers


def separate_probe(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The patching record from the probe functions called one by one, each with its own unpatched forwards."""
    config = PROBE_CONFIG
    exact = {d: patch_layers(policy, reference, batch, direction=d) for d in config.patch_directions}  # type: ignore[arg-type]
    forward = exact["policy_to_reference"]
    top = forward.normalized_effect.abs().nan_to_num(nan=-1.0).argsort(descending=True)[: config.patch_low_rank_layers]
    layers = sorted(forward.layers[int(i)] for i in top)
    return {
        "exact": {d: r.to_dict() for d, r in exact.items()},
        "low_rank": low_rank_patch(policy, reference, batch, layers, ranks=config.patch_ranks).to_dict(),
        "lasso": lasso_probe(policy, reference, batch).to_dict(),
        "attribution": attribution_patching(policy, reference, batch, exact=forward).to_dict(),
    }


@contextmanager
def counting(policy: nn.Module, reference: nn.Module) -> Iterator[dict[str, int]]:
    """Model forwards and rows entering a block's MLP (skipped prefix blocks do not reach it) inside the block."""
    counts = {"forwards": 0, "block_rows": 0}

    def forward(*_: Any) -> None:
        counts["forwards"] += 1

    def mlp(module: nn.Module, args: tuple[Any, ...]) -> None:
        counts["block_rows"] += int(args[0].shape[0])

    handles = [model.register_forward_pre_hook(forward) for model in (policy, reference)]
    blocks = [block for model in (policy, reference) for block in resolve_layout(model).blocks]
    handles += [block.mlp.register_forward_pre_hook(mlp) for block in blocks]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _max_diff(ours: Any, theirs: Any) -> float:
    """Largest absolute difference between the floats of two records (``forwards`` counts left out)."""
    if isinstance(ours, dict):
        return max([_max_diff(ours[k], theirs[k]) for k in ours if k != "forwards"], default=0.0)
    if isinstance(ours, list):
        return max([_max_diff(a, b) for a, b in zip(ours, theirs)], default=0.0)
    if isinstance(ours, float) and isinstance(theirs, float):
        return abs(ours - theirs)
    return 0.0 if ours == theirs else float("inf")


def probe_methods(
    policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor]
) -> dict[str, Callable[[], Any]]:
    """The two ways of running the full patching probe; each returns the patching record."""
    return {
        "separate calls": lambda: separate_probe(policy, reference, batch),
        "shared": lambda: run_patching_probe(policy, reference, batch, PROBE_CONFIG).record,
    }


def probe_comparison(
    policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor], args: argparse.Namespace,
    argv: Sequence[str],
) -> dict[str, Any]:
    """Time and count a full patching probe run as separate calls and with shared unpatched runs."""
    device = torch.device(args.device)
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}

    def one_forward() -> None:
        with torch.no_grad():
            reference(**inputs).logits.float().log_softmax(-1)

    methods: dict[str, Callable[[], Any]] = {**probe_methods(policy, reference, batch), "1 forward": one_forward}
    counts, records = {}, {}
    for name in ("separate calls", "shared"):
        with counting(policy, reference) as counted:
            records[name] = methods[name]()
        counts[name] = counted
    diff = _max_diff(records["shared"], {k: records["separate calls"][k] for k in records["shared"]})
    times = interleaved(methods, args.reps, device)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    memory = {name: memory_of(name, argv) for name in counts} if not args.no_memory else {}
    unit = 2 * args.pairs * args.layers
    rows = [
        [name, counts[name]["forwards"], f"{counts[name]['block_rows'] / unit:.1f}",
         f"{median[name] / median['1 forward']:.2f}", f"{median[name] * 1000:.0f}",
         f"{memory[name]:.0f}" if memory.get(name) is not None else "n/a"]
        for name in ("separate calls", "shared")
    ]
    low_rank = records["shared"]["low_rank"]
    print(
        f"\nFull patching probe (SpinalConfig defaults: exact both directions, low rank at layers "
        f"{low_rank['layers']} with k = {low_rank['ranks']}, LASSO, attribution; 1 backward in both)"
    )
    print(_table(["method", "model forwards", "block fwd-equiv", "fwd-equiv (time)", "median ms", "peak MiB"], rows))
    ratio = median["separate calls"] / median["shared"]
    saved = counts["separate calls"]["forwards"] - counts["shared"]["forwards"]
    print(f"shared vs separate calls: {ratio:.2f}× faster, {saved} fewer model forwards, max |Δ| {diff:.1e}")
    return {"median_s": median, "times_s": times, "counts": counts, "speedup": ratio, "max_abs_diff": diff,
            "peak_mib": memory}


# ---------------------------------------------------------------------------------------------------
# Report


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def method_comparison(
    policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor], args: argparse.Namespace,
    argv: Sequence[str],
) -> dict[str, Any]:
    """The first table: exact patching implementations side by side."""
    try:
        import nnsight  # noqa: F401

        with_nnsight = not args.no_peer
    except ImportError:
        with_nnsight = False
    device = torch.device(args.device)
    methods = make_methods(policy, reference, batch, with_nnsight)
    outputs = {name: fn() for name, fn in methods.items()}  # warm-up, and the numbers compared
    naive = outputs["naive loop"]
    exact, single, attribution = outputs["ours"], outputs["ours, 1 forward"], outputs["attribution"]
    diffs = {
        "ours": float((exact.per_example - naive).abs().max()),
        "ours, 1 forward": float((single.per_example - naive).abs().max()),
        "naive loop": 0.0,
    }
    if with_nnsight:
        diffs["nnsight loop"] = float((outputs["nnsight loop"] - naive).abs().max())
    attribution = attribution_patching(policy, reference, batch, exact=exact)
    times = interleaved(methods, args.reps, device)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    memory = {name: memory_of(name, argv) for name in methods} if not args.no_memory else {}
    passes = {
        "ours": f"{exact.forwards} (≈{exact.forward_equivalents:.1f} fwd of blocks)",
        "ours, 1 forward": f"{single.forwards} (≈{single.forward_equivalents:.1f} fwd of blocks)",
        "naive loop": f"{args.layers + 2}",
        "nnsight loop": f"{args.layers + 2}",
        "attribution": f"{attribution.forwards} fwd + {attribution.backwards} bwd",
        "1 forward": "1",
    }
    rows = []
    for name in methods:
        rows.append([
            name,
            passes[name],
            f"{median[name] / median['1 forward']:.2f}",
            f"{median[name] * 1000:.0f}",
            f"{median['naive loop'] / median[name]:.2f}×" if name != "1 forward" else "",
            f"{diffs[name]:.1e}" if name in diffs else "",
            f"{memory[name]:.0f}" if memory.get(name) is not None else "n/a",
        ])
    header = ["method", "model passes", "fwd-equiv (time)", "median ms", "vs naive", "max |Δ| vs naive",
              "peak MiB"]
    print(_table(header, rows))
    speedup = median["naive loop"] / median["ours"]
    attr_fe = median["attribution"] / median["1 forward"]
    print(
        f"\nours vs naive loop: {speedup:.2f}× faster (target ≥ 3×), max |Δ| {diffs['ours']:.1e}; "
        f"attribution: {attr_fe:.2f} forward-equivalents (target ≤ 3), Spearman ρ with exact = "
        f"{attribution.spearman if attribution.spearman is None else round(attribution.spearman, 3)}"
    )
    print(f"normalized effect per layer (ours): {[round(v, 3) for v in exact.normalized_effect.tolist()]}")
    return {
        "median_s": median, "times_s": times, "max_abs_diff": diffs, "peak_mib": memory,
        "speedup_vs_naive": speedup, "attribution_forward_equivalents": attr_fe,
        "spearman": attribution.spearman, "exact": exact.to_dict(), "attribution": attribution.to_dict(),
    }


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    policy, reference = build_models(args)
    batch = build_batch(args)
    layout = resolve_layout(reference)
    params = sum(p.numel() for p in reference.parameters())
    print(
        f"llama h{args.hidden} × {layout.num_layers} layers, V {args.vocab}, {params / 1e6:.1f}M params, "
        f"{args.device}/{args.dtype}, K={args.pairs} pairs (2K={2 * args.pairs} rows) × T={args.seq}, "
        f"{torch.get_num_threads()} threads, {args.reps} interleaved reps"
    )
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "memory_method"}}
    if not args.probe_only:
        results.update(method_comparison(policy, reference, batch, args, argv))
    if not args.no_probe:
        results["full_probe"] = probe_comparison(policy, reference, batch, args, argv)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: h64 × 6 layers, V 1024, K 4, T 32")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default: cpu)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--layers", type=int, default=None, help="decoder blocks (default 12; quick 6)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size (default 128; quick 64)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary (default 4096; quick 1024)")
    parser.add_argument("--pairs", type=int, default=None, help="K preference pairs (default 8; quick 4)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 48; quick 32)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved timed reps (default 5; quick 2)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default on CPU: 1 — see the module docstring; 0: torch's default, all cores)",
    )
    parser.add_argument("--no-peer", action="store_true", help="leave out the nnsight loop")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-method memory subprocesses")
    parser.add_argument("--probe-only", action="store_true", help="only the full-probe comparison (second table)")
    parser.add_argument("--no-probe", action="store_true", help="leave out the full-probe comparison")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--memory-method", default=None, help=argparse.SUPPRESS)  # internal: child process
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"layers": (12, 6), "hidden": (128, 64), "vocab": (4096, 1024), "pairs": (8, 4), "seq": (48, 32),
                "reps": (5, 2)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    if args.memory_method:
        print(json.dumps(memory_child(args)))
        return
    start = time.perf_counter()
    results = run(args, argv)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
