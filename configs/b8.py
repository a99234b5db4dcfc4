r"""EfficientNet-B8 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/b8.py --workdir=gs://BUCKET/b8 [--config.key=value ...]
Smoke:    python train.py --config=configs/b8.py:smoke --workdir=/tmp/b8_smoke   (CPU, seconds)
Hardware: TPU v3-512 class (global batch 2048, bf16, --config.model.remat=True); every host of a pod runs
          the same command with --distributed.
Expected: 85.5 % ImageNet top-1 at 672 px (AdvProp paper (Xie et al. 2020), Table 1 -- trained with
          AdvProp + AutoAugment; this plain recipe is not expected to reach it).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_b8",
        image_size=672,  # V1 trains and evaluates at the same resolution
        drop_rate=0.5,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
