"""One pass over the eval split, padded so that every process runs the same number of batches.

Each process reads its own shard (digits/folders: strided; TFDS: tfds.split_for_jax_process)
in a fixed order. All processes yield ceil(largest shard / local batch) batches; slots past the
end of a shard hold a zero image with label 0 and mask 0, so summing `mask`-weighted metrics
over all processes counts every example exactly once.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator

import numpy as np

from efficientnet_jax.data import examples, folder, sources, tfds_source
from efficientnet_jax.data._tf import tf
from efficientnet_jax.data.config import check_input_config


def default_eval_split(cfg) -> str:
    """The config's eval_split, else the data set's default (test / validation / val)."""
    if cfg.eval_split:
        return cfg.eval_split
    kind = sources.kind_of(cfg.dataset)
    if kind == "digits":
        return "test"
    if kind == "folder":
        return folder.scan(cfg.dataset[len(folder.PREFIX):]).eval_split
    return tfds_source.default_splits(tfds_source.get_builder(cfg.dataset, cfg.data_dir))[1]


def make_eval_iterator(cfg, *, global_batch_size: int, image_size: int, process_index: int = 0,
                       process_count: int = 1) -> Iterator[Dict[str, np.ndarray]]:
    """One pass of {'image' float32 [B, S, S, 3], 'label' int32 [B], 'mask' float32 [B]},
    B = global_batch_size / process_count; padded slots have mask 0."""
    check_input_config(cfg)
    local_batch = examples.check_batch(global_batch_size, process_index, process_count)
    settings = examples.settings_from_config(cfg, image_size)
    split = default_eval_split(cfg)
    what = f"data set {cfg.dataset!r} split {split!r}"
    if sources.kind_of(cfg.dataset) == "tfds":
        ds, expected = _streamed(cfg, split, settings, local_batch, process_index, process_count)
    else:
        ds, expected = _indexed(cfg, split, settings, local_batch, process_index, process_count)
    ds = ds.prefetch(int(cfg.prefetch)) if cfg.prefetch else ds
    return _checked(examples.numpy_batches(ds.with_options(examples.dataset_options()), what), expected, what)


def _num_batches(sizes, local_batch: int) -> int:
    return math.ceil(max(sizes) / local_batch) if len(sizes) else 0


def _indexed(cfg, split, s, local_batch, process_index, process_count):
    data = sources.load_split(cfg.dataset, split, data_dir=cfg.data_dir, process_index=process_index,
                              process_count=process_count, download=cfg.download)
    total = _num_batches(data.sizes, local_batch) * local_batch
    n = len(data)
    ids = np.zeros([total], np.int64)
    ids[:n] = np.arange(n)
    mask = (np.arange(total) < n).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((ids, mask)).batch(local_batch)
    cache_key = ("eval", cfg.dataset, split, process_index, process_count, s)
    fixed = examples.precompute(data, lambda im: examples.eval_image(im, s), s, cache_key) if n else None
    if fixed is not None:
        table = examples.Precomputed(fixed, data.labels)

        def gather(i, m):
            images, labels = table.batch(i)
            return {"image": images * m[:, None, None, None], "label": labels * tf.cast(m, tf.int32), "mask": m}

        return ds.map(gather), n
    store = examples.Store(data) if n else None
    per_example = ds.unbatch().map(
        lambda i, m: {"image": examples.eval_image(store.image(i), s) * m,
                      "label": store.label(i) * tf.cast(m, tf.int32), "mask": m},
        num_parallel_calls=tf.data.AUTOTUNE)
    return per_example.batch(local_batch), n


def _streamed(cfg, split, s, local_batch, process_index, process_count):
    builder = tfds_source.get_builder(cfg.dataset, cfg.data_dir)
    tfds_source.check_features(builder)
    sizes = tfds_source.process_sizes(builder, split, process_count, cfg.data_dir, cfg.download)
    n = sizes[process_index]
    total = _num_batches(sizes, local_batch) * local_batch
    shard = tfds_source.process_split(split, process_index, process_count)
    real = tfds_source.stream(builder, shard, data_dir=cfg.data_dir, download=cfg.download, shuffle_seed=None)
    real = real.take(n).map(
        lambda encoded, label: {"image": examples.eval_image(tfds_source.decode_image(encoded), s),
                                "label": label, "mask": tf.constant(1.0)},
        num_parallel_calls=tf.data.AUTOTUNE)
    pad = tf.data.Dataset.from_tensors({"image": tf.zeros([s.image_size, s.image_size, 3]),
                                        "label": tf.constant(0, tf.int32), "mask": tf.constant(0.0)})
    return real.concatenate(pad.repeat(total - n)).batch(local_batch), n


def _checked(batches, expected: int, what: str):
    """Pass batches through; fail loudly if the shard held fewer examples than its metadata said
    (processes would then run different numbers of eval steps and hang)."""
    seen = 0
    for batch in batches:
        seen += int(batch["mask"].sum())
        yield batch
    if seen != expected:
        raise RuntimeError(f"{what}: this process read {seen} eval examples, its metadata promised {expected}")
