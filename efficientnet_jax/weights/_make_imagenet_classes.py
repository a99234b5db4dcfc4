"""Regenerate imagenet_classes.txt: the 1000 ImageNet-1k class names, one per line, by index.

Source (facts, not code): the installed timm package's info files, timm/data/_info/
imagenet_synsets.txt (the 1000 WordNet synsets in class-index order) and
imagenet_synset_to_lemma.txt (synset -> WordNet lemmas). Run once:

    python -m efficientnet_jax.weights._make_imagenet_classes
"""

from __future__ import annotations

import csv
import os
import pkgutil


def main() -> None:
    synsets = pkgutil.get_data("timm.data", "_info/imagenet_synsets.txt").decode("utf8").split()
    lemmas = dict(csv.reader(pkgutil.get_data("timm.data", "_info/imagenet_synset_to_lemma.txt")
                             .decode("utf8").splitlines(), delimiter="\t"))
    assert len(synsets) == 1000, len(synsets)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")
    with open(out, "w") as f:
        for s in synsets:
            f.write(lemmas[s].strip() + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
