"""Training (paper §4-§5): the config and recipes (`config`), the loop (`fit`), schedules.

    from alexnet.train import fit, make_config
    result = fit(make_config("paper", data="data/imagenet", output_dir="runs/paper"))

The names below are imported when first used, so that `alexnet.train.config` (which the
command line reads to build its parser) can be imported without torch.
"""

from __future__ import annotations

from alexnet.lazy import lazy_names

_NAMES = {
    "RunDir": "alexnet.rundir",
    "RunResult": "alexnet.rundir",
    "TrainConfig": "alexnet.train.config",
    "make_config": "alexnet.train.config",
    "resolve": "alexnet.train.config",
    "fit": "alexnet.train.loop",
}
__all__ = sorted(_NAMES)


__getattr__ = lazy_names("alexnet.train", _NAMES)
