r"""EfficientNet-B5 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b5.py --workdir=gs://BUCKET/b5 [--config.key=value ...]
Smoke:    python train.py --config=configs/b5.py:smoke --workdir=/tmp/b5_smoke   (CPU, seconds)
Hardware: TPU v3-128 or larger (global batch 2048, bf16; consider --config.model.remat=True); every host
          of a pod runs the same command with --distributed.
Expected: 83.6 % ImageNet top-1 at 456 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b5",
        image_size=456,  # V1 trains and evaluates at the same resolution
        drop_rate=0.4,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
