r"""Depth-only vs width-only vs resolution-only vs compound scaling of one base (paper Fig. 3 / 8).

Run:      python -m efficientnet_jax.tools.sweep --config=configs/sweeps/scaling_ablation.py --workdir=/tmp/scaling
Hardware: a CPU, about 10 minutes on 2 cores (embedded digits, 8 epochs per trial).
Produces: results.md / results.csv / results.png (top-1 vs multiply-adds) in the workdir.

Points at roughly 1.5x-2.5x the base's multiply-adds along each axis; compound uses the paper's
alpha, beta, gamma = 1.2, 1.1, 1.15 (phi = 0.5 and 1: 1.76x and 2.00x here). Small images make
the rounding coarse (TF-SAME feature maps, ceil of repeats), so the axes cannot be matched
exactly; the plot puts each point at its measured multiply-adds. At full scale
(--config.dataset=imagenet2012 with the B0 recipe) this redraws the paper's comparison.
"""

from configs.sweeps._base import BASE_DEPTH, BASE_RES, BASE_WIDTH, get_config  # noqa: F401

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15


def get_hyper(h):
    # (depth, width, resolution) per trial.
    points = [(BASE_DEPTH, BASE_WIDTH, BASE_RES)]  # the base
    points += [(d, BASE_WIDTH, BASE_RES) for d in (1.0, 1.1)]  # depth only
    points += [(BASE_DEPTH, w, BASE_RES) for w in (0.65, 0.7)]  # width only
    points += [(BASE_DEPTH, BASE_WIDTH, r) for r in (64, 68)]  # resolution only
    points += [  # compound
        (BASE_DEPTH * ALPHA**phi, BASE_WIDTH * BETA**phi, round(BASE_RES * GAMMA**phi)) for phi in (0.5, 1.0)
    ]
    return h.zipit([
        h.sweep("config.model.depth_mult", [round(p[0], 4) for p in points]),
        h.sweep("config.model.width_mult", [round(p[1], 4) for p in points]),
        h.sweep("config.image_size", [p[2] for p in points]),
        h.sweep("config.eval_image_size", [p[2] for p in points]),
    ])
