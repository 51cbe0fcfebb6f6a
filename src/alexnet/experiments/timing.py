"""Step times that the machine's load does not decide: relu-tanh's time to a threshold (Fig. 1,
§3.1) as steps x the time of one step, each variant's step measured in one process on the same
batches, the variants interleaved.

The training runs' own clocks (RUN/steps.jsonl "time") measure whatever else the machine was
doing while each run trained: on a shared machine the same command gave tanh / ReLU 0.67x one
day and 1.84x another. Here every round times `steps` SGD steps of each model in turn, on the
same batches, the order reversed every other round (A B, B A, ...), so a change of load lands
on every model alike, and the ratio is paired by round. The numbers are a property of this
machine and this implementation (`PER_INVOCATION` in `result`), not of the runs' files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.evaluate import make_eval_transform
from alexnet.experiments import stats
from alexnet.weights import load as load_weights

ROUNDS, STEPS, WARMUP = 10, 5, 3  # rounds, timed steps per model and round, untimed first steps


def training_batches(
    data: str, weights: str, batch_size: int, count: int, device: str = "cpu"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of the training split, in order, as the weights' preprocessing makes
    them: [(float (B, C, S, S), int64 (B,))]."""
    _, meta = load_weights(weights, device)
    transform = make_eval_transform(meta.preprocess, meta.mean_image, 1)
    loader = DeviceLoader(open_dataset(data, "train"), batch_size, shuffle=False, drop_last=True,
                          device=torch.device(device))  # fmt: skip
    loader.set_epoch(0)
    out = []
    for images, labels in loader.iterate():
        out.append((transform(images), labels))
        if len(out) == count:
            break
    return out


def _sgd_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def step_times(
    models: dict[str, nn.Module],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float = 0.01,
    momentum: float = 0.9,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
) -> dict[str, list[float]]:
    """Seconds per SGD step (forward, cross-entropy, backward, update) of each model, one value
    per round: each round every model runs one step on each of `batches`, the models' order
    reversed every other round. The models are trained in place (pass copies)."""
    opts = {k: torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum) for k, m in models.items()}
    for name, model in models.items():
        model.train()
        for i in range(warmup):
            _sgd_step(model, opts[name], *batches[i % len(batches)])
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for x, y in batches:
                _sgd_step(models[name], opts[name], x, y)
            times[name].append((time.perf_counter() - start) / len(batches))
    return times


def summary(
    times: dict[str, list[float]],
    a: str,
    b: str,
    steps: dict[str, dict[str, float]] | None = None,
    *,
    method: str,
) -> dict[str, Any]:
    """result.json's `step_time`: per model the mean ms per step over the rounds with its t
    interval, the ratio a / b paired by round (bootstrap), and `time_to`: for each quantity in
    `steps` ({quantity: {model: mean steps}}), the seconds those steps take."""
    variants = {}
    for name, values in times.items():
        e = stats.mean_ci([1000 * v for v in values])
        variants[name] = {"ms": e.estimate, "ci95": None if e.ci95 is None else list(e.ci95)}
    r = stats.paired_ratio_ci(times[a], times[b]).to_json()
    time_to = {
        q: {name: n * variants[name]["ms"] / 1000 for name, n in per.items() if name in variants}
        for q, per in (steps or {}).items()
    }
    return {
        "method": method,
        "rounds": len(times[a]),
        "variants": variants,
        "ratio": {"a": a, "b": b, "estimate": r["estimate"], "ci95": r["ci95"]},
        "time_to": time_to,
    }
