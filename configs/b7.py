r"""EfficientNet-B7 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b7.py --workdir=gs://BUCKET/b7 [--config.key=value ...]
Smoke:    python train.py --config=configs/b7.py:smoke --workdir=/tmp/b7_smoke   (CPU, seconds)
Hardware: TPU v3-256 or larger (global batch 2048, bf16, --config.model.remat=True); every host of a pod
          runs the same command with --distributed.
Expected: 84.3 % ImageNet top-1 at 600 px (EfficientNet paper (Tan & Le 2019), Table 2).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b7",
        image_size=600,  # V1 trains and evaluates at the same resolution
        drop_rate=0.5,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
