"""AutoAugment / RandAugment ops: each runs eagerly and in tf.data, keeps shape and dtype, and
matches the PIL operation it is named after (PIL is the reference the official code mirrors)."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from efficientnet_jax.data import POLICY_V0, RANDAUGMENT_OPS, apply_op, autoaugment, randaugment
from efficientnet_jax.data import augment_ops as ops
from efficientnet_jax.data.augment import level_to_arg, AUTOAUGMENT_CONSTS
from tests.data.helpers import eager_and_in_pipeline, rgb

SEED = np.array([7, 11], np.int64)


def smooth_image(h=24, w=20):
    """A natural-ish image (gradients + noise) with a non-degenerate histogram in every channel."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 9 + 20, y * 7 + 30, (x + y) * 5 + 10], -1).astype(np.float64)
    return np.clip(base + np.random.RandomState(1).randint(-10, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", RANDAUGMENT_OPS)
def test_every_op_eager_and_in_pipeline(name):
    image = smooth_image()
    eager, graph = eager_and_in_pipeline(lambda im, s: apply_op(im, name, 7, s), image, SEED)
    for out in (eager, graph):
        assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(eager, graph)


def test_ops_work_on_8x8():
    image = rgb(8, 8)
    for name in RANDAUGMENT_OPS:
        assert apply_op(image, name, 10, SEED).shape == (8, 8, 3)


def test_pointwise_ops_exact():
    image = rgb(16, 16)
    np.testing.assert_array_equal(ops.invert(image).numpy(), 255 - image)
    np.testing.assert_array_equal(ops.solarize(image, 100).numpy(), np.where(image < 100, image, 255 - image))
    np.testing.assert_array_equal(ops.solarize(image, 256).numpy(), image)
    added = np.clip(image.astype(int) + 30, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ops.solarize_add(image, 30).numpy(), np.where(image < 128, added, image))
    np.testing.assert_array_equal(ops.posterize(image, 2).numpy(), image & 0b11000000)
    # bits=0 (AutoAugment's Posterize at level 2) keeps the top bit, as TF's shifts do in the official code
    np.testing.assert_array_equal(ops.posterize(image, 0).numpy(), image & 0b10000000)
    np.testing.assert_array_equal(ops.posterize(image, 4).numpy(), np.asarray(ImageOps.posterize(Image.fromarray(image), 4)))


def test_histogram_ops_match_pil():
    image = smooth_image()
    pil = Image.fromarray(image)
    np.testing.assert_array_equal(ops.equalize(image).numpy(), np.asarray(ImageOps.equalize(pil)))
    # PIL computes i * scale - lo * scale, which can land just under an integer and truncate one
    # level low; we compute (i - lo) * 255 / span, exact at integers.
    diff = ops.autocontrast(image).numpy().astype(int) - np.asarray(ImageOps.autocontrast(pil)).astype(int)
    assert diff.min() >= 0 and diff.max() <= 1 and (diff == 0).mean() > 0.98
    flat = np.full((5, 5, 3), 77, np.uint8)  # degenerate histograms are left alone
    np.testing.assert_array_equal(ops.equalize(flat).numpy(), flat)
    np.testing.assert_array_equal(ops.autocontrast(flat).numpy(), flat)


@pytest.mark.parametrize("factor", [0.1, 0.5, 1.3, 1.9])
def test_enhance_ops_match_pil(factor):
    image = smooth_image()
    pil = Image.fromarray(image)
    pairs = [(ops.color, ImageEnhance.Color), (ops.contrast, ImageEnhance.Contrast),
             (ops.brightness, ImageEnhance.Brightness), (ops.sharpness, ImageEnhance.Sharpness)]
    for ours, theirs in pairs:
        got = ours(image, factor).numpy().astype(int)
        want = np.asarray(theirs(pil).enhance(factor)).astype(int)
        # PIL's integer luma and rounding differ from TF's float ones by at most a couple of levels.
        assert np.abs(got - want).max() <= 3, (ours.__name__, np.abs(got - want).max())
        assert np.abs(got - want).mean() < 0.6, ours.__name__


def test_geometric_ops():
    image = rgb(9, 9)
    np.testing.assert_array_equal(ops.rotate(image, 90.0).numpy(), np.rot90(image, 1))
    np.testing.assert_array_equal(ops.rotate(image, 0.0).numpy(), image)
    moved = ops.translate_x(image, 2.0).numpy()
    np.testing.assert_array_equal(moved[:, :-2], image[:, 2:])
    assert (moved[:, -2:] == 128).all()
    moved = ops.translate_y(image, -3.0).numpy()
    np.testing.assert_array_equal(moved[3:], image[:-3])
    assert (moved[:3] == 128).all()
    sheared = ops.shear_x(image, 1.0).numpy()
    for y in range(3):  # row y reads x + y
        np.testing.assert_array_equal(sheared[y, : 9 - y], image[y, y:])
    np.testing.assert_array_equal(ops.shear_y(image, 0.0).numpy(), image)


def test_cutout_greys_a_bounded_square():
    image = np.zeros((32, 32, 3), np.uint8)
    out = ops.cutout(image, 4, SEED).numpy()
    grey = (out == 128).all(-1)
    assert 0 < grey.sum() <= 64
    rows, cols = np.nonzero(grey)
    assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8
    assert (out[~grey] == 0).all()


def test_level_maps_follow_the_official_code():
    assert level_to_arg("Rotate", 10, {}) == 30.0
    assert level_to_arg("Posterize", 6, {}) == 2.0
    assert level_to_arg("Solarize", 3, {}) == 76.0
    assert level_to_arg("SolarizeAdd", 7, {}) == 77.0
    assert level_to_arg("Color", 5, {}) == pytest.approx(1.0)
    assert level_to_arg("ShearX", 10, {}) == pytest.approx(0.3)
    assert level_to_arg("TranslateY", 9, AUTOAUGMENT_CONSTS) == pytest.approx(225.0)
    assert len(POLICY_V0) == 25 and all(len(p) == 2 for p in POLICY_V0)


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_policies_change_images_keep_shape_and_are_seeded(policy):
    import tensorflow as tf

    image = smooth_image(32, 32)
    fn = (lambda im, s: autoaugment(im, s)) if policy == "autoaugment" else (lambda im, s: randaugment(im, s, 2, 9))
    seeds = np.array([[k, 3] for k in range(10)], np.int64)
    in_pipeline = list(tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: fn(tf.constant(image), s))
                       .as_numpy_iterator())
    changed = 0
    for seed, graph in zip(seeds, in_pipeline):
        eager = fn(image, seed).numpy()
        assert eager.shape == graph.shape == image.shape and eager.dtype == graph.dtype == np.uint8
        np.testing.assert_array_equal(eager, graph)  # a pure function of the seed, eager or not
        changed += int(not np.array_equal(eager, image))
    assert changed >= 6  # most draws alter the image (AutoAugment's ops may skip by probability)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="uint8"):
        autoaugment(np.zeros((4, 4, 3), np.float32), SEED)
    with pytest.raises(ValueError, match="unknown augmentation op"):
        apply_op(rgb(4, 4), "Blur", 5, SEED)
