"""1x1 convolution as a dot over channels, with a backward that keeps XLA CPU off transposes;
small-input convolutions (the stems) lowered onto it through a patch map.

Forward: `y[..., o] = sum_i x[..., i] * w[i, o]`, one `dot_general` over the last axis (the
numerics the parity tests pin down).

Why a custom backward (XLA CPU, jaxlib 0.10.2): JAX's transpose rule writes the weight gradient
as a dot contracting the three leading (N, H, W) axes of x and g. XLA CPU canonicalises that
into a dot whose right operand is g *transposed*, (C_out, N*H*W), and fuses the transpose into
the BN-backward fusion that produces g, which then writes 4-D maps in column order: 64 such
fusions took 0.67 s of a 2.5 s B0 batch-32 step (one, 32x112x112x96, alone 0.36 s). Flattening
x and g to (N*H*W, C) first and contracting axis 0 of both is a plain TN GEMM that XLA hands to
Eigen without a copy. dx is `g @ w.T`, as in autodiff.
"""

from __future__ import annotations

import functools
import operator
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from efficientnet_jax.models.depthwise import _out_size, _pad_input, _taps  # shared tap views

Array = jax.Array


def _dot_last(x: Array, w: Array) -> Array:
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


# The CPU kernel's TN GEMM where it beats XLA's: many positions, a narrow side (see use_tn_kernel).
TN_KERNEL_MIN_ROWS = 4096
TN_KERNEL_MAX_NARROW = 48


def use_tn_kernel(m: int, p: int, q: int, dtype) -> bool:
    """a^T b, a (m, p) and b (m, q), as kernels.gemm_tn? Float32 on CPU, where it builds, for
    m >= 4096 rows with min(p, q) <= 48: the weight gradients (and conv_bn.py's x^T x, x^T g) of
    B0's early layers, where XLA CPU hands a long, narrow dot to Eigen. Alone, at m = 401408 on 2
    cores: 27 x 32 (the stem) 12.7 -> 7.1 ms, 32 x 16 10.1 -> 4.4, 16 x 16 7.4 -> 2.7; XLA's own
    GEMM stays faster where both sides are wide (1568 x 192 x 1152: 4.3 vs 5.9 ms). In a B0
    batch-32 training step (one process, alternated, 3 runs): median 1.38 -> 1.26, 1.46 -> 1.31
    and 1.29 -> 1.29 s; the fastest step always gained (1.31 -> 1.20, 1.25 -> 1.24, 1.20 -> 1.12)."""
    if jnp.dtype(dtype) != jnp.float32 or jax.default_backend() != "cpu":
        return False
    if m < TN_KERNEL_MIN_ROWS or min(p, q) > TN_KERNEL_MAX_NARROW:
        return False
    from efficientnet_jax import kernels  # builds the C++ library on first use

    return kernels.available()


def flat_tn(a: Array, b: Array, preferred_element_type=None) -> Array:
    """a^T b over the flattened leading axes, (..., P) x (..., Q) -> (P, Q): a plain TN GEMM."""
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    out_type = jnp.result_type(a2, b2) if preferred_element_type is None else preferred_element_type
    if a2.dtype == b2.dtype == out_type and use_tn_kernel(a2.shape[0], a2.shape[1], b2.shape[1], out_type):
        from efficientnet_jax import kernels

        return kernels.gemm_tn(a2, b2)
    return lax.dot_general(a2, b2, (((0,), (0,)), ((), ())), preferred_element_type=preferred_element_type)


@jax.custom_vjp
def pointwise_conv(x: Array, w: Array) -> Array:
    """y = x @ w over the last axis: x (..., C_in), w (C_in, C_out) -> (..., C_out)."""
    return _dot_last(x, w)


def _fwd(x: Array, w: Array):
    return _dot_last(x, w), (x, w)


def _bwd(res, g: Array):
    x, w = res
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    return dx.astype(x.dtype), flat_tn(x, g).astype(w.dtype)


pointwise_conv.defvjp(_fwd, _bwd)


# Convolutions over few input channels (the 3-channel stems: 3x3x3 = 27 terms).
IM2COL_MAX_TERMS = 32


def use_im2col(kernel_shape: Sequence[int]) -> bool:
    """Lower this HWIO kernel as patches @ kernel? Only on CPU, only for kh*kw*C_in <= 32.

    XLA CPU runs the B0 stem (3x3 stride 2, 3 -> 32) as a convolution whose weight gradient is a
    35 ms backward-filter convolution at batch 32; as 9 strided slices gathered into a
    (N, Ho, Wo, 27) patch map and one `pointwise_conv`, the forward is a K=27 dot and the weight
    gradient a TN GEMM: B0 batch-32 training step 1765 -> 1724 ms, forward 443-461 -> 410-438 ms
    (2 cores, interleaved runs). On GPU/TPU the native convolution is the fast path.
    """
    kh, kw, cin, _ = kernel_shape
    return (kh, kw) != (1, 1) and kh * kw * cin <= IM2COL_MAX_TERMS and jax.default_backend() == "cpu"


def im2col_conv(x: Array, kernel: Array, stride: int, pads: Sequence[Tuple[int, int]]) -> Array:
    """Conv (NHWC x HWIO, explicit (lo, hi) pads) as a patch map (taps in HWI order) @ kernel."""
    kh, kw, cin, cout = kernel.shape
    xp = _pad_input(x, pads)
    ho, wo = _out_size(xp.shape[1], kh, stride), _out_size(xp.shape[2], kw, stride)
    # The depthwise shift form's strided tap views, dy-major: the order HWIO flattens in. Each is
    # zero-padded along channels to its slot and the views summed: XLA fuses that into one loop
    # writing the patch map, where `concatenate` ran 9 slice fusions plus a copy (B0 stem,
    # batch 32: 53 -> 34 ms forward; batch 1: 0.82 -> 0.53 ms). Adding zeros is exact.
    taps = [tap for _, _, tap in _taps(xp, kh, kw, stride, ho, wo)]
    k = len(taps)
    slots = [jnp.pad(tap, ((0, 0),) * 3 + ((cin * i, cin * (k - 1 - i)),)) for i, tap in enumerate(taps)]
    patches = functools.reduce(operator.add, slots)
    return pointwise_conv(patches, kernel.reshape(kh * kw * cin, cout))


# Squeeze-Excitation's gate folded into the following 1x1 conv (inference).
GATED_MIN_POSITIONS = 512


def use_gated_dot(x_shape: Sequence[int]) -> bool:
    """Fold the SE gate into the project conv's weights? On CPU, where a sample has many rows.

    (x * s) @ w == x @ (s * w) per sample, and the right side never writes the gated map: at
    batch 32 on 2 cores, 32x112x112x32 -> 16 takes 21 -> 6 ms, 32x28x28x240 -> 40 5.6 -> 4.9 ms.
    With few positions per sample (14x14 and below) N small batched GEMMs lose to one big one
    (32x7x7x1152 -> 320: 6 -> 24 ms), so those keep the multiply. Forward only: in a training
    step the fold's backward (dW needs the gated map or per-sample GEMMs) measured 0-20 % slower
    than autodiff of the multiply, so train mode keeps the multiply.
    """
    return x_shape[1] * x_shape[2] >= GATED_MIN_POSITIONS and jax.default_backend() == "cpu"


def gated_pointwise_conv(x: Array, s: Array, w: Array) -> Array:
    """(x * s[:, None, None, :]) @ w for NHWC x, a gate s (N, C_in) and w (C_in, C_out), as a
    batched dot with per-sample weights s[n, :, None] * w."""
    ws = (s[:, :, None] * w[None]).astype(x.dtype)  # (N, C_in, C_out)
    return lax.dot_general(x, ws, (((3,), (1,)), ((0,), (0,))))
