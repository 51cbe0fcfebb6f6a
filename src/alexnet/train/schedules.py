"""The learning-rate schedules of the recipes (paper §5, torchvision, fast): `lr(epoch, step,
steps_per_epoch)` for the step about to run, `epoch_end(val_error)` after each validation, and a
state of plain numbers that a checkpoint restores exactly."""

from __future__ import annotations

import math

SCHEDULES = ("plateau", "step", "cosine")


class Schedule:
    """A function of the position alone unless a subclass says otherwise: validation does not
    move it; `STATE`: the attributes a checkpoint holds."""

    STATE: tuple[str, ...] = ()

    def epoch_end(self, val_error: float) -> bool:
        return False

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for name in self.STATE:
            setattr(self, name, state[name])


class PlateauSchedule(Schedule):
    """Paper §5: "divide the learning rate by 10 when the validation error rate stopped improving
    with the current learning rate"; the paper did it 3 times. A reduction after `patience`
    validations in a row not below the best by more than `threshold`; at most `max_reductions`."""

    STATE = ("current", "best", "bad_epochs", "reductions")

    def __init__(
        self,
        lr: float,
        *,
        factor: float = 0.1,
        patience: int = 3,
        max_reductions: int = 3,
        threshold: float = 0.0,
    ) -> None:
        self.factor, self.patience = factor, patience
        self.max_reductions, self.threshold = max_reductions, threshold
        self.current, self.best, self.bad_epochs, self.reductions = lr, math.inf, 0, 0

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


class StepSchedule(Schedule):
    """torchvision's AlexNet recipe: lr * gamma ** (epoch // step_size) (StepLR 30, 0.1)."""

    def __init__(self, lr: float, *, step_size: int = 30, gamma: float = 0.1) -> None:
        self.base, self.step_size, self.gamma = lr, step_size, gamma

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        return self.base * self.gamma ** (epoch // self.step_size)


class WarmupCosineSchedule(Schedule):
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


def make_schedule(cfg) -> Schedule:
    """The schedule `cfg.schedule` names; cosine's automatic warm-up (--warmup-epochs left out)
    is a sixth of the run, at most one epoch."""
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
    warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else min(1.0, cfg.epochs / 6)
    return WarmupCosineSchedule(cfg.lr, epochs=cfg.epochs, warmup_epochs=warmup, final_frac=0.0)
