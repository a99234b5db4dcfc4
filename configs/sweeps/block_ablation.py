r"""Block ablations, one factor at a time from the base: SE on/off, swish vs ReLU6, Fused-MBConv
in the first 1-3 stages (the V2 paper's Table 3 question asked of the V1 base).

Run:      python -m efficientnet_jax.tools.sweep --config=configs/sweeps/block_ablation.py --workdir=/tmp/blocks
Hardware: a CPU, about 6 minutes on 2 cores (embedded digits, 8 epochs per trial).
Produces: results.md / results.csv / results.png in the workdir.
"""

from configs.sweeps._base import get_config  # noqa: F401


def get_hyper(h):
    return h.chainit([
        h.fixed("config.model.se", True),  # the base
        h.fixed("config.model.se", False),
        h.fixed("config.model.act", "relu6"),
        h.sweep("config.model.fused_stages", [1, 2, 3]),
    ])
