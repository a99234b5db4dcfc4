r"""The paper's step-1 grid search: alpha, beta, gamma at phi = 1 under alpha * beta^2 * gamma^2 ~= 2.

Run:      python -m efficientnet_jax.tools.sweep --config=configs/sweeps/compound_grid.py --workdir=/tmp/grid
Hardware: a CPU, about 10 minutes on 2 cores (embedded digits, 8 epochs per trial).
Produces: results.md / results.csv / results.png in the workdir; the paper found (1.2, 1.1, 1.15) on ImageNet.

gamma is solved from the constraint for each (alpha, beta) on the grid, so every trial costs about
2x the base (the rounding of small images moves the measured multiply-adds a little; the table
shows them).
"""

import math

from configs.sweeps._base import BASE_DEPTH, BASE_RES, BASE_WIDTH, get_config  # noqa: F401

ALPHAS = (1.0, 1.2, 1.4)
BETAS = (1.0, 1.1, 1.2)


def grid():
    """(alpha, beta, gamma) with alpha * beta^2 * gamma^2 = 2 and gamma >= 1."""
    out = []
    for a in ALPHAS:
        for b in BETAS:
            g2 = 2.0 / (a * b * b)
            if g2 >= 1.0:
                out.append((a, b, math.sqrt(g2)))
    return out


def get_hyper(h):
    pts = grid()
    return h.zipit([
        h.sweep("config.model.depth_mult", [round(BASE_DEPTH * a, 4) for a, _, _ in pts]),
        h.sweep("config.model.width_mult", [round(BASE_WIDTH * b, 4) for _, b, _ in pts]),
        h.sweep("config.image_size", [round(BASE_RES * g) for _, _, g in pts]),
        h.sweep("config.eval_image_size", [round(BASE_RES * g) for _, _, g in pts]),
    ])
