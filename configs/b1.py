r"""EfficientNet-B1 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b1.py --workdir=gs://BUCKET/b1 [--config.key=value ...]
Smoke:    python train.py --config=configs/b1.py:smoke --workdir=/tmp/b1_smoke   (CPU, seconds)
Hardware: TPU v3-8 / 8 GPUs or more (global batch 2048, bf16); every host of a pod runs the same command
          with --distributed.
Expected: 79.1 % ImageNet top-1 at 240 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b1",
        image_size=240,  # V1 trains and evaluates at the same resolution
        drop_rate=0.2,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
