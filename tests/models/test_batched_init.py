"""batched_init: every random kernel from two draws, with the official distributions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax import create_model, init_variables
from efficientnet_jax.models.batched_init import batched_random_init
from efficientnet_jax.models.layers import conv_kernel_init, dense_kernel_init
from efficientnet_jax.training.state import init_variables as trainer_init_variables

X = np.zeros((1, 32, 32, 3), np.float32)


@pytest.fixture(scope="module")
def b0():
    model = create_model("efficientnet_b0", num_classes=10)
    fast = init_variables(model, jax.random.PRNGKey(0))
    ref = jax.jit(lambda k: model.init(k, X, train=False))(jax.random.PRNGKey(0))
    return model, fast, ref


def test_same_variables_as_model_init_with_the_official_distributions(b0):
    model, fast, ref = b0
    assert jax.tree.structure(fast["params"]) == jax.tree.structure(ref["params"])
    assert jax.tree.structure(fast["batch_stats"]) == jax.tree.structure(ref["batch_stats"])
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(fast["params"]), jax.tree.leaves(ref["params"])):
        name = jax.tree_util.keystr(path)
        a = np.asarray(a)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if path[-1].key in ("scale", "bias"):
            np.testing.assert_array_equal(a, np.asarray(b), err_msg=name)  # ones / zeros
        elif a.ndim == 4:  # conv kernel: normal(0, sqrt(2 / fan_out)), fan_out = kh*kw*(out, or 1 depthwise)
            kh, kw, cin, out = a.shape
            depthwise = cin == 1  # B0 has no other single-input-channel conv (the stem takes RGB)
            fan_out = kh * kw * (1 if depthwise else out)
            std = math.sqrt(2.0 / fan_out)
            if a.size >= 2000:  # enough samples for the sample std to be within 10 %
                assert abs(a.std() / std - 1) < 0.1, (name, a.std(), std)
                assert abs(a.mean()) < 0.1 * std, name
            assert not np.array_equal(a, np.asarray(b)), name  # other values than model.init's
        else:  # the classifier: uniform(-1/sqrt(out), 1/sqrt(out))
            limit = 1.0 / math.sqrt(a.shape[1])
            assert np.abs(a).max() <= limit and np.abs(a).max() > 0.95 * limit, name
            assert abs(a.std() / (limit / math.sqrt(3)) - 1) < 0.1, name


def test_every_kernel_is_drawn_independently(b0):
    _, fast, _ = b0
    kernels = [np.asarray(x).ravel() for x in jax.tree.leaves(fast["params"]) if x.ndim >= 2]
    heads = {tuple(np.round(k[:4], 6)) for k in kernels}
    assert len(heads) == len(kernels)  # no two kernels cut from the same stretch of the draw
    assert all(np.any(k) for k in kernels)


def test_deterministic_in_the_key_and_the_same_for_the_trainer():
    model = create_model("efficientnet_lite0", num_classes=7)
    a = init_variables(model, jax.random.PRNGKey(3))
    b = init_variables(model, jax.random.PRNGKey(3))
    c = init_variables(model, jax.random.PRNGKey(4))
    t = jax.jit(lambda k: trainer_init_variables(model, k, 32))(jax.random.PRNGKey(3))
    for x, y, z, w in zip(*(jax.tree.leaves(v["params"]) for v in (a, b, c, t))):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, w, rtol=1e-6, atol=1e-7)  # O0 vs optimised: 1-ulp FMA differences
        if x.ndim >= 2:
            assert not np.array_equal(x, z)


def test_remat_models_get_the_same_variables_as_without_remat():
    key = jax.random.PRNGKey(1)
    plain = init_variables(create_model("efficientnet_lite0", num_classes=5), key)
    remat = init_variables(create_model("efficientnet_lite0", num_classes=5, remat=True), key)
    for x, y in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_array_equal(x, y)


def test_falls_back_to_model_init_when_a_lift_hides_the_kernels():
    model = create_model("efficientnet_lite0", num_classes=5, remat=True)
    key = jax.random.PRNGKey(2)
    got = jax.jit(lambda k: batched_random_init(lambda: model.init(k, X, train=False), k))(key)
    ref = jax.jit(lambda k: model.init(k, X, train=False))(key)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(x, y)


def test_initializers_outside_batching_draw_as_before():
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(conv_kernel_init()(key, (3, 3, 8, 16)),
                                  jax.random.normal(key, (3, 3, 8, 16)) * math.sqrt(2.0 / (9 * 16)))
    np.testing.assert_array_equal(conv_kernel_init(depthwise=True)(key, (5, 5, 1, 16)),
                                  jax.random.normal(key, (5, 5, 1, 16)) * math.sqrt(2.0 / 25))
    np.testing.assert_array_equal(dense_kernel_init(key, (16, 10)),
                                  jax.random.uniform(key, (16, 10), jnp.float32, -10 ** -0.5, 10 ** -0.5))
