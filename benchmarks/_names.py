"""Which peer model stands for which of our variants (pure Python: safe for the driver to import).

Facts, not code, from the peers: timm 1.0.31 registers every V1 / Lite / V2-S/M/L/XL name as
we spell it, but V2-B0..B3 only with the `tf_` prefix (timm/models/efficientnet.py);
Keras 3.15 ships EfficientNetB0-B7 and EfficientNetV2B0-B3/S/M/L in keras.applications and
no B8, L2, Lite or V2-XL.
"""

from __future__ import annotations

from typing import Optional

_KERAS_APPLICATIONS = {
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnetv2_b{i}": f"EfficientNetV2B{i}" for i in range(4)},
    "efficientnetv2_s": "EfficientNetV2S",
    "efficientnetv2_m": "EfficientNetV2M",
    "efficientnetv2_l": "EfficientNetV2L",
}
_TIMM_TF_ONLY = {f"efficientnetv2_b{i}" for i in range(4)}


def base_name(name: str) -> str:
    """Our variant name without the optional `tf_` prefix (which only changes numerics)."""
    return name[3:] if name.startswith("tf_") else name


def timm_name(name: str) -> str:
    """The timm model with the same architecture as our variant `name`."""
    base = base_name(name)
    return "tf_" + base if base in _TIMM_TF_ONLY else name


def keras_name(name: str) -> Optional[str]:
    """The `keras.applications` constructor for `name`, or None when Keras has no such variant."""
    return _KERAS_APPLICATIONS.get(base_name(name))
