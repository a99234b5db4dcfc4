"""The EfficientNet network: stem -> stages of MBConv / Fused-MBConv blocks -> head.

One module serves every variant; the architecture comes from a `ModelSpec` (see variants.py).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import jax.numpy as jnp
from flax import linen as nn

from efficientnet_jax.models.blocks import BLOCKS
from efficientnet_jax.models.layers import (
    Array, Conv2d, FusedConv2d, FusedDense, FusedPointwiseConv2d, LayerOptions, batch_norm, dense_kernel_init,
    folded_bias, get_activation, use_cpu_kernels,
)
from efficientnet_jax.models.spec import ModelSpec, build_blocks

FEATURE_STRIDES = (2, 4, 8, 16, 32)


def block_name(stage: int, index: int) -> str:
    return f"stage{stage}_block{index}"


class EfficientNet(nn.Module):
    """EfficientNet V1 / Lite / V2 as a pure-functional linen module.

    Call as `model.apply(variables, images, train=False)` on NHWC float images that are already
    normalised with the variant's mean/std. Returns logits; pooled features when
    `spec.num_classes == 0`; with `features_only`, the feature maps at `out_strides`
    (the last block output at each stride, for detection/segmentation backbones).

    With `perturb_layers`, every block output (`stage{s}_block{j}_out`) and the head activation
    (`head_out`) get a zero 'perturbations' variable added, so `jax.grad` with respect to that
    collection gives the gradient of any layer's activation (Grad-CAM), and the activation is
    sown into 'intermediates' (apply with mutable=['intermediates']). Off by default, so
    `init` returns only 'params' and 'batch_stats'.
    """

    spec: ModelSpec
    dtype: Optional[Any] = None  # compute dtype (e.g. jnp.bfloat16); params stay float32
    dw_impl: str = "auto"
    remat: bool = False  # rematerialise each block in the backward pass (B7/L2/V2-XL memory)
    features_only: bool = False
    out_strides: Sequence[int] = FEATURE_STRIDES
    bn_axis_name: Optional[str] = None
    perturb_layers: bool = False
    bn_folded: bool = False  # inference-only variables from fold.fold_batch_norm

    @property
    def opts(self) -> LayerOptions:
        s = self.spec
        return LayerOptions(
            act=s.act, padding=s.padding, bn_eps=s.bn_eps, bn_momentum=s.bn_momentum,
            dtype=self.dtype, dw_impl=self.dw_impl, bn_axis_name=self.bn_axis_name,
            bn_folded=self.bn_folded,
        )

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Union[Array, List[Array]]:
        spec, opts = self.spec, self.opts
        act = get_activation(spec.act)
        if x.ndim != 4:
            raise ValueError(f"{spec.name}: expected NHWC images of rank 4, got shape {x.shape}")
        if x.shape[-1] != 3:
            raise ValueError(f"{spec.name}: expected 3 channels last (NHWC), got shape {x.shape}")

        if use_cpu_kernels(opts, train, x):  # folded inference on CPU: conv + bias + act in one kernel
            bias = folded_bias(batch_norm(opts, train, "stem_bn"), spec.stem_out)
            x = FusedConv2d(spec.stem_out, 3, 2, spec.padding, name="stem_conv")(x, bias, spec.act)
        else:
            x = Conv2d(spec.stem_out, 3, 2, spec.padding, dtype=self.dtype, name="stem_conv")(x)
            x = act(batch_norm(opts, train, "stem_bn")(x))

        features, stride = {2: x}, 2
        for cfg in build_blocks(spec):
            cls = BLOCKS[cfg.block]
            if self.remat:
                cls = nn.remat(cls, static_argnums=(2,))
            name = block_name(cfg.stage, cfg.index)
            x = cls(cfg, opts, name=name)(x, train)
            x = self._tap(f"{name}_out", x)
            stride *= cfg.stride
            features[stride] = x
        if self.features_only:
            missing = [s for s in self.out_strides if s not in features]
            if missing:
                raise ValueError(f"{spec.name}: no feature map at strides {missing}; have {sorted(features)}")
            return [features[s] for s in self.out_strides]

        if use_cpu_kernels(opts, train, x):
            bias = folded_bias(batch_norm(opts, train, "head_bn"), spec.head_out)
            x = FusedPointwiseConv2d(spec.head_out, name="head_conv")(x, bias, spec.act)
        else:
            x = Conv2d(spec.head_out, dtype=self.dtype, name="head_conv")(x)
            x = act(batch_norm(opts, train, "head_bn")(x))
        x = self._tap("head_out", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if spec.num_classes == 0:
            return x
        x = nn.Dropout(spec.drop_rate, deterministic=not train)(x)
        # The classifier runs in float32: logits feed a float32 softmax/cross-entropy.
        if use_cpu_kernels(opts, train, x):  # the weights stream once per batch: both threads share them
            return FusedDense(spec.num_classes, kernel_init=dense_kernel_init, name="classifier")(x)
        return nn.Dense(spec.num_classes, kernel_init=dense_kernel_init, name="classifier")(x)

    def _tap(self, name: str, x: Array) -> Array:
        if not self.perturb_layers:
            return x
        self.sow("intermediates", name, x)  # the activation itself, for CAM overlays
        return self.perturb(name, x)
