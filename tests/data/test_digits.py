"""The embedded digits data set: a fixed, stratified 80/20 split of scikit-learn's digits."""

import numpy as np

from efficientnet_jax.data import dataset_info, digits
from efficientnet_jax.data.splits import shard_indices, stratified_split


def test_split_sizes_and_info():
    info = dataset_info("digits")
    assert (info.num_train, info.num_eval, info.num_classes) == (1437, 360, 10)
    assert (info.train_split, info.eval_split) == ("train", "test")
    assert info.class_names == tuple("0123456789")
    images, labels = digits.load("train")
    assert images.shape == (1437, 8, 8, 3) and images.dtype == np.uint8
    assert labels.shape == (1437,) and labels.dtype == np.int32


def test_pixels_scaled_to_uint8_rgb():
    from sklearn.datasets import load_digits

    images, labels = digits.load("all")
    raw = load_digits()
    np.testing.assert_array_equal(labels, raw.target)
    assert images.max() == 255 and images.min() == 0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey replicated
    np.testing.assert_array_equal(images[5, ..., 1], np.round(raw.images[5] * 255 / 16).astype(np.uint8))


def test_split_is_fixed_disjoint_and_stratified():
    train_idx, test_idx = digits._split_indices()
    again = stratified_split(digits._all()[1], test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train_idx, again[0])
    np.testing.assert_array_equal(test_idx, again[1])
    assert not set(train_idx) & set(test_idx) and len(set(train_idx) | set(test_idx)) == 1797
    # Pinned fingerprint: the held-out set must never change silently between releases.
    assert int(test_idx.sum()) == 313341
    assert test_idx[:5].tolist() == [3, 7, 13, 19, 36]
    _, test_labels = digits.load("test")
    counts = np.bincount(test_labels, minlength=10)
    all_counts = np.bincount(digits.load("all")[1], minlength=10)
    assert np.all(np.abs(counts - all_counts * 0.2) < 1.0), counts


def test_shards_are_disjoint_and_cover():
    shards = [shard_indices(1437, k, 3) for k in range(3)]
    joined = np.sort(np.concatenate(shards))
    np.testing.assert_array_equal(joined, np.arange(1437))
    assert [len(s) for s in shards] == [479, 479, 479]
