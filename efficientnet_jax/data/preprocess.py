"""Per-example train / eval preprocessing (uint8 [H, W, 3] in, float32 [S, S, 3] in [0, 255] out).

Follows the official EfficientNet preprocessing (google/automl efficientnetv2/preprocess_legacy.py,
tensorflow/tpu efficientnet/preprocessing.py): Inception-style random resized crop (area
0.08-1, aspect 3/4-4/3, min_object_covered 0.1, 10 attempts, falling back to the eval crop),
random horizontal flip, bicubic resize; eval takes a centred square of
image_size / (image_size + 32) of the short side and resizes it. 'resize' mode skips every
crop (for tiny images such as 8x8 digits or 32x32 CIFAR, where cropping throws content away).
All randomness is stateless: pass a [2] int seed. Works eagerly and inside `tf.data`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from efficientnet_jax.data import augment, seeds
from efficientnet_jax.data._tf import no_autograph, tf

_METHODS = {
    "bicubic": tf.image.ResizeMethod.BICUBIC,
    "bilinear": tf.image.ResizeMethod.BILINEAR,
    "nearest": tf.image.ResizeMethod.NEAREST_NEIGHBOR,
    "area": tf.image.ResizeMethod.AREA,
    "lanczos3": tf.image.ResizeMethod.LANCZOS3,
}


def _check(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3 or (image.shape[-1] is not None and image.shape[-1] != 3):
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    return image


@no_autograph
def resize(image: tf.Tensor, image_size: int, interpolation: str = "bicubic") -> tf.Tensor:
    """Resize to image_size x image_size; float32 clipped to [0, 255] (bicubic overshoots)."""
    if interpolation not in _METHODS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {sorted(_METHODS)}")
    out = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], method=_METHODS[interpolation])
    return tf.clip_by_value(out, 0.0, 255.0)


def center_crop_window(height, width, image_size: int, crop_padding: int = 32) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(offset_y, offset_x, size) of the official padded centre crop; size >= 1 on any image."""
    short = tf.cast(tf.minimum(height, width), tf.float32)
    size = tf.cast(image_size / (image_size + crop_padding) * short, tf.int32)
    size = tf.maximum(size, 1)
    return (height - size + 1) // 2, (width - size + 1) // 2, size


@no_autograph
def center_crop(image: tf.Tensor, image_size: int, crop_padding: int = 32) -> tf.Tensor:
    """The square, centred crop the official eval takes before resizing (not yet resized)."""
    image = _check(image)
    shape = tf.shape(image)
    oy, ox, size = center_crop_window(shape[0], shape[1], image_size, crop_padding)
    return image[oy:oy + size, ox:ox + size]


@no_autograph
def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, image_size: int, crop_padding: int = 32,
                        area_range: Sequence[float] = (0.08, 1.0),
                        aspect_ratio_range: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                        max_attempts: int = 10) -> tf.Tensor:
    """Inception crop (not yet resized). When no box satisfies the constraints within
    `max_attempts`, the sampler returns the whole image and we use the eval crop instead."""
    image = _check(image)
    shape = tf.shape(image)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=list(aspect_ratio_range),
        area_range=list(area_range), max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
    failed = tf.reduce_all(tf.equal(size[:2], shape[:2]))
    cy, cx, csize = center_crop_window(shape[0], shape[1], image_size, crop_padding)
    oy = tf.where(failed, cy, begin[0])
    ox = tf.where(failed, cx, begin[1])
    h = tf.where(failed, csize, size[0])
    w = tf.where(failed, csize, size[1])
    return image[oy:oy + h, ox:ox + w]


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


@no_autograph
def preprocess_train(image: tf.Tensor, seed: tf.Tensor, *, image_size: int, crop_mode: str = "inception",
                     flip: bool = True, interpolation: str = "bicubic", crop_padding: int = 32,
                     augment_name: str = "none", randaug_num_layers: int = 2,
                     randaug_magnitude: float = 10.0) -> tf.Tensor:
    """Crop (or not), resize, flip, augment: float32 [image_size, image_size, 3] in [0, 255]."""
    image = _check(image)
    crop_seed, flip_seed, aug_seed = tf.unstack(seeds.split(tf.convert_to_tensor(seed), 3))
    if crop_mode == "inception":
        image = random_resized_crop(image, crop_seed, image_size, crop_padding)
    elif crop_mode != "resize":
        raise ValueError(f"unknown crop_mode {crop_mode!r}; expected 'inception' or 'resize'")
    image = resize(image, image_size, interpolation)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if augment_name != "none":
        # The official code augments the resized image as uint8, then goes back to float.
        image = to_uint8(image)
        if augment_name == "autoaugment":
            image = augment.autoaugment(image, aug_seed)
        elif augment_name == "randaugment":
            image = augment.randaugment(image, aug_seed, randaug_num_layers, randaug_magnitude)
        else:
            raise ValueError(f"unknown augment {augment_name!r}; expected 'none', 'autoaugment' or 'randaugment'")
        image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [image_size, image_size, 3])


@no_autograph
def preprocess_eval(image: tf.Tensor, *, image_size: int, crop_mode: str = "inception",
                    interpolation: str = "bicubic", crop_padding: int = 32) -> tf.Tensor:
    """Padded centre crop then resize ('inception'), or a plain resize ('resize')."""
    image = _check(image)
    if crop_mode == "inception":
        image = center_crop(image, image_size, crop_padding)
    elif crop_mode != "resize":
        raise ValueError(f"unknown crop_mode {crop_mode!r}; expected 'inception' or 'resize'")
    return tf.ensure_shape(resize(image, image_size, interpolation), [image_size, image_size, 3])


@no_autograph
def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """(image / 255 - mean) / std with per-channel mean/std in [0, 1] units."""
    mean = tf.constant(mean, tf.float32) * 255.0
    std = tf.constant(std, tf.float32) * 255.0
    return (tf.cast(image, tf.float32) - mean) / std
