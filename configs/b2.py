r"""EfficientNet-B2 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b2.py --workdir=gs://BUCKET/b2 [--config.key=value ...]
Smoke:    python train.py --config=configs/b2.py:smoke --workdir=/tmp/b2_smoke   (CPU, seconds)
Hardware: TPU v3-32 / 16+ GPUs (global batch 2048, bf16); every host of a pod runs the same command with
          --distributed.
Expected: 80.1 % ImageNet top-1 at 260 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b2",
        image_size=260,  # V1 trains and evaluates at the same resolution
        drop_rate=0.3,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
