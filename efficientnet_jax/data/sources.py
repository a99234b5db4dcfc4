"""Data set names -> metadata and examples: 'digits', 'folder:/path', or any TFDS name.

All three give (uint8 RGB image, int label) examples. Digits and folders are always held in
memory (pixels or file paths) and sharded across processes by striding; TFDS splits are
sharded with tfds.split_for_jax_process and either streamed or (cache=True) held in memory.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from efficientnet_jax.data import digits, folder, tfds_source
from efficientnet_jax.data.splits import shard_indices, shard_sizes


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    num_train: int
    num_eval: int
    class_names: Tuple[str, ...]
    train_split: str
    eval_split: str


@dataclasses.dataclass(frozen=True)
class InMemorySplit:
    """One process's examples. `kind`: 'pixels' (uint8 [N, H, W, 3]), 'encoded' (bytes) or
    'files' (paths); `sizes` holds the shard size of every process (for equal step counts)."""

    images: np.ndarray
    labels: np.ndarray
    kind: str
    sizes: Tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)


def kind_of(name: str) -> str:
    """'digits', 'folder' or 'tfds'."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"input config dataset must be a non-empty string, got {name!r}")
    if name == digits.NAME:
        return "digits"
    if name.startswith(folder.PREFIX):
        return "folder"
    return "tfds"


def _folder_root(name: str) -> str:
    root = name[len(folder.PREFIX):]
    if not root:
        raise ValueError("dataset 'folder:' needs a path, e.g. 'folder:/data/my_images'")
    return root


def dataset_info(name: str, data_dir: Optional[str] = None, *, train_split: Optional[str] = None,
                 eval_split: Optional[str] = None, download: bool = False) -> DatasetInfo:
    """Classes, split sizes and default splits (digits: train/test; TFDS: train and
    validation-or-test; folders: train/test, or the sub-folders given). Fails if the data is
    not available (a TFDS data set not prepared, a missing folder)."""
    kind = kind_of(name)
    if kind == "digits":
        tr, ev = train_split or "train", eval_split or "test"
        return DatasetInfo(10, len(digits.load(tr)[1]), len(digits.load(ev)[1]), digits.CLASS_NAMES, tr, ev)
    if kind == "folder":
        root = _folder_root(name)
        index = folder.scan(root)
        tr, ev = train_split or "train", eval_split or index.eval_split
        return DatasetInfo(len(index.class_names), len(folder.load(root, tr)[1]), len(folder.load(root, ev)[1]),
                           index.class_names, tr, ev)
    builder = tfds_source.get_builder(name, data_dir)
    tfds_source.check_features(builder)
    default_train, default_eval = tfds_source.default_splits(builder)
    tr, ev = train_split or default_train, eval_split or default_eval
    label = builder.info.features["label"]
    return DatasetInfo(
        num_classes=int(label.num_classes),
        num_train=tfds_source.split_size(builder, tr, data_dir, download),
        num_eval=tfds_source.split_size(builder, ev, data_dir, download),
        class_names=tuple(label.names),
        train_split=tr, eval_split=ev)


def info_from_config(cfg) -> DatasetInfo:
    """`dataset_info` for an input config (its dataset, data_dir, splits and download flag)."""
    return dataset_info(cfg.dataset, cfg.data_dir, train_split=cfg.train_split, eval_split=cfg.eval_split,
                        download=cfg.download)


def load_split(name: str, split: str, *, data_dir: Optional[str], process_index: int, process_count: int,
               download: bool = False) -> InMemorySplit:
    """This process's shard of `split`, in memory."""
    kind = kind_of(name)
    if kind == "tfds":
        builder = tfds_source.get_builder(name, data_dir)
        tfds_source.check_features(builder)
        sizes = tfds_source.process_sizes(builder, split, process_count, data_dir, download)
        images, labels, how = tfds_source.load_process_split(name, data_dir, split, process_index, process_count,
                                                             download)
        return InMemorySplit(images, labels, how, tuple(sizes))
    if kind == "digits":
        images, labels = digits.load(split)
        how = "pixels"
    else:
        images, labels = folder.load(_folder_root(name), split)
        how = "files"
    idx = shard_indices(len(labels), process_index, process_count)
    return InMemorySplit(images[idx], labels[idx], how, tuple(int(s) for s in shard_sizes(len(labels), process_count)))
