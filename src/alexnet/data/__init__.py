"""The data: sources read (`sources`), packed (`pack`, `fields`, `packed`), loaded (`loader`)
and augmented (`augment`). Here, torch- and numpy-free, the data's named choices, so the
command line offers them without importing either."""

from __future__ import annotations

# paper §4.1: random 224 crops + horizontal flips; torchvision's RandomResizedCrop recipe
AUGMENT_MODES = ("paper", "random_resized_crop")
# paper §2: subtract the mean image; per-channel standardization; nothing
NORMALIZE_MODES = ("mean_image", "channel", "none")
# paper §4.1: 1 (centre), 2 (centre + its mirror image) or the paper's 10 crops
TEST_CROPS = (1, 2, 10)
SPLITS = ("train", "val")
ENCODINGS = ("raw", "jpeg")
DEFAULT_QUALITY = 90  # JPEG
SOURCE_NAMES = [
    "auto",
    "imagefolder",
    "folder",
    "ilsvrc2012",
    "kaggle",
    "fashion-mnist",
    "cifar10",
    "synthetic",
]
