"""The stem CPU kernel (efficientnet_jax/kernels/fused_stem.cc) against XLA's own convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax.kernels import fused_stem
from efficientnet_jax.models.layers import conv_padding, get_activation

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")


# The family's stems (3x3 stride 2 over RGB to 24-64 channels, TF-SAME or symmetric padding) and
# shapes that stress the tiling: a partial last vector of 8 (13), more than one 32-channel pass
# plus a remainder (40), odd sizes (an output row with an odd pixel), stride 1, 5x5.
@pytest.mark.parametrize("n,h,w,cin,cout,k,stride,padding,act", [
    (1, 16, 16, 3, 32, 3, 2, "same", "swish"),
    (2, 15, 17, 3, 24, 3, 2, "symmetric", "swish"),
    (1, 9, 9, 3, 13, 3, 2, "same", "relu6"),
    (3, 10, 7, 3, 40, 3, 1, "same", "relu"),
    (1, 12, 12, 2, 64, 5, 2, "symmetric", "identity"),
])
def test_matches_xla_convolution(n, h, w, cin, cout, k, stride, padding, act):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w, cin), np.float32))
    kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32) * 0.3)
    bias = jnp.asarray(rng.standard_normal(cout).astype(np.float32))
    pads = [conv_padding(s, k, stride, padding) for s in (h, w)]
    got = jax.jit(lambda x: fused_stem(x, kernel, bias, stride, pads, act))(x)
    want = lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)
    want = get_activation(act)(want + bias)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kernel_shape,bias_shape,match", [
    ((3, 3, 4, 8), (8,), "HWIO over its channels"),
    ((3, 3, 3, 8), (7,), "one per output channel"),
])
def test_bad_shapes_are_refused_with_their_names(kernel_shape, bias_shape, match):
    with pytest.raises(ValueError, match=match):
        fused_stem(jnp.zeros((1, 8, 8, 3)), jnp.zeros(kernel_shape), jnp.zeros(bias_shape), 2, [(0, 1), (0, 1)], "swish")
