"""TFDS data sets: fail fast when not prepared, and run end to end on tfds.testing.mock_data."""

import itertools
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from efficientnet_jax.data import dataset_info, default_input_config, make_eval_iterator, make_train_iterator


def cifar_config(**overrides):
    cfg = default_input_config()
    cfg.dataset = "cifar10"
    cfg.crop_mode = "resize"
    cfg.shuffle_buffer = 16
    cfg.update(overrides)
    return cfg


def test_missing_data_set_fails_fast_with_the_build_command(tmp_path):
    cfg = cifar_config(data_dir=str(tmp_path))
    start = time.time()
    with pytest.raises(FileNotFoundError) as err:
        next(make_train_iterator(cfg, global_batch_size=8, image_size=32, seed=0))
    assert time.time() - start < 20
    message = str(err.value)
    assert "'cifar10'" in message and f"tfds build cifar10 --data_dir={tmp_path}" in message
    assert "download=True" in message
    with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
        list(make_eval_iterator(cfg, global_batch_size=8, image_size=32))


def test_imagenet_message_gives_the_manual_download_steps(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dataset_info("imagenet2012", str(tmp_path))
    message = str(err.value)
    assert "manual download" in message and "ILSVRC2012_img_train.tar" in message
    assert f"--manual_dir={tmp_path}/downloads/manual" in message


def test_unknown_name_is_a_short_error():
    with pytest.raises(ValueError, match=r"unknown data set 'cifar11'.*cifar10"):
        dataset_info("cifar11")


@pytest.mark.parametrize("cache", [False, True])
def test_mock_data_train_stream_and_resume(cache):
    cfg = cifar_config(cache=cache, crop_mode="inception", flip=True, mixup_alpha=0.2, cutmix_alpha=0.2)
    with tfds.testing.mock_data(num_examples=20):
        info = dataset_info("cifar10")
        assert info.num_classes == 10 and info.num_train == 20
        # 20 examples, batch 8 -> 2 steps per epoch; steps 1..3 cross an epoch boundary
        full = list(itertools.islice(make_train_iterator(cfg, global_batch_size=8, image_size=16, seed=2), 4))
        resumed = list(itertools.islice(
            make_train_iterator(cfg, global_batch_size=8, image_size=16, seed=2, start_step=1), 3))
    assert full[0]["image"].shape == (8, 16, 16, 3) and full[0]["label_onehot"].shape == (8, 10)
    np.testing.assert_allclose(full[0]["label_onehot"].sum(1), 1.0, atol=1e-5)
    for a, b in zip(full[1:], resumed):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_mock_data_tiny_split_and_two_process_eval():
    cfg = cifar_config()
    with tfds.testing.mock_data(num_examples=5):
        batch = next(make_train_iterator(cfg, global_batch_size=16, image_size=8, seed=0))  # split < batch
        assert batch["image"].shape == (16, 8, 8, 3)
        seen, steps = 0, set()
        for p in range(2):
            batches = list(make_eval_iterator(cfg, global_batch_size=4, image_size=8, process_index=p,
                                              process_count=2))
            steps.add(len(batches))
            seen += int(sum(b["mask"].sum() for b in batches))
    # the mock serves all 5 examples to each shard: 2 processes x 5, each counted once, equal steps
    assert seen == 10 and steps == {3}
