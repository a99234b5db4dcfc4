"""Parameter counts and multiply-adds equal the references (timm == Keras, the papers' MACs)."""

import pytest

from efficientnet_jax import create_model, list_models
from efficientnet_jax.models.complexity import count_macs, count_params

# Trainable parameters at num_classes=1000, measured on timm 1.0.31 and Keras 3.15.1
# (shared/reference/architecture.md §1; timm == Keras trainable for every model both have).
EXPECTED_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960, "efficientnet_b8": 87_413_142,
    "efficientnet_l2": 480_309_308,
    "efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096, "efficientnet_lite4": 13_006_568,
    "efficientnetv2_b0": 7_139_704, "efficientnetv2_b1": 8_141_052, "efficientnetv2_b2": 10_096_086,
    "efficientnetv2_b3": 14_358_406, "efficientnetv2_s": 21_458_488, "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272, "efficientnetv2_xl": 208_119_808,
}


def test_every_variant_is_registered():
    assert sorted(EXPECTED_PARAMS) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_count_equals_reference(name):
    assert count_params(create_model(name)) == EXPECTED_PARAMS[name]


# Multiply-adds at the eval resolution (timm tf_* models under FlopCounterMode; the papers' 0.39B etc.).
@pytest.mark.parametrize(
    "name,res,gmacs",
    [
        ("efficientnet_b0", 224, 0.386), ("efficientnet_b3", 300, 1.827), ("efficientnet_b7", 600, 37.75),
        ("efficientnetv2_s", 384, 8.37), ("efficientnetv2_m", 480, 24.58), ("efficientnetv2_l", 480, 56.08),
    ],
)
def test_macs_within_one_percent(name, res, gmacs):
    macs = count_macs(create_model(name), res) / 1e9
    assert macs == pytest.approx(gmacs, rel=0.01)


def test_num_classes_changes_only_the_classifier():
    base = count_params(create_model("efficientnet_b0"))
    assert count_params(create_model("efficientnet_b0", num_classes=10)) == base - 990 * 1280 - 990
    assert count_params(create_model("efficientnet_b0", num_classes=0)) == base - 1000 * 1280 - 1000
