r"""EfficientNetV2-S on ImageNet with the V2 recipe and progressive learning (configs/common.py).

Run:      python train.py --config=configs/v2_s.py --workdir=gs://BUCKET/v2_s [--config.key=value ...]
Smoke:    python train.py --config=configs/v2_s.py:smoke --workdir=/tmp/v2_s_smoke   (CPU, seconds)
Hardware: TPU v3-32 or larger (global batch 4096, bf16); every host runs the same command with
          --distributed.
Expected: 83.9 % ImageNet top-1 at 384 px (google/automl efficientnetv2 README).
Stages:   4 stages from 128 px to 300 px (google/automl efficientnetv2 main.py); eval at 384 px.
"""

from configs import common


def get_config(arg=None):
    config = common.v2_config(
        "efficientnetv2_s",
        image_size=300,  # the last stage's training size
        eval_image_size=384,
        drop_rate=0.2,
        drop_path_rate=0.2,
        augment="randaugment",
        randaug_magnitude=10,  # grows from 5 over the stages
        mixup_alpha=0.0,  # grows from 0 over the stages; mixup and cutmix each get half the batch
        cutmix_alpha=0.0,
        stages=4,
        min_image_size=128,
    )
    return common.finalize(config, arg)
