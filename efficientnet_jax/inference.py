"""A deployment-style forward: BN folded into the convs, weights compiled in, and on CPU every
conv as the C++ kernels of `efficientnet_jax/kernels` (the folded model's `dw_impl='auto'`;
`'shift'` keeps XLA's lowering, with the 1x1 convs on XLA's own dot emitter).

    fwd = inference_fn(model, variables)      # variables: {'params', 'batch_stats'}
    logits = fwd(images)                      # NHWC float32, normalised as for model.apply

The result is a top-level program for serving, evaluation loops and benchmarks (JAX refuses
compiler options on a jit nested in another); inside your own jitted code call `model.apply`.

What each piece buys, B0 @224 float32 on 2 CPU cores (XLA CPU, jaxlib 0.10.2), measured with
`python benchmarks/bench_inference_options.py --batches 1 32` (all forms compiled in one process,
alternated; 2026-12-07, 100 rounds at batch 1, 8 at batch 32):

- batch 1: `model.apply` 14.9 ms, BN folded 1.06x, weights as constants 1.09x, both 1.11x,
  `CPU_COMPILER_OPTIONS` alone 1.11x, all three 1.26x (11.8 ms), and with the CPU kernels (this
  function's default on CPU) 8.25 ms, 1.80x. The fold and the constants save per-call work (311
  argument buffers, 49 per-channel rsqrt fusions; ONNX Runtime's export does the same: folded BN,
  pre-packed initializers) and let the kernels' weight panels be packed at compile time; the
  options send XLA's 1x1 convs to its own dot emitter instead of YNNPACK fusions (YNNPACK keeps
  the reductions), faster on these small GEMMs where the kernels are off; the kernels fuse what
  XLA CPU cannot (efficientnet_jax/kernels).
- batch 32: `model.apply` 342 ms; the three XLA-side pieces 0.97-1.07x (the per-call savings
  vanish and the big GEMMs run about as fast either way), the kernels 213 ms, 1.61x. Training
  steps are ~5 % slower with the options (their weight-gradient GEMMs like YNNPACK), so only this
  inference program uses them.

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


def default_compiler_options(platform: str) -> Dict[str, Any]:
    """The inference program's compiler options on `platform` ('cpu', 'gpu', 'tpu'): XLA's own elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if platform == "cpu" else {}


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
    `compiler_options` default: `default_compiler_options` of the default backend; `{}` for XLA's
    defaults.
    """
    if fold_bn:
        model, variables = fold_batch_norm(model, variables)
    else:
        variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    if compiler_options is None:
        compiler_options = default_compiler_options(jax.default_backend())
    options = dict(compiler_options) or None
    if constant_weights:
        return jax.jit(lambda x: model.apply(variables, x, train=False), compiler_options=options)
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options)
    return lambda x: fwd(variables, x)
