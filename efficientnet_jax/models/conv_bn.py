"""Training-mode BatchNorm of a widening 1x1 conv, with statistics and backward from the conv input.

For y = x @ w (x (M, C_in), w (C_in, C_out), C_out > C_in: MBConv's expand conv) the BN
statistics and every gradient follow from small matrices over the narrow input:

    mean(y)   = mean(x) @ w                 E[y^2]_c = (w^T G w)_cc / M,   G = x^T x
    sum(g*y)  = colsum(w * P),              P = x^T g   (g: gradient of the BN output)
    g_y       = A g - e y + k               (A, e, k per channel, from the two sums)
    dW        = A P - e (G w) + sum(x) k    dx = g (A w)^T - x (w diag(e) w^T) + k w^T

so the expanded map y is written once and never read by a reduction: autodiff of conv + BN reads
it twice for the forward statistics, once more for sum(g * yhat), and writes and re-reads g_y
for dW and dx. The price is two extra GEMMs of M x C_in x C_in (G, and x @ (w diag(e) w^T)),
C_in/C_out of the conv's own flops. Measured (XLA CPU, 2 cores, batch 32, conv + BN + SiLU forward
and backward): 112x112 16->96 295 -> 228 ms, 56x56 24->144 134 -> 88 ms, 28x28 40->240 54 -> 45
ms, 7x7 192->1152 15 -> 16 ms; B0 value_and_grad, both compiled in one process and alternated
8x, median 1783 -> 1645 ms.

Numerics: the forward value and the running statistics are those of `batchnorm.BatchNorm`
(mean and one-pass variance E[y^2] - mean^2 in float32) up to float32 reassociation; gradients
agree with autodiff of `pointwise_conv` + `batch_norm_train` to float32 rounding
(tests/models/test_conv_bn.py).
"""

from __future__ import annotations

from functools import partial
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from efficientnet_jax.models.batchnorm import _normalize
from efficientnet_jax.models.pointwise import _dot_last, flat_tn

Array = jax.Array
F32 = jnp.float32


def use_conv_bn(kernel_shape: Sequence[int]) -> bool:
    """Fuse this 1x1 conv with its training-mode BN? On CPU, for a widening conv."""
    return kernel_shape[-1] > kernel_shape[-2] and jax.default_backend() == "cpu"


def _moments(x: Array, w: Array, axis_name: Optional[str]):
    """(mean, var) of x @ w per output channel from sum(x) and x^T x, plus both for the backward."""
    count = x.size // x.shape[-1]
    sum_x = jnp.sum(x.astype(F32), axis=tuple(range(x.ndim - 1)))
    gram = flat_tn(x, x, F32)
    w32 = w.astype(F32)
    mean = (sum_x / count) @ w32
    meansq = jnp.sum(w32 * (gram @ w32), axis=0) / count
    if axis_name is not None:
        mean, meansq = lax.pmean(jnp.stack([mean, meansq]), axis_name)
    return mean, jnp.maximum(0.0, meansq - lax.square(mean)), sum_x, gram


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def conv_bn_train(
    x: Array, w: Array, scale: Array, bias: Array, eps: float, axis_name: Optional[str] = None
) -> Tuple[Array, Array, Array]:
    """(BN(x @ w) in float32, batch mean, batch var); x (..., C_in), w (C_in, C_out).

    The statistics are outputs so the caller can update running averages without recomputing
    them; they carry no gradient (as `lax.stop_gradient` of `batchnorm._stats`).
    """
    return _fwd(x, w, scale, bias, eps, axis_name)[0]


def _fwd(x, w, scale, bias, eps, axis_name):
    mean, var, sum_x, gram = _moments(x, w, axis_name)
    y = _normalize(_dot_last(x, w), mean, var, scale, bias, eps)
    return (y, mean, var), (x, w, scale, mean, var, sum_x, gram)


def _bwd(eps, axis_name, res, cotangents):
    x, w, scale, mean, var, sum_x, gram = res
    g = cotangents[0].astype(F32)  # the statistics outputs are not differentiated
    w32 = w.astype(F32)
    count = x.size // x.shape[-1]
    inv = lax.rsqrt(var + eps)
    p = flat_tn(x, g, F32)  # (C_in, C_out): x^T g
    d_bias = jnp.sum(g, axis=tuple(range(g.ndim - 1)))
    d_scale = inv * (jnp.sum(w32 * p, axis=0) - mean * d_bias)  # sum(g * yhat), this device's
    g_mean, gx_mean = d_bias / count, d_scale / count
    if axis_name is not None:  # as batchnorm._bwd: dx needs the means over every device's batch
        g_mean, gx_mean = lax.pmean(jnp.stack([g_mean, gx_mean]), axis_name)
    # g_y = A (g - g_mean - yhat gx_mean) = A g - e y + k, per output channel.
    a = scale * inv
    e = a * gx_mean * inv
    k = e * mean - a * g_mean
    dw = a * p - e * (gram @ w32) + sum_x[:, None] * k
    dx = (_dot_last(g.astype(x.dtype), (w32 * a).T.astype(x.dtype)).astype(F32)
          - _dot_last(x, ((w32 * e) @ w32.T).astype(x.dtype)).astype(F32)
          + k @ w32.T)
    return dx.astype(x.dtype), dw.astype(w.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


conv_bn_train.defvjp(_fwd, _bwd)
