"""TFDS image-classification data sets: lookup, fail-fast checks, per-process shards, reading.

Nothing here downloads unless the config says download=True: a data set that is not prepared
fails within seconds with the exact command that prepares it. Only `tfds.builder`,
`builder.info`, `builder.as_dataset` and `builder.download_and_prepare` are used, which is
what `tfds.testing.mock_data` patches, so mocked data flows through the same code.
"""

from __future__ import annotations

import difflib
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from efficientnet_jax.data._tf import tf
from efficientnet_jax.data.splits import check_process

EVAL_SPLIT_NAMES = ("validation", "test")


def _tfds():
    import tensorflow_datasets as tfds

    return tfds


def _default_data_dir(data_dir: Optional[str]) -> str:
    return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def prepare_instructions(builder, data_dir: Optional[str]) -> str:
    """The exact steps that make `builder`'s data available, for error messages."""
    name = builder.name
    root = _default_data_dir(data_dir)
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
        manual_dir = os.path.join(root, "downloads", "manual")
        return (f"'{name}' needs a manual download first:\n{manual.strip()}\n"
                f"Place those files in {manual_dir} (or pass --manual_dir), then run:\n"
                f"  tfds build {name} --data_dir={root} --manual_dir={manual_dir}")
    return (f"Prepare it once with:\n  tfds build {name} --data_dir={root}\n"
            f"or set the input config's download=True to download and prepare it on first use.")


def get_builder(name: str, data_dir: Optional[str] = None):
    """`tfds.builder(name)`, with a short message (and close names) for an unknown data set."""
    tfds = _tfds()
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = tfds.list_builders()
        close = difflib.get_close_matches(name.split(":")[0], known, n=5)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(f"unknown data set {name!r}: not 'digits', not 'folder:/path', and not a TFDS "
                         f"data set (tfds.list_builders()).{hint}") from None


def check_features(builder) -> None:
    """The pipeline needs an 'image' Image feature and a 'label' ClassLabel feature."""
    tfds = _tfds()
    features = builder.info.features
    keys = list(features.keys())
    if "image" not in keys or not isinstance(features["image"], tfds.features.Image):
        raise ValueError(f"TFDS data set {builder.name!r} has no 'image' Image feature (features: {keys})")
    if "label" not in keys or not isinstance(features["label"], tfds.features.ClassLabel):
        raise ValueError(f"TFDS data set {builder.name!r} has no 'label' ClassLabel feature (features: {keys})")


def open_split(builder, split, data_dir: Optional[str], download: bool, **kwargs) -> "tf.data.Dataset":
    """`builder.as_dataset(split)`; prepares it first only if `download`; fails fast otherwise."""
    if download:
        try:
            builder.download_and_prepare()
        except AssertionError as e:  # missing manual files and the like
            raise FileNotFoundError(f"could not prepare TFDS data set {builder.name!r}: {e}\n"
                                    f"{prepare_instructions(builder, data_dir)}") from None
    try:
        return builder.as_dataset(split=split, **kwargs)
    except AssertionError as e:
        if "could not find data" not in str(e) and "download_and_prepare" not in str(e):
            raise
        raise FileNotFoundError(
            f"TFDS data set {builder.name!r} (split {split!r}) is not prepared in "
            f"data_dir={_default_data_dir(data_dir)}. {prepare_instructions(builder, data_dir)}") from None


def default_splits(builder) -> Tuple[str, str]:
    """('train', 'validation' if it exists else 'test'); unknown splits (mocks) give 'test'."""
    known = set(builder.info.splits.keys())
    if known and "train" not in known:
        raise ValueError(f"TFDS data set {builder.name!r} has no 'train' split (splits: {sorted(known)}); "
                         "set the input config's train_split")
    evals = [s for s in EVAL_SPLIT_NAMES if s in known]
    return "train", (evals[0] if evals else "test")


def process_split(split: str, process_index: int, process_count: int):
    """This process's even share of `split` (tfds.split_for_jax_process with explicit indices)."""
    check_process(process_index, process_count)
    if process_count == 1:
        return split
    return _tfds().split_for_jax_process(split, process_index=process_index, process_count=process_count)


def split_size(builder, split, data_dir: Optional[str], download: bool) -> int:
    """Number of examples in `split` (from the metadata, or by cardinality when it has none)."""
    try:
        total = int(builder.info.splits[split].num_examples)
        if total > 0:
            return total
    except (KeyError, ValueError, TypeError):
        pass
    ds = open_split(builder, split, data_dir, download, decoders=_skip_image_decoding())
    n = int(ds.cardinality())
    if n < 0:  # unknown: count (cheap, images stay encoded)
        n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
    return n


def process_sizes(builder, split: str, process_count: int, data_dir: Optional[str], download: bool) -> List[int]:
    """Example count of every process's shard (the tfds even_splits arithmetic, or counted)."""
    try:
        total = int(builder.info.splits[split].num_examples)
        if total > 0:
            return [total // process_count + (k < total % process_count) for k in range(process_count)]
    except (KeyError, ValueError, TypeError):
        pass
    # No metadata (not prepared: fails with instructions; mocked data sets: counted per shard).
    return [split_size(builder, process_split(split, k, process_count), data_dir, download)
            for k in range(process_count)]


def _skip_image_decoding() -> Dict:
    return {"image": _tfds().decode.SkipDecoding()}


def _static_shape(builder) -> Optional[Tuple[int, int, int]]:
    shape = tuple(builder.info.features["image"].shape)
    return shape if all(d is not None for d in shape) else None


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] from PNG/JPEG/BMP/GIF bytes (grey is replicated to RGB)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def read_options() -> "tf.data.Options":
    options = tf.data.Options()
    options.deterministic = True
    return options


def stream(builder, split, *, data_dir: Optional[str], download: bool, shuffle_seed: Optional[int]) -> "tf.data.Dataset":
    """(encoded image bytes, int32 label) pairs of `split`; files shuffled with `shuffle_seed`."""
    tfds = _tfds()
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, options=read_options(),
                                  shuffle_reshuffle_each_iteration=False)
    ds = open_split(builder, split, data_dir, download, shuffle_files=shuffle_seed is not None,
                    decoders=_skip_image_decoding(), read_config=read_config)
    return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))


def load_process_split(name: str, data_dir: Optional[str], split: str, process_index: int, process_count: int,
                       download: bool) -> Tuple[np.ndarray, np.ndarray, str]:
    """`load_in_memory` of this process's shard of `split`.

    Deliberately not memoised: a cache keyed by name would hand mocked data
    (tfds.testing.mock_data) to later real runs in the same process, and vice versa.
    """
    builder = get_builder(name, data_dir)
    return load_in_memory(builder, process_split(split, process_index, process_count),
                          data_dir=data_dir, download=download)


def load_in_memory(builder, split, *, data_dir: Optional[str], download: bool) -> Tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, kind): decoded uint8 [N, H, W, 3] ('pixels') when the data set has one
    image shape, else the encoded bytes ('encoded', decoded per use)."""
    shape = _static_shape(builder)
    ds = stream(builder, split, data_dir=data_dir, download=download, shuffle_seed=None)
    encoded, labels = [], []
    for image, label in ds.as_numpy_iterator():
        encoded.append(image)
        labels.append(label)
    labels = np.asarray(labels, np.int32)
    if shape is None:
        return np.asarray(encoded, dtype=object), labels, "encoded"
    # One shape: decode once now (fast to gather later, no per-step decode).
    decoded = tf.data.Dataset.from_tensor_slices(np.asarray(encoded, dtype=object)).map(
        decode_image, num_parallel_calls=tf.data.AUTOTUNE)
    images = np.stack(list(decoded.as_numpy_iterator())) if encoded else np.zeros((0, *shape[:2], 3), np.uint8)
    return images, labels, "pixels"
