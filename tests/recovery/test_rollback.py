"""Snapshots and rollback: bit-exact restore, determinism, atomic disk writes, limits and errors."""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from spinal_callback.recovery import snapshots as snapshots_module
from spinal_callback.recovery.rollback import (
    NoSnapshotError,
    RollbackConfig,
    RollbackLimitReached,
    RollbackManager,
    RollbackRecord,
    SnapshotMismatchError,
    SnapshotStore,
    SnapshotWriteError,
    capture_state,
    restore_state,
)
from spinal_callback.recovery.training_state import capture_rng, restore_rng

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TinyNet(nn.Module):
    """Embedding (optionally frozen) → MLP with dropout, so RNG state matters for the losses."""

    def __init__(self, hidden: int = 16, freeze_embed: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(8, hidden)
        self.body = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(0.2), nn.Linear(hidden, 4))
        self.register_buffer("scale", torch.ones(4))
        self.embed.requires_grad_(not freeze_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(torch.relu(self.embed(x))) * self.scale


def make_run(seed: int = 0, hidden: int = 16, freeze_embed: bool = False):
    torch.manual_seed(seed)
    model = TinyNet(hidden, freeze_embed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:], "lr": 3e-3}], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3) * 0.9**s)
    return model, optimizer, scheduler


BATCHES = [
    (torch.randn(6, 8, generator=torch.Generator().manual_seed(i)),
     torch.randn(6, 4, generator=torch.Generator().manual_seed(100 + i)))
    for i in range(12)
]


def train(model, optimizer, scheduler, batches) -> list[float]:
    losses = []
    model.train()
    for x, y in batches:
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def optimizer_tensors(optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state_dict()["state"].values() for v in state.values()
            if isinstance(v, torch.Tensor)]


# ---------------------------------------------------------------------------------------------- restore
def test_restore_is_bit_exact_and_the_snapshot_stays_reusable() -> None:
    model, optimizer, scheduler = make_run()
    train(model, optimizer, scheduler, BATCHES[:3])
    snap = capture_state(model, optimizer, scheduler)
    expected = copy.deepcopy(snap)
    assert snap["trainable_only"] and set(snap["model"]) == {n for n, _ in model.named_parameters()}
    live_params = {n: p for n, p in model.named_parameters()}
    assert all(live_params[n].data_ptr() != t.data_ptr() for n, t in snap["model"].items())
    for _ in range(2):  # twice: restoring must not alias the snapshot to the live optimizer state
        train(model, optimizer, scheduler, BATCHES[3:7])
        assert not torch.equal(model.body[0].weight, expected["model"]["body.0.weight"])
        assert all(p.grad is not None for p in model.parameters())
        restore_state(snap, model, optimizer, scheduler)
        assert all(p.grad is None for p in model.parameters())  # no stale gradients on restored weights
        for name, param in model.named_parameters():
            assert torch.equal(param, expected["model"][name]), name
        live, saved = optimizer_tensors(optimizer), [
            v for s in expected["optimizer"]["state"].values() for v in s.values() if isinstance(v, torch.Tensor)
        ]
        assert len(live) == len(saved) == 3 * len(list(model.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(live, saved))
        assert scheduler.state_dict() == expected["scheduler"]
        assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in expected["optimizer"]["param_groups"]]


@pytest.mark.parametrize("fresh_objects", [False, True])
def test_training_after_restore_repeats_the_continued_run(fresh_objects: bool) -> None:
    model, optimizer, scheduler = make_run()
    train(model, optimizer, scheduler, BATCHES[:3])
    snap = capture_state(model, optimizer, scheduler)
    continued = train(model, optimizer, scheduler, BATCHES[3:9])
    torch.rand(5)  # disturb the RNG: dropout masks must come back from the snapshot
    if fresh_objects:  # e.g. after a restart: new model / optimizer / scheduler, other initial weights
        model, optimizer, scheduler = make_run(seed=123)
    restore_state(snap, model, optimizer, scheduler)
    assert train(model, optimizer, scheduler, BATCHES[3:9]) == continued


def test_trainable_only_captures_and_restores_only_trainable_tensors() -> None:
    model, optimizer, scheduler = make_run(freeze_embed=True)
    snap = capture_state(model, optimizer, scheduler)
    assert set(snap["model"]) == {"body.0.weight", "body.0.bias", "body.3.weight", "body.3.bias"}
    assert all(name.startswith("body.") for name, *_ in snap["fingerprint"])
    with torch.no_grad():
        model.embed.weight.add_(1.0)  # e.g. a frozen base that changed by other means
        model.scale.mul_(2.0)
    frozen, buffer = model.embed.weight.clone(), model.scale.clone()
    train(model, optimizer, scheduler, BATCHES[:2])
    restore_state(snap, model, optimizer, scheduler)
    assert torch.equal(model.embed.weight, frozen) and torch.equal(model.scale, buffer)
    assert torch.equal(model.body[0].weight, snap["model"]["body.0.weight"])

    full = capture_state(model, trainable_only=False)
    assert {"embed.weight", "scale"} <= set(full["model"]) and not full["trainable_only"]
    with torch.no_grad():
        model.embed.weight.zero_()
        model.scale.zero_()
    restore_state(full, model)
    assert torch.equal(model.embed.weight, frozen) and torch.equal(model.scale, buffer)


def test_lr_scale_halves_param_groups_and_scheduler() -> None:
    model, optimizer, scheduler = make_run()
    train(model, optimizer, scheduler, BATCHES[:3])
    snap = capture_state(model, optimizer, scheduler)
    twin_model, twin_optimizer, twin_scheduler = make_run()

    restore_state(snap, model, optimizer, scheduler, lr_scale=0.5)
    restore_state(snap, twin_model, twin_optimizer, twin_scheduler)  # unscaled reference
    halves = [g["lr"] for g in optimizer.param_groups]
    assert halves == pytest.approx([0.5 * g["lr"] for g in snap["optimizer"]["param_groups"]])
    assert halves == pytest.approx([0.5 * lr for lr in twin_scheduler.get_last_lr()])
    assert scheduler.get_last_lr() == pytest.approx(halves)
    assert scheduler.base_lrs == pytest.approx([0.5 * b for b in snap["scheduler"]["base_lrs"]])
    initial = [g["initial_lr"] for g in optimizer.param_groups]
    assert initial == pytest.approx([0.5 * b for b in twin_scheduler.base_lrs])
    for _ in range(3):  # the schedule goes on at half the LR
        scheduler.step()
        twin_scheduler.step()
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
            [0.5 * g["lr"] for g in twin_optimizer.param_groups]
        )
    with pytest.raises(ValueError, match="`lr_scale`"):
        restore_state(snap, model, optimizer, scheduler, lr_scale=0.0)


def test_grad_scaler_state_round_trips() -> None:
    model, optimizer, scheduler = make_run()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    x, y = BATCHES[0]
    scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
    scaler.step(optimizer)
    scaler.update()  # grows to 2048 (growth_interval=1)
    snap = capture_state(model, optimizer, scheduler, scaler)
    assert snap["scaler"]["scale"] == 2048.0
    scaler.update(new_scale=8.0)
    restore_state(snap, model, optimizer, scheduler, scaler)
    assert scaler.get_scale() == 2048.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    restore_state(capture_state(model, optimizer, scheduler, disabled), model, optimizer, scheduler, disabled)


def test_rng_restore_reproduces_random_draws() -> None:
    state = capture_rng()
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    random.random(), np.random.rand(7), torch.rand(11)
    restore_rng(state)
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])

    model, optimizer, scheduler = make_run()
    snap = capture_state(model, optimizer, scheduler)
    first = torch.randn(4)
    restore_state(snap, model, optimizer, scheduler)
    assert torch.equal(torch.randn(4), first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_restore_on_cuda_is_bit_exact_and_restores_the_cuda_rng() -> None:
    model, _, _ = make_run()
    model.cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.9**s)
    cuda_batches = [(x.cuda(), y.cuda()) for x, y in BATCHES]
    train(model, optimizer, scheduler, cuda_batches[:3])
    snap = capture_state(model, optimizer, scheduler)
    assert all(t.device.type == "cpu" for t in snap["model"].values()) and snap["rng"]["cuda"]
    expected = copy.deepcopy(snap)
    continued = train(model, optimizer, scheduler, cuda_batches[3:6])
    restore_state(snap, model, optimizer, scheduler)
    assert all(p.is_cuda and torch.equal(p.cpu(), expected["model"][n]) for n, p in model.named_parameters())
    saved = [v for st in expected["optimizer"]["state"].values() for v in st.values() if isinstance(v, torch.Tensor)]
    assert all(torch.equal(a.cpu(), b) for a, b in zip(optimizer_tensors(optimizer), saved))
    assert train(model, optimizer, scheduler, cuda_batches[3:6]) == pytest.approx(continued, rel=1e-6)
    restore_state(snap, model, optimizer, scheduler)
    draws = torch.rand(5, device="cuda")
    restore_state(snap, model, optimizer, scheduler)
    assert torch.equal(torch.rand(5, device="cuda"), draws)


def test_importing_the_core_pulls_in_no_training_framework() -> None:
    code = ("import sys, spinal_callback.early_warning.detector, spinal_callback.recovery.rollback; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'lightning', 'pytorch_lightning', 'transformers', 'trl', 'accelerate', 'peft'}); "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------- mismatches
def test_snapshot_of_a_different_model_is_refused_and_nothing_changes() -> None:
    model, optimizer, scheduler = make_run()
    train(model, optimizer, scheduler, BATCHES[:2])
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt_before = [t.clone() for t in optimizer_tensors(optimizer)]
    other_model, other_optimizer, other_scheduler = make_run(hidden=32)
    train(other_model, other_optimizer, other_scheduler, BATCHES[:2])
    alien = capture_state(other_model, other_optimizer, other_scheduler)
    with pytest.raises(SnapshotMismatchError, match=r"shape mismatch: body\.0\.bias \(snapshot \[32\] vs model "
                       r"\[16\]\).*Nothing was restored"):
        restore_state(alien, model, optimizer, scheduler)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())

    renamed = capture_state(model, optimizer, scheduler)
    renamed["model"]["head.weight"] = renamed["model"].pop("body.3.weight")
    with pytest.raises(SnapshotMismatchError, match=r"missing from the snapshot: body\.3\.weight; not in the "
                       r"model: head\.weight"):
        restore_state(renamed, model, optimizer, scheduler)

    good = capture_state(model, optimizer, scheduler)
    single_group = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(SnapshotMismatchError, match="parameters per group"):
        restore_state(good, model, single_group)
    assert all(torch.equal(p, before[n] + 1.0) for n, p in model.named_parameters())  # weights untouched
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(optimizer_tensors(optimizer), opt_before))
    with pytest.raises(SnapshotMismatchError, match="no scheduler state"):
        restore_state(capture_state(model, optimizer), model, optimizer, scheduler)


def test_wrappers_are_seen_through() -> None:
    class Wrapper(nn.Module):  # DDP-like: everything lives under .module
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner

    model, optimizer, scheduler = make_run()
    snap = capture_state(Wrapper(model), optimizer, scheduler)
    assert set(snap["model"]) == {n for n, _ in model.named_parameters()}
    restore_state(snap, model, optimizer, scheduler)

    class Owner(nn.Module):  # not a wrapper: it has parameters of its own next to .module
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner
            self.extra = nn.Parameter(torch.zeros(2))

    names = set(capture_state(Owner(model))["model"])
    assert "extra" in names and "module.body.0.weight" in names


# ------------------------------------------------------------------------------------------------ store
def test_disk_store_index_survives_reconstruction(tmp_path) -> None:
    directory = tmp_path / "spinal_snapshots"
    store = SnapshotStore("disk", str(directory), keep=3)
    for step in (0, 100, 200, 300):
        store.save(step, {"x": torch.full((3,), float(step))})
    assert store.steps() == [100, 200, 300]
    assert sorted(os.listdir(directory)) == [f"spinal-snapshot-step{s:012d}.pt" for s in (100, 200, 300)]

    reopened = SnapshotStore("disk", str(directory), keep=3)
    assert reopened.steps() == [100, 200, 300]
    step, state = reopened.latest_before(250)
    assert step == 200 and torch.equal(state["x"], torch.full((3,), 200.0))
    assert reopened.latest_before(100) is None
    assert reopened.drop_after(100) == [200, 300]
    assert SnapshotStore("disk", str(directory)).steps() == [100]
    index = json.loads(json.dumps(reopened.state_dict()))
    assert index["steps"] == [100] and index["storage"] == "disk"


def test_memory_store_keeps_the_newest(tmp_path) -> None:
    store = SnapshotStore("memory", keep=2)
    for step in (10, 20, 30):
        store.save(step, {"step": step})
    assert store.steps() == [20, 30] and store.latest_before(30) == (20, {"step": 20})
    store.load_state_dict({"steps": [20]})
    assert store.steps() == [20]


def test_disk_write_failure_raises_and_keeps_previous_snapshots(tmp_path, monkeypatch) -> None:
    store = SnapshotStore("disk", str(tmp_path), keep=3)
    store.save(100, {"x": torch.ones(2)})

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshots_module.torch, "save", disk_full)
    with pytest.raises(SnapshotWriteError, match=r"step 200.*No space left.*steps \[100\] are untouched"):
        store.save(200, {"x": torch.zeros(2)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["spinal-snapshot-step000000000100.pt"]  # no temp file left
    assert store.steps() == [100] and torch.equal(store.load(100)["x"], torch.ones(2))


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    from spinal_callback.recovery import snapshots
    mode, directory = sys.argv[1], sys.argv[2]

    def ready():
        sys.stdout.write("ready\\n")
        sys.stdout.flush()
        time.sleep(600)

    if mode == "mid_write":  # the process dies while the bytes are being written
        def slow_save(obj, f, *args, **kwargs):
            f.write(b"PK" + bytes(1 << 20))
            f.flush()
            ready()
        snapshots.torch.save = slow_save
    else:  # the file is complete but not yet renamed
        snapshots.os.replace = lambda *args, **kwargs: ready()
    snapshots.SnapshotStore("disk", directory).save(200, {"big": torch.zeros(1 << 18)})
    """
)


@pytest.mark.parametrize("mode", ["mid_write", "before_replace"])
def test_killed_snapshot_write_leaves_previous_snapshot_usable(tmp_path, mode: str) -> None:
    store = SnapshotStore("disk", str(tmp_path), keep=3)
    store.save(100, {"x": torch.arange(4.0)})
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, mode, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line == "ready\n", proc.stderr.read()
        temps = [e for e in os.listdir(tmp_path) if e.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].startswith(".") and os.path.getsize(tmp_path / temps[0]) > 0
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    reopened = SnapshotStore("disk", str(tmp_path), keep=3)
    assert reopened.steps() == [100]
    assert os.listdir(tmp_path) == ["spinal-snapshot-step000000000100.pt"]  # dead writer's temp removed
    step, state = reopened.latest_before(10**6)
    assert step == 100 and torch.equal(state["x"], torch.arange(4.0))


def test_unreadable_snapshot_file_falls_back_to_an_older_one(tmp_path) -> None:
    store = SnapshotStore("disk", str(tmp_path))
    store.save(100, {"x": torch.ones(1)})
    store.save(200, {"x": torch.zeros(1)})
    with open(store.path(200), "wb") as handle:  # corrupted by something else
        handle.write(b"garbage")
    step, _ = store.latest_before(300)
    assert step == 100 and [s for s, _ in store.unreadable] == [200]


# ------------------------------------------------------------------------------------------------ config
def test_unwritable_or_rotated_snapshot_dir_is_refused(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    bad = str(blocker / "snapshots")
    with pytest.raises(ValueError, match=r"`snapshot_dir` .* cannot be created: .* is not a directory"):
        RollbackConfig(storage="disk", snapshot_dir=bad)
    with pytest.raises(ValueError, match="`snapshot_dir`"):
        SnapshotStore("disk", bad)
    with pytest.raises(ValueError, match="checkpoint rotation"):
        RollbackConfig(storage="disk", snapshot_dir=str(tmp_path / "out" / "checkpoint-500" / "snaps"))
    cfg = RollbackConfig(storage="disk", snapshot_dir=str(tmp_path / "out" / "spinal_snapshots"))
    assert not os.path.exists(cfg.snapshot_dir)  # validation creates nothing; the store does
    RollbackManager(cfg)
    assert os.path.isdir(cfg.snapshot_dir)


@pytest.mark.parametrize(
    "field,value",
    [
        ("enabled", "yes"),
        ("snapshot_interval", 0),
        ("keep", 0),
        ("storage", "s3"),
        ("lr_scale", 0.0),
        ("lr_scale", 1.5),
        ("max_rollbacks", 0),
        ("trainable_only", 1),
        ("snapshot_dir", "/tmp/x"),  # with storage="memory"
    ],
)
def test_rollback_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{field}`") as info:
        RollbackConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_rollback_config_help_and_disk_needs_a_dir() -> None:
    helps = RollbackConfig.help()
    assert set(helps) == set(RollbackConfig().to_dict()) and all(helps.values())
    with pytest.raises(ValueError, match="`snapshot_dir` must be given"):
        RollbackConfig(storage="disk")


# ----------------------------------------------------------------------------------------------- manager
def test_should_snapshot() -> None:
    manager = RollbackManager(RollbackConfig(snapshot_interval=50))
    assert manager.should_snapshot(0, episode_open=False)
    assert not manager.should_snapshot(25, episode_open=False)
    assert not manager.should_snapshot(50, episode_open=True)
    model, optimizer, scheduler = make_run()
    manager.snapshot(50, model, optimizer, scheduler)
    assert not manager.should_snapshot(50, episode_open=False)  # already taken
    assert manager.should_snapshot(100, episode_open=False)
    assert not RollbackManager(RollbackConfig(enabled=False)).should_snapshot(0, episode_open=False)


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_rollback_restores_newest_snapshot_before_onset(tmp_path, storage: str) -> None:
    cfg = RollbackConfig(snapshot_interval=2, storage=storage,
                         snapshot_dir=str(tmp_path / "snaps") if storage == "disk" else None)
    manager = RollbackManager(cfg)
    model, optimizer, scheduler = make_run()
    expected = {}
    for step, batch in enumerate(BATCHES[:8]):
        if manager.should_snapshot(step, episode_open=False):
            manager.snapshot(step, model, optimizer, scheduler)
            expected[step] = {n: p.clone() for n, p in model.named_parameters()}
        train(model, optimizer, scheduler, [batch])
    assert manager.store.steps() == [2, 4, 6]
    if storage == "disk":  # the files load with the safe loader
        torch.load(manager.store.path(6), weights_only=True)
    lr_before = [g["lr"] for g in optimizer.param_groups]

    record = manager.rollback(5, model, optimizer, scheduler, step=8)
    assert (record.to_step, record.from_step, record.rollbacks, record.dropped_steps) == (4, 8, 1, (6,))
    assert record.lr_scale == 0.5 and record.lr_factor == 0.5
    assert "step 4" in record.message and "rollback 1 of at most 3" in record.message
    assert all(torch.equal(p, expected[4][n]) for n, p in model.named_parameters())
    assert manager.store.steps() == [2, 4]
    assert [g["lr"] for g in optimizer.param_groups] != lr_before
    assert RollbackRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_learning_rate_factor_compounds_over_rollbacks() -> None:
    manager = RollbackManager(RollbackConfig(snapshot_interval=1, lr_scale=0.5))
    model, optimizer, scheduler = make_run()
    manager.snapshot(0, model, optimizer, scheduler)
    base = [g["lr"] for g in optimizer.param_groups]
    train(model, optimizer, scheduler, BATCHES[:1])
    manager.rollback(1, model, optimizer, scheduler)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5 * lr for lr in base])
    manager.snapshot(10, model, optimizer, scheduler)  # taken at factor 0.5
    record = manager.rollback(11, model, optimizer, scheduler)
    assert (record.to_step, record.lr_scale, record.lr_factor) == (10, 0.5, 0.25)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.25 * lr for lr in base])
    manager.store.drop_after(0)  # only the factor-1 snapshot is left: it needs ×0.125 to reach 0.125
    record = manager.rollback(11, model, optimizer, scheduler)
    assert (record.to_step, record.lr_scale, record.lr_factor) == (0, 0.125, 0.125)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.125 * lr for lr in base])


def test_max_rollbacks_and_missing_snapshot() -> None:
    manager = RollbackManager(RollbackConfig(max_rollbacks=2))
    model, optimizer, scheduler = make_run()
    with pytest.raises(NoSnapshotError, match=r"no snapshot was taken before step 5 .*snapshot_interval"):
        manager.rollback(5, model, optimizer, scheduler)
    manager.snapshot(0, model, optimizer, scheduler)
    with pytest.raises(NoSnapshotError):
        manager.rollback(0, model, optimizer, scheduler)  # strictly before the onset
    manager.rollback(3, model, optimizer, scheduler)
    manager.rollback(7, model, optimizer, scheduler)
    assert manager.rollbacks == 2
    with pytest.raises(RollbackLimitReached, match=r"rolled back 2 time\(s\) \(max_rollbacks=2\).*learning rate"):
        manager.rollback(9, model, optimizer, scheduler)
    assert manager.rollbacks == 2

    state = json.loads(json.dumps(manager.state_dict()))
    resumed = RollbackManager(RollbackConfig(max_rollbacks=2))
    resumed.load_state_dict(state)
    assert (resumed.rollbacks, resumed.lr_factor, len(resumed.history)) == (2, 0.25, 2)
    with pytest.raises(RollbackLimitReached):
        resumed.rollback(9, model, optimizer, scheduler)
    tolerant = RollbackManager()
    tolerant.load_state_dict({})
    assert tolerant.rollbacks == 0 and tolerant.lr_factor == 1.0
