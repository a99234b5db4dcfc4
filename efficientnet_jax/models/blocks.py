"""MBConv, Fused-MBConv and Squeeze-Excitation blocks.

Sub-module names follow the Keras applications naming (expand_conv, dw_conv, se, project_conv),
which keeps the weight converters a readable table.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
from flax import linen as nn

from efficientnet_jax.models.layers import (
    Array, Conv2d, DepthwiseConv2d, DropPath, FusedDepthwiseConv2d, FusedPointwiseConv2d, LayerOptions, batch_norm,
    folded_bias, get_activation, use_cpu_kernels,
)
from efficientnet_jax.models.conv_bn import use_conv_bn
from efficientnet_jax.models.spec import BlockConfig


class SqueezeExcite(nn.Module):
    """Spatial mean -> 1x1 reduce (+bias) -> act -> 1x1 expand (+bias) -> sigmoid gate.

    `channels` (the reduced width) is 0.25 x the *block input* channels, as in the official code.
    """

    channels: int
    opts: LayerOptions
    return_gate: bool = False  # give back the (N, C) gate instead of applying it

    @nn.compact
    def __call__(self, x: Array, pooled: Optional[Array] = None) -> Array:
        """`pooled` (N, C), if given, is x's spatial mean already computed (the fused kernel's)."""
        # Pool in float32: a bf16 mean over 100k+ positions loses the small differences SE keys on.
        if pooled is None:
            s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True)
        else:
            s = pooled.astype(jnp.float32)[:, None, None, :]
        s = Conv2d(self.channels, use_bias=True, dtype=self.opts.dtype, name="reduce")(s)
        s = get_activation(self.opts.act)(s)
        s = Conv2d(x.shape[-1], use_bias=True, dtype=self.opts.dtype, name="expand")(s)
        gate = nn.sigmoid(s).astype(x.dtype)
        return gate[:, 0, 0, :] if self.return_gate else x * gate


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ skip).

    With expand_ratio 1 there is no expand conv (V1's first, "depthwise-separable" stage).
    """

    cfg: BlockConfig
    opts: LayerOptions

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        cfg, opts = self.cfg, self.opts
        act = get_activation(opts.act)
        shortcut = x
        fused = use_cpu_kernels(opts, train, x)
        in_bias = expand_kernel = None
        if cfg.expand_ratio != 1:
            expand = Conv2d(cfg.mid_channels, dtype=opts.dtype, name="expand_conv")
            bn = batch_norm(opts, train, "expand_bn")
            y = expand(x)
            kernel = expand.variables["params"]["kernel"]
            if fused:  # the depthwise kernel runs the expand conv, its bias and activation; y is unused
                expand_kernel, in_bias = kernel, folded_bias(bn, cfg.mid_channels)
            elif train and use_conv_bn(kernel.shape):
                # In a CPU training step the BN takes the conv's input and kernel (conv_bn.py: the
                # wide map is never re-read); `y` is then unused and XLA drops it.
                x = act(bn(x.astype(y.dtype), kernel[0, 0].astype(y.dtype)))
            else:
                x = act(bn(y))
        pooled = None
        if fused:
            dw_bias = folded_bias(batch_norm(opts, train, "dw_bn"), cfg.mid_channels)
            x, pooled = FusedDepthwiseConv2d(cfg.kernel, cfg.stride, opts.padding, name="dw_conv")(
                x, in_bias, opts.act if in_bias is not None else "identity", dw_bias, opts.act, expand_kernel)
        else:
            x = DepthwiseConv2d(
                cfg.kernel, cfg.stride, opts.padding, opts.dw_impl, opts.dtype, name="dw_conv"
            )(x)
            x = act(batch_norm(opts, train, "dw_bn")(x))
        # At inference the SE gate goes into the project conv, which may fold it into its weights
        # (pointwise.use_gated_dot); training keeps the multiply, whose backward is faster.
        gate = se_inputs = None
        if cfg.se_channels:
            se = SqueezeExcite(cfg.se_channels, opts, return_gate=not train, name="se")
            x, gate = (se(x), None) if train else (x, se(x, pooled))
            if fused:  # the kernel computes the gate from the SE's inputs; XLA drops `gate`
                sp = se.variables["params"]
                se_inputs = (pooled, sp["reduce"]["kernel"], sp["reduce"]["bias"], sp["expand"]["kernel"],
                             sp["expand"]["bias"])
        if fused:  # SE gate, project conv, folded BN and skip in one kernel
            bias = folded_bias(batch_norm(opts, train, "project_bn"), cfg.out_channels)
            residual = shortcut if cfg.has_skip else None  # DropPath is the identity at inference
            return FusedPointwiseConv2d(cfg.out_channels, name="project_conv")(
                x, bias, residual=residual, se=se_inputs, se_act=opts.act)
        x = Conv2d(cfg.out_channels, dtype=opts.dtype, name="project_conv")(x, gate)
        x = batch_norm(opts, train, "project_bn")(x)
        if cfg.has_skip:
            x = DropPath(cfg.drop_path_rate, name="drop_path")(x, train) + shortcut
        return x


class FusedMBConv(nn.Module):
    """Fused inverted residual: kxk expand conv -> [SE] -> 1x1 project (+ skip).

    With expand_ratio 1 it is a single kxk conv + BN + act (the act is kept because there is no
    separate project conv), named `project_conv`/`project_bn` as in Keras.
    """

    cfg: BlockConfig
    opts: LayerOptions

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        cfg, opts = self.cfg, self.opts
        act = get_activation(opts.act)
        shortcut = x
        if cfg.expand_ratio != 1:
            fused = use_cpu_kernels(opts, train, x)
            x = Conv2d(cfg.mid_channels, cfg.kernel, cfg.stride, opts.padding, dtype=opts.dtype,
                       name="expand_conv")(x)
            x = act(batch_norm(opts, train, "expand_bn")(x))
            if cfg.se_channels:
                x = SqueezeExcite(cfg.se_channels, opts, name="se")(x)
            if fused:  # project conv, folded BN and skip in one kernel
                bias = folded_bias(batch_norm(opts, train, "project_bn"), cfg.out_channels)
                residual = shortcut if cfg.has_skip else None  # DropPath is the identity at inference
                return FusedPointwiseConv2d(cfg.out_channels, name="project_conv")(x, bias, residual=residual)
            x = Conv2d(cfg.out_channels, dtype=opts.dtype, name="project_conv")(x)
            x = batch_norm(opts, train, "project_bn")(x)
        else:
            x = Conv2d(cfg.out_channels, cfg.kernel, cfg.stride, opts.padding, dtype=opts.dtype,
                       name="project_conv")(x)
            x = act(batch_norm(opts, train, "project_bn")(x))
            if cfg.se_channels:
                x = SqueezeExcite(cfg.se_channels, opts, name="se")(x)
        if cfg.has_skip:
            x = DropPath(cfg.drop_path_rate, name="drop_path")(x, train) + shortcut
        return x


BLOCKS = {"mbconv": MBConv, "fused": FusedMBConv}
