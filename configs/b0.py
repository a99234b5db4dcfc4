r"""EfficientNet-B0 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b0.py --workdir=gs://BUCKET/b0 [--config.key=value ...]
Smoke:    python train.py --config=configs/b0.py:smoke --workdir=/tmp/b0_smoke   (CPU, seconds)
Hardware: TPU v3-8 / 8 GPUs or more (global batch 2048, bf16); every host of a pod runs the same command
          with --distributed.
Expected: 77.1 % ImageNet top-1 at 224 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b0",
        image_size=224,  # V1 trains and evaluates at the same resolution
        drop_rate=0.2,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
