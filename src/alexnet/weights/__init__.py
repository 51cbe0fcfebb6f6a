"""Every weights format in and out: `load(path | run dir | name)` -> (model, metadata), `save`,
`load_for`. Names are imported when first used, so the torch-free `hub` loads without torch."""

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
