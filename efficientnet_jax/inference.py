"""A deployment-style forward: BN folded into the convs, weights compiled into the program.

    fwd = inference_fn(model, variables)      # variables: {'params', 'batch_stats'}
    logits = fwd(images)                      # NHWC float32, normalised as for model.apply

What each option buys, B0 @224 float32 on 2 CPU cores (XLA CPU, jaxlib 0.10.2), measured with
`python benchmarks/bench_inference_options.py` (all forms in one process, alternated): batch 1,
`model.apply` with the variables as arguments 13.9 ms, BN folded 13.3, weights as constants 12.9,
both 12.7 (1.09x); batch 32, all four 331-338 ms (no gain: the savings are per call, the 311
argument buffers and 49 per-channel rsqrt fusions). ONNX Runtime does the same at export (folded
BN, pre-packed initializers).

The price of `constant_weights`: every input shape compiles its own program holding a copy of the
weights (B0: 21 MB; B7: 267 MB), and new weights need a new `inference_fn`. With
`constant_weights=False` the variables stay arguments of one jitted function.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax

from efficientnet_jax.models.efficientnet import EfficientNet
from efficientnet_jax.models.fold import fold_batch_norm

Array = jax.Array


def inference_fn(
    model: EfficientNet,
    variables: Mapping[str, Any],
    *,
    fold_bn: bool = True,
    constant_weights: bool = True,
) -> Callable[[Array], Array]:
    """A jitted `images -> model.apply(variables, images, train=False)`, for serving and benchmarks.

    Agrees with `model.apply` to float32 rounding (the fold rescales the conv kernels).
    """
    if fold_bn:
        model, variables = fold_batch_norm(model, variables)
    else:
        variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    if constant_weights:
        return jax.jit(lambda x: model.apply(variables, x, train=False))
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return functools.partial(fwd, variables)
