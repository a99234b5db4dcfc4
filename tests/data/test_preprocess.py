"""Train / eval preprocessing: shapes and dtypes eagerly and in tf.data, crop geometry, tiny images."""

import numpy as np
import pytest

from efficientnet_jax.data import center_crop, normalize, preprocess_eval, preprocess_train, random_resized_crop, resize
from efficientnet_jax.data.preprocess import center_crop_window

from tests.data.helpers import eager_and_in_pipeline, rgb

SEED = np.array([3, 4], np.int64)


@pytest.mark.parametrize("shape", [(8, 8), (32, 32), (60, 90)])
@pytest.mark.parametrize("crop_mode,flip", [("inception", True), ("resize", False)])
def test_train_shapes_eager_and_in_pipeline(shape, crop_mode, flip):
    image = rgb(*shape)
    fn = lambda im, s: preprocess_train(im, s, image_size=32, crop_mode=crop_mode, flip=flip)  # noqa: E731
    eager, graph = eager_and_in_pipeline(fn, image, SEED)
    for out in (eager, graph):
        assert out.shape == (32, 32, 3) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_allclose(eager, graph, atol=1e-3)  # stateless: same seed, same crop both ways


@pytest.mark.parametrize("augment_name", ["autoaugment", "randaugment"])
def test_train_with_augmentation_shapes(augment_name):
    fn = lambda im, s: preprocess_train(im, s, image_size=24, augment_name=augment_name)  # noqa: E731
    for out in eager_and_in_pipeline(fn, rgb(40, 30), SEED):
        assert out.shape == (24, 24, 3) and out.dtype == np.float32
        np.testing.assert_array_equal(out, np.round(out))  # augmented as uint8


def test_train_is_a_function_of_the_seed():
    image = rgb(50, 50)
    a = preprocess_train(image, SEED, image_size=32).numpy()
    b = preprocess_train(image, SEED, image_size=32).numpy()
    c = preprocess_train(image, SEED + 1, image_size=32).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0


def test_resize_mode_without_flip_is_plain_resize():
    image = rgb(8, 8)
    out = preprocess_train(image, SEED, image_size=32, crop_mode="resize", flip=False).numpy()
    np.testing.assert_array_equal(out, resize(image, 32).numpy())


def test_flip_is_configurable():
    image = rgb(16, 16)
    flips = set()
    for k in range(12):
        out = preprocess_train(image, np.array([k, 0]), image_size=16, crop_mode="resize", flip=True).numpy()
        base = resize(image, 16).numpy()
        flips.add(bool(np.array_equal(out, base[:, ::-1])) and not np.array_equal(out, base))
        assert np.array_equal(out, base) or np.array_equal(out, base[:, ::-1])
    assert flips == {True, False}
    for k in range(12):
        out = preprocess_train(image, np.array([k, 0]), image_size=16, crop_mode="resize", flip=False).numpy()
        np.testing.assert_array_equal(out, resize(image, 16).numpy())


def test_random_resized_crop_respects_area_and_aspect():
    image = rgb(200, 300)
    for k in range(20):
        crop = random_resized_crop(image, np.array([k, 1]), image_size=224).numpy()
        h, w = crop.shape[:2]
        area = h * w / (200 * 300)
        # either a valid Inception box or the fallback centre crop
        fallback = (h, w) == (175, 175)
        assert fallback or (0.07 <= area <= 1.0 and 0.70 <= w / h <= 1.40), (h, w)


def test_eval_center_crop_matches_official_padding():
    # crop = int(224 / (224 + 32) * short side), centred with the official +1 rounding
    assert [int(v) for v in center_crop_window(100, 200, 224, 32)] == [7, 57, 87]
    image = rgb(100, 200)
    crop = center_crop(image, 224).numpy()
    np.testing.assert_array_equal(crop, image[7:94, 57:144])
    eager, graph = eager_and_in_pipeline(lambda im: preprocess_eval(im, image_size=224), image)
    assert eager.shape == graph.shape == (224, 224, 3)
    np.testing.assert_allclose(eager, graph, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (3, 50)])
def test_tiny_images_never_crash(shape):
    image = rgb(*shape)
    for crop_mode in ("inception", "resize"):
        out = preprocess_eval(image, image_size=32, crop_mode=crop_mode)
        assert out.shape == (32, 32, 3)
        out = preprocess_train(image, SEED, image_size=32, crop_mode=crop_mode)
        assert out.shape == (32, 32, 3)


def test_resize_mode_keeps_whole_digit():
    image = np.zeros((8, 8, 3), np.uint8)
    image[0, 0] = 255  # a corner pixel survives a plain resize but not the padded centre crop
    assert preprocess_eval(image, image_size=32, crop_mode="resize").numpy()[0, 0, 0] > 100
    assert preprocess_eval(image, image_size=32, crop_mode="inception").numpy()[0, 0, 0] < 1


def test_normalize_values():
    image = np.full((2, 2, 3), 255, np.uint8)
    out = normalize(image, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).numpy()
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
    out = normalize(np.zeros((2, 2, 3), np.uint8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).numpy()
    np.testing.assert_allclose(out[0, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        preprocess_eval(np.zeros((4, 4), np.uint8), image_size=8)
    with pytest.raises(ValueError, match="crop_mode"):
        preprocess_eval(rgb(4, 4), image_size=8, crop_mode="squash")
    with pytest.raises(ValueError, match="interpolation"):
        resize(rgb(4, 4), 8, "cubic")
