"""One training step and one evaluation for every config under configs/, on TFDS mock data.

Each config runs shrunk by its own `:smoke` arg (tiny width/depth, 32 px, float32) but on its
real data set name, mocked by `tfds.testing.mock_data`, so the recipe, augmentation, EMA and
progressive-stage plumbing of every file is exercised. The per-variant numbers (dropout,
drop-path, stages) are kept, so only configs that differ in nothing compiled share programs.
"""

import importlib
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from test_configs import CONFIG_FILES

from efficientnet_jax.training import train_and_evaluate


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_one_train_step_and_eval(name, tmp_path):
    module = importlib.import_module(f"configs.{name}")
    config = module.get_config("smoke")
    config.dataset = module.get_config().dataset  # the real name (imagenet2012, digits), mocked below
    config.total_steps = 1
    config.tensorboard = False
    with tfds.testing.mock_data(num_examples=20):
        results = train_and_evaluate(config, str(tmp_path))
    assert results["step"] == 1
    for key in ("top1", "top5", "loss", "ema_top1", "ema_loss"):
        assert np.isfinite(results[key]), (name, key)
    assert results["num_examples"] == (360 if config.dataset == "digits" else 20)
    assert os.listdir(tmp_path / "checkpoints") == ["1"]
