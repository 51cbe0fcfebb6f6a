"""Every weights format in and out: `load(path | run dir | name)` -> (model, metadata), `save`,
and `load_for`, the model for other code (`files`). Formats are told apart by their content:
our safetensors in either tower layout (`safetensors_io`), torchvision's `.pth`, training
checkpoints, Hugging Face-style folders (`hf`); `caffe` converts bvlc_alexnet; `hub` names
downloadable weights; `meta` holds what every format reads besides tensors.

The names below are imported when first used, so that the torch-free `hub` (which `alexnet
weights` lists) loads without torch.
"""

from __future__ import annotations

from alexnet.lazy import lazy_names

_NAMES = {
    "Preprocess": "alexnet.weights.meta",
    "WeightsMeta": "alexnet.weights.meta",
    "build_model": "alexnet.weights.files",
    "convert_layout": "alexnet.weights.files",
    "load": "alexnet.weights.files",
    "load_for": "alexnet.weights.files",
    "read": "alexnet.weights.files",
    "save": "alexnet.weights.files",
    "write_folder": "alexnet.weights.hf",
}
__all__ = sorted(_NAMES)


__getattr__ = lazy_names("alexnet.weights", _NAMES)
