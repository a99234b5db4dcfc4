"""The package surface: config defaults, lazy TensorFlow import."""

import subprocess
import sys

from efficientnet_jax.data import default_input_config


def test_default_config_has_every_key():
    cfg = default_input_config()
    expected = {"dataset", "data_dir", "train_split", "eval_split", "download", "mean", "std", "crop_mode", "flip",
                "crop_padding", "interpolation", "augment", "randaug_num_layers", "randaug_magnitude", "mixup_alpha",
                "cutmix_alpha", "shuffle_buffer", "cache", "prefetch"}
    assert set(cfg.keys()) == expected
    assert cfg.dataset == "digits" and cfg.data_dir is None and cfg.download is False
    assert cfg.crop_padding == 32 and cfg.interpolation == "bicubic" and cfg.augment == "none"
    cfg.data_dir = "/data/tfds"  # placeholders accept strings (command-line overrides)
    cfg.train_split = "train[:90%]"


def test_config_import_does_not_load_tensorflow():
    code = ("import sys; from efficientnet_jax.data import default_input_config; default_input_config(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
