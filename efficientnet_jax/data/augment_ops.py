"""The image operations of AutoAugment / RandAugment, on uint8 [H, W, 3] tensors.

Each op reproduces the PIL operation it is named after (the official EfficientNet code,
google/automl efficientnetv2/autoaugment.py, defines them the same way). Geometric ops fill the
pixels they expose with grey 128 and sample with nearest neighbour, as the official code does.
They work eagerly and inside `tf.data.Dataset.map`, on any image size (8x8 included).
"""

from __future__ import annotations

import math

from efficientnet_jax.data._tf import tf

FILL_VALUE = 128


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def blend(image1: tf.Tensor, image2: tf.Tensor, factor) -> tf.Tensor:
    """image1 + factor * (image2 - image1), clipped (PIL ImageEnhance): 0 -> image1, 1 -> image2."""
    a = tf.cast(image1, tf.float32)
    b = tf.cast(image2, tf.float32)
    return _to_uint8(a + tf.cast(factor, tf.float32) * (b - a))


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255 - tf.convert_to_tensor(image)


def solarize(image: tf.Tensor, threshold) -> tf.Tensor:
    """Invert every pixel value >= threshold (threshold 256 leaves the image unchanged)."""
    return tf.where(tf.cast(image, tf.int32) < tf.cast(threshold, tf.int32), image, 255 - image)


def solarize_add(image: tf.Tensor, addition, threshold: int = 128) -> tf.Tensor:
    """Add `addition` (clipped to [0, 255]) to every pixel value below threshold."""
    added = tf.clip_by_value(tf.cast(image, tf.int32) + tf.cast(addition, tf.int32), 0, 255)
    return tf.where(tf.cast(image, tf.int32) < threshold, tf.cast(added, tf.uint8), image)


def posterize(image: tf.Tensor, bits) -> tf.Tensor:
    """Keep the `bits` most significant bits of each value.

    Uses TF's uint8 shifts, as the official code does, so bits=0 (shift 8) behaves as TF defines
    it there (the shift saturates at 7, leaving only the top bit) rather than blanking the image.
    """
    shift = tf.cast(8 - tf.cast(bits, tf.int32), tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def _grey(image: tf.Tensor) -> tf.Tensor:
    return tf.image.rgb_to_grayscale(image)  # ITU-R 601 luma, like PIL's convert('L')


def color(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL Color (saturation): 0 gives the grey image, 1 the original."""
    return blend(tf.image.grayscale_to_rgb(_grey(image)), image, factor)


def contrast(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL Contrast: blend with a flat image at the mean grey level.

    The official TF code uses the pixel *count*/256 as that level (a known slip); we use the
    mean grey value, which is what PIL (and hence timm) does.
    """
    mean = tf.reduce_mean(tf.cast(_grey(image), tf.float32))
    degenerate = tf.fill(tf.shape(image), tf.cast(tf.round(mean), tf.uint8))
    return blend(degenerate, image, factor)


def brightness(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL Brightness: 0 gives black, 1 the original."""
    return blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL Sharpness: blend with the image smoothed by PIL's SMOOTH kernel (borders kept)."""
    x = tf.cast(image, tf.float32)[None]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="VALID")[0]
    smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0.0, 255.0), tf.uint8)
    # PIL leaves the one-pixel border untouched: paste the smoothed interior into the original.
    interior = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(interior, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return blend(degenerate, image, factor)


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel so its darkest value maps to 0 and its brightest to 255."""
    x = tf.cast(image, tf.float32)
    lo = tf.reduce_min(x, axis=[0, 1])
    hi = tf.reduce_max(x, axis=[0, 1])
    flat = hi <= lo
    span = tf.where(flat, 1.0, hi - lo)
    # Multiply before dividing so the brightest value lands on exactly 255.
    return tf.where(flat, image, _to_uint8((x - lo) * 255.0 / span))


def equalize(image: tf.Tensor) -> tf.Tensor:
    """PIL Equalize, per channel: map values through the normalised cumulative histogram."""
    channels = tf.transpose(tf.reshape(tf.cast(image, tf.int32), [-1, 3]))  # [3, H*W]
    hist = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)  # [3, 256]
    # PIL leaves out the count of the brightest occupied value when it computes the step.
    top = tf.reduce_max(channels, axis=1)
    last_count = tf.gather(hist, top, batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255  # [3]
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros([3, 1], lut.dtype), lut[:, :-1]], axis=1), 0, 255)
    mapped = tf.gather(lut, channels, batch_dims=1)
    mapped = tf.where(step[:, None] == 0, channels, mapped)  # a flat channel stays as it is
    return tf.reshape(tf.cast(tf.transpose(mapped), tf.uint8), tf.shape(image))


def _transform(image: tf.Tensor, matrix) -> tf.Tensor:
    """Apply the projective map output(x, y) = input(a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    matrix = tf.cast(tf.stack(list(matrix) + [0.0, 0.0]), tf.float32)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=matrix, output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(FILL_VALUE, tf.float32), interpolation="NEAREST", fill_mode="CONSTANT")
    return out[0]


def rotate(image: tf.Tensor, degrees) -> tf.Tensor:
    """Rotate about the image centre (positive = counter-clockwise on screen)."""
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    c, s = tf.cos(theta), tf.sin(theta)
    shape = tf.cast(tf.shape(image), tf.float32)
    cy, cx = (shape[0] - 1.0) / 2.0, (shape[1] - 1.0) / 2.0
    # input = R (output - centre) + centre
    return _transform(image, [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy])


def shear_x(image: tf.Tensor, level) -> tf.Tensor:
    level = tf.cast(level, tf.float32)
    return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, level) -> tf.Tensor:
    level = tf.cast(level, tf.float32)
    return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0])


def translate_x(image: tf.Tensor, pixels) -> tf.Tensor:
    """Shift the content left by `pixels` (right when negative), as PIL's translate does."""
    return _transform(image, [1.0, 0.0, tf.cast(pixels, tf.float32), 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, pixels) -> tf.Tensor:
    return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, tf.cast(pixels, tf.float32)])


def cutout(image: tf.Tensor, pad_size, seed: tf.Tensor) -> tf.Tensor:
    """Grey out a (2*pad_size)^2 square (clipped at the border) centred at a random pixel."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    centre = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=tf.int32.max, dtype=tf.int32)
    cy, cx = centre[0] % h, centre[1] % w
    pad = tf.cast(pad_size, tf.int32)
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    inside = (rows >= cy - pad) & (rows < cy + pad) & (cols >= cx - pad) & (cols < cx + pad)
    return tf.where(inside[:, :, None], tf.constant(FILL_VALUE, tf.uint8), image)
