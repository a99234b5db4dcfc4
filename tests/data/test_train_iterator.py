"""make_train_iterator: batch layout, exact resumption, epochs as permutations, process shards."""

import itertools

import numpy as np
import pytest

from efficientnet_jax.data import default_input_config, make_train_iterator, steps_per_epoch
from tests.data.conftest import folder_config, id_of


def digits_config(**overrides):
    cfg = default_input_config()
    cfg.dataset = "digits"
    cfg.flip = False
    cfg.crop_mode = "resize"
    cfg.update(overrides)
    return cfg


def take(it, n):
    return list(itertools.islice(it, n))


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batch_layout_and_dtypes():
    it = make_train_iterator(digits_config(), global_batch_size=64, image_size=32, seed=0)
    batch = next(it)
    assert batch["image"].shape == (64, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (64,) and batch["label"].dtype == np.int32
    assert batch["label_onehot"].shape == (64, 10) and batch["label_onehot"].dtype == np.float32
    np.testing.assert_array_equal(batch["label_onehot"].argmax(1), batch["label"])
    np.testing.assert_allclose(batch["label_onehot"].sum(1), 1.0)
    # ImageNet normalisation of [0, 255] pixels
    assert batch["image"].min() == pytest.approx(-0.485 / 0.229, abs=1e-4)


def test_steps_per_epoch_drops_the_remainder():
    assert steps_per_epoch(digits_config(), global_batch_size=128) == 1437 // 128
    assert steps_per_epoch(digits_config(), global_batch_size=128, process_count=2) == 718 // 64
    assert steps_per_epoch(digits_config(), global_batch_size=4096) == 1  # one batch cycles the shard


@pytest.mark.parametrize("augmented", [False, True])
def test_resume_is_bit_identical_across_an_epoch_boundary(augmented):
    extra = dict(crop_mode="inception", flip=True, augment="randaugment", mixup_alpha=0.3, cutmix_alpha=0.3,
                 randaug_magnitude=9) if augmented else {}
    cfg = digits_config(train_split="test", **extra)  # 360 examples: small and quick
    batch, k, n = 128, 1, 3  # 2 steps per epoch: steps 1..3 straddle the first epoch boundary
    full = take(make_train_iterator(cfg, global_batch_size=batch, image_size=16, seed=3), k + n)
    resumed = take(make_train_iterator(cfg, global_batch_size=batch, image_size=16, seed=3, start_step=k), n)
    assert_same(full[k:], resumed)
    if not augmented:
        other_seed = next(make_train_iterator(cfg, global_batch_size=batch, image_size=16, seed=4))
        assert not np.array_equal(other_seed["label"], full[0]["label"])
    else:  # mixing happened: soft labels that still sum to one
        assert (full[0]["label_onehot"].max(1) < 1.0).mean() > 0.4
        np.testing.assert_allclose(full[0]["label_onehot"].sum(1), 1.0, atol=1e-5)


def test_overrides_replace_config_values():
    cfg = digits_config(mixup_alpha=0.0)
    plain = next(make_train_iterator(cfg, global_batch_size=32, image_size=16, seed=0))
    mixed = next(make_train_iterator(cfg, global_batch_size=32, image_size=16, seed=0, mixup_alpha=0.5))
    assert plain["label_onehot"].max(1).min() == 1.0
    assert mixed["label_onehot"].max(1).min() < 1.0
    np.testing.assert_array_equal(plain["label"], mixed["label"])  # same examples, only mixed


def test_epochs_are_permutations(indexed_folder):
    root, labels = indexed_folder
    cfg = folder_config(root)
    cfg.train_split = "all"  # 10 examples, batch 5 -> 2 steps per epoch, every example once
    batches = take(make_train_iterator(cfg, global_batch_size=5, image_size=4, seed=1), 6)
    epochs = []
    for e in range(3):
        ids = [id_of(im) for b in batches[2 * e: 2 * e + 2] for im in b["image"]]
        assert sorted(ids) == list(range(10)), ids
        got = [int(lb) for b in batches[2 * e: 2 * e + 2] for lb in b["label"]]
        assert got == [labels[i] for i in ids]
        epochs.append(ids)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled per epoch


def test_two_processes_split_the_data_without_overlap(indexed_folder):
    root, _ = indexed_folder
    cfg = folder_config(root)
    cfg.train_split = "all"
    seen = []
    for p in range(2):  # 10 examples / 2 processes = 5 each; local batch 2 -> 4 per epoch
        its = make_train_iterator(cfg, global_batch_size=4, image_size=4, seed=0, process_index=p, process_count=2)
        batches = take(its, 10)
        assert all(b["image"].shape[0] == 2 for b in batches)
        per_epoch = [sorted(id_of(im) for b in batches[2 * e:2 * e + 2] for im in b["image"]) for e in range(5)]
        assert all(len(set(ids)) == 4 for ids in per_epoch)  # no repeats within an epoch
        seen.append(set().union(*per_epoch))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(10))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of process_count"):
        make_train_iterator(digits_config(), global_batch_size=10, image_size=8, seed=0, process_count=3)
    with pytest.raises(ValueError, match="process_index"):
        make_train_iterator(digits_config(), global_batch_size=8, image_size=8, seed=0, process_index=2,
                            process_count=2)
    cfg = digits_config()
    cfg.augment = "trivialaugment"
    with pytest.raises(ValueError, match="augment"):
        make_train_iterator(cfg, global_batch_size=8, image_size=8, seed=0)
    import ml_collections

    with pytest.raises(KeyError, match="crop_padding"):
        small = ml_collections.ConfigDict({k: v for k, v in digits_config().items() if k != "crop_padding"})
        make_train_iterator(small, global_batch_size=8, image_size=8, seed=0)


def test_digits_stream_is_learnable_end_to_end():
    """Images and labels stay aligned through permutation, preprocessing and padding: class
    centroids taken from one epoch of the train stream classify the padded eval pass well."""
    from efficientnet_jax.data import make_eval_iterator

    cfg = digits_config()

    def features(images):  # 32x32 back to 8x8 by average pooling, one channel
        return images[..., 0].reshape(len(images), 8, 4, 8, 4).mean((2, 4)).reshape(len(images), -1)

    train = take(make_train_iterator(cfg, global_batch_size=128, image_size=32, seed=0), 11)
    x = np.concatenate([features(b["image"]) for b in train])
    y = np.concatenate([b["label"] for b in train])
    centroids = np.stack([x[y == c].mean(0) for c in range(10)])
    evals = list(make_eval_iterator(cfg, global_batch_size=128, image_size=32))
    mask = np.concatenate([b["mask"] for b in evals]).astype(bool)
    xe = np.concatenate([features(b["image"]) for b in evals])
    pred = np.argmin(((xe[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == np.concatenate([b["label"] for b in evals]))[mask].mean()
    assert accuracy > 0.85, accuracy  # nearest centroid on digits: ~0.9; misaligned labels: ~0.1
