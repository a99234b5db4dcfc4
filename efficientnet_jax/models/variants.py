"""The published variants, as data.

Sources (facts, not code):
- V1 block table and (width, depth, resolution, dropout) per variant: `efficientnet_params` and
  `_DEFAULT_BLOCKS_ARGS` in google/automl efficientdet/backbone/efficientnet_builder.py
  (the copy of tensorflow/tpu models/official/efficientnet); B8/L2 from the same table.
- Lite: `efficientnet_lite_params` in efficientnet_lite_builder.py (no SE, ReLU6, fixed stem/head).
- V2: `v2_base_block`, `v2_s_block`, `v2_m_block`, `v2_l_block`, `v2_xl_block` and
  `efficientnetv2_params` in google/automl efficientnetv2/effnetv2_configs.py (the released code;
  the paper's table differs, see shared/reference/architecture.md §1).
- Published ImageNet top-1 (%): V1 paper (Tan & Le 2019, Table 2) for B0-B7; AdvProp paper (Xie et
  al. 2020) for B8; Noisy Student paper (Xie et al. 2020) for L2; the official EfficientNet-Lite
  README (tensorflow/tpu) for Lite0-4; google/automl efficientnetv2 README for V2 (XL: ImageNet-21k
  pre-training, fine-tuned on 1k).
- crop_pct / mean / std: the pretrained configs of timm's `tf_*` ports of the official weights.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from efficientnet_jax.models.spec import ModelSpec, StageSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def _mb(r, k, s, e, c, se=0.25):
    return StageSpec("mbconv", r, k, s, e, c, se)


def _fused(r, k, s, e, c):
    return StageSpec("fused", r, k, s, e, c, 0.0)


V1_BASE = (
    _mb(1, 3, 1, 1, 16),
    _mb(2, 3, 2, 6, 24),
    _mb(2, 5, 2, 6, 40),
    _mb(3, 3, 2, 6, 80),
    _mb(3, 5, 1, 6, 112),
    _mb(4, 5, 2, 6, 192),
    _mb(1, 3, 1, 6, 320),
)

V2_BASE = (
    _fused(1, 3, 1, 1, 16),
    _fused(2, 3, 2, 4, 32),
    _fused(2, 3, 2, 4, 48),
    _mb(3, 3, 2, 4, 96),
    _mb(5, 3, 1, 6, 112),
    _mb(8, 3, 2, 6, 192),
)
V2_S = (
    _fused(2, 3, 1, 1, 24),
    _fused(4, 3, 2, 4, 48),
    _fused(4, 3, 2, 4, 64),
    _mb(6, 3, 2, 4, 128),
    _mb(9, 3, 1, 6, 160),
    _mb(15, 3, 2, 6, 256),
)
V2_M = (
    _fused(3, 3, 1, 1, 24),
    _fused(5, 3, 2, 4, 48),
    _fused(5, 3, 2, 4, 80),
    _mb(7, 3, 2, 4, 160),
    _mb(14, 3, 1, 6, 176),
    _mb(18, 3, 2, 6, 304),
    _mb(5, 3, 1, 6, 512),
)
V2_L = (
    _fused(4, 3, 1, 1, 32),
    _fused(7, 3, 2, 4, 64),
    _fused(7, 3, 2, 4, 96),
    _mb(10, 3, 2, 4, 192),
    _mb(19, 3, 1, 6, 224),
    _mb(25, 3, 2, 6, 384),
    _mb(7, 3, 1, 6, 640),
)
V2_XL = (
    _fused(4, 3, 1, 1, 32),
    _fused(8, 3, 2, 4, 64),
    _fused(8, 3, 2, 4, 96),
    _mb(16, 3, 2, 4, 192),
    _mb(24, 3, 1, 6, 256),
    _mb(32, 3, 2, 6, 512),
    _mb(8, 3, 1, 6, 640),
)

# name: (width, depth, resolution, dropout, crop_pct, published top-1)
_V1_TABLE = {
    "b0": (1.0, 1.0, 224, 0.2, 0.875, 77.1),
    "b1": (1.0, 1.1, 240, 0.2, 0.882, 79.1),
    "b2": (1.1, 1.2, 260, 0.3, 0.890, 80.1),
    "b3": (1.2, 1.4, 300, 0.3, 0.904, 81.6),
    "b4": (1.4, 1.8, 380, 0.4, 0.922, 82.9),
    "b5": (1.6, 2.2, 456, 0.4, 0.934, 83.6),
    "b6": (1.8, 2.6, 528, 0.5, 0.942, 84.0),
    "b7": (2.0, 3.1, 600, 0.5, 0.949, 84.3),
    "b8": (2.2, 3.6, 672, 0.5, 0.954, 85.5),
    "l2": (4.3, 5.3, 800, 0.5, 0.960, 88.4),
}
_V1_SOURCE = {
    "b8": "AdvProp (Xie et al. 2020), Table 1",
    "l2": "Noisy Student (Xie et al. 2020), Table 2",
}
_LITE_TABLE = {
    "lite0": (1.0, 1.0, 224, 0.2, 0.875, 75.1),
    "lite1": (1.0, 1.1, 240, 0.2, 0.882, 76.7),
    "lite2": (1.1, 1.2, 260, 0.3, 0.890, 77.6),
    "lite3": (1.2, 1.4, 280, 0.3, 0.904, 79.8),
    "lite4": (1.4, 1.8, 300, 0.3, 0.920, 81.5),
}
# name: (stages, width, depth, train res, eval res, dropout, stem, crop, top-1, mean/std)
_V2_TABLE = {
    "b0": (V2_BASE, 1.0, 1.0, 192, 224, 0.2, 32, 0.875, 78.7, IMAGENET_MEAN, IMAGENET_STD),
    "b1": (V2_BASE, 1.0, 1.1, 192, 240, 0.2, 32, 0.882, 79.8, IMAGENET_MEAN, IMAGENET_STD),
    "b2": (V2_BASE, 1.1, 1.2, 208, 260, 0.3, 32, 0.890, 80.5, IMAGENET_MEAN, IMAGENET_STD),
    "b3": (V2_BASE, 1.2, 1.4, 240, 300, 0.3, 32, 0.904, 82.1, IMAGENET_MEAN, IMAGENET_STD),
    "s": (V2_S, 1.0, 1.0, 300, 384, 0.2, 24, 1.0, 83.9, HALF, HALF),
    "m": (V2_M, 1.0, 1.0, 384, 480, 0.3, 24, 1.0, 85.2, HALF, HALF),
    "l": (V2_L, 1.0, 1.0, 384, 480, 0.4, 32, 1.0, 85.7, HALF, HALF),
    "xl": (V2_XL, 1.0, 1.0, 384, 512, 0.4, 32, 1.0, 87.2, HALF, HALF),
}


def _build_registry() -> Dict[str, ModelSpec]:
    reg: Dict[str, ModelSpec] = {}
    for key, (w, d, res, drop, crop, top1) in _V1_TABLE.items():
        name = f"efficientnet_{key}"
        reg[name] = ModelSpec(
            name=name, stages=V1_BASE, width_mult=w, depth_mult=d, resolution=res,
            drop_rate=drop, crop_pct=crop, published_top1=top1,
            published_top1_source=_V1_SOURCE.get(key, "EfficientNet paper (Tan & Le 2019), Table 2"),
        )
    for key, (w, d, res, drop, crop, top1) in _LITE_TABLE.items():
        name = f"efficientnet_{key}"
        reg[name] = ModelSpec(
            name=name, stages=V1_BASE, width_mult=w, depth_mult=d, resolution=res,
            drop_rate=drop, crop_pct=crop, act="relu6", se=False, fix_stem_head=True,
            mean=HALF, std=HALF, family="lite", published_top1=top1,
            published_top1_source="EfficientNet-Lite README (tensorflow/tpu)",
        )
    for key, (stages, w, d, tres, res, drop, stem, crop, top1, mean, std) in _V2_TABLE.items():
        name = f"efficientnetv2_{key}"
        reg[name] = ModelSpec(
            name=name, stages=stages, width_mult=w, depth_mult=d, resolution=res,
            train_resolution=tres, stem_channels=stem, drop_rate=drop, crop_pct=crop,
            round_limit=0.0, bn_momentum=0.9, mean=mean, std=std, family="v2",
            published_top1=top1,
            published_top1_source="google/automl efficientnetv2 README"
            + (" (ImageNet-21k pre-trained, fine-tuned on 1k)" if key == "xl" else ""),
        )
    return reg


REGISTRY: Dict[str, ModelSpec] = _build_registry()

# Numerics of timm's PyTorch-native models (symmetric padding, PyTorch BN eps); the `tf_`
# names are the TF-faithful defaults of this project.
PYTORCH_NUMERICS = dict(padding="symmetric", bn_eps=1e-5)
TF_NUMERICS = dict(padding="same", bn_eps=1e-3)


def base_name(name: str) -> Tuple[str, Dict]:
    """Split a user-facing name into a registry key and the numerics its prefix implies."""
    if name.startswith("tf_"):
        return name[3:], dict(TF_NUMERICS)
    return name, {}


def replace(spec: ModelSpec, **kw) -> ModelSpec:
    return dataclasses.replace(spec, **kw)
