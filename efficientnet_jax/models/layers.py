"""Layers with the numerics of the reference implementations and XLA-friendly lowerings.

Parameters keep Flax's layouts whatever the lowering: conv kernels are HWIO `(kh, kw, in, out)`,
depthwise kernels `(kh, kw, 1, C)`, so a checkpoint does not depend on `dw_impl` or on the
1x1-as-dot path.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from efficientnet_jax.models import batched_init

# Depthwise lowerings live in depthwise.py; re-exported here for existing callers.
from efficientnet_jax.models.depthwise import DW_IMPLS, depthwise_conv, resolve_dw_impl, use_fused_kernel  # noqa: F401
from efficientnet_jax.models.batchnorm import BatchNorm
from efficientnet_jax.models.pointwise import (
    gated_pointwise_conv, im2col_conv, pointwise_conv, use_gated_dot, use_im2col,
)

Array = jax.Array
Dtype = Any

PADDING_MODES = ("same", "symmetric")


def _silu(x):
    return jax.nn.silu(x)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "swish": _silu,
    "silu": _silu,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "gelu": jax.nn.gelu,
    "hard_swish": jax.nn.hard_swish,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[Array], Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def conv_padding(size: int, kernel: int, stride: int, mode: str) -> Tuple[int, int]:
    """(before, after) padding along one spatial axis.

    'same' is TF SAME (asymmetric for even inputs at stride 2: more padding after);
    'symmetric' is PyTorch's ((s-1) + (k-1)) // 2 on both sides (timm's non-`tf_` models).
    """
    if mode == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    if mode == "symmetric":
        p = ((stride - 1) + (kernel - 1)) // 2
        return p, p
    raise ValueError(f"padding must be one of {PADDING_MODES}, got {mode!r}")


def conv_kernel_init(depthwise: bool = False):
    """Official init: normal(0, sqrt(2 / fan_out)), fan_out = kh*kw*out (kh*kw for depthwise).

    jax's variance_scaling would count a depthwise kernel's fan_out as kh*kw*C, a sqrt(C)-fold
    smaller std than the official code and timm use.
    """

    def init(key, shape, dtype=jnp.float32):
        kh, kw, _, out = shape
        fan_out = kh * kw * (1 if depthwise else out)
        return batched_init.normal(key, shape, dtype, math.sqrt(2.0 / fan_out))

    return init


def dense_kernel_init(key, shape, dtype=jnp.float32):
    """Official classifier init: uniform(-1/sqrt(out), 1/sqrt(out))."""
    return batched_init.uniform(key, shape, dtype, 1.0 / math.sqrt(shape[1]))


@dataclasses.dataclass(frozen=True)
class LayerOptions:
    """Numerics and lowerings shared by every layer of a network."""

    act: str = "swish"
    padding: str = "same"
    bn_eps: float = 1e-3
    bn_momentum: float = 0.99
    dtype: Optional[Dtype] = None  # compute dtype; None = float32
    dw_impl: str = "auto"
    bn_axis_name: Optional[str] = None  # only for shard_map/pmap-style per-group BN
    bn_folded: bool = False  # inference with BN folded into the convs (fold.py)


class Conv2d(nn.Module):
    """2-D convolution, NHWC/HWIO, with reference padding; a 1x1 stride-1 conv is a dot, and on
    CPU a conv over at most 32 input terms (the stems) a patch map times a matrix."""

    features: int
    kernel: int = 1
    stride: int = 1
    padding: str = "same"
    use_bias: bool = False
    dtype: Optional[Dtype] = None

    @nn.compact
    def __call__(self, x: Array, gate: Optional[Array] = None) -> Array:
        """`gate` (N, C_in), if given, multiplies x's channels first (Squeeze-Excitation's gate)."""
        in_ch = x.shape[-1]
        kernel = self.param("kernel", conv_kernel_init(), (self.kernel, self.kernel, in_ch, self.features))
        dtype = self.dtype or jnp.float32
        x = x.astype(dtype)
        kernel = kernel.astype(dtype)
        pads = [conv_padding(x.shape[i], self.kernel, self.stride, self.padding) for i in (1, 2)]
        pointwise = self.kernel == 1 and self.stride == 1
        if gate is not None:
            gate = gate.astype(dtype)
            if not (pointwise and use_gated_dot(x.shape)):  # multiply first, then the usual paths
                x, gate = x * gate[:, None, None, :], None
        if gate is not None:
            y = gated_pointwise_conv(x, gate, kernel[0, 0])
        elif pointwise:
            y = pointwise_conv(x, kernel[0, 0])
        elif use_im2col(kernel.shape):  # the 3-channel stems, on CPU
            y = im2col_conv(x, kernel, self.stride, pads)
        else:
            y = lax.conv_general_dilated(
                x, kernel, (self.stride, self.stride), pads,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(dtype)
        return y


class DepthwiseConv2d(nn.Module):
    """Depthwise conv whose lowering is chosen by `impl` (identical numerics to float tolerance)."""

    kernel: int
    stride: int = 1
    padding: str = "same"
    impl: str = "auto"
    dtype: Optional[Dtype] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        kernel = self.param("kernel", conv_kernel_init(depthwise=True), (self.kernel, self.kernel, 1, c))
        dtype = self.dtype or jnp.float32
        pads = [conv_padding(x.shape[i], self.kernel, self.stride, self.padding) for i in (1, 2)]
        return depthwise_conv(x.astype(dtype), kernel.astype(dtype), self.stride, pads, self.impl)


class FusedDepthwiseConv2d(nn.Module):
    """Inference-only `act_out(depthwise(act_in(x + in_bias)) + out_bias)` and its spatial mean,
    as one CPU kernel (efficientnet_jax/kernels). Its one parameter is DepthwiseConv2d's `kernel`
    (same name, shape and init), so either module reads the same checkpoint."""

    kernel: int
    stride: int = 1
    padding: str = "same"

    @nn.compact
    def __call__(self, x: Array, in_bias: Optional[Array], in_act: str, out_bias: Array, out_act: str,
                 expand_kernel: Optional[Array] = None) -> Tuple[Array, Array]:
        """(out (N, Ho, Wo, C), pooled (N, C)); x float32, `in_bias=None` takes x as it is. With
        `expand_kernel` (1, 1, C_in, C), x is the block input and the kernel runs the expand conv."""
        from efficientnet_jax.kernels import fused_depthwise

        c = x.shape[-1] if expand_kernel is None else expand_kernel.shape[-1]
        kernel = self.param("kernel", conv_kernel_init(depthwise=True), (self.kernel, self.kernel, 1, c))
        pads = [conv_padding(x.shape[i], self.kernel, self.stride, self.padding) for i in (1, 2)]
        return fused_depthwise(x, kernel, out_bias, self.stride, pads, out_act, in_bias, in_act, expand_kernel)


class FusedPointwiseConv2d(nn.Module):
    """Inference-only `act((x * gate) @ kernel + bias) + residual` as one CPU kernel
    (efficientnet_jax/kernels): a 1x1 conv with its folded BN, the SE gate before it and the skip
    after. Its one parameter is Conv2d's `kernel` (same name, shape and init)."""

    features: int

    @nn.compact
    def __call__(self, x: Array, bias: Array, act: str = "identity", gate: Optional[Array] = None,
                 residual: Optional[Array] = None, se: Optional[Tuple[Array, ...]] = None,
                 se_act: str = "swish") -> Array:
        """`se` (pooled, reduce kernel, reduce bias, expand kernel, expand bias): the SE's inputs,
        from which the kernel computes the gate (kernels.fused_pointwise)."""
        from efficientnet_jax.kernels import fused_pointwise

        kernel = self.param("kernel", conv_kernel_init(), (1, 1, x.shape[-1], self.features))
        return fused_pointwise(x, kernel, bias, act, gate, residual, se, se_act)


class FusedDense(nn.Module):
    """Inference-only `x @ kernel + bias` for (N, K) x on the 1x1-conv CPU kernel. Its parameters
    are nn.Dense's (`kernel` (K, C) with `kernel_init`, `bias`), so either reads a checkpoint."""

    features: int
    kernel_init: Callable = dense_kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        from efficientnet_jax.kernels import fused_pointwise

        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        n, k = x.shape
        return fused_pointwise(x.reshape(n, 1, 1, k), kernel[None, None], bias).reshape(n, self.features)


class FusedConv2d(nn.Module):
    """Inference-only `act(conv(x) + bias)` as the CPU stem kernel (efficientnet_jax/kernels): a
    direct convolution for few input channels. Its one parameter is Conv2d's `kernel`."""

    features: int
    kernel: int = 3
    stride: int = 1
    padding: str = "same"

    @nn.compact
    def __call__(self, x: Array, bias: Array, act: str) -> Array:
        from efficientnet_jax.kernels import fused_stem

        kernel = self.param("kernel", conv_kernel_init(), (self.kernel, self.kernel, x.shape[-1], self.features))
        pads = [conv_padding(x.shape[i], self.kernel, self.stride, self.padding) for i in (1, 2)]
        return fused_stem(x, kernel, bias, self.stride, pads, act)


def use_cpu_kernels(opts: LayerOptions, train: bool, x: Array) -> bool:
    """Run this layer as a fused CPU kernel? Folded float32 inference, an activation the kernels
    have, and a dw_impl that allows them ('auto' on CPU when they build, or 'cpu_kernel')."""
    from efficientnet_jax.kernels import FUSED_ACTS

    if train or not opts.bn_folded or opts.act not in FUSED_ACTS:
        return False
    if jnp.dtype(opts.dtype or jnp.float32) != jnp.float32 or x.dtype != jnp.float32:
        return False
    return use_fused_kernel(opts.dw_impl)


def folded_bias(bn: nn.Module, channels: int) -> Array:
    """A folded BatchNorm's bias (it computes `x + bias`, so of zeros: the bias; XLA folds it)."""
    return bn(jnp.zeros((channels,), jnp.float32))


def batch_norm(opts: LayerOptions, train: bool, name: str) -> BatchNorm:
    """BatchNorm with fp32 params and statistics; global statistics under jit + sharding."""
    return BatchNorm(
        use_running_average=not train,
        momentum=opts.bn_momentum,
        epsilon=opts.bn_eps,
        dtype=opts.dtype,
        axis_name=opts.bn_axis_name,
        folded=opts.bn_folded,
        name=name,
    )


class DropPath(nn.Module):
    """Per-sample stochastic depth; survivors are scaled by 1/keep so the expectation is kept."""

    rate: float

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, jnp.zeros_like(x))
