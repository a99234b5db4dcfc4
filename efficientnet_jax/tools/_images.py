"""Image loading and eval preprocessing for the command-line tools (PIL + numpy, no TF).

Eval preprocessing of published weights: resize the shorter side to round(resolution / crop_pct)
with the weights' interpolation (aspect kept), centre-crop resolution x resolution, scale pixels
to the value range (pixel / 255 for [0, 1]) and normalise with the weights' mean / std.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_FILTERS = {
    "bicubic": "BICUBIC",
    "bilinear": "BILINEAR",
    "nearest": "NEAREST",
    "lanczos": "LANCZOS",
    "lanczos3": "LANCZOS",
    "box": "BOX",
    "area": "BOX",
    "hamming": "HAMMING",
}


def pil_filter(interpolation: str):
    from PIL import Image

    try:
        return getattr(Image.Resampling, _FILTERS[interpolation])
    except KeyError:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {sorted(_FILTERS)}") from None


def load_rgb(path: str):
    """A PIL RGB image; ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e} (use a JPEG/PNG/BMP/... file PIL can open)") from None


def resize_center_crop(img, resolution: int, crop_pct: float, interpolation: str = "bicubic") -> np.ndarray:
    """uint8 [resolution, resolution, 3]: shorter side to round(resolution / crop_pct), centre crop."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    scale = int(round(resolution / crop_pct))
    w, h = img.size
    if w <= h:
        nw, nh = scale, max(scale, int(scale * h / w))
    else:
        nw, nh = max(scale, int(scale * w / h)), scale
    img = img.resize((nw, nh), pil_filter(interpolation))
    left = int(round((nw - resolution) / 2.0))
    top = int(round((nh - resolution) / 2.0))
    img = img.crop((left, top, left + resolution, top + resolution))
    return np.asarray(img, dtype=np.uint8)


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float], value_range=(0.0, 1.0)) -> np.ndarray:
    """float32 (x - mean) / std of 0-255 pixels scaled to value_range."""
    lo, hi = value_range
    x = pixels.astype(np.float32) / 255.0 * (hi - lo) + lo
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def preprocess(path: str, meta: Mapping) -> np.ndarray:
    """The eval input of the weights described by `meta` (converted-checkpoint metadata)."""
    pixels = resize_center_crop(load_rgb(path), int(meta["resolution"]), float(meta["crop_pct"]),
                                meta.get("interpolation", "bicubic"))
    return normalise(pixels, meta["mean"], meta["std"], tuple(meta.get("value_range", (0.0, 1.0))))
