"""Training (paper §4-§5): `fit(make_config("paper", data=DIR, output_dir=RUN))`. The names are
imported when first used, so that the command line reads `alexnet.train.config` without torch."""

from __future__ import annotations

from alexnet.lazy import lazy_names

_NAMES = {
    "TrainConfig": "alexnet.train.config",
    "make_config": "alexnet.train.config",
    "fit": "alexnet.train.loop",
}
__getattr__ = lazy_names("alexnet.train", _NAMES)
