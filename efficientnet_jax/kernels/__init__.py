"""Hand-written CPU kernels for the inference program, called through XLA's FFI.

`fused_depthwise` is an MBConv block's middle at inference with BN folded:
`act(depthwise(act(x + b_expand)) + b_dw)` and the Squeeze-Excitation mean of that, in one pass
over x. XLA CPU (jaxlib 0.10.2) cannot form that fusion: it writes the expand activation into a
padded buffer, runs the k*k taps as one loop fusion and the SE mean as a YNNPACK reduction, three
passes over the block's widest map. `fused_stem` is the stem conv (3x3 stride 2 over RGB) with
its folded BN and activation as a direct convolution, where XLA pads the image, writes a 27-wide
patch map and runs a K=27 dot (B0 stem alone: batch 1 0.98 -> 0.37 ms, batch 32 50 -> 30 ms).
The kernels build on first use (build.py); where they cannot
(no compiler, `EFFICIENTNET_JAX_CPU_KERNELS=0`) the models keep XLA's lowering.

B0 @224 fp32, `inference_fn` with the kernel (dw_impl 'auto') against the same program with XLA's
lowering (dw_impl 'shift'), one process, alternated (2 cores, 2026-12-06, glibc's malloc):
batch 1 10.06 vs 11.35 ms (1.13x), batch 8 104 vs 138 ms (1.32x), batch 32 341 vs 467 ms (1.37x).
Most of what is left in the kernel is the SiLU of every expand output, which XLA pays too; the
kernel's is ~19 vector instructions per 8 values (exp2 polynomial, reciprocal estimate).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from efficientnet_jax.kernels.build import KernelUnavailable, available, load, unavailable_reason
from efficientnet_jax.models.depthwise import _out_size  # (padded - k) // stride + 1

__all__ = ["FUSED_ACTS", "KernelUnavailable", "available", "fused_depthwise", "fused_stem", "load", "unavailable_reason"]

Array = jax.Array

# Activation name -> the kernel's code (fused_depthwise.cc `Act`); others use XLA's lowering.
FUSED_ACTS = {"identity": 0, "swish": 1, "silu": 1, "relu": 2, "relu6": 3}


def _check_acts_and_dtype(fn: str, x: Array, **acts: str) -> None:
    for name, act in acts.items():
        if act not in FUSED_ACTS:
            raise ValueError(f"{fn}: {name}={act!r} is not one of {sorted(FUSED_ACTS)}")
    if x.dtype != jnp.float32:
        raise ValueError(f"{fn}: float32 only, x is {x.dtype}")


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
) -> Tuple[Array, Array]:
    """(out, pooled): out = out_act(depthwise(pad(in_act(x + in_bias))) + out_bias), pooled its
    (N, C) spatial mean.

    x (N, H, W, C) float32 NHWC; kernel (kh, kw, 1, C) HWIO as the model stores it; pads
    [(top, bottom), (left, right)] of the activated input. `in_bias=None` with `in_act='identity'`
    takes x as it is. CPU only; inference only (no gradient).
    """
    load()
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] != x.shape[3]:
        raise ValueError(f"fused_depthwise: x {x.shape} must be NHWC and kernel {kernel.shape} (kh, kw, 1, C)")
    _check_acts_and_dtype("fused_depthwise", x, in_act=in_act, out_act=out_act)
    n, _, _, c = x.shape
    ho, wo = _out_hw(x, kernel, stride, pads)
    if in_act == "identity":
        if in_bias is not None:  # a bias without activation: added here, XLA fuses it upstream
            x = x + in_bias.astype(jnp.float32)
        in_bias = jnp.zeros((c,), jnp.float32)
    elif in_bias is None:
        raise ValueError("fused_depthwise: an input activation needs its in_bias")
    call = jax.ffi.ffi_call(
        "efficientnet_jax_fused_depthwise",
        (jax.ShapeDtypeStruct((n, ho, wo, c), jnp.float32), jax.ShapeDtypeStruct((n, c), jnp.float32)),
        vmap_method="sequential",
    )
    return call(
        x,
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
