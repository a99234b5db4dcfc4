"""The TN GEMM CPU kernel (training's 1x1 weight gradients) against XLA's dot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax.kernels import gemm_tn
from efficientnet_jax.models.pointwise import flat_tn, pointwise_conv, use_tn_kernel

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")


def _tn_reference(a, b):
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


# Row counts below, at and past a chunk and a range; p below, at and past the register tile's rows
# (8 with AVX-512VL, 6 with AVX2) and q with a partial last vector of 8, below one vector, and
# past one tile's vectors (24 / 16 floats); the B0 stem's 27 x 32 at a long m.
CASES = [(1, 1, 1), (5, 3, 5), (300, 27, 32), (777, 13, 21), (4100, 9, 50), (20000, 16, 96), (70000, 27, 32),
         (3000, 40, 7), (0, 4, 4)]


@pytest.mark.parametrize("m,p,q", CASES)
def test_matches_xla_dot(m, p, q):
    rng = np.random.default_rng(m + p + q)
    a = jnp.asarray(rng.standard_normal((m, p), np.float32))
    b = jnp.asarray(rng.standard_normal((m, q), np.float32))
    got = jax.jit(gemm_tn)(a, b)
    want = _tn_reference(a, b)
    assert got.shape == (p, q)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_flat_tn_takes_the_kernel_for_long_narrow_float32_only():
    assert use_tn_kernel(8192, 16, 96, jnp.float32)
    assert not use_tn_kernel(8192, 192, 1152, jnp.float32)  # both sides wide: XLA's GEMM
    assert not use_tn_kernel(1024, 16, 96, jnp.float32)  # few rows
    assert not use_tn_kernel(8192, 16, 96, jnp.bfloat16)
    x = jnp.ones((2, 64, 64, 16), jnp.float32)
    g = jnp.ones((2, 64, 64, 24), jnp.float32)
    assert "efficientnet_jax_gemm_tn" in jax.jit(flat_tn).lower(x, g).as_text()
    assert "efficientnet_jax_gemm_tn" not in jax.jit(flat_tn).lower(x.astype(jnp.bfloat16), g.astype(jnp.bfloat16)).as_text()


def test_pointwise_weight_gradient_through_the_kernel_equals_autodiff():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 64, 64, 16), np.float32))
    w = jnp.asarray(rng.standard_normal((16, 24), np.float32) * 0.3)
    r = jnp.asarray(rng.standard_normal((2, 64, 64, 24), np.float32))
    ref = lambda x, w: lax.dot_general(x, w, (((3,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)  # noqa: E731
    grads = lambda fn: jax.jit(jax.grad(lambda x, w: jnp.sum(r * fn(x, w)), argnums=(0, 1)))(x, w)  # noqa: E731
    (gx, gw), (gx_ref, gw_ref) = grads(pointwise_conv), grads(ref)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5 * float(np.abs(gx_ref).max()))
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-5 * float(np.abs(gw_ref).max()))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"a \(10, 3\) and b \(9, 4\) must be \(M, P\) and \(M, Q\)"):
        gemm_tn(jnp.zeros((10, 3)), jnp.zeros((9, 4)))
    with pytest.raises(ValueError, match="float32 only"):
        gemm_tn(jnp.zeros((10, 3), jnp.bfloat16), jnp.zeros((10, 4), jnp.bfloat16))
