r"""EfficientNet-L2 on ImageNet with the paper's recipe (configs/common.py, V1).

Run:      python train.py --config=configs/l2.py --workdir=gs://BUCKET/l2 [--config.key=value ...]
Smoke:    python train.py --config=configs/l2.py:smoke --workdir=/tmp/l2_smoke   (CPU, seconds)
Hardware: TPU v3-1024 class (global batch 2048, bf16, --config.model.remat=True); every host of a pod runs
          the same command with --distributed.
Expected: 88.4 % ImageNet top-1 at 800 px (Noisy Student paper (Xie et al. 2020), Table 2 -- needs
          JFT-300M pseudo-labels; this plain ImageNet recipe is not expected to reach it).
"""

from configs import common


def get_config(arg=None):
    config = common.v1_config(
        "efficientnet_l2",
        image_size=800,  # V1 trains and evaluates at the same resolution
        drop_rate=0.5,
        drop_path_rate=0.2,
        augment="autoaugment",
    )
    return common.finalize(config, arg)
