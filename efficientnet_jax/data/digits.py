"""The embedded data set: scikit-learn's handwritten digits, ready with no download.

1,797 grey 8x8 images with values 0..16 in 10 classes, held out 80/20 by a fixed stratified
split: 'train' (1,437) and 'test' (360); 'all' is the whole set.
"""

from __future__ import annotations

import functools
from typing import Tuple

import numpy as np

from efficientnet_jax.data.splits import stratified_split

NAME = "digits"
SPLITS = ("train", "test", "all")
CLASS_NAMES = tuple(str(d) for d in range(10))
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _all() -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = np.repeat(grey[..., None], 3, axis=-1)  # [N, 8, 8, 3] RGB
    return images, bunch.target.astype(np.int32)


@functools.lru_cache(maxsize=1)
def _split_indices() -> Tuple[np.ndarray, np.ndarray]:
    return stratified_split(_all()[1], test_fraction=0.2, seed=SPLIT_SEED)


def load(split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 8, 8, 3], labels int32 [N]) of 'train', 'test' or 'all'."""
    images, labels = _all()
    if split == "all":
        return images, labels
    if split not in SPLITS:
        raise ValueError(f"digits has splits {SPLITS}, got split={split!r}")
    idx = _split_indices()[0 if split == "train" else 1]
    return images[idx], labels[idx]
