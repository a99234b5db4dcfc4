"""The depthwise backward on the CPU kernels (training) against XLA's own convolution gradient.

dx on the kernels (every stride, padding and kernel size of the family, and the odd ones) is
covered with the forward in tests/models/test_depthwise.py ('cpu_kernel')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax.kernels import depthwise_kernel_grad
from efficientnet_jax.models.depthwise import depthwise_conv
from efficientnet_jax.models.layers import conv_padding

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")


def _reference_dk(x, g, k, stride, pads):
    """d/dkernel of sum(g * grouped_conv(x, kernel)): XLA's own transpose, at HIGHEST precision."""
    c = x.shape[-1]
    conv = lambda w: lax.conv_general_dilated(  # noqa: E731
        x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        precision=lax.Precision.HIGHEST)
    _, vjp = jax.vjp(conv, jnp.zeros((k, k, 1, c), jnp.float32))
    return vjp(g)[0]


# The family's 3x3 / 5x5 at stride 1 / 2 under TF-SAME and symmetric padding; channel counts with a
# partial last vector of 8 (13, 21), an odd number of whole vectors (24: the pair loop's single),
# below one vector (5); a 7x7 and a 1x1 (the generic path); more output rows than work items.
CASES = [
    # n, h, w, c, k, stride, padding
    (2, 9, 9, 16, 3, 1, "same"),
    (2, 10, 9, 13, 3, 2, "same"),
    (1, 11, 11, 24, 5, 1, "symmetric"),
    (3, 12, 12, 21, 5, 2, "same"),
    (1, 6, 7, 5, 7, 1, "same"),
    (2, 5, 5, 9, 1, 2, "same"),
    (8, 7, 7, 200, 5, 1, "same"),
]


@pytest.mark.parametrize("n,h,w,c,k,stride,padding", CASES)
def test_matches_xla_gradient(n, h, w, c, k, stride, padding):
    rng = np.random.default_rng(n * 100 + c)
    x = jnp.asarray(rng.standard_normal((n, h, w, c), np.float32))
    pads = [conv_padding(s, k, stride, padding) for s in (h, w)]
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    ho, wo = ((xp.shape[i] - k) // stride + 1 for i in (1, 2))
    g = jnp.asarray(rng.standard_normal((n, ho, wo, c), np.float32))
    got = jax.jit(lambda xp, g: depthwise_kernel_grad(xp, g, k, k, stride))(xp, g)
    want = _reference_dk(x, g, k, stride, pads)
    assert got.shape == want.shape == (k, k, 1, c)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("stride,calls_for_dx", [(1, 1), (2, 4)])  # stride 2: one call per phase
def test_auto_on_cpu_runs_the_backward_on_kernels_and_shift_does_not(stride, calls_for_dx):
    x = jnp.ones((2, 8, 8, 16), jnp.float32)
    w = jnp.ones((3, 3, 1, 16), jnp.float32)
    pads = [(1, 1), (1, 1)]

    def grad_hlo(impl):
        f = jax.grad(lambda x, w: jnp.sum(depthwise_conv(x, w, stride, pads, impl)), argnums=(0, 1))
        return jax.jit(f).lower(x, w).as_text()

    auto, shift = grad_hlo("auto"), grad_hlo("shift")
    assert auto.count("@efficientnet_jax_depthwise_kernel_grad") == 1
    assert auto.count("@efficientnet_jax_fused_depthwise") == calls_for_dx  # dx; the forward stays XLA's
    assert "@efficientnet_jax" not in shift
    bf16 = jax.grad(lambda w: jnp.sum(depthwise_conv(x.astype(jnp.bfloat16), w, 1, pads, "auto").astype(jnp.float32)))
    assert "efficientnet_jax_depthwise_kernel_grad" not in jax.jit(bf16).lower(w.astype(jnp.bfloat16)).as_text()


def test_bad_shapes_are_named():
    xp = jnp.zeros((2, 10, 10, 8), jnp.float32)
    with pytest.raises(ValueError, match=r"xp \(2, 10, 10, 8\) is too small for g \(2, 9, 9, 8\)"):
        depthwise_kernel_grad(xp, jnp.zeros((2, 9, 9, 8), jnp.float32), 3, 3, 1)
    with pytest.raises(ValueError, match="same N and C"):
        depthwise_kernel_grad(xp, jnp.zeros((2, 8, 8, 4), jnp.float32), 3, 3, 1)
    with pytest.raises(ValueError, match="float32 only"):
        depthwise_kernel_grad(xp.astype(jnp.bfloat16), jnp.zeros((2, 8, 8, 8), jnp.bfloat16), 3, 3, 1)
