"""SGD and the learning-rate schedules of the three recipes (paper §5, torchvision, fast).

Every schedule answers `lr(epoch, step, steps_per_epoch)` for the step about to run and is told
`epoch_end(val_error)` after each validation; its whole state is a dict of plain numbers
(`state_dict`/`load_state_dict`), so a checkpoint restores it exactly.

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

import math

import torch


def make_optimizer(
    params, *, lr: float, momentum: float, weight_decay: float, nesterov: bool = False
) -> torch.optim.SGD:
    """SGD with momentum and L2 weight decay (paper §5), decay on every parameter like the paper."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class PlateauSchedule:
    """Paper §5: "divide the learning rate by 10 when the validation error rate stopped improving
    with the current learning rate"; the paper did it 3 times.

    A reduction happens after `patience` consecutive validations whose error is not below the best
    so far by more than `threshold`; the counter restarts after each reduction; at most
    `max_reductions` reductions.
    """

    def __init__(
        self,
        lr: float,
        *,
        factor: float = 0.1,
        patience: int = 3,
        max_reductions: int = 3,
        threshold: float = 0.0,
    ) -> None:
        if not 0.0 < factor < 1.0 or patience < 1 or max_reductions < 0:
            raise ValueError("need 0 < factor < 1, patience >= 1, max_reductions >= 0")
        self.factor, self.patience = factor, patience
        self.max_reductions, self.threshold = max_reductions, threshold
        self.current = lr
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        return self.current

    def epoch_end(self, val_error: float) -> bool:
        """Record one validation error; return True when it divided the learning rate."""
        if val_error < self.best - self.threshold:
            self.best, self.bad_epochs = val_error, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.current *= self.factor
            self.reductions += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {
            "current": self.current,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: dict) -> None:
        self.current = float(state["current"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = int(state["reductions"])


class StepSchedule:
    """torchvision's AlexNet recipe: lr * gamma ** (epoch // step_size) (StepLR 30, 0.1)."""

    def __init__(self, lr: float, *, step_size: int = 30, gamma: float = 0.1) -> None:
        self.base, self.step_size, self.gamma = lr, step_size, gamma

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        return self.base * self.gamma ** (epoch // self.step_size)

    def epoch_end(self, val_error: float) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class WarmupCosineSchedule:
    """The fast recipe: linear warm-up over `warmup_epochs` to the peak lr, then a cosine decay to
    `final_frac * lr` at the end of the last epoch; updated every step (one-cycle shaped)."""

    def __init__(
        self, lr: float, *, epochs: int, warmup_epochs: float = 1.0, final_frac: float = 0.0
    ) -> None:
        self.base, self.epochs = lr, epochs
        self.warmup, self.final_frac = warmup_epochs, final_frac

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch + (step + 1) / max(steps_per_epoch, 1)  # epochs done after this step
        if t <= self.warmup:
            return self.base * t / self.warmup
        span = max(self.epochs - self.warmup, 1e-12)
        progress = min((t - self.warmup) / span, 1.0)
        low = self.base * self.final_frac
        return low + (self.base - low) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def epoch_end(self, val_error: float) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


Schedule = PlateauSchedule | StepSchedule | WarmupCosineSchedule


def make_schedule(cfg) -> Schedule:
    """Build the schedule named by `cfg.schedule` ("plateau", "step" or "cosine")."""
    if cfg.schedule == "plateau":
        return PlateauSchedule(
            cfg.lr,
            factor=cfg.lr_factor,
            patience=cfg.plateau_patience,
            max_reductions=cfg.max_reductions,
            threshold=cfg.plateau_threshold,
        )
    if cfg.schedule == "step":
        return StepSchedule(cfg.lr, step_size=cfg.lr_step_size, gamma=cfg.lr_factor)
    if cfg.schedule == "cosine":
        return WarmupCosineSchedule(
            cfg.lr, epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, final_frac=0.0
        )
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
