"""SGD with momentum and weight decay (paper §5); the schedules are in `alexnet.train.schedules`.

The paper's update rule (§5) is
    v <- 0.9 v - 0.0005 * eps * w - eps * dL/dw,    w <- w + v
and torch.optim.SGD computes
    b <- 0.9 b + (dL/dw + 0.0005 w),                w <- w - eps * b.
With a constant eps, v = -eps * b at every step, so the two are the same trajectory (tested in
tests/test_train_optim.py). They differ only at a learning-rate change: torch applies the new
eps to the whole accumulated b at once, while the paper's v still carries the old eps in its
momentum, so the paper's first steps after a drop still move by about the old step size
(decaying by 0.9 per step). We use torch's form, as every modern reproduction does.
"""

from __future__ import annotations

import torch


def make_optimizer(
    params,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
    fused: bool = False,
) -> torch.optim.SGD:
    """SGD with momentum and L2 weight decay (paper §5), decay on every parameter like the paper;
    `params`: parameters, or parameter groups (a group's `lr_factor` scales the schedule's rate).

    `fused`: torch's fused kernel (one launch for all parameters; on CUDA), which can skip a
    step on the device (`skip_if_nonfinite`). Its momentum buffers are created as zeros up
    front, the same first step as torch's (buffer = gradient, as 0.9 * 0 + gradient), so that
    a skipped first step cannot leave them uninitialized."""
    decay = {"momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    optimizer = torch.optim.SGD(params, lr=lr, **decay, fused=fused or None)
    if fused and momentum > 0:
        for group in optimizer.param_groups:
            for p in group["params"]:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def skip_if_nonfinite(optimizer: torch.optim.SGD, nonfinite: torch.Tensor | None) -> None:
    """Tell a fused SGD whether to skip its next step: `nonfinite`, a device tensor that is
    non-zero when the loss was not finite (read on the device, no host sync); None: step."""
    optimizer.found_inf = None if nonfinite is None else nonfinite.float()  # type: ignore[attr-defined]
