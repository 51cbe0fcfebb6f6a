"""`python tests/slow_train.py ARGS...` runs `alexnet ARGS...` with every training step slowed
by $SLOW_TRAIN_SLEEP seconds (default 0.3), so a test's signal can land mid-epoch. The delay
is a step callback given to `fit`; the production loop holds no test hook."""

from __future__ import annotations

import functools
import os
import sys
import time

from alexnet.cli import main
from alexnet.train import loop

if __name__ == "__main__":
    delay = float(os.environ.get("SLOW_TRAIN_SLEEP", "0.3"))
    loop.fit = functools.partial(loop.fit, callbacks=[lambda step: time.sleep(delay)])
    sys.exit(main(sys.argv[1:]))
