"""Shared fixtures for the suite, which runs on a CPU and on a one-GPU machine alike.

- Tests of CPU behaviour (bitwise resume, 2-process gloo DDP, exact CLI outputs) pin
  `--device cpu` / `device="cpu"` themselves: `auto` would send them to CUDA on a GPU machine.
- The device tests (tests/test_device.py) run on $ALEXNET_TEST_DEVICE (default cpu);
  `ALEXNET_TEST_DEVICE=cuda pytest tests/test_device.py` compares the GPU with the CPU there
  (benchmarks/gpu_check.sh does), with TF32 off (the `no_tf32` fixture).
- `@pytest.mark.cuda` tests skip where CUDA is not available.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every `@pytest.mark.cuda` test on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test: $ALEXNET_TEST_DEVICE (default cpu)."""
    name = os.environ.get("ALEXNET_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"ALEXNET_TEST_DEVICE={name} but CUDA is not available")
    return torch.device(name)


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and cuDNN convolutions during the test, restored after.

    TF32 keeps 10 mantissa bits (relative error ~5e-4 an operation): a GPU-against-CPU
    comparison in fp32 would otherwise measure TF32's rounding, not the code."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
