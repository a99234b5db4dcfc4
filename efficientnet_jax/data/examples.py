"""Per-example building blocks shared by the train and eval pipelines.

An in-memory split lives in TF variables (captured by reference, so a 150 MB array does not
get serialised into every tf.data graph), and examples are fetched by index. When the
preprocessing is deterministic (plain resize, no flip, no augmentation; always so for eval),
the preprocessed, normalised images of digits/folder splits are computed once and reused by
every later iterator with the same settings (the digits quick-start path costs a gather per
batch).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np

from efficientnet_jax.data import preprocess, seeds
from efficientnet_jax.data._tf import no_autograph, tf
from efficientnet_jax.data.sources import InMemorySplit
from efficientnet_jax.data.tfds_source import decode_image

# Precomputed float32 images above this size are not kept (they would not fit comfortably).
PRECOMPUTE_MAX_BYTES = 1 << 30
_PRECOMPUTED: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()
_PRECOMPUTED_SLOTS = 4


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides how one example is turned into model input."""

    image_size: int
    crop_mode: str
    flip: bool
    interpolation: str
    crop_padding: int
    augment: str
    randaug_num_layers: int
    randaug_magnitude: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    @property
    def precomputable_train(self) -> bool:
        """Plain resize and no augmentation: the per-example work is deterministic (a random flip,
        if any, is applied per batch on top of the precomputed images)."""
        return self.crop_mode == "resize" and self.augment == "none"


def settings_from_config(cfg, image_size: int, randaug_magnitude: Optional[float] = None) -> Settings:
    return Settings(
        image_size=int(image_size), crop_mode=cfg.crop_mode, flip=bool(cfg.flip),
        interpolation=cfg.interpolation, crop_padding=int(cfg.crop_padding), augment=cfg.augment,
        randaug_num_layers=int(cfg.randaug_num_layers),
        randaug_magnitude=float(cfg.randaug_magnitude if randaug_magnitude is None else randaug_magnitude),
        mean=tuple(float(m) for m in cfg.mean), std=tuple(float(s) for s in cfg.std))


@no_autograph
def train_image(image: tf.Tensor, seed: tf.Tensor, s: Settings) -> tf.Tensor:
    """uint8 [H, W, 3] -> normalised float32 [S, S, 3], random ops seeded by `seed`."""
    out = preprocess.preprocess_train(
        image, seed, image_size=s.image_size, crop_mode=s.crop_mode, flip=s.flip, interpolation=s.interpolation,
        crop_padding=s.crop_padding, augment_name=s.augment, randaug_num_layers=s.randaug_num_layers,
        randaug_magnitude=s.randaug_magnitude)
    return preprocess.normalize(out, s.mean, s.std)


@no_autograph
def eval_image(image: tf.Tensor, s: Settings) -> tf.Tensor:
    out = preprocess.preprocess_eval(image, image_size=s.image_size, crop_mode=s.crop_mode,
                                     interpolation=s.interpolation, crop_padding=s.crop_padding)
    return preprocess.normalize(out, s.mean, s.std)


def decoder_for(kind: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Stored item -> uint8 [H, W, 3]."""
    if kind == "pixels":
        return lambda item: item
    if kind == "encoded":
        return decode_image
    if kind == "files":
        return lambda path: decode_image(tf.io.read_file(path))
    raise ValueError(f"unknown storage kind {kind!r}")


def _as_tensor(split: InMemorySplit) -> tf.Tensor:
    if split.kind == "pixels":
        return tf.convert_to_tensor(split.images)
    # A list of Python bytes/str keeps every item at its own length (a numpy 'S' array would pad
    # them all to the longest and drop trailing NUL bytes).
    return tf.constant([x if isinstance(x, bytes) else str(x).encode() for x in split.images], tf.string)


class Store:
    """An in-memory split held in TF variables, fetched by index inside tf.data functions."""

    def __init__(self, split: InMemorySplit):
        self.kind = split.kind
        self.size = len(split)
        if self.size == 0:
            raise ValueError("this process's shard of the split is empty")
        self._items = tf.Variable(_as_tensor(split), trainable=False)
        self._labels = tf.Variable(split.labels.astype(np.int32), trainable=False)
        self._decode = decoder_for(split.kind)

    def image(self, index: tf.Tensor) -> tf.Tensor:
        return self._decode(tf.gather(self._items, index))

    def label(self, index: tf.Tensor) -> tf.Tensor:
        return tf.gather(self._labels, index)


class Precomputed:
    """Normalised float32 images of a whole split computed once; fetched by batched gather."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self._images = tf.Variable(images, trainable=False)
        self._labels = tf.Variable(labels.astype(np.int32), trainable=False)

    def batch(self, ids: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        return tf.gather(self._images, ids), tf.gather(self._labels, ids)


def precompute(split: InMemorySplit, fn: Callable[[tf.Tensor], tf.Tensor], s: Settings,
               cache_key: Optional[tuple]) -> Optional[np.ndarray]:
    """Apply the deterministic `fn` to every example once; None when the result is too large."""
    if len(split) * s.image_size * s.image_size * 3 * 4 > PRECOMPUTE_MAX_BYTES:
        return None
    if cache_key is not None and cache_key in _PRECOMPUTED:
        _PRECOMPUTED.move_to_end(cache_key)
        return _PRECOMPUTED[cache_key]
    decode = decoder_for(split.kind)
    ds = tf.data.Dataset.from_tensor_slices(_as_tensor(split)).map(lambda x: fn(decode(x)), num_parallel_calls=tf.data.AUTOTUNE)
    chunks = list(ds.batch(512).as_numpy_iterator())
    out = np.concatenate(chunks) if chunks else np.zeros((0, s.image_size, s.image_size, 3), np.float32)
    if cache_key is not None:
        _PRECOMPUTED[cache_key] = out
        while len(_PRECOMPUTED) > _PRECOMPUTED_SLOTS:
            _PRECOMPUTED.popitem(last=False)
    return out


@no_autograph
def flip_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flip each image of a batch left-right with probability 1/2 (one stateless draw each)."""
    coins = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seed) < 0.5
    c = tf.cast(coins, images.dtype)[:, None, None, None]
    # exact 0/1 weights instead of tf.where, whose broadcasting select is ~4x slower on CPU
    return c * tf.reverse(images, axis=[2]) + (1.0 - c) * images


def example_seed(base_seed: int, global_index: tf.Tensor) -> tf.Tensor:
    """The seed of one example occurrence: (run seed, position in the global stream)."""
    return seeds.tf_seed(base_seed, seeds.AUGMENT, global_index)


def dataset_options() -> "tf.data.Options":
    """Deterministic order (bit-exact resumption) and single-threaded ops inside each map call
    (parallelism comes from num_parallel_calls; this leaves cores to the training step)."""
    options = tf.data.Options()
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1
    return options


def numpy_batches(ds: "tf.data.Dataset", what: str):
    """Iterate `ds` as dicts of numpy arrays, naming `what` if an image cannot be decoded."""
    it = ds.as_numpy_iterator()
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as e:
            raise ValueError(f"failed to read an example of {what}: {e.message.splitlines()[0]}") from None
        yield batch


def check_batch(global_batch_size: int, process_index: int, process_count: int) -> int:
    """The per-process batch; the global batch must split evenly across processes."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                         f"process_count={process_count}")
    return global_batch_size // process_count
