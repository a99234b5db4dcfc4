"""models/conv_bn.py: BN(x @ w) with statistics and gradients from x equals conv then BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax.models.batchnorm import BatchNorm
from efficientnet_jax.models.conv_bn import use_conv_bn
from efficientnet_jax.models.pointwise import pointwise_conv

EPS, MOMENTUM = 1e-3, 0.9


def _inputs(shape, c_out, seed=0):
    """A non-centred input (mean 0.5) so the mean terms of the statistics and gradients matter."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape) * 2.0 + 0.5, jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((shape[-1], c_out)) * 0.5, jnp.float32)
    variables = {
        "params": {"scale": jnp.asarray(rng.uniform(0.5, 1.5, c_out), jnp.float32),
                   "bias": jnp.asarray(rng.standard_normal(c_out), jnp.float32)},
        "batch_stats": {"mean": jnp.asarray(rng.standard_normal(c_out), jnp.float32),
                        "var": jnp.asarray(rng.uniform(0.5, 2.0, c_out), jnp.float32)},
    }
    weights = jnp.asarray(rng.standard_normal(shape[:-1] + (c_out,)), jnp.float32)
    return x, kernel, variables, weights


def _run(bn, variables, x, kernel, weights, fused):
    """Output, updated running stats and d(params, x, kernel) of sum(silu(BN(x @ kernel)) * weights)."""
    def loss(params, x, kernel):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        if fused:
            y, new = bn.apply(v, x, kernel, mutable=["batch_stats"])
        else:
            y, new = bn.apply(v, pointwise_conv(x, kernel), mutable=["batch_stats"])
        return jnp.sum(nn.silu(y) * weights), (y, new)

    (_, (y, new)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(variables["params"], x, kernel)
    return y, new, grads


def _close(a, b, rtol):
    """Within rtol of the reference's largest magnitude."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(np.asarray(b)).max()))


@pytest.mark.parametrize("shape,c_out", [((4, 6, 5, 8), 24), ((2, 3, 16), 40), ((2, 9, 9, 3), 3)])
def test_values_running_stats_and_gradients_equal_conv_then_bn(shape, c_out):
    x, kernel, variables, weights = _inputs(shape, c_out)
    bn = BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS)
    y, new, grads = jax.jit(lambda *a: _run(bn, *a, fused=True))(variables, x, kernel, weights)
    y_ref, new_ref, grads_ref = jax.jit(lambda *a: _run(bn, *a, fused=False))(variables, x, kernel, weights)
    _close(y, y_ref, 1e-5)
    for k in ("mean", "var"):
        _close(new["batch_stats"][k], new_ref["batch_stats"][k], 1e-5)
    assert not np.allclose(new["batch_stats"]["mean"], variables["batch_stats"]["mean"])  # it moved
    (gp, gx, gk), (gp_ref, gx_ref, gk_ref) = grads, grads_ref
    _close(gx, gx_ref, 1e-4)
    _close(gk, gk_ref, 1e-4)
    for k in ("scale", "bias"):
        _close(gp[k], gp_ref[k], 1e-4)
    assert float(jnp.max(jnp.abs(gk))) > 1e-3  # not vacuously small


def test_eval_mode_and_init_apply_the_conv_then_running_averages():
    x, kernel, variables, _ = _inputs((2, 4, 4, 6), 12)
    bn = BatchNorm(use_running_average=True, epsilon=EPS)
    np.testing.assert_allclose(bn.apply(variables, x, kernel), bn.apply(variables, pointwise_conv(x, kernel)),
                               rtol=1e-6, atol=1e-6)
    created = BatchNorm(use_running_average=False).init(jax.random.PRNGKey(0), x, kernel)
    assert created["params"]["scale"].shape == (12,)  # sized by the conv's output, not x


def test_cross_replica_statistics_and_gradients_equal_conv_then_bn():
    """With axis_name, statistics and dx use every replica's batch (as batchnorm.BatchNorm)."""
    x, kernel, variables, weights = _inputs((3, 4, 5, 5, 6), 18)  # 3 replicas of a 4x5x5x6 batch
    bn = BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS, axis_name="replica")

    def per_replica(fused):
        f = lambda xi, wi: _run(bn, variables, xi, kernel, wi, fused)  # noqa: E731
        return jax.vmap(f, axis_name="replica")(x, weights)

    (y, new, (gp, gx, gk)), (y_ref, new_ref, (gp_ref, gx_ref, gk_ref)) = per_replica(True), per_replica(False)
    _close(y, y_ref, 1e-5)
    _close(new["batch_stats"]["var"], new_ref["batch_stats"]["var"], 1e-5)
    _close(gx, gx_ref, 1e-4)
    _close(gk, gk_ref, 1e-4)
    for k in ("scale", "bias"):
        _close(gp[k], gp_ref[k], 1e-4)


def test_only_widening_convs_on_cpu():
    on_cpu = jax.default_backend() == "cpu"
    assert use_conv_bn((1, 1, 16, 96)) == on_cpu
    assert not use_conv_bn((1, 1, 96, 16))  # a narrowing conv: the Gram matrix would cost more
