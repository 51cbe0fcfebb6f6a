"""The experiments' analyses on synthetic inputs with known answers: relu-tanh's steps to a
threshold, retrieval's label agreement, towers' colour specificity and permutation test."""

import numpy as np
import pytest
import torch

from alexnet.errors import UserError
from alexnet.experiments import relu_tanh, retrieval, stats, towers

sps = pytest.importorskip("scipy.stats")  # the independent reference (a dev dependency)


def steps(errors, every=10):
    return [{"step": every * (i + 1), "epoch": 0, "train_top1_error": e, "train_loss": 1.0}
            for i, e in enumerate(errors)]  # fmt: skip


def test_steps_to_threshold_interpolates_between_records():
    # errors 0.9 at step 10, 0.5 at 20, 0.1 at 30: 0.25 lies 5/8 of the way from step 20 to 30
    step = relu_tanh.steps_to_threshold(steps([0.9, 0.5, 0.1, 0.05]), 0.25)
    assert step == pytest.approx(20 + 10 * 0.625)


def test_steps_to_threshold_edges():
    assert relu_tanh.steps_to_threshold(steps([0.9, 0.5, 0.3]), 0.25) is None  # never reached
    assert relu_tanh.steps_to_threshold(steps([0.2, 0.1]), 0.25) == 10  # below at the first
    assert relu_tanh.steps_to_threshold(steps([0.9, 0.25, 0.1]), 0.25) == 20  # at a record
    shuffled = steps([0.9, 0.5, 0.1])[::-1]
    assert relu_tanh.steps_to_threshold(shuffled, 0.3) == pytest.approx(25)


def brute_agreement(q, ql, b, bl, k):
    d = ((q[:, None, :].astype(np.float64) - b[None].astype(np.float64)) ** 2).sum(-1)
    idx = np.argsort(d, axis=1)[:, :k]
    return float((bl[idx] == ql[:, None]).mean())


def test_label_agreement_against_brute_force():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.0, (4, 16))
    bl, ql = rng.integers(0, 4, 300), rng.integers(0, 4, 40)
    b = (centers[bl] + rng.normal(0, 1.2, (300, 16))).astype(np.float32)
    q = (centers[ql] + rng.normal(0, 1.2, (40, 16))).astype(np.float32)
    got = retrieval.label_agreements(q, ql, b, bl, (1, 5), chunk=64)
    for k in (1, 5):
        assert got[k] == pytest.approx(brute_agreement(q, ql, b, bl, k))
        assert retrieval.label_agreements(q, ql, b, bl, (k,))[k] == got[k]
    assert 0.3 < got[5] < 1.0  # overlapping clusters: neither chance (0.25) nor perfect


def test_label_agreement_separated_clusters_and_pixels():
    imgs = np.zeros((20, 4, 4, 3), np.uint8)
    labels = np.arange(20) % 2
    imgs[labels == 1] = 200
    imgs += np.arange(20, dtype=np.uint8)[:, None, None, None]  # distinct images
    x = retrieval.pixel_features(imgs)
    assert x.shape == (20, 48) and x.dtype == np.float32
    assert retrieval.label_agreements(x[:6], labels[:6], x[6:], labels[6:], (5,))[5] == 1.0
    with pytest.raises(ValueError):
        retrieval.label_agreements(x[:6], labels[:5], x[6:], labels[6:], (1,))


def test_colour_specificity_known_values():
    w = np.zeros((4, 3, 11, 11))
    rng = np.random.default_rng(1)
    w[0] = rng.normal(size=(1, 11, 11))  # the same in all channels: gray
    w[1, 2] = rng.normal(size=(11, 11))  # one channel only
    w[2, 0], w[2, 1] = 1.0, -1.0  # channels summing to zero at every pixel: pure colour
    s = towers.colour_specificity(torch.from_numpy(w).float())
    assert s[0] == pytest.approx(0.0, abs=1e-7)
    assert s[1] == pytest.approx(2 / 3)
    assert s[2] == pytest.approx(1.0)
    assert s[3] == 0.0  # an all-zero kernel
    r = rng.normal(size=(96, 3, 11, 11))
    ref = [((k - k.mean(0)) ** 2).sum() / (k**2).sum() for k in r]  # written out per kernel
    assert towers.colour_specificity(r) == pytest.approx(ref)
    with pytest.raises(UserError, match="grayscale"):
        towers.colour_specificity(np.zeros((96, 1, 11, 11)))


def test_compare_towers_matches_scipy_exact():
    a, b = [0.61, 0.55, 0.72, 0.48, 0.66], [0.41, 0.52, 0.38, 0.47]
    t = stats.permutation_test(a, b)
    ref = sps.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y),
                               permutation_type="independent", n_resamples=np.inf)  # fmt: skip
    assert t.method == "exact permutation"
    assert t.p_value == pytest.approx(ref.pvalue) and t.difference == pytest.approx(ref.statistic)


def test_compare_towers_separates_different_not_equal():
    rng = np.random.default_rng(2)
    gray_tower = np.clip(rng.normal(0.15, 0.08, 48), 0, 1)
    colour_tower = np.clip(rng.normal(0.55, 0.12, 48), 0, 1)
    t = stats.permutation_test(colour_tower, gray_tower)
    assert t.method.startswith("permutation") and t.p_value < 0.001 and t.difference > 0.3
    same = rng.normal(0.3, 0.1, 96)
    assert stats.permutation_test(same[:48], same[48:]).p_value > 0.05
    assert stats.permutation_test(same[:48], same[:48]).p_value > 0.9  # difference 0
