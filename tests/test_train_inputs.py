"""Input geometry and model options derived from the data (docs/training.md, "Input geometry")."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet.data.packed import DatasetStats
from alexnet.train.config import make_config
from alexnet.train.inputs import model_options, plan_geometry


@pytest.mark.parametrize(
    ("image", "model", "augment", "expected"),
    [
        ((256, 256), 224, "paper", {"crop_size": 224, "resize": None, "pad": 0}),  # paper §4.1
        ((28, 28), 28, "paper", {"crop_size": 28, "resize": None, "pad": 3}),  # pad crop/8
        ((28, 28), 224, "paper", {"crop_size": 224, "resize": 256, "pad": 0}),  # 224 * 256/224
        ((256, 256), 28, "paper", {"crop_size": 28, "resize": 32, "pad": 0}),
        ((32, 32), 28, "paper", {"crop_size": 28, "resize": None, "pad": 0}),
        ((28, 28), 28, "random_resized_crop", {"crop_size": 28, "resize": None, "pad": 0}),
    ],
)
def test_plan_geometry(image, model, augment, expected):
    assert plan_geometry(image, model, augment=augment, pad=None, resize=None) == expected


def test_explicit_pad_and_resize_win():
    got = plan_geometry((28, 28), 224, augment="paper", pad=5, resize=240)
    assert got == {"crop_size": 224, "resize": 240, "pad": 5}


def test_grayscale_detection_and_small_options():
    def stats(eigval):
        z = np.zeros(3)
        return DatasetStats(np.zeros((2, 2, 3)), z, z, np.eye(3), np.array(eigval), np.eye(3))

    gray, colour = stats([0.37, 1e-17, 0.0]), stats([0.2175, 0.0188, 0.0045])
    assert gray.is_grayscale() and not colour.is_grayscale()
    fast = make_config("fast")
    assert model_options(fast, (28, 28), gray) == {
        "batchnorm": True,
        "lrn": False,
        "pool": "nonoverlap",
        "hidden": 256,
        "input_size": 28,
        "in_channels": 1,
    }
    paper_small = make_config("paper", model="small", model_options={"widths": [8, 8, 8]})
    assert model_options(paper_small, (32, 32), colour) == {
        "input_size": 32,
        "in_channels": 3,
        "widths": [8, 8, 8],
    }
    assert model_options(make_config("paper"), (256, 256), colour) == {}
