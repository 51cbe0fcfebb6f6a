"""Every weights format in and out: `load(path)` -> (model, metadata), `save(path, ...)`.

Formats read, detected from the content (not only the suffix):
- "alexnet": our safetensors file with its metadata (`safetensors_io`), written by `save`;
- "two-device": the same in the two-device tower layout (`two_device`, paper §3.2);
- "torchvision": torchvision's `.pth` state_dict (`torchvision`), weights_only loading;
- "checkpoint": a training checkpoint, `RUN/checkpoint.pt` or the run directory
  (`checkpoint`), weights_only loading;
- a name, e.g. `torchvision`: downloadable weights (`hub`, `catalog`).

The names below are imported when first used, so that the torch-free parts of this package
(`catalog`, which `alexnet weights` lists) load without torch.
"""

from __future__ import annotations

from alexnet.lazy import lazy_names

_NAMES = {
    "Preprocess": "alexnet.weights.meta",
    "WeightsMeta": "alexnet.weights.meta",
    "build_model": "alexnet.weights.files",
    "convert_layout": "alexnet.weights.safetensors_io",
    "load": "alexnet.weights.files",
    "read": "alexnet.weights.files",
    "save": "alexnet.weights.files",
}
__all__ = sorted(_NAMES)


__getattr__ = lazy_names("alexnet.weights", _NAMES)
