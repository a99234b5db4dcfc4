"""A deployment-style forward: BN folded into the convs, weights compiled in, CPU dots on XLA's own
emitter.

    fwd = inference_fn(model, variables)      # variables: {'params', 'batch_stats'}
    logits = fwd(images)                      # NHWC float32, normalised as for model.apply

The result is a top-level program for serving, evaluation loops and benchmarks (JAX refuses
compiler options on a jit nested in another); inside your own jitted code call `model.apply`.

What each piece buys, B0 @224 float32 on 2 CPU cores (XLA CPU, jaxlib 0.10.2), measured with
`python benchmarks/bench_inference_options.py` (all forms compiled in one process, alternated):

- BN folded + weights as constants: batch 1 13.9 -> 12.7 ms (1.09x); batch 32 unchanged (331-338
  ms). The savings are per call: 311 argument buffers and 49 per-channel rsqrt fusions. ONNX
  Runtime does the same at export (folded BN, pre-packed initializers).
- `CPU_COMPILER_OPTIONS` (1x1 convs and the classifier through XLA's own dot emitter instead of
  YNNPACK fusions; YNNPACK keeps the reductions): a further ~1.1x at batch 1 and ~1.06x at batch
  32. Training steps are ~5 % slower with it (their weight-gradient GEMMs like YNNPACK), so only
  this inference program uses it.

The price of constant weights: every input shape compiles its own program holding a copy of the
weights (B0: 21 MB; B7: 267 MB), and new weights need a new `inference_fn`. With
`constant_weights=False` the variables stay arguments of one jitted function.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import jax

from efficientnet_jax.models.efficientnet import EfficientNet
from efficientnet_jax.models.fold import fold_batch_norm

Array = jax.Array

# XLA CPU DebugOptions for the inference program: YNNPACK only for reductions (the default also
# sends every dot to YNNPACK). An enum name of jaxlib 0.10.2's LibraryFusionType.
CPU_COMPILER_OPTIONS: Dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


def inference_fn(
    model: EfficientNet,
    variables: Mapping[str, Any],
    *,
    fold_bn: bool = True,
    constant_weights: bool = True,
    compiler_options: Optional[Mapping[str, Any]] = None,
) -> Callable[[Array], Array]:
    """A jitted `images -> model.apply(variables, images, train=False)`, for serving and benchmarks.

    Agrees with `model.apply` to float32 rounding (the fold rescales the conv kernels).
    `compiler_options` default: `CPU_COMPILER_OPTIONS` on CPU, none elsewhere; `{}` for XLA's
    defaults.
    """
    if fold_bn:
        model, variables = fold_batch_norm(model, variables)
    else:
        variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    if compiler_options is None:
        compiler_options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {}
    options = dict(compiler_options) or None
    if constant_weights:
        return jax.jit(lambda x: model.apply(variables, x, train=False), compiler_options=options)
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options)
    return lambda x: fwd(variables, x)
