"""models/batchnorm.py: a drop-in for flax's BatchNorm whose hand-written backward matches autodiff."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax.models.batchnorm import BatchNorm

EPS, MOMENTUM = 1e-3, 0.9


def _pair(train: bool, dtype=None, axis_name=None):
    ours = BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPS, dtype=dtype, axis_name=axis_name)
    ref = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPS, dtype=dtype,
                       param_dtype=jnp.float32, axis_name=axis_name)
    return ours, ref


def _inputs(shape=(4, 6, 5, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape) * 2.0 + 0.5, jnp.float32)
    c = shape[-1]
    variables = {
        "params": {"scale": jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32),
                   "bias": jnp.asarray(rng.standard_normal(c), jnp.float32)},
        "batch_stats": {"mean": jnp.asarray(rng.standard_normal(c), jnp.float32),
                        "var": jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)},
    }
    return x, variables


def test_same_variables_as_flax():
    x, _ = _inputs()
    ours, ref = _pair(train=True)
    a, b = ours.init(jax.random.PRNGKey(0), x), ref.init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)  # init does not touch the running statistics


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_forward_and_running_stats_match_flax(train, dtype):
    x, variables = _inputs()
    x = x.astype(dtype or jnp.float32)
    ours, ref = _pair(train, dtype)
    y, new = ours.apply(variables, x, mutable=["batch_stats"])
    y_ref, new_ref = ref.apply(variables, x, mutable=["batch_stats"])
    assert y.dtype == y_ref.dtype
    tol = 1e-6 if dtype is None else 1e-2
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=tol, atol=tol)
    for k in ("mean", "var"):
        np.testing.assert_allclose(new["batch_stats"][k], new_ref["batch_stats"][k], rtol=1e-6, atol=1e-6)
    if train:  # the running averages moved towards this batch's statistics
        assert not np.allclose(new["batch_stats"]["mean"], variables["batch_stats"]["mean"])


def _grads(module, variables, x, weights):
    def loss(params, x):
        y, _ = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"])
        return jnp.sum(nn.silu(y.astype(jnp.float32)) * weights)

    return jax.grad(loss, argnums=(0, 1))(variables["params"], x)


@pytest.mark.parametrize("shape", [(4, 6, 5, 8), (2, 3, 16)])
def test_gradients_match_flax_autodiff(shape):
    x, variables = _inputs(shape)
    w = jnp.asarray(np.random.default_rng(7).standard_normal(shape), jnp.float32)
    ours, ref = _pair(train=True)
    (gp, gx), (gp_ref, gx_ref) = _grads(ours, variables, x, w), _grads(ref, variables, x, w)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(gp[k], gp_ref[k], rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(gx))) > 1e-3  # not vacuously small


def test_cross_replica_statistics_and_gradients_match_flax():
    """With axis_name, statistics and dx use every replica's batch; d scale / d bias stay per replica."""
    x, variables = _inputs((3, 4, 5, 5, 6))  # 3 replicas of a 4x5x5x6 batch
    w = jnp.asarray(np.random.default_rng(3).standard_normal(x.shape), jnp.float32)
    ours, ref = _pair(train=True, axis_name="replica")

    def per_replica(module):
        def f(xi, wi):
            def loss(params, xi):
                y, new = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, xi,
                                      mutable=["batch_stats"])
                return jnp.sum(nn.silu(y) * wi), (y, new)

            (_, (y, new)), g = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables["params"], xi)
            return y, new, g

        return jax.vmap(f, axis_name="replica")(x, w)

    (y, new, (gp, gx)), (y_ref, new_ref, (gp_ref, gx_ref)) = per_replica(ours), per_replica(ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new["batch_stats"]["var"], new_ref["batch_stats"]["var"], rtol=1e-6)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(gp[k], gp_ref[k], rtol=1e-4, atol=1e-5)
    # Global statistics: every replica normalised with the same mean, so replica means differ.
    assert not np.allclose(np.mean(np.asarray(y), axis=(1, 2, 3)), 0.0, atol=1e-3)
