"""The configs: every variant file loads, carries the required keys and docstring, the `:arg`
mechanism works, and a mistyped override fails at once with the key's name."""

import glob
import importlib
import os

import pytest
from absl import flags
from ml_collections import config_flags

from efficientnet_jax.models import get_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not os.path.basename(p).startswith(("_", "common"))
)
VARIANTS = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "l2", "lite0", "lite1", "lite2", "lite3", "lite4",
            "v2_b0", "v2_b1", "v2_b2", "v2_b3", "v2_s", "v2_m", "v2_l", "v2_xl"]
REQUIRED = ("seed", "total_steps", "checkpoint_every_steps", "batch_size", "dataset")


def load(name, arg=None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


def test_one_config_file_per_variant_plus_quickstart():
    assert sorted(CONFIG_FILES) == sorted(VARIANTS + ["quickstart"])


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_has_required_keys_docstring_and_a_valid_model(name):
    module = importlib.import_module(f"configs.{name}")
    doc = module.__doc__
    for section in ("Run:", "Hardware:", "Expected:"):
        assert section in doc, f"configs/{name}.py docstring lacks {section!r}"
    assert f"configs/{name}.py" in doc
    config = module.get_config()
    for key in REQUIRED:
        assert key in config, f"configs/{name}.py lacks {key}"
    assert config.input.dataset == config.dataset
    spec = get_spec(config.model_name)
    if name != "quickstart":
        assert config.eval_image_size == spec.resolution
        assert config.model.drop_rate == spec.drop_rate
        assert f"{spec.published_top1} %" in doc  # the expected result is the published one
    smoke = module.get_config("smoke")
    assert smoke.dataset == "digits" and smoke.total_steps and smoke.model.width_mult == 0.25
    assert smoke.model.depth_mult < 0.1 and smoke.image_size == 32


def test_v2_configs_carry_the_automl_progressive_recipe():
    s, m = load("v2_s"), load("v2_m")
    assert (s.progressive.stages, s.progressive.min_image_size, s.image_size) == (4, 128, 300)
    assert (s.input.augment, s.input.randaug_magnitude, s.input.mixup_alpha) == ("randaugment", 10, 0.0)
    assert (m.input.randaug_magnitude, m.input.mixup_alpha, m.input.cutmix_alpha) == (15, 0.2, 0.2)
    assert s.batch_size == 4096 and s.input.mean == (0.5, 0.5, 0.5)
    b0 = load("b0")
    assert (b0.optimizer, b0.lr_base, b0.batch_size, b0.schedule) == ("rmsprop", 0.016, 2048, "exponential")
    assert (b0.opt.rms_eps, b0.opt.rms_initial_scale, b0.ema_decay, b0.label_smoothing) == (1e-3, 1.0, 0.9999, 0.1)
    assert b0.progressive.stages == 0


def test_dataset_is_one_source_of_truth():
    config = load("b0")
    config.dataset = "cifar10"
    assert config.input.dataset == "cifar10"


def test_unknown_config_arg_fails_by_name():
    with pytest.raises(ValueError, match="'smok'"):
        load("b0", "smok")


def _parse(argv):
    fv = flags.FlagValues()
    argv = ["train.py"] + argv
    # As train.py: the override flags are declared from the command line when the flag is defined.
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    return fv.config


def test_command_line_overrides_apply_and_typos_fail_with_the_key():
    path = os.path.join(ROOT, "configs", "b0.py")
    config = _parse([f"--config={path}:smoke", "--config.lr_base=0.5", "--config.model.width_mult=0.5",
                     "--config.total_steps=7"])
    assert (config.lr_base, config.model.width_mult, config.total_steps) == (0.5, 0.5, 7)
    with pytest.raises(Exception, match="lrr"):
        _parse([f"--config={path}", "--config.lrr=1"])
    with pytest.raises(Exception, match="widht_mult"):
        _parse([f"--config={path}", "--config.model.widht_mult=1"])
