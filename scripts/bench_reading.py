"""Time one reading of the monitor, part by part, inside a training loop on the demo model.

A reading (every ``signal_interval`` steps, 2 by default) gathers the sampled weights for ``update/size`` and
``update/turn``, runs the early-warning detector and writes a trace line and a TensorBoard event. Between two
readings the training step runs, so the reading meets cold caches: a loop that times the gather alone, warm, says
too little. Here the demo model (``spinal demo``'s pre-trained tiny Llama, cached in ``--cache-dir``) trains with
AdamW on a language-model loss over batches the shape of the demo's DPO batch (``2 × --batch-size`` rows), a
``MonitorSession`` at the library's defaults reads every second step, TRL's four watched DPO metrics arrive every
``--logging-steps`` steps (5, as in the demo), and each part of each reading is timed:

- ``gather``: ``UpdateSampler.read`` (the sampled coordinates, in place into reused buffers);
- ``gather, per-parameter take``: the same coordinates read as the sampler did before (one ``torch.take`` per
  parameter, then a concatenation), at the same readings, in alternating order with ``gather`` — side by side,
  checked equal;
- ``update signals``: the rest of ``UpdateSampler.measure`` (norm, turn);
- ``detector``: ``AlertGuard.decide``; ``outputs``: the trace line and the TensorBoard event of the reading;
- ``metrics-only observation`` (``SpinalConfig.read_every_log``, on by default; ``--no-read-every-log``: off): a log
  off the reading schedule fed to the detector on its own (``MonitorSession.log``); the ``detector`` and ``outputs``
  rows take in those observations too.

Medians over the readings, with the median training step (forward, backward, optimizer) for scale. One torch thread
by default, as in the demo. Usage::

    python scripts/bench_reading.py --cache-dir /tmp/demo-cache          # 400 steps, about a minute
    python scripts/bench_reading.py --quick                              # 60 steps
    python scripts/bench_reading.py --logging-steps 1                    # every step logged, as in the studies
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _timed(cls: type, name: str, into: dict[str, list[float]], label: str) -> None:
    """Wrap ``cls.name`` so that each call's seconds are appended to ``into[label]``."""
    method = getattr(cls, name)

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            into.setdefault(label, []).append(time.perf_counter() - start)

    setattr(cls, name, wrapper)


def per_parameter_take(sampler: Any) -> Callable[[], torch.Tensor]:
    """The sampler's coordinates read the way it read them before its buffers: one ``torch.take`` per parameter,
    a concatenation per device, one cast and copy."""
    from spinal_callback.monitor.update_size import local_data

    @torch.no_grad()
    def read() -> torch.Tensor:
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for param, idx, sharded in sampler._picks:
            values = torch.take(local_data(param) if sharded else param, idx)
            by_device.setdefault(values.device, []).append(values)
        return torch.cat([torch.cat(parts).float().cpu() for parts in by_device.values()])

    return read


def main(argv: Sequence[str] | None = None) -> int:
    from spinal_callback import SpinalConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="Optimizer steps (default 400).")
    parser.add_argument("--quick", action="store_true", help="60 steps.")
    parser.add_argument("--batch-size", type=int, default=16, help="Preference pairs per batch (rows: twice that).")
    parser.add_argument("--logging-steps", type=int, default=5,
                        help="The trainer logs its DPO metrics every N steps, as the demo does (default 5); the "
                             "detector sees them at the next reading.")
    parser.add_argument("--read-every-log", action=argparse.BooleanOptionalAction,
                        default=SpinalConfig().read_every_log,
                        help="SpinalConfig.read_every_log (default: the library's, on): a log off the reading schedule "
                             "is an observation of its own, timed as 'metrics-only observation'; in the training loop "
                             "the log follows the step's reading, as in the HF trainer. --no-read-every-log: logs wait "
                             "for the next reading.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in the demo).")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "spinal-demo-cache"),
                        help="Where the pre-trained demo model is cached.")
    args = parser.parse_args(argv)
    steps = 60 if args.quick else args.steps
    torch.set_num_threads(args.threads)

    from spinal_callback.demo.model import pretrained_demo_model
    from spinal_callback.demo.task import AdditionTask
    from spinal_callback.monitor.outputs import MonitorOutputs
    from spinal_callback.monitor.session import MonitorSession
    from spinal_callback.monitor.update_size import UpdateSampler
    from spinal_callback.recovery.guard import AlertGuard, TrainingHandles

    times: dict[str, list[float]] = {}
    _timed(UpdateSampler, "read", times, "gather")
    _timed(UpdateSampler, "measure", times, "measure")
    _timed(AlertGuard, "decide", times, "detector")
    _timed(MonitorOutputs, "reading", times, "outputs")
    _timed(MonitorOutputs, "guard_outcome", times, "outputs, guard")

    model, tokenizer, _ = pretrained_demo_model(args.cache_dir)
    pairs = AdditionTask().preference_pairs(64)
    session = MonitorSession(SpinalConfig(read_every_log=args.read_every_log))
    log_dir = tempfile.mkdtemp(prefix="bench-reading-")
    session.start(model, rank_zero=True, log_dir=log_dir, records=pairs, tokenizer=tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    step_seconds, reading_seconds, old_seconds, log_seconds, mismatches = [], [], [], [], 0
    old_read: Callable[[], torch.Tensor] | None = None
    for step in range(steps + 1):
        if step:
            ids = torch.randint(0, vocab, (2 * args.batch_size, 24), generator=generator)
            start = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step_seconds.append(time.perf_counter() - start)
        metrics = {"loss": 0.69, "rewards/chosen": -0.01 * step, "logps/chosen": -3.0 - 0.01 * step,
                   "rewards/accuracies": 0.6, "rewards/margins": 0.1} if step % args.logging_steps == 0 else {}
        sampler = session.monitor._updates
        if old_read is None and sampler is not None:
            old_read = per_parameter_take(sampler)
        old_first = bool(step % 4 == 0) and old_read is not None and session.due(step)
        if old_first:  # the reference gather before the reading on every other reading, after it on the rest
            start = time.perf_counter()
            before = old_read()  # type: ignore[misc]
            old_seconds.append(time.perf_counter() - start)
        due = session.due(step)
        if args.read_every_log and metrics:  # HF: the step's log comes after its reading, which takes it if due
            session.monitor.observe_metrics(metrics)
        start = time.perf_counter()
        session.step(step, model, lambda: TrainingHandles(model),
                     metrics=None if args.read_every_log else functools.partial(dict, metrics))
        if due and step % session.monitor.config.interval:  # a reading without the probe forward
            reading_seconds.append(time.perf_counter() - start)
        if args.read_every_log and metrics:
            start = time.perf_counter()
            session.log(step, lambda: TrainingHandles(model))
            if not due:  # a log no reading took: a metrics-only observation
                log_seconds.append(time.perf_counter() - start)
        if not old_first and old_read is not None and due:
            start = time.perf_counter()
            before = old_read()
            old_seconds.append(time.perf_counter() - start)
        if old_read is not None and due and sampler is not None:  # the values this reading's measure() kept
            mismatches += int(not torch.equal(before, sampler._readings[-1][1]))
    session.close()

    def ms(values: list[float]) -> float:
        return 1e3 * statistics.median(values) if values else float("nan")

    step_ms = ms(step_seconds)
    rows = [("gather", ms(times.get("gather", [])[1:])), ("gather, per-parameter take", ms(old_seconds))]
    measure = [m - g for m, g in zip(times.get("measure", []), times.get("gather", []), strict=False)]
    rows += [("update signals (norm, turn)", ms(measure)), ("detector", ms(times.get("detector", []))),
             ("outputs", ms(times.get("outputs", [])) + ms(times.get("outputs, guard", []))),
             ("whole reading (no probe forward)", ms(reading_seconds))]
    if args.read_every_log:
        rows.append(("metrics-only observation", ms(log_seconds)))
    print(f"demo model, {steps} steps, batch {2 * args.batch_size} rows, metrics every {args.logging_steps} steps, "
          f"{args.threads} thread(s); "
          f"training step median {step_ms:.1f} ms; readings every {session.monitor.config.reading_interval} steps; "
          f"load avg {os.getloadavg()[0]:.2f}")
    print(f"{'part of a reading':<34} {'median ms':>10} {'% of a step':>12}")
    for name, value in rows:
        print(f"{name:<34} {value:>10.3f} {100 * value / step_ms:>11.2f}%")
    print(f"(the two gathers gave equal values at every reading: {mismatches == 0})")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
