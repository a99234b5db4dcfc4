r"""EfficientNetV2-B2 on ImageNet with the V2 recipe and progressive learning (configs/common.py).

Run:      python train.py --config=configs/v2_b2.py --workdir=gs://BUCKET/v2_b2 [--config.key=value ...]
Smoke:    python train.py --config=configs/v2_b2.py:smoke --workdir=/tmp/v2_b2_smoke   (CPU, seconds)
Hardware: TPU v3-32 / 16+ GPUs (global batch 4096, bf16); every host runs the same command with
          --distributed.
Expected: 80.5 % ImageNet top-1 at 260 px (google/automl efficientnetv2 README).
Stages:   4 stages from 128 px to 208 px (google/automl efficientnetv2 main.py); eval at 260 px.
"""

from configs import common


def get_config(arg=None):
    config = common.v2_config(
        "efficientnetv2_b2",
        image_size=208,  # the last stage's training size
        eval_image_size=260,
        drop_rate=0.3,
        drop_path_rate=0.2,
        augment="autoaugment",  # automl "effnetv1_autoaug": V1 preprocessing + AutoAugment
        randaug_magnitude=0,
        mixup_alpha=0.0,  # grows from 0 over the stages; mixup and cutmix each get half the batch
        cutmix_alpha=0.0,
        stages=4,
        min_image_size=128,
    )
    return common.finalize(config, arg)
