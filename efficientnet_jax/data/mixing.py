"""Mixup and CutMix on a batch, with soft (one-hot mixture) labels.

As in the official EfficientNetV2 input pipeline (google/automl efficientnetv2/datasets.py,
`mixing`): each image is mixed with its partner in the reversed batch; mixup draws one
lambda ~ Beta(alpha, alpha) per example and keeps max(lambda, 1 - lambda) for the image itself;
cutmix pastes the partner's box whose area follows 1 - Beta(alpha, alpha) and weights the labels
by the area actually pasted (after clipping at the border). With both alphas set, the first half
of the batch gets mixup and the second half cutmix, each half paired within itself.
All draws are stateless functions of `seed`.
"""

from __future__ import annotations

from typing import Tuple

from efficientnet_jax.data import seeds
from efficientnet_jax.data._tf import no_autograph, tf


def _partner(x: tf.Tensor) -> tf.Tensor:
    """The batch reversed (tf.reverse: ~10x faster on CPU than the strided slice x[::-1])."""
    return tf.reverse(x, axis=[0])


def _beta(shape, seed: tf.Tensor, alpha: float) -> tf.Tensor:
    s1, s2 = tf.unstack(seeds.split(seed, 2))
    g1 = tf.random.stateless_gamma(shape, seed=s1, alpha=alpha)
    g2 = tf.random.stateless_gamma(shape, seed=s2, alpha=alpha)
    return g1 / tf.maximum(g1 + g2, 1e-12)


@no_autograph
def mixup(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, alpha: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mix each example with its reversed-batch partner; returns (images, soft labels, weights).

    `weights[i]` is the share of example i itself (>= 0.5) in both the pixels and the label.
    """
    batch = tf.shape(images)[0]
    lam = _beta([batch], seed, alpha)
    lam = tf.maximum(lam, 1.0 - lam)
    w = tf.reshape(lam, [-1, 1, 1, 1])
    images = images * w + _partner(images) * (1.0 - w)
    labels = labels * lam[:, None] + _partner(labels) * (1.0 - lam[:, None])
    return images, labels, lam


def cutmix_masks(seed: tf.Tensor, batch, height, width, alpha: float) -> tf.Tensor:
    """float32 [batch, H, W, 1]: 1 where the partner's pixels are pasted."""
    s_centre, s_area = tf.unstack(seeds.split(seed, 2))
    centre = tf.random.stateless_uniform([batch, 2], seed=s_centre, minval=0, maxval=tf.int32.max, dtype=tf.int32)
    cy = centre[:, 0] % height
    cx = centre[:, 1] % width
    ratio = tf.sqrt(1.0 - _beta([batch], s_area, alpha))
    rh = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
    rw = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
    y0 = tf.clip_by_value(cy - rh // 2, 0, height)
    y1 = tf.clip_by_value(cy + rh // 2, 0, height)
    x0 = tf.clip_by_value(cx - rw // 2, 0, width)
    x1 = tf.clip_by_value(cx + rw // 2, 0, width)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None])
              & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
    return tf.cast(inside, tf.float32)[..., None]


@no_autograph
def cutmix(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, alpha: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Paste a box of the reversed-batch partner; returns (images, soft labels, pasted area share)."""
    shape = tf.shape(images)
    mask = cutmix_masks(seed, shape[0], shape[1], shape[2], alpha)
    area = tf.reduce_mean(mask, axis=[1, 2, 3])
    images = images * (1.0 - mask) + _partner(images) * mask
    labels = labels * (1.0 - area[:, None]) + _partner(labels) * area[:, None]
    return images, labels, area


@no_autograph
def mix_batch(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> Tuple[tf.Tensor, tf.Tensor]:
    """The V2 scheme: mixup, cutmix, or (both set) mixup on the first half and cutmix on the second."""
    s_mix, s_cut = tf.unstack(seeds.split(tf.convert_to_tensor(seed), 2))
    if mixup_alpha > 0 and cutmix_alpha > 0:
        half = tf.shape(images)[0] // 2
        im1, lb1, _ = mixup(images[:half], labels[:half], s_mix, mixup_alpha)
        im2, lb2, _ = cutmix(images[half:], labels[half:], s_cut, cutmix_alpha)
        return tf.concat([im1, im2], 0), tf.concat([lb1, lb2], 0)
    if mixup_alpha > 0:
        return mixup(images, labels, s_mix, mixup_alpha)[:2]
    if cutmix_alpha > 0:
        return cutmix(images, labels, s_cut, cutmix_alpha)[:2]
    return images, labels
