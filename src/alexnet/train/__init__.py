"""Training (paper §4-§5): recipes (`config`), the engine (`fit`), checkpoints, schedules.

from alexnet.train import fit, make_config
result = fit(make_config("paper", data="data/imagenet", output_dir="runs/paper"))
"""

from alexnet.rundir import RunDir, RunResult
from alexnet.train.config import TrainConfig, make_config
from alexnet.train.engine import fit

__all__ = ["RunDir", "RunResult", "TrainConfig", "fit", "make_config"]
