"""ImageNet-1k class names by index (imagenet_classes.txt beside this file).

The file lists the WordNet lemmas of the 1000 ImageNet-1k synsets in class-index order, as
shipped in timm's info files (timm/data/_info/imagenet_synsets.txt and
imagenet_synset_to_lemma.txt); `_make_imagenet_classes.py` regenerates it.
"""

from __future__ import annotations

import functools
import os
from typing import List

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def _names() -> tuple:
    with open(CLASSES_FILE, encoding="utf8") as f:
        names = tuple(line.rstrip("\n") for line in f if line.strip() and not line.startswith("#"))
    if len(names) != 1000:
        raise RuntimeError(f"{CLASSES_FILE}: expected 1000 class names, found {len(names)}")
    return names


def imagenet_class_names() -> List[str]:
    """The 1000 ImageNet-1k class names (WordNet lemmas, e.g. 'tabby, tabby cat'), by index."""
    return list(_names())
