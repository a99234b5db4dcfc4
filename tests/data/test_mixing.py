"""Mixup / CutMix: soft labels sum to one and the pixel mix matches the label weights."""

import numpy as np
import pytest

from efficientnet_jax.data import cutmix, mix_batch, mixup
from tests.data.helpers import eager_and_in_pipeline

SEED = np.array([5, 6], np.int64)


def batch(n=8, size=16, classes=4):
    rs = np.random.RandomState(0)
    images = rs.uniform(-2, 2, (n, size, size, 3)).astype(np.float32)
    onehot = np.eye(classes, dtype=np.float32)[np.arange(n) % classes]
    return images, onehot


def test_mixup_pixels_and_labels_follow_lambda():
    images, onehot = batch()
    out, labels, lam = (np.asarray(t) for t in mixup(images, onehot, SEED, 0.4))
    assert lam.shape == (8,) and (lam >= 0.5).all() and (lam <= 1.0).all()
    want = lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * images[::-1]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(labels, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[::-1], atol=1e-6)
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-6)


def test_cutmix_box_area_is_label_weight():
    images, onehot = batch(n=6, size=20)
    out, labels, area = (np.asarray(t) for t in cutmix(images, onehot, SEED, 1.0))
    for i in range(6):
        pasted = ~np.isclose(out[i], images[i]).all(-1)
        from_partner = np.isclose(out[i], images[::-1][i]).all(-1)
        assert (from_partner[pasted]).all()
        assert pasted.mean() == pytest.approx(area[i], abs=1e-6)
        if pasted.any():  # a rectangle
            rows, cols = np.nonzero(pasted)
            assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    np.testing.assert_allclose(labels, (1 - area[:, None]) * onehot + area[:, None] * onehot[::-1], atol=1e-6)
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-6)
    assert 0.0 < area.mean() < 1.0


def test_mix_batch_half_mixup_half_cutmix_eager_and_in_pipeline():
    images, onehot = batch(n=8)
    fn = lambda im, lb, s: mix_batch(im, lb, s, mixup_alpha=0.5, cutmix_alpha=0.5)  # noqa: E731
    (ei, el), (gi, gl) = eager_and_in_pipeline(fn, images, onehot, SEED)
    np.testing.assert_array_equal(ei, gi)
    np.testing.assert_array_equal(el, gl)
    np.testing.assert_allclose(el.sum(1), 1.0, atol=1e-6)
    # first half: a blend with the reversed first half, weighted as the label says
    for i in range(4):
        lam = el[i, i % 4]  # own class weight (partners have other classes)
        np.testing.assert_allclose(ei[i], lam * images[i] + (1 - lam) * images[3 - i], atol=1e-5)
    # second half: each pixel is either its own or the reversed-half partner's
    partners = images[4:][::-1]
    for i in range(4):
        kept = np.isclose(ei[4 + i], images[4 + i]).all(-1)
        pasted = np.isclose(ei[4 + i], partners[i]).all(-1)
        assert (kept | pasted).all()
    no_mix = mix_batch(images, onehot, SEED)
    np.testing.assert_array_equal(np.asarray(no_mix[0]), images)


def test_mixing_is_a_function_of_the_seed():
    images, onehot = batch()
    a = mix_batch(images, onehot, SEED, 0.2, 0.2)
    b = mix_batch(images, onehot, SEED, 0.2, 0.2)
    c = mix_batch(images, onehot, SEED + 1, 0.2, 0.2)
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[1].numpy(), c[1].numpy())
