"""Every weights format in and out: `load(path | run dir | name)` -> (model, metadata), `save`.

- `files`: `read` / `load` / `load_for`, telling the formats apart by their content (training
  checkpoints included), and `save`;
- `safetensors_io`: our file (`save` writes it), in the paper or the two-device layout;
- `torchvision`: torchvision's `.pth`; `caffe` (+ `caffe_proto`): Caffe's bvlc_alexnet;
- `hf`: Hugging Face-style folders (model.safetensors + config.json + README.md);
- `hub`: weights by name (downloaded once), Hugging Face ids, and `alexnet weights`'s catalog;
- `meta`: `Preprocess` and `WeightsMeta`, what every format reads besides tensors.

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
