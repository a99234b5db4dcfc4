r"""EfficientNet-Lite1 on ImageNet (no SE, ReLU6, fixed stem/head) with the V1 recipe.

Run:      python train.py --config=configs/lite1.py --workdir=gs://BUCKET/lite1 [--config.key=value ...]
Smoke:    python train.py --config=configs/lite1.py:smoke --workdir=/tmp/lite1_smoke   (CPU, seconds)
Hardware: TPU v3-8 / 8 GPUs or more (global batch 2048, bf16).
Expected: 76.7 % ImageNet top-1 at 240 px (EfficientNet-Lite README, tensorflow/tpu). The README
          does not state the augmentation; this config uses the official main.py default
          (Inception crop + flip, no AutoAugment). Inputs are scaled to [-1, 1] as the Lite weights.
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_lite1",
        image_size=240,
        drop_rate=0.2,
        drop_path_rate=0.2,
        augment="none",
    )
    return common.finalize(config, arg)
