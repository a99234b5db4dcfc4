"""timm state dicts -> our model: same logits on the same input, random calibrated weights.

Covers both numerics: `tf_*` names ('same' padding, BN eps 1e-3) and timm's PyTorch-native
models (symmetric padding, eps 1e-5), `.safetensors` and `.pth` files, V1 / Lite / V2, and the
full public path (convert_file -> save_converted -> load_pretrained from the directory).
72x72 inputs give odd feature maps (9x9 -> 5x5 -> 3x3), where TF SAME is asymmetric.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import parity_harness as H  # noqa: E402

from efficientnet_jax.weights import convert_file, load_pretrained, load_weights, save_converted  # noqa: E402

RES = 72
CASES = [
    ("tf_efficientnet_b0", "safetensors", "same", 1e-3),
    ("tf_efficientnet_b3", "pth", "same", 1e-3),
    ("tf_efficientnet_lite0", "pth", "same", 1e-3),
    ("tf_efficientnetv2_b0", "pth", "same", 1e-3),
    ("tf_efficientnetv2_s", "pth", "same", 1e-3),
    ("efficientnet_b0", "pth", "symmetric", 1e-5),
    ("efficientnetv2_s", "safetensors", "symmetric", 1e-5),
]


def _reference(name, seed, **kw):
    tm = timm.create_model(name, pretrained=False, **kw)
    return H.calibrate_torch(tm, H.timm_residual_bns(tm), RES, seed=seed)


@pytest.mark.parametrize("name,ext,padding,eps", CASES, ids=[c[0] for c in CASES])
def test_timm_parity(name, ext, padding, eps, tmp_path):
    tm = _reference(name, seed=0)
    x = np.random.default_rng(1).standard_normal((2, 3, RES, RES)).astype(np.float32)
    ref = H.torch_logits(tm, x)
    path = H.save_state_dict(tm, tmp_path / f"{name}.{ext}")

    variables, meta = convert_file(path, name)  # source inferred from the key names
    assert (meta["source"], meta["padding"], meta["bn_eps"], meta["num_classes"]) == ("timm", padding, eps, 1000)
    assert variables["params"]["classifier"]["kernel"].shape == (tm.num_features, 1000)
    out = save_converted(tmp_path / "converted", variables, meta)
    model, loaded, meta2 = load_pretrained(out)
    assert (model.spec.padding, model.spec.bn_eps) == (padding, eps)
    assert meta2 == meta
    H.compare("timm", name, ref, H.ours_logits(model, loaded, H.nchw_to_nhwc(x)), f".{ext} -> converted dir")

    if name == "tf_efficientnet_b0":  # the foreign file straight through the top-level API
        import efficientnet_jax

        direct = efficientnet_jax.load_weights(path, model=name)
        np.testing.assert_array_equal(direct["params"]["stem_conv"]["kernel"], loaded["params"]["stem_conv"]["kernel"])
        np.testing.assert_array_equal(direct["batch_stats"]["head_bn"]["var"], loaded["batch_stats"]["head_bn"]["var"])


@pytest.mark.parametrize("num_classes", [10, 0])
def test_timm_other_heads(num_classes, tmp_path):
    """num_classes comes from the file: a 10-class head, and a headless (features) model."""
    tm = _reference("tf_efficientnet_lite0", seed=2, num_classes=num_classes)
    x = np.random.default_rng(3).standard_normal((2, 3, RES, RES)).astype(np.float32)
    ref = H.torch_logits(tm, x)
    path = H.save_state_dict(tm, tmp_path / "lite0.pth")
    model, variables, meta = load_pretrained(path, "tf_efficientnet_lite0", source="timm")
    assert meta["num_classes"] == num_classes == model.spec.num_classes
    assert ("classifier" in variables["params"]) == bool(num_classes)
    assert load_weights(path, "tf_efficientnet_lite0")["params"].keys() == variables["params"].keys()
    H.compare("timm", "tf_efficientnet_lite0", ref, H.ours_logits(model, variables, H.nchw_to_nhwc(x)),
              f"num_classes={num_classes}")
