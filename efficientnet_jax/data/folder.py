"""Image-folder data sets: `folder:/path` with one sub-folder per class.

Two layouts are understood:
  /path/<class>/<image>            -> splits 'train' / 'test' (a fixed stratified 80/20 split)
                                      and 'all'
  /path/<split>/<class>/<image>    -> one split per sub-folder that holds class folders
                                      (e.g. 'train' and 'val'); requires a 'train' folder
Class names are the sorted sub-folder names of the training split; label = index in that list.
Every image is checked once with PIL when the folder is first scanned, so an unreadable file
fails then, by name, instead of deep inside a training run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Dict, List, Tuple

import numpy as np

from efficientnet_jax.data.splits import stratified_split

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
EVAL_SPLIT_NAMES = ("validation", "val", "test")
SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class FolderIndex:
    root: str
    class_names: Tuple[str, ...]
    splits: Dict[str, Tuple[Tuple[str, ...], Tuple[int, ...]]]  # split -> (paths, labels)
    eval_split: str


def _subdirs(path: str) -> List[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))


def _images_in(class_dir: str) -> List[str]:
    names = sorted(f for f in os.listdir(class_dir)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return [os.path.join(class_dir, f) for f in names]


def _check_readable(path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises many types; all mean "cannot use this file"
        raise ValueError(f"unreadable image file {path}: {type(e).__name__}: {e}") from None


def _scan_split(split_dir: str, class_names: Tuple[str, ...]) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue  # an eval split may lack a class
        files = _images_in(class_dir)
        if not files:
            raise ValueError(f"class folder {class_dir} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        for f in files:
            _check_readable(f)
        paths += files
        labels += [label] * len(files)
    return tuple(paths), tuple(labels)


@functools.lru_cache(maxsize=8)
def scan(root: str) -> FolderIndex:
    """Index (and validate) the folder data set at `root`."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist or is not a directory")
    top = _subdirs(root)
    split_dirs = [d for d in top if _subdirs(os.path.join(root, d))]
    if "train" in split_dirs and not _images_in(os.path.join(root, "train")):
        class_names = tuple(_subdirs(os.path.join(root, "train")))
        splits = {}
        for s in split_dirs:
            extra = sorted(set(_subdirs(os.path.join(root, s))) - set(class_names))
            if extra:
                raise ValueError(f"split folder {os.path.join(root, s)} has classes {extra} that "
                                 f"{os.path.join(root, 'train')} lacks")
            splits[s] = _scan_split(os.path.join(root, s), class_names)
        eval_split = next((s for s in EVAL_SPLIT_NAMES if s in splits), "train")
        return FolderIndex(root, class_names, splits, eval_split)
    if not top:
        raise ValueError(f"image folder {root!r} has no class sub-folders (expected {root}/<class>/<image>)")
    class_names = tuple(top)
    paths, labels = _scan_split(root, class_names)
    train_idx, test_idx = stratified_split(np.asarray(labels), test_fraction=0.2, seed=SPLIT_SEED)
    pick = lambda idx: (tuple(paths[i] for i in idx), tuple(labels[i] for i in idx))  # noqa: E731
    splits = {"train": pick(train_idx), "test": pick(test_idx), "all": (paths, labels)}
    return FolderIndex(root, class_names, splits, "test")


def load(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(paths object [N], labels int32 [N]) of one split."""
    index = scan(root)
    if split not in index.splits:
        raise ValueError(f"image folder {root!r} has splits {sorted(index.splits)}, got split={split!r}")
    paths, labels = index.splits[split]
    return np.asarray(paths, dtype=object), np.asarray(labels, dtype=np.int32)
