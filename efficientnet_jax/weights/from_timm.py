"""timm state dicts (`huggingface/pytorch-image-models`, timm/models/_efficientnet_blocks.py).

Numerics: a `tf_` model name (tf_efficientnet_b0, tf_efficientnetv2_s, tf_efficientnet_lite0)
holds TF-ported weights: 'same' (TF SAME) padding and BN eps 1e-3. A name without it
(efficientnet_b0, efficientnetv2_s, efficientnet_lite0) is a PyTorch-native timm model:
symmetric padding ((s-1)+(k-1))//2 and BN eps 1e-5. Same tensor names and shapes either way.

Names (stage s, block j within the stage, 0-based both; our `stage{s}_block{j}`):

    conv_stem, bn1                                   -> stem_conv, stem_bn
    DepthwiseSeparableConv (MBConv, expand 1):
        conv_dw, bn1, se.conv_reduce, se.conv_expand, conv_pw, bn2
    InvertedResidual (MBConv):
        conv_pw, bn1, conv_dw, bn2, se.*, conv_pwl, bn3
    EdgeResidual (Fused-MBConv, expand > 1):
        conv_exp, bn1, [se.*], conv_pwl, bn2
    ConvBnAct (Fused-MBConv, expand 1):
        conv, bn1
    conv_head, bn2, classifier                       -> head_conv, head_bn, classifier

Preprocessing recorded: `tf_*` -> the variant's published timm cfg (ImageNet mean/std; 0.5/0.5
for Lite and V2-S/M/L/XL); PyTorch-native -> ImageNet mean/std (timm's default cfg).
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from efficientnet_jax.models import ModelSpec, build_blocks
from efficientnet_jax.weights.common import IMAGENET_MEAN, IMAGENET_STD, TORCH_LAYOUT, Entry, bn_entries, block_path

SOURCE = "timm"
LAYOUT = TORCH_LAYOUT
_BN = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str, ours) -> List[Entry]:
    return bn_entries(prefix, ours, _BN)


def _conv(name: str, ours, kind: str = "conv") -> Entry:
    return Entry(f"{name}.weight", ("params",) + ours + ("kernel",), kind)


def _se(prefix: str, ours) -> List[Entry]:
    out = []
    for src, dst in (("conv_reduce", "reduce"), ("conv_expand", "expand")):
        out.append(Entry(f"{prefix}.se.{src}.weight", ("params",) + ours + ("se", dst, "kernel"), "conv"))
        out.append(Entry(f"{prefix}.se.{src}.bias", ("params",) + ours + ("se", dst, "bias"), "vec"))
    return out


def entries(spec: ModelSpec) -> List[Entry]:
    out: List[Entry] = [_conv("conv_stem", ("stem_conv",))] + _bn("bn1", ("stem_bn",))
    for cfg in build_blocks(spec):
        t, b = f"blocks.{cfg.stage}.{cfg.index}", block_path(cfg.stage, cfg.index)
        se = _se(t, b) if cfg.se_channels else []
        if cfg.block == "mbconv" and cfg.expand_ratio == 1:  # DepthwiseSeparableConv
            out += [_conv(f"{t}.conv_dw", b + ("dw_conv",), "dw")] + _bn(f"{t}.bn1", b + ("dw_bn",)) + se
            out += [_conv(f"{t}.conv_pw", b + ("project_conv",))] + _bn(f"{t}.bn2", b + ("project_bn",))
        elif cfg.block == "mbconv":  # InvertedResidual
            out += [_conv(f"{t}.conv_pw", b + ("expand_conv",))] + _bn(f"{t}.bn1", b + ("expand_bn",))
            out += [_conv(f"{t}.conv_dw", b + ("dw_conv",), "dw")] + _bn(f"{t}.bn2", b + ("dw_bn",)) + se
            out += [_conv(f"{t}.conv_pwl", b + ("project_conv",))] + _bn(f"{t}.bn3", b + ("project_bn",))
        elif cfg.expand_ratio != 1:  # EdgeResidual
            out += [_conv(f"{t}.conv_exp", b + ("expand_conv",))] + _bn(f"{t}.bn1", b + ("expand_bn",)) + se
            out += [_conv(f"{t}.conv_pwl", b + ("project_conv",))] + _bn(f"{t}.bn2", b + ("project_bn",))
        else:  # ConvBnAct
            if cfg.se_channels:
                raise ValueError(f"{spec.name}: timm's ConvBnAct (Fused-MBConv, expand 1) has no SE; "
                                 f"block stage{cfg.stage}_block{cfg.index} has one")
            out += [_conv(f"{t}.conv", b + ("project_conv",))] + _bn(f"{t}.bn1", b + ("project_bn",))
    out += [_conv("conv_head", ("head_conv",))] + _bn("bn2", ("head_bn",))
    if spec.num_classes:
        out += [Entry("classifier.weight", ("params", "classifier", "kernel"), "dense"),
                Entry("classifier.bias", ("params", "classifier", "bias"), "vec")]
    return out


def num_classes(tensors: Mapping[str, np.ndarray]) -> int:
    w = tensors.get("classifier.weight")
    return int(w.shape[0]) if w is not None else 0


def ignore(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def looks_like(tensors: Mapping[str, np.ndarray]) -> bool:
    return "conv_stem.weight" in tensors


def preprocessing(spec: ModelSpec, tensors: Mapping[str, np.ndarray]) -> Dict:
    """tf_* ports: the variant's published cfg (the spec's defaults). timm's PyTorch-native
    weights (symmetric padding): timm's default cfg, ImageNet mean/std (a few tags use 0.5/0.5:
    override with mean=/std=)."""
    if spec.padding == "symmetric":
        return dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return {}
