r"""EfficientNetV2-XL on ImageNet with the V2 recipe and progressive learning (configs/common.py).

Run:      python train.py --config=configs/v2_xl.py --workdir=gs://BUCKET/v2_xl [--config.key=value ...]
Smoke:    python train.py --config=configs/v2_xl.py:smoke --workdir=/tmp/v2_xl_smoke   (CPU, seconds)
Hardware: TPU v3-256 or larger (--config.model.remat=True) (global batch 4096, bf16); every host runs the
          same command with --distributed.
Expected: 87.2 % ImageNet top-1 at 512 px (google/automl efficientnetv2 README -- after ImageNet-21k
          pre-training; trained on ImageNet-1k alone it is not expected to reach it).
Stages:   4 stages from 128 px to 384 px (google/automl efficientnetv2 main.py); eval at 512 px.
"""

from configs import common


def get_config(arg=None):
    config = common.v2_config(
        "efficientnetv2_xl",
        image_size=384,  # the last stage's training size
        eval_image_size=512,
        drop_rate=0.4,
        drop_path_rate=0.2,
        augment="randaugment",
        randaug_magnitude=20,  # grows from 5 over the stages
        mixup_alpha=0.5,  # grows from 0 over the stages; mixup and cutmix each get half the batch
        cutmix_alpha=0.5,
        stages=4,
        min_image_size=128,
    )
    return common.finalize(config, arg)
