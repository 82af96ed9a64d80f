"""The sharding helpers on one process: detection, the FSDP1 root kept, the head stub, the ZeRO-3 gather
(through a stand-in ``deepspeed`` module that records what the documented API is called with), what the
patching probes accept, and their sharded code path on an unsharded model."""

from __future__ import annotations

import contextlib
import sys
import types

import pytest
import torch

from spinal_callback.model.architectures import resolve_layout
from spinal_callback.model.sharding import (
    gathered_head,
    probe_root,
    rank_zero_choice,
    sharding_of,
    stubbed_head,
)
from spinal_callback.model.sharding_rules import check_patching_sharding, check_sharded_config
from tests.conftest import tiny_causal_lm


def test_an_unsharded_model_is_left_alone() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    assert sharding_of(model) is None
    assert probe_root(model) is model
    assert check_sharded_config(model, rollback=True, patching=True) is None
    with gathered_head(model, resolve_layout(model)):
        pass


def test_the_head_stub_returns_one_column_and_is_removed() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    ids = torch.tensor([[1, 2, 3]])
    with stubbed_head(layout), torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 3, 1) and not logits.any()
    assert "forward" not in layout.unembed.__dict__
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape[-1] == layout.vocab_size


def _zero3(model: torch.nn.Module) -> None:
    for param in model.parameters():
        param.ds_id = id(param)  # type: ignore[attr-defined]
        param.ds_status = "NOT_AVAILABLE"  # type: ignore[attr-defined]


def test_zero3_gathers_the_head_through_gathered_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    calls: list[tuple[list[torch.Tensor], object]] = []

    @contextlib.contextmanager
    def gathered_parameters(params, modifier_rank=None):  # type: ignore[no-untyped-def]
        calls.append((list(params), modifier_rank))
        yield

    fake = types.ModuleType("deepspeed")
    fake.zero = types.SimpleNamespace(GatheredParameters=gathered_parameters)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    _zero3(model)
    assert sharding_of(model) == "zero3"
    with gathered_head(model, layout):
        pass
    (params, rank), = calls
    expected = {id(p) for m in (layout.final_norm, layout.unembed) for p in m.parameters()}
    assert {id(p) for p in params} == expected and rank is None
    with pytest.raises(ValueError, match=r"DeepSpeed ZeRO-3.*on_alert=\('log', 'stop'\)"):
        check_sharded_config(model, rollback=True, patching=False)
    with pytest.raises(ValueError, match="patch_interval=0"):
        check_sharded_config(model, rollback=False, patching=True)
    assert check_sharded_config(model, rollback=False, patching=False) == "zero3"


def test_vocabulary_comes_from_the_config_when_the_weight_is_a_shard() -> None:
    model = tiny_causal_lm("llama", num_layers=2)
    layout = resolve_layout(model)
    vocab = layout.vocab_size
    layout.unembed.weight = torch.nn.Parameter(torch.empty(0))  # FSDP's flat, empty view on a rank
    assert layout.vocab_size == vocab == model.config.vocab_size


def test_patching_runs_under_fsdp_and_is_refused_under_zero3_with_what_works() -> None:
    for kind in (None, "fsdp1", "fsdp2"):
        check_patching_sharding(kind)
    with pytest.raises(ValueError, match=r"ZeRO-3.*FSDP2 \(fully_shard\).*patch_interval=0"):
        check_patching_sharding("zero3")


def test_the_patching_probe_functions_refuse_a_zero3_model() -> None:
    from spinal_callback.probes import patch_layers
    from tests.probes._models import perturbed_pair, probe_batch

    policy, reference = perturbed_pair(num_layers=2)
    _zero3(reference)
    with pytest.raises(ValueError, match="DeepSpeed ZeRO-3"):
        patch_layers(policy, reference, probe_batch(num_pairs=2))


def test_a_choice_is_kept_without_a_process_group() -> None:
    assert rank_zero_choice([3, 1], None) == [3, 1]
    assert rank_zero_choice([3, 1], "fsdp2") == [3, 1]  # no process group: nothing to agree with


def test_the_sharded_patching_path_gives_the_same_outcome_with_one_head_gather_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs marked sharded (the model itself is not, so the gathers are no-ops) take the sharded path — full
    forwards with the unembedding stubbed, patched forwards scored after the last one — with the same result,
    and gather each run's head once per unpatched forward and once per patched experiment."""
    import spinal_callback.model.pairing as pairing
    from spinal_callback import SpinalConfig
    from spinal_callback.model.runner import ModelRun
    from spinal_callback.probes.protocol import run_patching_probe
    from tests.probes._models import perturbed_pair, probe_batch

    policy, reference = perturbed_pair(num_layers=3)
    batch = probe_batch(num_pairs=3)
    config = SpinalConfig(patch_interval=1, patch_low_rank_layers=2, patch_ranks=(1, 4))
    plain = run_patching_probe(policy, reference, batch, config)
    gathers: list[str] = []
    head = ModelRun.head

    def counted(run: ModelRun) -> contextlib.AbstractContextManager[object]:
        gathers.append(f"{run.name}:{run.sharded}")
        return head(run)

    monkeypatch.setattr(pairing, "sharding_of", lambda model: "fsdp2")
    monkeypatch.setattr(ModelRun, "head", counted)
    sharded = run_patching_probe(policy, reference, batch, config)
    # unpatched policy + reference (attribution's backward included), 2 exact directions, 1 low-rank experiment
    assert sorted(gathers) == sorted(["policy:fsdp2", "reference:fsdp2", "reference:fsdp2", "policy:fsdp2",
                                      "reference:fsdp2"])
    assert sharded.scalars.keys() == plain.scalars.keys()
    for tag, value in plain.scalars.items():
        assert sharded.scalars[tag] == pytest.approx(value, rel=1e-5, abs=1e-6), tag
