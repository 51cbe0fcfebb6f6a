"""Shared fixtures. ALEXNET_TEST_DEVICE=cuda runs the device tests on a GPU (gpu_check.sh)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test: $ALEXNET_TEST_DEVICE (default cpu)."""
    name = os.environ.get("ALEXNET_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"ALEXNET_TEST_DEVICE={name} but CUDA is not available")
    return torch.device(name)
