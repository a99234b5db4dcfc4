"""Hand-written CPU kernels for the inference program and the training backward, called through XLA's FFI.

With BN folded, float32, on CPU (`dw_impl='auto'`), a whole EfficientNet runs as these kernels;
the folded B0 program has no XLA dot or convolution left:

- `fused_depthwise`: an MBConv block's middle, `act(depthwise(act(x @ w_expand + b_expand)) +
  b_dw)` and the Squeeze-Excitation mean of that, in one pass over the block input. Each input row
  is expanded (register-tiled GEMM, common.h) and activated into a ring of k rows that the taps
  read from cache, so the block's widest map is never written to memory. XLA CPU (jaxlib 0.10.2)
  ran this as a dot, a padded activation copy, a loop fusion for the taps and a YNNPACK reduction.
- `fused_pointwise`: a 1x1 conv with its folded BN: the project conv with the SE gate (computed
  inside from the SE's inputs) and the skip connection, the head conv with its activation, the
  classifier. Weights arrive as contiguous panels, packed at trace time and folded into the
  compiled constants.
- `fused_stem`: the stem conv (3x3 stride 2 over RGB) with its folded BN and activation as a
  direct convolution, where XLA pads the image, writes a 27-wide patch map and runs a K=27 dot.

Why not XLA's dots: at batch 1 XLA handed each of B0's ~65 dots between threads (0.1-0.9 ms gaps
in its profile) and ran them at 50-110 GFLOP/s on two cores; the kernels' register tiles (8 x 3
vectors with AVX-512VL, 6 x 2 with AVX2) run at the core's FMA peak, ~110 GFLOP/s per core.

Training (float32 on CPU, where they build; no gradient of their own, they sit inside custom VJPs):

- `depthwise_kernel_grad`: the depthwise conv's kernel gradient in models/depthwise.py's backward,
  an FMA per tap into registers while a row is in cache, where XLA's reduction ran slowly on small
  wide maps (7x7x1152, 5x5 taps, batch 32: 23.6 -> 2.8 ms). Its dx is `fused_depthwise` over the
  output gradient (the flipped kernel; per stride phase at stride 2).
- `gemm_tn`: a^T b over a long axis with a narrow side, the early 1x1 convs' weight gradients
  (models/pointwise.py `use_tn_kernel`), which XLA handed to Eigen.

The kernels build on first use (build.py); where they cannot (no compiler,
`EFFICIENTNET_JAX_CPU_KERNELS=0`) the models keep XLA's lowering. Measured figures: the README
(Models: `inference_fn`; Benchmarks) and benchmarks/README.md.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from efficientnet_jax.kernels.build import KernelUnavailable, available, load, unavailable_reason
from efficientnet_jax.models.depthwise import _out_size  # (padded - k) // stride + 1

__all__ = ["FUSED_ACTS", "KernelUnavailable", "available", "depthwise_kernel_grad", "fused_depthwise", "fused_pointwise",
           "fused_stem", "gemm_tn", "load", "unavailable_reason"]

Array = jax.Array

# Activation name -> the kernel's code (fused_depthwise.cc `Act`); others use XLA's lowering.
FUSED_ACTS = {"identity": 0, "swish": 1, "silu": 1, "relu": 2, "relu6": 3}


def _check_acts_and_dtype(fn: str, x: Array, **acts: str) -> None:
    for name, act in acts.items():
        if act not in FUSED_ACTS:
            raise ValueError(f"{fn}: {name}={act!r} is not one of {sorted(FUSED_ACTS)}")
    if x.dtype != jnp.float32:
        raise ValueError(f"{fn}: float32 only, x is {x.dtype}")


@functools.cache
def gemm_panel_width() -> int:
    """Floats per row of a weight panel (common.h): 8 x the register tile's vectors, 24 with
    AVX-512VL and 16 with AVX2, as this machine's build of the kernels has it."""
    fn = load().EfficientNetJaxGemmVecs
    fn.restype = ctypes.c_int64
    return 8 * int(fn())


def _panels(w: Array) -> Array:
    """A (K, C) weight matrix as the GEMM's panels: (ceil(C / width), K, width), zero-padded.

    In `inference_fn` the weights are constants, so XLA folds this at compile time: the kernels
    read contiguous panels and no call pays for the layout.
    """
    k, c = w.shape
    width = gemm_panel_width()
    panels = -(-c // width)
    w = jnp.pad(w.astype(jnp.float32), ((0, 0), (0, panels * width - c)))
    return w.reshape(k, panels, width).transpose(1, 0, 2)


def _out_hw(x: Array, kernel: Array, stride: int, pads: Sequence[Tuple[int, int]]) -> Tuple[int, int]:
    """Output height and width of a kernel over x (NHWC) padded by `pads`, at `stride`."""
    return tuple(_out_size(x.shape[1 + i] + sum(pads[i]), kernel.shape[i], stride) for i in (0, 1))


def fused_depthwise(
    x: Array,
    kernel: Array,
    out_bias: Array,
    stride: int,
    pads: Sequence[Tuple[int, int]],
    out_act: str,
    in_bias: Optional[Array] = None,
    in_act: str = "identity",
    expand_kernel: Optional[Array] = None,
) -> Tuple[Array, Array]:
    """(out, pooled): out = out_act(depthwise(pad(in_act(x + in_bias))) + out_bias), pooled its
    (N, C) spatial mean.

    x (N, H, W, C) float32 NHWC; kernel (kh, kw, 1, C) HWIO as the model stores it; pads
    [(top, bottom), (left, right)] of the activated input. `in_bias=None` with `in_act='identity'`
    takes x as it is. With `expand_kernel` (1, 1, C_in, C) x is the block input (N, H, W, C_in)
    and the kernel computes `x @ expand_kernel` in place of x (the expand conv, never written
    out). CPU only; inference only (no gradient).
    """
    load()
    c = kernel.shape[3] if kernel.ndim == 4 else -1
    if expand_kernel is not None and (expand_kernel.ndim != 4 or expand_kernel.shape[:2] != (1, 1)
                                      or x.ndim != 4 or expand_kernel.shape[2:] != (x.shape[3], c)):
        raise ValueError(f"fused_depthwise: expand_kernel {expand_kernel.shape} must be (1, 1, C_in, C) for "
                         f"x {x.shape} (C_in last) and kernel {kernel.shape} (C last)")
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != 1 or (expand_kernel is None and c != x.shape[3]):
        raise ValueError(f"fused_depthwise: x {x.shape} must be NHWC and kernel {kernel.shape} (kh, kw, 1, C)")
    _check_acts_and_dtype("fused_depthwise", x, in_act=in_act, out_act=out_act)
    n = x.shape[0]
    ho, wo = _out_hw(x, kernel, stride, pads)
    if expand_kernel is not None and in_bias is None:
        in_bias = jnp.zeros((c,), jnp.float32)
    elif in_act == "identity" and expand_kernel is None:
        if in_bias is not None:  # a bias without activation: added here, XLA fuses it upstream
            x = x + in_bias.astype(jnp.float32)
        in_bias = jnp.zeros((c,), jnp.float32)
    elif in_bias is None:
        raise ValueError("fused_depthwise: an input activation needs its in_bias")
    outs = (jax.ShapeDtypeStruct((n, ho, wo, c), jnp.float32), jax.ShapeDtypeStruct((n, c), jnp.float32))
    # One handler; the target name says in a profile whether the call runs the expand conv too.
    target = "efficientnet_jax_fused_depthwise" if expand_kernel is None else "efficientnet_jax_fused_expand_depthwise"
    call = jax.ffi.ffi_call(target, outs, vmap_method="sequential")
    return call(
        x,
        jnp.zeros((0,), jnp.float32) if expand_kernel is None else _panels(expand_kernel[0, 0]),
        in_bias.astype(jnp.float32),
        kernel[:, :, 0, :].astype(jnp.float32),
        out_bias.astype(jnp.float32),
        stride=np.int64(stride),
        pad_top=np.int64(pads[0][0]),
        pad_left=np.int64(pads[1][0]),
        in_act=np.int64(FUSED_ACTS[in_act]),
        out_act=np.int64(FUSED_ACTS[out_act]),
    )


def fused_stem(x: Array, kernel: Array, bias: Array, stride: int, pads: Sequence[Tuple[int, int]], act: str) -> Array:
    """act(conv(pad(x), kernel, stride) + bias): the stem conv with its folded BN, as a direct
    convolution (fused_stem.cc). x (N, H, W, C_in) float32 NHWC, kernel (kh, kw, C_in, C_out) HWIO,
    pads [(top, bottom), (left, right)]. CPU only; inference only (no gradient)."""
    load()
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3] or bias.shape != kernel.shape[3:]:
        raise ValueError(f"fused_stem: x {x.shape} must be NHWC, kernel {kernel.shape} HWIO over its channels, "
                         f"bias {bias.shape} one per output channel")
    _check_acts_and_dtype("fused_stem", x, act=act)
    n, cout = x.shape[0], kernel.shape[3]
    ho, wo = _out_hw(x, kernel, stride, pads)
    call = jax.ffi.ffi_call(
        "efficientnet_jax_fused_stem", jax.ShapeDtypeStruct((n, ho, wo, cout), jnp.float32), vmap_method="sequential"
    )
    return call(x, kernel.astype(jnp.float32), bias.astype(jnp.float32), stride=np.int64(stride),
                pad_top=np.int64(pads[0][0]), pad_left=np.int64(pads[1][0]), act=np.int64(FUSED_ACTS[act]))


def fused_pointwise(
    x: Array,
    kernel: Array,
    bias: Array,
    act: str = "identity",
    gate: Optional[Array] = None,
    residual: Optional[Array] = None,
    se: Optional[Tuple[Array, Array, Array, Array, Array]] = None,
    se_act: str = "swish",
) -> Array:
    """act((x * gate[:, None, None, :]) @ kernel + bias) + residual: a 1x1 conv with its folded BN,
    the Squeeze-Excitation gate before it and the skip connection after (fused_pointwise.cc).

    x (N, H, W, K) float32 NHWC, kernel (1, 1, K, C) HWIO, bias (C,), gate (N, K) or None,
    residual (N, H, W, C) or None. `se` = (pooled (N, K), reduce kernel (1, 1, K, S), reduce bias
    (S,), expand kernel (1, 1, S, K), expand bias (K,)) computes the gate inside, as
    `sigmoid(se_act(pooled @ reduce + b) @ expand + b)`. CPU only; inference only (no gradient).
    """
    load()
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[:3] != (1, 1, x.shape[3]) or bias.shape != kernel.shape[3:]:
        raise ValueError(f"fused_pointwise: x {x.shape} must be NHWC, kernel {kernel.shape} (1, 1, C_in, C_out) "
                         f"over its channels, bias {bias.shape} one per output channel")
    n, h, w, k = x.shape
    c = kernel.shape[3]
    if gate is not None and gate.shape != (n, k):
        raise ValueError(f"fused_pointwise: gate {gate.shape} must be (N, C_in) = {(n, k)}")
    if residual is not None and residual.shape != (n, h, w, c):
        raise ValueError(f"fused_pointwise: residual {residual.shape} must be the output's shape {(n, h, w, c)}")
    _check_acts_and_dtype("fused_pointwise", x, act=act, se_act=se_act)
    empty = jnp.zeros((0,), jnp.float32)
    se_args = (empty,) * 5
    if se is not None:
        if gate is not None:
            raise ValueError("fused_pointwise: give the gate or the SE inputs that compute it, not both")
        pooled, w1, b1, w2, b2 = se
        s = b1.shape[0] if b1.ndim == 1 else -1
        if pooled.shape != (n, k) or w1.shape != (1, 1, k, s) or w2.shape != (1, 1, s, k) or b2.shape != (k,):
            raise ValueError(f"fused_pointwise: se shapes pooled {pooled.shape}, reduce {w1.shape} + {b1.shape}, "
                             f"expand {w2.shape} + {b2.shape} must be (N, C_in), (1, 1, C_in, S) + (S,), "
                             f"(1, 1, S, C_in) + (C_in,) with N, C_in = {n}, {k}")
        se_args = tuple(a.astype(jnp.float32) for a in (pooled, w1[0, 0], b1, w2[0, 0], b2))
    per_image = gate is not None or se is not None
    if not per_image:  # nothing differs between images: one (N*H*W, K) matrix, fewer partial tiles
        x = x.reshape(1, n * h * w, 1, k)
        residual = None if residual is None else residual.reshape(1, n * h * w, 1, c)
    call = jax.ffi.ffi_call(
        "efficientnet_jax_fused_pointwise", jax.ShapeDtypeStruct(x.shape[:3] + (c,), jnp.float32),
        vmap_method="sequential",
    )
    out = call(
        x,
        empty if gate is None else gate.astype(jnp.float32),
        _panels(kernel[0, 0]),
        bias.astype(jnp.float32),
        empty if residual is None else residual.astype(jnp.float32),
        *se_args,
        act=np.int64(FUSED_ACTS[act]),
        se_act=np.int64(FUSED_ACTS[se_act]),
    )
    return out.reshape(n, h, w, c)


def depthwise_kernel_grad(xp: Array, g: Array, kh: int, kw: int, stride: int) -> Array:
    """The depthwise conv's kernel gradient (kh, kw, 1, C) from the padded input and the output's
    gradient: `dk[dy, dx, c] = sum over n, oy, ox of xp[n, oy*s + dy, ox*s + dx, c] * g[n, oy, ox, c]`
    (depthwise_grad.cc). xp (N, Hp, Wp, C) and g (N, Ho, Wo, C) float32 NHWC. CPU only; the
    training backward of models/depthwise.py."""
    load()
    if xp.ndim != 4 or g.ndim != 4 or xp.shape[0] != g.shape[0] or xp.shape[3] != g.shape[3]:
        raise ValueError(f"depthwise_kernel_grad: xp {xp.shape} and g {g.shape} must be NHWC with the same N and C")
    need = tuple((o - 1) * stride + k for o, k in zip(g.shape[1:3], (kh, kw)))
    if any(o > 0 and n > p for o, n, p in zip(g.shape[1:3], need, xp.shape[1:3])):
        raise ValueError(f"depthwise_kernel_grad: xp {xp.shape} is too small for g {g.shape} with a {kh}x{kw} "
                         f"kernel at stride {stride} (needs {need[0]}x{need[1]})")
    if kw > 16:
        raise ValueError(f"depthwise_kernel_grad: kernels up to 16 wide, got {kh}x{kw}")
    _check_acts_and_dtype("depthwise_kernel_grad", xp)
    _check_acts_and_dtype("depthwise_kernel_grad", g)
    c = xp.shape[3]
    call = jax.ffi.ffi_call("efficientnet_jax_depthwise_kernel_grad", jax.ShapeDtypeStruct((kh, kw, c), jnp.float32),
                            vmap_method="sequential")
    return call(xp, g, stride=np.int64(stride)).reshape(kh, kw, 1, c)


def gemm_tn(a: Array, b: Array) -> Array:
    """a^T b for a (M, P) and b (M, Q) float32: (P, Q), summed over the long axis M (gemm_tn.cc).
    The 1x1 convs' weight gradients in training. CPU only; no gradient of its own."""
    load()
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"gemm_tn: a {a.shape} and b {b.shape} must be (M, P) and (M, Q)")
    _check_acts_and_dtype("gemm_tn", a)
    _check_acts_and_dtype("gemm_tn", b)
    call = jax.ffi.ffi_call("efficientnet_jax_gemm_tn", jax.ShapeDtypeStruct((a.shape[1], b.shape[1]), jnp.float32),
                            vmap_method="sequential")
    return call(a, b)
