"""The network module: heads, feature maps, remat, mixed precision, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax import create_model
from efficientnet_jax.models.spec import build_blocks

# Small nets and the fast-compiling XLA lowering unless the lowering is what a test is about:
# these tests check structure and numerics, and full-size compiles cost minutes on 2 cores.
SMALL = dict(width_mult=0.25, depth_mult=0.25, dw_impl="xla")


def _init(model, size=64, batch=2):
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
    return jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x), x


def _apply(model, *args, **kw):
    """Jitted apply: one compile instead of an eager dispatch per op."""
    return jax.jit(lambda v, x: model.apply(v, x, **kw))(*args)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_b0", "efficientnetv2_s"])
def test_logits_shape_and_dw_impls_agree(name):
    small = dict(width_mult=0.25, depth_mult=0.25)  # every block type, kernel and stride is still there
    model = create_model(name, num_classes=7, dw_impl="xla", **small)
    v, x = _init(model)
    assert set(v) == {"params", "batch_stats"}
    y = _apply(model, v, x)
    assert y.shape == (2, 7) and y.dtype == jnp.float32
    y_shift = _apply(create_model(name, num_classes=7, dw_impl="shift", **small), v, x)
    np.testing.assert_allclose(y_shift, y, rtol=1e-4, atol=1e-4)


def test_pooled_features_and_feature_maps():
    model = create_model("efficientnet_b0", num_classes=0, **SMALL)
    v, x = _init(model)
    assert _apply(model, v, x).shape == (2, model.spec.head_out)
    fmodel = create_model("efficientnet_b0", features_only=True, **SMALL)
    feats = _apply(fmodel, v, x)  # same variables: the feature extractor is a prefix of the net
    # The last block at each stride: B0's stages 0, 1, 2, 4, 6 (channels 16, 24, 40, 112, 320 at width 1).
    last = {b.stage: b.out_channels for b in build_blocks(model.spec)}
    want = [(2, 64 // s, 64 // s, last[i]) for s, i in zip((2, 4, 8, 16, 32), (0, 1, 2, 4, 6))]
    assert [f.shape for f in feats] == want
    with pytest.raises(ValueError, match="strides"):
        create_model("efficientnet_b0", features_only=True, out_strides=(64,), **SMALL).apply(v, x)


def test_train_mode_updates_bn_and_uses_dropout_rng():
    model = create_model("efficientnet_b0", num_classes=5, **SMALL)
    v, x = _init(model)
    step = jax.jit(lambda v, x, k: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": k}))
    y, new_state = step(v, x, jax.random.key(3))
    assert y.shape == (2, 5)
    before, after = jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(new_state["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    y2, _ = step(v, x, jax.random.key(4))
    assert not np.allclose(y, y2)  # dropout / drop-path are live in training


def test_remat_gives_identical_gradients():
    kw = dict(num_classes=5, drop_rate=0.0, drop_path_rate=0.0, **SMALL)
    model, remat_model = create_model("efficientnetv2_b0", **kw), create_model("efficientnetv2_b0", remat=True, **kw)
    v, x = _init(model)

    def loss(m):
        def f(p):
            y, _ = m.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(y**2)
        return jax.jit(jax.grad(f))(v["params"])

    for a, b in zip(jax.tree.leaves(loss(model)), jax.tree.leaves(loss(remat_model))):
        # Same math, reassociated: rounding scales with the tensor's largest entries (up to ~50
        # here), not with each element, so the absolute tolerance does too.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 + 1e-6 * float(np.abs(b).max()))


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = create_model("efficientnet_b0", num_classes=5, dtype="bfloat16", **SMALL)
    v, x = _init(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))
    y = _apply(model, v, x)
    ref = _apply(create_model("efficientnet_b0", num_classes=5, **SMALL), v, x)
    assert y.dtype == jnp.float32 and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, atol=0.1 * float(jnp.abs(ref).max()) + 0.05)


def test_grad_cam_taps_give_layer_gradients():
    model = create_model("efficientnet_b0", num_classes=5, perturb_layers=True, **SMALL)
    v, x = _init(model)
    assert "head_out" in v["perturbations"]
    grads = jax.jit(jax.grad(lambda pert: model.apply({**v, "perturbations": pert}, x)[:, 0].sum()))(v["perturbations"])
    assert grads["head_out"].shape == v["perturbations"]["head_out"].shape
    assert float(jnp.abs(grads["head_out"]).sum()) > 0


@pytest.mark.parametrize("shape", [(2, 64, 64), (2, 3, 64, 64)])
def test_bad_input_shape_is_named(shape):
    model = create_model("efficientnet_b0", **SMALL)
    with pytest.raises(ValueError, match="NHWC"):
        model.init(jax.random.key(0), jnp.zeros(shape))


def test_fast_init_matches_model_init():
    """Same variables as model.init: structure, shapes, dtypes, BN values; kernels drawn in one batch
    (models/batched_init.py), so their values differ but their spread does not."""
    from efficientnet_jax import init_variables

    model = create_model("efficientnetv2_b0", num_classes=5, **SMALL)
    fast = init_variables(model, jax.random.key(7))  # a typed key, as jax.random.key gives
    ref = jax.jit(lambda k: model.init(k, jnp.zeros((1, 96, 96, 3)), train=False))(jax.random.key(7))
    ref = {k: ref[k] for k in ("params", "batch_stats")}
    assert jax.tree.structure(fast) == jax.tree.structure(ref)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(fast), jax.tree.leaves(ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, jax.tree_util.keystr(path)
        if a.ndim < 2:  # BN scale/bias, statistics, biases: constants
            np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
        elif a.size >= 4096:
            assert abs(float(jnp.std(a)) / float(jnp.std(b)) - 1) < 0.1, jax.tree_util.keystr(path)
