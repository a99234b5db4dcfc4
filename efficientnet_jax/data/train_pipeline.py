"""The training stream: infinite, deterministic, resumable at any step.

Layout of the stream (per process, which owns a disjoint shard of the train split):
- an epoch is `steps_per_epoch` full batches; the shard's leftover examples (fewer than one
  local batch, plus whatever other processes' smaller shards force) are dropped for that
  epoch; epoch e visits the shard in a permutation seeded by (seed, e). When a shard is
  smaller than one batch, an epoch is one batch that cycles through fresh permutations.
- the example at stream position p lands in step p // local_batch; its crop/flip/augment
  seed is (seed, its global index step * global_batch + process_index * local_batch + j), and
  a batch's mixup/cutmix seed is (seed, its first global index). (With crop_mode='resize' and
  no augmentation, images are resized once up front and a flip, if on, is drawn per batch.)
So every batch is a pure function of (config, seed, step, process): starting at step s skips
exactly s * global_batch examples and yields what an uninterrupted run yields from step s on.

In-memory splits (digits, folders, TFDS with cache=True) get exact permutations by index
(tf.random.experimental.index_shuffle). Streamed TFDS splits shuffle files and a buffer of
`shuffle_buffer` examples with per-epoch seeds; resuming mid-epoch re-reads (without decoding)
the part of that epoch already consumed.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, Iterator, Optional

import numpy as np

from efficientnet_jax.data import examples, folder, mixing, seeds, sources, tfds_source
from efficientnet_jax.data._tf import tf
from efficientnet_jax.data.config import check_input_config
from efficientnet_jax.data.splits import shard_sizes

_FOREVER = np.iinfo(np.int64).max // 4


@dataclasses.dataclass(frozen=True)
class _Plan:
    seed: int
    local_batch: int
    global_batch: int
    process_index: int
    per_epoch: int  # examples per process per epoch (a multiple of local_batch)
    num_classes: int
    mixup_alpha: float
    cutmix_alpha: float

    def global_index(self, position: tf.Tensor) -> tf.Tensor:
        """Global stream index of the example at this process's stream `position`."""
        step, j = position // self.local_batch, position % self.local_batch
        return step * self.global_batch + self.process_index * self.local_batch + j

    def finish(self, images: tf.Tensor, labels: tf.Tensor, first_index: tf.Tensor) -> Dict[str, tf.Tensor]:
        onehot = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            images, onehot = mixing.mix_batch(images, onehot, seeds.tf_seed(self.seed, seeds.MIX, first_index),
                                              self.mixup_alpha, self.cutmix_alpha)
        return {"image": images, "label": tf.cast(labels, tf.int32), "label_onehot": onehot}


def _epoch_length(sizes, local_batch: int) -> int:
    smallest = min(sizes)
    if smallest < 1:
        raise ValueError(f"a process's shard of the train split is empty (shard sizes {list(sizes)})")
    return max(smallest // local_batch, 1) * local_batch


def _num_classes(cfg) -> int:
    kind = sources.kind_of(cfg.dataset)
    if kind == "digits":
        return 10
    if kind == "folder":
        return len(folder.scan(cfg.dataset[len(folder.PREFIX):]).class_names)
    return int(tfds_source.get_builder(cfg.dataset, cfg.data_dir).info.features["label"].num_classes)


def _train_sizes(cfg, split: str, process_count: int):
    kind = sources.kind_of(cfg.dataset)
    if kind == "tfds":
        builder = tfds_source.get_builder(cfg.dataset, cfg.data_dir)
        tfds_source.check_features(builder)
        return tfds_source.process_sizes(builder, split, process_count, cfg.data_dir, cfg.download)
    info = sources.dataset_info(cfg.dataset, cfg.data_dir, train_split=split, eval_split=split)
    return shard_sizes(info.num_train, process_count)


def steps_per_epoch(cfg, *, global_batch_size: int, process_count: int = 1) -> int:
    """Steps in one epoch of `make_train_iterator` (the same on every process)."""
    check_input_config(cfg)
    local_batch = examples.check_batch(global_batch_size, 0, process_count)
    sizes = _train_sizes(cfg, cfg.train_split or "train", process_count)
    return _epoch_length(sizes, local_batch) // local_batch


def make_train_iterator(cfg, *, global_batch_size: int, image_size: int, seed: int, start_step: int = 0,
                        process_index: int = 0, process_count: int = 1, randaug_magnitude=None,
                        mixup_alpha=None, cutmix_alpha=None) -> Iterator[Dict[str, np.ndarray]]:
    """Infinite iterator of {'image' float32 [B, S, S, 3] normalised, 'label' int32 [B],
    'label_onehot' float32 [B, C]} with B = global_batch_size / process_count.

    `randaug_magnitude`, `mixup_alpha`, `cutmix_alpha` override the config (progressive
    learning changes them per stage). See the module docstring for the stream's layout.
    """
    check_input_config(cfg)
    local_batch = examples.check_batch(global_batch_size, process_index, process_count)
    if start_step < 0:
        raise ValueError(f"start_step={start_step} must be >= 0")
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be >= 1")
    settings = examples.settings_from_config(cfg, image_size, randaug_magnitude)
    split = cfg.train_split or "train"
    sizes = _train_sizes(cfg, split, process_count)
    plan = _Plan(seed=int(seed), local_batch=local_batch, global_batch=global_batch_size,
                 process_index=process_index, per_epoch=_epoch_length(sizes, local_batch),
                 num_classes=_num_classes(cfg),
                 mixup_alpha=float(cfg.mixup_alpha if mixup_alpha is None else mixup_alpha),
                 cutmix_alpha=float(cfg.cutmix_alpha if cutmix_alpha is None else cutmix_alpha))
    what = f"data set {cfg.dataset!r} split {split!r}"
    if sources.kind_of(cfg.dataset) == "tfds" and not cfg.cache:
        return _streamed(cfg, split, plan, settings, start_step, process_count, what)
    data = sources.load_split(cfg.dataset, split, data_dir=cfg.data_dir, process_index=process_index,
                              process_count=process_count, download=cfg.download)
    cache_key = None
    if sources.kind_of(cfg.dataset) != "tfds":
        cache_key = ("train", cfg.dataset, split, process_index, process_count,
                     dataclasses.replace(settings, flip=False))
    ds = _indexed(data, plan, settings, start_step, cache_key)
    ds = ds.prefetch(int(cfg.prefetch)) if cfg.prefetch else ds
    return examples.numpy_batches(ds.with_options(examples.dataset_options()), what)


def _indexed(data: sources.InMemorySplit, plan: _Plan, s: examples.Settings, start_step: int,
             cache_key: Optional[tuple]) -> "tf.data.Dataset":
    size = len(data)
    perm_key = seeds.fold(plan.seed, seeds.PERMUTATION, plan.process_index)

    def ids_of_step(step):
        position = step * plan.local_batch + tf.range(plan.local_batch, dtype=tf.int64)
        epoch, offset = position // plan.per_epoch, position % plan.per_epoch
        cycle, index = offset // size, offset % size  # cycle > 0 only when the shard < one batch
        seed3 = tf.stack([tf.fill(tf.shape(position), tf.constant(perm_key, tf.int64)), epoch, cycle], axis=-1)
        ids = tf.raw_ops.RandomIndexShuffle(index=index, seed=seed3, max_index=tf.constant(size - 1, tf.int64),
                                            rounds=4)
        return ids, plan.global_index(position)

    steps = tf.data.Dataset.range(start_step, _FOREVER).map(ids_of_step)
    if s.precomputable_train:
        fixed_settings = dataclasses.replace(s, flip=False)
        fixed = examples.precompute(
            data, lambda im: examples.train_image(im, tf.constant([0, 0], tf.int64), fixed_settings), s, cache_key)
        if fixed is not None:
            table = examples.Precomputed(fixed, data.labels)

            def gather(ids, g):
                images, labels = table.batch(ids)
                if s.flip:
                    images = examples.flip_batch(images, seeds.tf_seed(plan.seed, seeds.FLIP, g[0]))
                return plan.finish(images, labels, g[0])

            return steps.map(gather)
    store = examples.Store(data)
    per_example = steps.unbatch().map(
        lambda i, g: (examples.train_image(store.image(i), examples.example_seed(plan.seed, g), s), store.label(i), g),
        num_parallel_calls=tf.data.AUTOTUNE)
    return per_example.batch(plan.local_batch, drop_remainder=True).map(
        lambda im, lb, g: plan.finish(im, lb, g[0]), num_parallel_calls=tf.data.AUTOTUNE)


def _streamed(cfg, split: str, plan: _Plan, s: examples.Settings, start_step: int, process_count: int,
              what: str) -> Iterator[Dict[str, np.ndarray]]:
    builder = tfds_source.get_builder(cfg.dataset, cfg.data_dir)
    shard = tfds_source.process_split(split, plan.process_index, process_count)
    start = start_step * plan.local_batch
    first_epoch, skip = divmod(start, plan.per_epoch)
    buffer = max(int(cfg.shuffle_buffer), 1)

    def epoch_dataset(epoch: int, skip: int) -> "tf.data.Dataset":
        ds = tfds_source.stream(builder, shard, data_dir=cfg.data_dir, download=cfg.download,
                                shuffle_seed=seeds.fold(plan.seed, seeds.FILES, epoch, plan.process_index))
        ds = ds.shuffle(buffer, seed=seeds.fold(plan.seed, seeds.PERMUTATION, epoch, plan.process_index))
        ds = ds.repeat().take(plan.per_epoch)  # repeat only matters for a shard smaller than a batch
        base = epoch * plan.per_epoch
        ds = ds.enumerate().skip(skip)  # skipped examples are read but never decoded

        def one(k, example):
            g = plan.global_index(base + k)
            image = examples.train_image(tfds_source.decode_image(example[0]), examples.example_seed(plan.seed, g), s)
            return image, example[1], g

        ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(plan.local_batch, drop_remainder=True)
        ds = ds.map(lambda im, lb, g: plan.finish(im, lb, g[0]), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.prefetch(int(cfg.prefetch)) if cfg.prefetch else ds
        return ds.with_options(examples.dataset_options())

    def forever():
        for epoch in itertools.count(first_epoch):
            produced = 0
            for batch in examples.numpy_batches(epoch_dataset(epoch, skip if epoch == first_epoch else 0), what):
                produced += 1
                yield batch
            if not produced:  # an empty shard would otherwise spin here forever
                raise RuntimeError(f"{what}: epoch {epoch} produced no batch on process {plan.process_index}; "
                                   "is this process's shard empty?")

    return forever()
