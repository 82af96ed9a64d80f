"""Reproduce the claims of the two papers behind spinal-callback on the tiny demo model.

Protocol (details and results in ``docs/reproductions.md``):

- **Checkpoints.** The demo's tiny 9-block Llama, pre-trained (SFT) on two-digit addition once with
  seed 0 and cached, is the starting point of every run. For each DPO seed (the seed of the
  preference-pair draw and of the trainer) it is aligned twice with the ``spinal demo`` TRL recipe and
  its defaults (120 steps, lr 5e-5): a plain run (*DPO*) and one whose learning rate is multiplied by
  30 from step 50 on (*destabilized*, ``LearningRateSpike(50, 30)``). Greedy accuracy on 500 held-out
  problems is measured for every checkpoint.
- **Probe set.** 64 held-out problems (``AdditionTask(0).eval_problems``), chosen = the right answer,
  rejected = one of :func:`~spinal_callback.demo.task.wrong_answers`, tokenized into TRL's collator
  layout. The same pairs for every checkpoint and seed.
- **SPINAL** (arXiv 2601.06238): :func:`~spinal_callback.geometry.compute_depth_trace` of SFT, DPO and
  destabilized; five band/path statistics compared with the paper's expected sign (:data:`SPINAL_CLAIMS`).
- **Alignment is Localized** (arXiv 2510.16167), SFT (reference) vs DPO (policy):
  :func:`~spinal_callback.probes.patch_layers` in both directions,
  :func:`~spinal_callback.probes.lasso_probe`, and :func:`~spinal_callback.probes.low_rank_patch` at
  the layer with the largest policy → reference patching effect.

Usage::

    python scripts/reproduce_papers.py                 # 3 seeds: ~150 s on 2 CPU cores, ~100 s once SFT is cached
    python scripts/reproduce_papers.py --quick         # 1 seed, 20 DPO steps
    python scripts/reproduce_papers.py --seeds 0 1 2 3 --out spinal_runs/repro --img-dir docs/img

Writes ``<out>/results.json`` and ``<out>/tables.md``, prints the tables, and draws
``<img-dir>/repro_spinal_depth_traces.png`` and ``<img-dir>/repro_patching.png``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import spinal_callback  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinal_callback.demo.data import task_dataset
from spinal_callback.demo.inputs import RunInputs, prepare_inputs, silence_known_warnings
from spinal_callback.demo.summary import start_end
from spinal_callback.demo.task import AdditionTask
from spinal_callback.demo.trl_recipe import build_parser, build_trainer
from spinal_callback.geometry import DepthTrace, compute_depth_trace
from spinal_callback.model.probe_batch import collate_pairs, tokenize_pairs
from spinal_callback.probes import lasso_probe, low_rank_patch, patch_layers
from spinal_callback.tools.report import agg_figure, metric_label

CHECKPOINTS = ("sft", "dpo", "destabilized")
#: The SFT model of every run is pre-trained with this seed (one cached model for all DPO seeds).
SFT_SEED = 0
#: The held-out problems of the probe set are drawn with this task seed (one probe set for all runs).
PROBE_SEED = 0
#: Depth-trace metrics drawn per layer in the SPINAL figure.
TRACE_PANELS = ("contraction", "transport", "entropy", "transport_curvature")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass(frozen=True)
class Claim:
    """One SPINAL claim as a signed comparison of a depth-trace statistic between two checkpoints.

    Attributes:
        key: stable name (``results.json``).
        text: the claim in words.
        statistic: depth trace → number.
        before, after: the checkpoints compared (``after − before`` is the reported change).
        sign: the sign of ``after − before`` the paper predicts (+1 or −1).
    """

    key: str
    text: str
    statistic: Callable[[DepthTrace], float]
    before: str
    after: str
    sign: int


#: The claims tested, fixed before any run (statistics of the default depth trace, bands = thirds).
SPINAL_CLAIMS = (
    Claim("late_contraction_rises", "(a) late-band contraction α rises, SFT → DPO",
          lambda t: t.bands["late"]["contraction"], "sft", "dpo", +1),
    Claim("late_transport_falls", "(b) late-band transport 𝓛 falls, SFT → DPO",
          lambda t: t.bands["late"]["transport"], "sft", "dpo", -1),
    Claim("late_transport_curvature_higher", "(c) late-band transport curvature κ^𝓛 higher, destabilized vs DPO",
          lambda t: t.bands["late"]["transport_curvature"], "dpo", "destabilized", +1),
    Claim("hidden_curvature_higher", "(c) mean hidden curvature κ^h higher, destabilized vs DPO",
          lambda t: _nanmean(t.hidden_curvature), "dpo", "destabilized", +1),
    Claim("entropy_higher", "(c) mean lens entropy E higher, destabilized vs DPO",
          lambda t: _nanmean(t.entropy), "dpo", "destabilized", +1),
)


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def recipe_args(args: argparse.Namespace, seed: int, output_dir: Path, lr_spike: str | None) -> argparse.Namespace:
    """The ``spinal demo`` recipe's flags for one DPO run (its defaults except the ones set here)."""
    flags = [
        "--no-spinal", "--seed", str(seed), "--output-dir", str(output_dir), "--cache-dir", str(args.cache_dir),
        "--threads", str(args.threads), "--max-steps", str(args.max_steps), "--num-pairs", str(args.num_pairs),
        "--eval-size", str(args.eval_size), "--sft-max-steps", str(args.sft_max_steps),
    ]
    return build_parser().parse_args([*flags, "--lr-spike", lr_spike] if lr_spike else flags)


def load_sft(args: argparse.Namespace) -> RunInputs:
    """The cached SFT model (pre-trained on the first call) with the seed-0 data and eval problems.

    ``prepare_inputs`` seeds the pre-training with ``--seed`` (it is part of the cache key), so the
    SFT model is always built with :data:`SFT_SEED`; :func:`train_dpo` swaps in each seed's pairs.
    """
    return prepare_inputs(recipe_args(args, SFT_SEED, Path(args.out) / "runs" / "sft", None))


def train_dpo(args: argparse.Namespace, sft: RunInputs, seed: int, lr_spike: str | None) -> tuple[nn.Module, Any]:
    """Align a copy of the SFT model with the TRL recipe; returns ``(policy, trainer log history)``.

    The DPO seed sets the preference pairs (``AdditionTask(seed).preference_pairs``) and the trainer's
    seed (data order); the SFT model, the eval problems and every other setting are shared.
    """
    from transformers.trainer_callback import ProgressCallback

    name = "destabilized" if lr_spike else "dpo"
    run_args = recipe_args(args, seed, Path(args.out) / "runs" / f"seed{seed}_{name}", lr_spike)
    pairs = AdditionTask(seed=seed).preference_pairs(run_args.num_pairs)
    inputs = dataclasses.replace(sft, model=copy.deepcopy(sft.model), train_dataset=task_dataset(pairs))
    with silence_known_warnings():
        trainer, _ = build_trainer(run_args, inputs)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    return trainer.model.eval(), trainer.state.log_history


def probe_batch(tokenizer: Any, num_pairs: int) -> dict[str, torch.Tensor]:
    """``num_pairs`` held-out pairs (``AdditionTask(PROBE_SEED).eval_pairs``) in TRL's collator layout."""
    pairs = AdditionTask(seed=PROBE_SEED).eval_pairs(num_pairs)
    return collate_pairs(tokenize_pairs(pairs, tokenizer), pad_token_id=tokenizer.pad_token_id)


# ---------------------------------------------------------------------------------------------------
# Analyses


def depth_trace(model: nn.Module, batch: dict[str, torch.Tensor]) -> DepthTrace:
    """The default depth trace of ``model`` on the probe batch (completion tokens)."""
    return compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])


def spinal_claims(traces: dict[str, DepthTrace]) -> dict[str, dict[str, Any]]:
    """Every :data:`SPINAL_CLAIMS` entry on one seed's traces: the two values, the change, the verdict."""
    out = {}
    for claim in SPINAL_CLAIMS:
        before, after = claim.statistic(traces[claim.before]), claim.statistic(traces[claim.after])
        change = after - before
        out[claim.key] = {
            "before": before, "after": after, "change": change,
            "matches": bool(math.isfinite(change) and change * claim.sign > 0),
        }
    return out


def localization(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The "Alignment is Localized" probes of one policy/reference pair.

    Patching block ℓ's output at every position carries the policy's changes to the embeddings and to
    blocks 1..ℓ, so the policy → reference profile is cumulative; the *increment*
    ``normalized_effect_ℓ − normalized_effect_{ℓ−1}`` (0 before layer 1, so layer 1's includes the
    embeddings) is what block ℓ adds.

    Returns:
        ``policy_to_reference`` / ``reference_to_policy`` (``PatchResult.to_dict()``), ``top_layer``
        (largest ``|effect|`` policy → reference) and its ``top_relative_depth`` (layer / L),
        ``increments`` and ``top_increment_layer`` (the largest one), ``lasso`` (``LassoResult.to_dict()``)
        and ``low_rank`` (``LowRankResult.to_dict()`` at ``top_layer`` and ``top_increment_layer``).
    """
    forward = patch_layers(policy, reference, batch, direction="policy_to_reference")
    reverse = patch_layers(policy, reference, batch, direction="reference_to_policy")
    top = forward.layers[int(forward.effect.abs().argmax())]
    cumulative = forward.normalized_effect.nan_to_num()
    increments = cumulative - torch.cat([cumulative.new_zeros(1), cumulative[:-1]])
    step = forward.layers[int(increments.argmax())]
    return {
        "policy_to_reference": forward.to_dict(),
        "reference_to_policy": reverse.to_dict(),
        "top_layer": top,
        "top_relative_depth": top / len(forward.layers),
        "increments": increments.tolist(),
        "top_increment_layer": step,
        "lasso": lasso_probe(policy, reference, batch).to_dict(),
        "low_rank": low_rank_patch(policy, reference, batch, layers=sorted({top, step})).to_dict(),
    }


def agreement(per_seed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per claim: the change in every seed, how many seeds match the paper's sign, and the mean change."""
    out = {}
    for claim in SPINAL_CLAIMS:
        changes = [seed["spinal"][claim.key]["change"] for seed in per_seed.values()]
        matches = sum(seed["spinal"][claim.key]["matches"] for seed in per_seed.values())
        out[claim.key] = {
            "claim": claim.text, "expected_sign": claim.sign, "changes": changes,
            "mean_change": _nanmean(changes), "seeds_matching": matches, "seeds": len(changes),
        }
    return out


def run_seed(args: argparse.Namespace, sft: RunInputs, sft_trace: DepthTrace, batch: dict[str, torch.Tensor],
             seed: int) -> tuple[dict[str, Any], dict[str, DepthTrace]]:
    """Train the DPO and destabilized runs of one seed and run both analyses."""
    spike = f"{args.spike_step}:{args.spike_factor:g}"
    models = {"sft": sft.model}
    histories = {}
    for name, lr_spike in (("dpo", None), ("destabilized", spike)):
        started = time.perf_counter()
        models[name], histories[name] = train_dpo(args, sft, seed, lr_spike)
        print(f"  seed {seed}: {name} trained in {time.perf_counter() - started:.1f}s", flush=True)
    traces = {"sft": sft_trace, **{name: depth_trace(models[name], batch) for name in ("dpo", "destabilized")}}
    accuracy = {name: sft.accuracy(model) for name, model in models.items()}
    result = {
        "accuracy": accuracy,
        "dpo_metrics": {
            name: {key: start_end(history, key) for key in ("rewards/accuracies", "rewards/margins", "loss")}
            for name, history in histories.items()
        },
        "traces": {name: trace.to_dict() for name, trace in traces.items()},
        "spinal": spinal_claims(traces),
        "patching": localization(models["dpo"], sft.model, batch),
    }
    return result, traces


# ---------------------------------------------------------------------------------------------------
# Tables


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    align = "|---|" + "---:|" * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", align, *("| " + " | ".join(row) + " |" for row in rows)]


def markdown_tables(results: dict[str, Any]) -> str:
    """The result tables (accuracy, SPINAL claims, patching) as markdown."""
    seeds = results["seeds"]
    out = ["### Greedy accuracy (held-out problems)", ""]
    out += _table(["seed", *CHECKPOINTS], [
        [s, *(f"{100 * r['accuracy'][c]:.1f}%" for c in CHECKPOINTS)] for s, r in seeds.items()
    ])
    out += ["", "### SPINAL claims: value before → after (change) per seed", ""]
    rows = []
    for claim in SPINAL_CLAIMS:
        summary = results["claims"][claim.key]
        cells = [
            f"{_fmt(r['spinal'][claim.key]['before'])} → {_fmt(r['spinal'][claim.key]['after'])} "
            f"({_fmt(r['spinal'][claim.key]['change'], 3)})" for r in seeds.values()
        ]
        sign = "+" if claim.sign > 0 else "−"
        rows.append([claim.text, sign, *cells, f"{summary['seeds_matching']}/{summary['seeds']}"])
    out += _table(["claim", "expected sign", *(f"seed {s}" for s in seeds), "seeds matching"], rows)
    first = next(iter(seeds.values()))["patching"]
    layers = first["policy_to_reference"]["layers"]
    out += ["", "### Patching, SFT (reference) vs DPO (policy): normalized effect per layer", ""]
    header = ["layer"] + [f"seed {s} {arrow}" for s in seeds for arrow in ("pol→ref", "ref→pol")]
    rows = []
    for i, layer in enumerate(layers):
        cells = [
            _fmt(r["patching"][direction]["normalized_effect"][i], 3)
            for r in seeds.values() for direction in ("policy_to_reference", "reference_to_policy")
        ]
        rows.append([str(layer), *cells])
    rows.append(["total: source − base margin", *(
        _fmt(r["patching"][direction]["total_effect"], 3)
        for r in seeds.values() for direction in ("policy_to_reference", "reference_to_policy")
    )])
    out += _table(header, rows)
    ranks = first["low_rank"]["ranks"]
    out += ["", "### Localization summary; low-rank patching: fraction of the full effect recovered", ""]
    rows = []
    for s, r in seeds.items():
        p = r["patching"]
        lasso, low = p["lasso"], p["low_rank"]
        coefs = dict(zip(lasso["layers"], lasso["coefficients"]))
        selected = ", ".join(f"{layer} ({_fmt(coefs[layer], 2)})" for layer in lasso["selected_layers"]) or "none"
        summary = [
            s, f"{p['top_layer']} ({p['top_relative_depth']:.2f})",
            f"{p['top_increment_layer']} (+{_fmt(p['increments'][p['top_increment_layer'] - 1], 2)})",
            selected, _fmt(lasso["r2"], 2),
        ]
        for i, layer in enumerate(low["layers"]):
            explained = low["variance_explained"][i][ranks.index(4)] if 4 in ranks else None
            rows.append([*summary, str(layer), *(_fmt(f, 3) for f in low["fraction_recovered"][i]), _fmt(explained, 2)])
            summary = [""] * len(summary)
    out += _table(
        ["seed", "top layer (depth)", "largest increment", "LASSO layers (coef)", "LASSO R²", "low-rank layer",
         *(f"k={k}" for k in ranks), "variance at k=4"],
        rows,
    )
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Plots

_COLORS = {"sft": "tab:gray", "dpo": "tab:blue", "destabilized": "tab:red"}


def plot_depth_traces(traces: dict[int, dict[str, DepthTrace]], path: Path) -> Path:
    """Per-layer α, 𝓛, E, κ^𝓛 of the three checkpoints: first seed thick, the others thin; late band shaded."""
    fig = agg_figure(16, 4.2, left=0.04, right=0.99, bottom=0.14, top=0.84, wspace=0.25)
    axes = fig.subplots(1, len(TRACE_PANELS))
    first = next(iter(traces))
    for ax, metric in zip(axes, TRACE_PANELS):
        for seed, per_checkpoint in traces.items():
            for name, trace in per_checkpoint.items():
                if name == "sft" and seed != first:
                    continue  # one SFT model for every seed
                main = seed == first
                ax.plot(trace.layers, trace.metric(metric), color=_COLORS[name], lw=2.0 if main else 0.8,
                        alpha=1.0 if main else 0.5, marker="." if main else None,
                        label=name if main else None)
        late = traces[first]["sft"].bands["late"]["layers"]
        ax.axvspan(late[0] - 0.5, late[1] + 0.5, color="0.9", zorder=0)
        ax.set_title(metric_label(metric))
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0].legend(title=f"seed {first} (thin: other seeds)", fontsize=8)
    fig.suptitle("SPINAL depth traces of the tiny demo model (late band shaded)")
    fig.savefig(path, dpi=100)
    return path


def plot_patching(seeds: dict[str, dict[str, Any]], path: Path) -> Path:
    """Normalized patching effect per layer (both directions), LASSO coefficients, low-rank recovery."""
    fig = agg_figure(16, 4.2, left=0.04, right=0.99, bottom=0.14, top=0.84, wspace=0.25)
    axes = fig.subplots(1, 4)
    for i, (s, r) in enumerate(seeds.items()):
        p, color = r["patching"], f"C{i}"
        for ax, direction in zip(axes[:2], ("policy_to_reference", "reference_to_policy")):
            ax.plot(p[direction]["layers"], p[direction]["normalized_effect"], marker=".", color=color,
                    label=f"seed {s}")
        lasso = p["lasso"]
        axes[2].plot(lasso["layers"], lasso["coefficients"], marker="o", color=color, label=f"seed {s}")
        low = p["low_rank"]
        for i, layer in enumerate(low["layers"]):
            axes[3].plot(low["ranks"], low["fraction_recovered"][i], marker=".", color=color,
                         ls="-" if layer == p["top_layer"] else "--", label=f"seed {s}, layer {layer}")
    titles = ("policy → reference", "reference → policy", "LASSO coefficient (standardized)",
              "low-rank patch (solid: top layer)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:3]:
        ax.set_xlabel("layer")
    axes[0].set_ylabel("normalized effect")
    axes[3].set_xscale("log", base=2)
    axes[3].set_xlabel("k (top singular directions)")
    axes[3].set_ylabel("fraction of the full effect")
    fig.suptitle("Alignment-is-Localized probes, SFT (reference) vs DPO (policy)")
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------------------
# Command line

_QUICK = {"seeds": [0], "max_steps": 20, "spike_step": 10, "probe_pairs": 16}
_FULL = {"seeds": [0, 1, 2], "max_steps": 120, "spike_step": 50, "probe_pairs": 64}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="DPO seeds (default: 0 1 2).")
    parser.add_argument("--quick", action="store_true",
                        help=f"Smoke run: {', '.join(f'{k}={v}' for k, v in _QUICK.items())}.")
    parser.add_argument("--out", default="spinal_runs/repro", help="results.json, tables.md and the DPO runs.")
    parser.add_argument("--img-dir", default="docs/img", help="Where the repro_*.png plots go (default: docs/img).")
    parser.add_argument("--cache-dir", default=None, help="SFT model cache (default: <out>/sft_cache).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1).")
    parser.add_argument("--max-steps", type=int, default=None, help="DPO steps (default: 120).")
    parser.add_argument("--spike-step", type=int, default=None, help="Step of the learning-rate spike (default: 50).")
    parser.add_argument("--spike-factor", type=float, default=30.0, help="Learning-rate factor (default: 30).")
    parser.add_argument("--probe-pairs", type=int, default=None, help="Held-out probe pairs (default: 64).")
    parser.add_argument("--eval-size", type=int, default=500,
                        help="Held-out accuracy problems (default: 500; part of the SFT cache key).")
    parser.add_argument("--num-pairs", type=int, default=2048, help="DPO training pairs (default: 2048).")
    parser.add_argument("--sft-max-steps", type=int, default=800, help="Most SFT steps (default: 800).")
    args = parser.parse_args(argv)
    for key, value in (_QUICK if args.quick else _FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cache_dir = args.cache_dir or str(Path(args.out) / "sft_cache")
    if not 1 <= args.spike_step <= args.max_steps:
        parser.error(f"--spike-step must be in 1..--max-steps ({args.max_steps}), got {args.spike_step}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the reproduction; returns what it writes to ``<out>/results.json``."""
    import datasets

    started = time.perf_counter()
    args = parse_args(argv)
    datasets.disable_progress_bars()  # TRL maps the pairs of every run: one bar each otherwise
    out, img = Path(args.out), Path(args.img_dir)
    out.mkdir(parents=True, exist_ok=True)
    img.mkdir(parents=True, exist_ok=True)
    sft = load_sft(args)
    print(f"SFT model: {sft.sft.path} ({'cached' if sft.sft.cached else f'trained in {sft.sft.seconds:.0f}s'})",
          flush=True)
    batch = probe_batch(sft.tokenizer, args.probe_pairs)
    sft_trace = depth_trace(sft.model, batch)
    per_seed: dict[str, dict[str, Any]] = {}
    traces: dict[int, dict[str, DepthTrace]] = {}
    for seed in args.seeds:
        per_seed[str(seed)], traces[seed] = run_seed(args, sft, sft_trace, batch, seed)
    results: dict[str, Any] = {
        "config": {
            "seeds": args.seeds, "sft_seed": SFT_SEED, "probe_seed": PROBE_SEED, "probe_pairs": args.probe_pairs,
            "max_steps": args.max_steps, "lr_spike": [args.spike_step, args.spike_factor],
            "eval_size": args.eval_size, "num_pairs": args.num_pairs, "threads": args.threads,
            "quick": args.quick, "sft_cached": sft.sft.cached, "sft_seconds": sft.sft.seconds,
            "learning_rate": sft.learning_rate,
            "argv": list(sys.argv[1:] if argv is None else argv),
        },
        "seeds": per_seed,
        "claims": agreement(per_seed),
    }
    plots = [plot_depth_traces(traces, img / "repro_spinal_depth_traces.png"),
             plot_patching(per_seed, img / "repro_patching.png")]
    results["plots"] = [str(p) for p in plots]
    results["wall_seconds"] = time.perf_counter() - started
    tables = markdown_tables(results) + f"\nWall time: {results['wall_seconds']:.0f}s\n"
    (out / "tables.md").write_text(tables)
    (out / "results.json").write_text(json.dumps(_plain(results), indent=1, allow_nan=False))
    print(tables)
    return results


def _plain(value: Any) -> Any:
    """``value`` with NaN/±inf floats as ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    main()
