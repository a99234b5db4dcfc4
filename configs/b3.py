r"""EfficientNet-B3 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b3.py --workdir=gs://BUCKET/b3 [--config.key=value ...]
Smoke:    python train.py --config=configs/b3.py:smoke --workdir=/tmp/b3_smoke   (CPU, seconds)
Hardware: TPU v3-32 / 16+ GPUs (global batch 2048, bf16); every host of a pod runs the same command with
          --distributed.
Expected: 81.6 % ImageNet top-1 at 300 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b3",
        image_size=300,  # V1 trains and evaluates at the same resolution
        drop_rate=0.3,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
