"""Schedules and the paper's SGD update rule (paper §5), against hand-computed references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alexnet.train.config import make_config
from alexnet.train.loop import make_optimizer
from alexnet.train.schedules import (
    PlateauSchedule,
    StepSchedule,
    WarmupCosineSchedule,
    make_schedule,
)


def _run(schedule: PlateauSchedule, errors: list[float]) -> list[float]:
    lrs = []
    for e in errors:
        schedule.epoch_end(e)
        lrs.append(schedule.lr(0, 0, 1))
    return lrs


def test_plateau_never_reduces_while_improving():
    s = PlateauSchedule(0.01, patience=1)
    assert _run(s, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]) == [0.01] * 6
    assert s.reductions == 0


def test_plateau_reduces_exactly_on_stalls_at_most_three_times():
    s = PlateauSchedule(0.01, patience=1, max_reductions=3)
    errors = [0.5, 0.4, 0.4, 0.3, 0.35, 0.2, 0.25, 0.1, 0.3, 0.3]
    # stall at index 2 (0.4 not < 0.4), 4 (0.35 > 0.3), 6 (0.25 > 0.2): three reductions;
    # index 8 and 9 stall again but the budget of 3 is spent.
    expected = [0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5]
    got = _run(s, errors)
    assert got == pytest.approx(expected, rel=1e-12)
    assert s.reductions == 3


def test_plateau_patience_counts_consecutive_stalls_and_restarts():
    s = PlateauSchedule(1.0, patience=2)
    # stalls: 0.5 (1), 0.5 (2 -> reduce, counter restarts), 0.3 improves,
    # 0.45 (1), 0.41 (2 -> reduce)
    got = _run(s, [0.4, 0.5, 0.5, 0.3, 0.45, 0.41])
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.1, 0.01])


def test_plateau_state_round_trip_continues_identically():
    a = PlateauSchedule(0.01, patience=2)
    _run(a, [0.5, 0.6])
    b = PlateauSchedule(0.01, patience=2)
    b.load_state_dict(a.state_dict())
    rest = [0.7, 0.4, 0.45, 0.46]
    assert _run(a, list(rest)) == _run(b, list(rest))
    assert a.reductions == 2  # after 0.6, 0.7 and after 0.45, 0.46


def test_step_schedule_matches_torchvision_steplr():
    s = StepSchedule(0.01, step_size=30, gamma=0.1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(90):
        assert s.lr(epoch, 0, 10) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        ref.step()


def test_warmup_cosine_shape():
    s = WarmupCosineSchedule(0.2, epochs=5, warmup_epochs=1.0)
    steps = 10
    lrs = [s.lr(e, b, steps) for e in range(5) for b in range(steps)]
    assert lrs[:10] == pytest.approx([0.2 * (i + 1) / 10 for i in range(10)])
    t = 2.5  # epochs done after step (2, 4)
    assert s.lr(2, 4, steps) == pytest.approx(0.1 * (1 + math.cos(math.pi * (t - 1) / 4)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_recipes_pick_their_schedules():
    assert isinstance(make_schedule(make_config("paper")), PlateauSchedule)
    assert isinstance(make_schedule(make_config("torchvision")), StepSchedule)
    assert isinstance(make_schedule(make_config("fast")), WarmupCosineSchedule)
    cfg = make_config("paper", lr=0.05, epochs=3)
    assert (cfg.lr, cfg.epochs, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (
        0.05,
        3,
        0.9,
        5e-4,
        128,
    )


def _grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean squared error 0.5*mean((x@w - y)^2) w.r.t. w (float64)."""
    return x.T @ (x @ w - y) / len(y)


def _paper_steps(w, x, y, lrs, mu=0.9, wd=5e-4):
    """Paper §5: v <- mu v - wd*eps*w - eps*dL/dw ; w <- w + v (float64 numpy)."""
    w, v = w.copy(), np.zeros_like(w)
    out = []
    for eps in lrs:
        v = mu * v - wd * eps * w - eps * _grad(w, x, y)
        w = w + v
        out.append(w.copy())
    return out


def _torch_steps(w, x, y, lrs, mu=0.9, wd=5e-4):
    p = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
    opt = make_optimizer([p], make_config(lr=lrs[0], momentum=mu, weight_decay=wd))
    xt, yt = torch.tensor(x), torch.tensor(y)
    out = []
    for eps in lrs:
        for g in opt.param_groups:
            g["lr"] = eps
        opt.zero_grad()
        loss = 0.5 * ((xt @ p - yt) ** 2).mean()
        loss.backward()
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def test_paper_update_rule_equals_torch_sgd_at_constant_lr():
    rng = np.random.default_rng(0)
    x, y, w0 = rng.normal(size=(64, 8)), rng.normal(size=64), rng.normal(size=8)
    lrs = [0.01] * 200
    paper, ours = _paper_steps(w0, x, y, lrs), _torch_steps(w0, x, y, lrs)
    for a, b in zip(paper, ours, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    assert np.abs(paper[-1] - w0).max() > 0.1  # the weights really moved


def test_lr_change_is_where_the_two_forms_differ():
    """At a change eps_old -> eps_new torch's step exceeds the paper's by
    -mu * (eps_new - eps_old) * b_old, b_old = torch's momentum buffer = -v_old / eps_old."""
    rng = np.random.default_rng(1)
    x, y, w0 = rng.normal(size=(64, 8)), rng.normal(size=64), rng.normal(size=8)
    old, new, mu = 0.01, 0.001, 0.9
    lrs = [old] * 20 + [new]
    paper, ours = _paper_steps(w0, x, y, lrs), _torch_steps(w0, x, y, lrs)
    np.testing.assert_allclose(ours[19], paper[19], rtol=1e-10, atol=1e-13)  # same before
    v_old = paper[19] - paper[18]
    b_old = -v_old / old
    expected_gap = -mu * (new - old) * b_old
    np.testing.assert_allclose(ours[20] - paper[20], expected_gap, rtol=1e-8, atol=1e-14)
    assert np.abs(expected_gap).max() > 1e-6  # they really differ there
