"""The loader's JPEG decoders (torch side of jpeg.py): one record at a time on the CPU, or a
whole batch at once on a CUDA device.

CPU: torchvision.io.decode_jpeg (libjpeg-turbo; `CPU_DECODER`), measured faster than Pillow
here (benchmarks/bench_jpeg.py: Pillow parses the JPEG markers in Python, holding the GIL,
which dominates small images) and giving the same pixels (tested). The torch op releases
the GIL, so DeviceLoader's threads decode in parallel. CUDA: torchvision.io.decode_jpeg on a
list of records with device="cuda" (nvJPEG, one call per batch). torchvision 0.29 marks its
image codecs deprecated (for TorchCodec); that warning is silenced here, and Pillow remains
as the CPU decoder if they go (`DECODERS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet.data.jpeg import Decoder, decode_pillow

warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision",
    category=DeprecationWarning,
)  # fmt: skip


def decode_torchvision(data, out: np.ndarray) -> None:
    """Decode JPEG `data` into `out` (H, W, 3) uint8 with torchvision.io.decode_jpeg."""
    x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    if tuple(x.shape) != (3, out.shape[0], out.shape[1]):
        raise ValueError(f"decodes to {tuple(x.shape)}")
    out[...] = x.permute(1, 2, 0).numpy()


DECODERS: dict[str, Decoder] = {"pillow": decode_pillow, "torchvision": decode_torchvision}
CPU_DECODER = "torchvision"


def decode_batch_device(records: Sequence[np.ndarray], device: str | torch.device) -> torch.Tensor:
    """Decode a batch of JPEG records on a CUDA device in one call (nvJPEG) -> uint8
    (B, 3, H, W) on `device`, channels_last memory (the layout the raw loader hands over)."""
    tensors = [torch.from_numpy(np.array(r, dtype=np.uint8)) for r in records]
    decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    return torch.stack([d.permute(1, 2, 0) for d in decoded]).permute(0, 3, 1, 2)
