"""Lightning under FSDP with the ``LightningModule`` as the sharded root, on 2 gloo CPU ranks with
``SpinalLightningCallback`` attached: Lightning's ``FSDPStrategy`` (FSDP1, ``use_orig_params`` True and False,
decoder layers auto-wrapped) and ``ModelParallelStrategy`` with ``fully_shard`` on the decoder layers and the
``LightningModule``. The root unit owns the policy's embedding, final norm and unembedding; the callback probes
``pl_module.policy`` through that root (``spinal_callback.model.sharding.enclosed``). Training runs with no failed
probe, and the depth traces and probe-pair signals rank 0 writes equal single-process probes of the same weights
within 1e-4: the initial ones at step 0, the gathered full state dict at the last step; with a reference (the DPO
modules), so does the patching probe at the last step (exact both ways, low-rank, LASSO, attribution).

Lightning refuses ``FSDPStrategy`` on CPU; the script's ``CpuFSDPStrategy`` works around it (see its docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")

from .ranks import check_rank0_trace_file, run_two_ranks, without_update_size
from .ranks import close as _close

SCRIPT = Path(__file__).with_name("lightning_fsdp_script.py")
MAX_STEPS = 3


def _run(tmp_path: Path, kind: str) -> list[dict]:
    return run_two_ranks(SCRIPT, tmp_path, kind, NODE_RANK="0")


def _measured(result: dict) -> list[dict]:
    return [{k: s[k] for k in ("step", "trace", "signals")} for s in without_update_size(result["seen"])]


@pytest.mark.parametrize("kind", ["fsdp1-orig", "fsdp1-flat", "fsdp2"])
def test_lightning_fsdp_root_probes_the_policy_like_a_single_process(tmp_path: Path, kind: str) -> None:
    ranks = _run(tmp_path, kind)
    steps = list(range(MAX_STEPS + 1))
    for rank, result in enumerate(ranks):
        assert result["rank"] == rank and result["global_step"] == MAX_STEPS
        # the strategy's model is the FSDP root around the LightningModule: FSDP1's wrapper, or the module itself
        assert result["strategy_model"] == ("FSDPRootDPOModule" if kind == "fsdp2" else "FullyShardedDataParallel")
        assert result["warnings"] == [] and result["failures"] == result["patch_failures"] == 0, result["warnings"]
        assert [s["step"] for s in result["seen"]] == steps
        assert not any(s["failed"] for s in result["seen"]), [s["failure"] for s in result["seen"]]
        assert {(s["wrapper"], s["sharding"]) for s in result["seen"]} == {("EnclosedModel", kind.split("-")[0])}
    # every rank's probe is the same (the gathers are collectives); only rank 0 writes the trace file
    assert _close(_measured(ranks[0]), _measured(ranks[1]))
    records = check_rank0_trace_file(ranks, tmp_path, kind, steps)
    after = ranks[0]["after"]
    patches = [{k: v for k, v in r.items() if k not in ("type", "step")} for r in records if r["type"] == "patch"]
    if kind == "fsdp1-flat":  # no reference: no patching
        assert patches == [] and "patch" not in after
        return
    assert [r["step"] for r in records if r["type"] == "patch"] == [MAX_STEPS]
    assert {"exact", "low_rank", "lasso", "attribution"} <= set(patches[0])
    assert abs(patches[0]["exact"]["policy_to_reference"]["total_effect"]) > 1e-3  # the policy moved off the reference
    assert _close(patches[0], after["patch"])


class _FakeRoot(torch.nn.Module):
    """Stands in for an FSDP2 root (``_fsdp2_type`` is patched to this class): a container around the policy."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.calls: list[str] = []
        self.register_forward_pre_hook(lambda module, args: self.calls.append("pre"))
        self.register_forward_hook(lambda module, args, output: self.calls.append("post"))

    def forward(self, *args: object, **kwargs: object) -> object:  # never called during a probe
        raise AssertionError("the root's own forward ran")


def test_enclosed_model_runs_the_policy_through_the_root(monkeypatch: pytest.MonkeyPatch, tiny_lm: Any) -> None:
    from spinal_callback.model import sharding
    from spinal_callback.model.architectures import resolve_layout
    from spinal_callback.model.sharding_rules import check_sharded_config
    from spinal_callback.model.unwrap import unwrap_parallel

    monkeypatch.setattr(sharding, "_fsdp2_type", lambda: _FakeRoot)
    policy, other = tiny_lm("llama"), tiny_lm("llama")
    root = _FakeRoot(policy)
    # no root, a root that is not sharded, the root itself, a model outside the root: unchanged
    assert sharding.enclosed(policy, None) is policy
    assert sharding.enclosed(policy, torch.nn.ModuleList([policy])) is policy
    assert sharding.enclosed(root, root) is root
    assert sharding.enclosed(other, root) is other
    view = sharding.enclosed(policy, root)
    assert isinstance(view, sharding.EnclosedModel) and sharding.enclosed(view, root) is view
    assert sharding.sharding_of(view) == "fsdp2" and sharding.probe_root(view) is view
    with pytest.raises(ValueError, match="rollback' is not supported"):
        check_sharded_config(view, rollback=True, patching=False)
    assert unwrap_parallel(view) is policy and resolve_layout(view).model is policy
    assert [id(p) for p in view.parameters()] == [id(p) for p in policy.parameters()]  # the root's are not its own
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        expected = policy(input_ids=ids).logits
        got = view(input_ids=ids).logits
    assert torch.equal(got, expected) and root.calls == ["pre", "post"]  # the root's hooks ran around it
    assert "forward" not in vars(root)  # the redirection is undone
    with pytest.raises(AttributeError):
        view.disable_adapter  # noqa: B018 - not a PEFT model
