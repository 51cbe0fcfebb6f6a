"""The named modes of augmentation, normalization and test-time crops, declared once.

Torch-free, so the command line offers them as choices without importing torch (`train`,
`eval`, `predict`, `serve`); the transforms (`alexnet.data.augment`), the evaluation
(`alexnet.evaluate`, `alexnet.inference`) and `TrainConfig` all check against these tuples.
"""

from __future__ import annotations

# paper §4.1: random 224 crops + horizontal flips; torchvision's RandomResizedCrop recipe
AUGMENT_MODES = ("paper", "random_resized_crop")
# paper §2: subtract the mean image; per-channel standardization; nothing
NORMALIZE_MODES = ("mean_image", "channel", "none")
# paper §4.1: 1 (centre), 2 (centre + its mirror image) or the paper's 10 crops
TEST_CROPS = (1, 2, 10)
