"""The input-pipeline section of an experiment config.

`make_train_iterator` / `make_eval_iterator` read exactly these keys; a config that lacks one
fails with a message naming it (see `check_input_config`).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# ImageNet statistics in [0, 1] units (official V1 code: MEAN_RGB/STDDEV_RGB = these x 255).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# V2 (official `(x - 128) / 128`, timm/keras `x / 127.5 - 1`) and Lite: scale to [-1, 1].
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

CROP_MODES = ("inception", "resize")
AUGMENTS = ("none", "autoaugment", "randaugment")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area", "lanczos3")


def default_input_config() -> ml_collections.ConfigDict:
    """All input keys with their defaults (ImageNet-style V1 preprocessing, no augmentation)."""
    cfg = ml_collections.ConfigDict()
    cfg.dataset = "digits"  # 'digits' | a TFDS name ('cifar10', 'imagenet2012') | 'folder:/path'
    cfg.data_dir = config_dict.placeholder(str)  # TFDS data_dir
    cfg.train_split = config_dict.placeholder(str)  # None = the data set's default
    cfg.eval_split = config_dict.placeholder(str)
    cfg.download = False  # TFDS only: never download unless asked
    cfg.mean = IMAGENET_MEAN  # applied as (x / 255 - mean) / std
    cfg.std = IMAGENET_STD
    cfg.crop_mode = "inception"  # 'inception' (random resized crop / padded center crop) | 'resize'
    cfg.flip = True  # random horizontal flip at train time (off for digits, text, ...)
    cfg.crop_padding = 32  # eval center crop = image_size / (image_size + crop_padding) of the short side
    cfg.interpolation = "bicubic"
    cfg.augment = "none"  # 'none' | 'autoaugment' (policy v0) | 'randaugment'
    cfg.randaug_num_layers = 2
    cfg.randaug_magnitude = 10
    cfg.mixup_alpha = 0.0
    cfg.cutmix_alpha = 0.0
    cfg.shuffle_buffer = 16_384  # streaming TFDS only (in-memory splits get exact permutations)
    cfg.cache = False  # TFDS: hold the (per-process) train split in memory -> exact per-epoch permutations
    cfg.prefetch = 2  # batches prepared ahead of the training step
    return cfg


REQUIRED_KEYS = tuple(default_input_config().keys())


def check_input_config(cfg) -> None:
    """Fail early, naming the key, when `cfg` lacks an input key or holds an unknown choice."""
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise KeyError(f"input config is missing key(s) {missing}; start from "
                       "efficientnet_jax.data.default_input_config()")
    if cfg.crop_mode not in CROP_MODES:
        raise ValueError(f"input config crop_mode={cfg.crop_mode!r}: expected one of {CROP_MODES}")
    if cfg.augment not in AUGMENTS:
        raise ValueError(f"input config augment={cfg.augment!r}: expected one of {AUGMENTS}")
    if cfg.interpolation not in INTERPOLATIONS:
        raise ValueError(f"input config interpolation={cfg.interpolation!r}: expected one of {INTERPOLATIONS}")
    for key in ("mean", "std"):
        if len(tuple(cfg[key])) != 3:
            raise ValueError(f"input config {key}={cfg[key]!r}: expected 3 values (R, G, B)")
    if any(s <= 0 for s in cfg.std):
        raise ValueError(f"input config std={cfg.std!r}: every value must be > 0")
    for key in ("mixup_alpha", "cutmix_alpha"):
        if cfg[key] < 0:
            raise ValueError(f"input config {key}={cfg[key]}: must be >= 0")
