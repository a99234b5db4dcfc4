"""Every lowering equals lax.conv_general_dilated, forward and gradient; padding equals the references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax.models.layers import Conv2d, DropPath, conv_padding, depthwise_conv

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.mark.parametrize("size", [7, 8, 15, 16])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_same_padding_equals_lax_same(size, kernel, stride):
    pads = conv_padding(size, kernel, stride, "same")
    x = jnp.arange(size * size, dtype=jnp.float32).reshape(1, size, size, 1)
    w = jnp.ones((kernel, kernel, 1, 1))
    ours = lax.conv_general_dilated(x, w, (stride, stride), [pads, pads], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ref = lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(ours, ref)


def test_same_padding_is_asymmetric_and_symmetric_is_pytorch():
    # TF SAME on an even input at stride 2 pads more after: k3 -> (0, 1), k5 -> (1, 2).
    assert conv_padding(224, 3, 2, "same") == (0, 1)
    assert conv_padding(224, 5, 2, "same") == (1, 2)
    # PyTorch/timm: ((s - 1) + (k - 1)) // 2 on both sides.
    assert conv_padding(224, 3, 2, "symmetric") == (1, 1)
    assert conv_padding(224, 5, 1, "symmetric") == (2, 2)
    with pytest.raises(ValueError, match="padding"):
        conv_padding(8, 3, 1, "valid")


@pytest.mark.parametrize("mode", ["same", "symmetric"])
@pytest.mark.parametrize("size", [9, 12])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_depthwise_shift_equals_grouped_conv_forward_and_grad(mode, size, kernel, stride):
    kx, kw, kg = jax.random.split(jax.random.key(size * 31 + kernel * 7 + stride), 3)
    c = 12
    x = jax.random.normal(kx, (2, size, size, c))
    w = jax.random.normal(kw, (kernel, kernel, 1, c))
    pads = [conv_padding(size, kernel, stride, mode)] * 2

    def f(impl):
        return lambda x, w: depthwise_conv(x, w, stride, pads, impl)

    y_ref, y = f("xla")(x, w), f("shift")(x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, y.shape)
    gx_ref, gw_ref = jax.vjp(f("xla"), x, w)[1](g)
    gx, gw = jax.vjp(f("shift"), x, w)[1](g)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-4)


def test_pointwise_conv_as_dot_equals_conv():
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 8))
    layer = Conv2d(16)
    v = layer.init(jax.random.key(1), x)
    ref = lax.conv_general_dilated(x, v["params"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(layer.apply(v, x), ref, rtol=1e-6, atol=1e-6)


def test_conv_init_matches_official_fan_out():
    v = Conv2d(64, kernel=3).init(jax.random.key(0), jnp.zeros((1, 8, 8, 32)))
    assert float(jnp.std(v["params"]["kernel"])) == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)


def test_drop_path_keeps_expectation_and_drops_whole_samples():
    x = jnp.ones((20000, 2, 2, 3))
    y = DropPath(0.3).apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})
    per_sample = y.reshape(20000, -1)
    # Each sample is either dropped entirely or scaled by 1/keep.
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.7], rtol=1e-6)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.02)
    assert float((per_sample[:, 0] == 0).mean()) == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(DropPath(0.3).apply({}, x, train=False), x)
