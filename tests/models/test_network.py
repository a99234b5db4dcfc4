"""The network module: heads, feature maps, remat, mixed precision, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax import create_model

SMALL = dict(width_mult=0.25, depth_mult=0.25)


def _init(model, size=64, batch=2):
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
    return model.init(jax.random.key(1), x, train=False), x


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_b0", "efficientnetv2_s"])
def test_logits_shape_and_dw_impls_agree(name):
    model = create_model(name, num_classes=7, dw_impl="xla")
    v, x = _init(model)
    assert set(v) == {"params", "batch_stats"}
    y = model.apply(v, x)
    assert y.shape == (2, 7) and y.dtype == jnp.float32
    y_shift = create_model(name, num_classes=7, dw_impl="shift").apply(v, x)
    np.testing.assert_allclose(y_shift, y, rtol=1e-4, atol=1e-4)


def test_pooled_features_and_feature_maps():
    model = create_model("efficientnet_b0", num_classes=0)
    v, x = _init(model)
    assert model.apply(v, x).shape == (2, 1280)
    fmodel = create_model("efficientnet_b0", features_only=True)
    feats = fmodel.apply(v, x)  # same variables: the feature extractor is a prefix of the net
    assert [f.shape for f in feats] == [(2, 32, 32, 16), (2, 16, 16, 24), (2, 8, 8, 40), (2, 4, 4, 112), (2, 2, 2, 320)]
    with pytest.raises(ValueError, match="strides"):
        create_model("efficientnet_b0", features_only=True, out_strides=(64,)).apply(v, x)


def test_train_mode_updates_bn_and_uses_dropout_rng():
    model = create_model("efficientnet_b0", num_classes=5, **SMALL)
    v, x = _init(model)
    y, new_state = model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)})
    assert y.shape == (2, 5)
    before, after = jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(new_state["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    y2, _ = model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(4)})
    assert not np.allclose(y, y2)  # dropout / drop-path are live in training


def test_remat_gives_identical_gradients():
    kw = dict(num_classes=5, drop_rate=0.0, drop_path_rate=0.0, **SMALL)
    model, remat_model = create_model("efficientnetv2_b0", **kw), create_model("efficientnetv2_b0", remat=True, **kw)
    v, x = _init(model)

    def loss(m):
        def f(p):
            y, _ = m.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(y**2)
        return jax.grad(f)(v["params"])

    for a, b in zip(jax.tree.leaves(loss(model)), jax.tree.leaves(loss(remat_model))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = create_model("efficientnet_b0", num_classes=5, dtype="bfloat16", **SMALL)
    v, x = _init(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))
    y = model.apply(v, x)
    ref = create_model("efficientnet_b0", num_classes=5, **SMALL).apply(v, x)
    assert y.dtype == jnp.float32 and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, atol=0.1 * float(jnp.abs(ref).max()) + 0.05)


def test_grad_cam_taps_give_layer_gradients():
    model = create_model("efficientnet_b0", num_classes=5, perturb_layers=True, **SMALL)
    v, x = _init(model)
    assert "head_out" in v["perturbations"]
    grads = jax.grad(lambda pert: model.apply({**v, "perturbations": pert}, x)[:, 0].sum())(v["perturbations"])
    assert grads["head_out"].shape == v["perturbations"]["head_out"].shape
    assert float(jnp.abs(grads["head_out"]).sum()) > 0


@pytest.mark.parametrize("shape", [(2, 64, 64), (2, 3, 64, 64)])
def test_bad_input_shape_is_named(shape):
    model = create_model("efficientnet_b0", **SMALL)
    with pytest.raises(ValueError, match="NHWC"):
        model.init(jax.random.key(0), jnp.zeros(shape))
