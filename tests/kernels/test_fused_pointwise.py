"""The fused 1x1-conv CPU kernel (efficientnet_jax/kernels): gate, GEMM, bias, activation and
residual against the same graph in XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax.kernels import fused_pointwise
from efficientnet_jax.models.layers import get_activation

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")


def _reference(x, kernel, bias, act, gate, residual):
    a = x if gate is None else x * gate[:, None, None, :]
    y = lax.dot_general(a, kernel[0, 0], (((3,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    y = get_activation(act)(y + bias)
    return y if residual is None else y + residual


# Rows per image around both register-tile heights (1, 5, 7x7 = 49 and 14x14 = 196 in 7-row tiles,
# 9x13 = 117 in 7-row tiles with a partial one, 28x28 in 8-row ones), channel counts
# with partial vectors (K 3 / 13, C 13 / 20 / 36), an MBConv project (gate + skip), the head
# (swish, no gate) and batches that split into many (rows x columns) items.
CASES = [
    # n, h, w, k, c, act, gate, residual
    (1, 7, 7, 1152, 192, "identity", True, True),
    (2, 14, 14, 100, 36, "swish", True, False),
    (3, 5, 1, 20, 13, "relu6", False, True),
    (1, 7, 7, 320, 1280, "swish", False, False),
    (1, 1, 1, 13, 20, "relu", True, True),
    (4, 9, 13, 3, 48, "identity", False, False),
    (1, 28, 28, 240, 40, "identity", True, True),
]


@pytest.mark.parametrize("n,h,w,k,c,act,with_gate,with_residual", CASES)
def test_matches_xla(n, h, w, k, c, act, with_gate, with_residual):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w, k), np.float32))
    kernel = jnp.asarray(rng.standard_normal((1, 1, k, c), np.float32) / np.sqrt(k))
    bias = jnp.asarray(rng.standard_normal(c).astype(np.float32))
    gate = jnp.asarray(rng.uniform(size=(n, k)).astype(np.float32)) if with_gate else None
    residual = jnp.asarray(rng.standard_normal((n, h, w, c), np.float32)) if with_residual else None
    got = jax.jit(lambda x: fused_pointwise(x, kernel, bias, act, gate, residual))(x)
    want = _reference(x, kernel, bias, act, gate, residual)
    assert got.shape == (n, h, w, c)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)



@pytest.mark.parametrize("n,h,k,s,c,se_act", [(1, 7, 1152, 48, 192, "swish"), (3, 5, 20, 5, 13, "relu6"),
                                             (2, 4, 96, 4, 24, "relu")])
def test_squeeze_excite_inside_matches_xla(n, h, k, s, c, se_act):
    """The gate computed in the kernel from the SE's inputs = the SE of the XLA graph, then gated."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((n, h, h, k), np.float32))
    kernel = jnp.asarray(rng.standard_normal((1, 1, k, c), np.float32) / np.sqrt(k))
    bias, b1, b2 = (jnp.asarray(rng.standard_normal(m).astype(np.float32)) for m in (c, s, k))
    w1 = jnp.asarray(rng.standard_normal((1, 1, k, s), np.float32) / np.sqrt(k))
    w2 = jnp.asarray(rng.standard_normal((1, 1, s, k), np.float32) / np.sqrt(s))
    pooled = jnp.mean(x, axis=(1, 2))
    residual = jnp.asarray(rng.standard_normal((n, h, h, c), np.float32))
    got = jax.jit(lambda x, p: fused_pointwise(x, kernel, bias, residual=residual, se=(p, w1, b1, w2, b2),
                                               se_act=se_act))(x, pooled)
    hidden = get_activation(se_act)(jnp.dot(pooled, w1[0, 0], precision=lax.Precision.HIGHEST) + b1)
    gate = jax.nn.sigmoid(jnp.dot(hidden, w2[0, 0], precision=lax.Precision.HIGHEST) + b2)
    np.testing.assert_allclose(got, _reference(x, kernel, bias, "identity", gate, residual), rtol=2e-5, atol=2e-5)


def test_squeeze_excite_inputs_of_the_wrong_shape_are_refused():
    x = jnp.zeros((2, 3, 3, 8))
    se = (jnp.zeros((2, 8)), jnp.zeros((1, 1, 8, 2)), jnp.zeros(2), jnp.zeros((1, 1, 3, 8)), jnp.zeros(8))
    with pytest.raises(ValueError, match=r"se shapes .* expand \(1, 1, 3, 8\)"):
        fused_pointwise(x, jnp.zeros((1, 1, 8, 4)), jnp.zeros(4), se=se)
    with pytest.raises(ValueError, match="not both"):
        fused_pointwise(x, jnp.zeros((1, 1, 8, 4)), jnp.zeros(4), gate=jnp.zeros((2, 8)), se=se[:3] + (
            jnp.zeros((1, 1, 2, 8)), jnp.zeros(8)))

@pytest.mark.parametrize("bad,match", [
    (dict(kernel=(1, 1, 4, 16)), r"kernel \(1, 1, 4, 16\) \(1, 1, C_in, C_out\)"),
    (dict(kernel=(3, 3, 8, 16)), "kernel"),
    (dict(bias=(8,)), r"bias \(8,\)"),
    (dict(gate=(1, 16)), r"gate \(1, 16\) must be \(N, C_in\)"),
    (dict(residual=(1, 6, 6, 8)), r"residual \(1, 6, 6, 8\) must be the output's shape"),
    (dict(dtype=jnp.bfloat16), "float32 only"),
    (dict(act="gelu"), "act='gelu'"),
])
def test_bad_input_is_refused_with_its_name(bad, match):
    x = jnp.zeros((1, 6, 6, 8), bad.get("dtype", jnp.float32))
    gate = jnp.zeros(bad["gate"]) if "gate" in bad else None
    residual = jnp.zeros(bad["residual"]) if "residual" in bad else None
    with pytest.raises(ValueError, match=match):
        fused_pointwise(x, jnp.zeros(bad.get("kernel", (1, 1, 8, 16))), jnp.zeros(bad.get("bias", (16,))),
                        bad.get("act", "identity"), gate, residual)


_AVX2_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from efficientnet_jax import kernels
rng = np.random.default_rng(5)
x = jnp.asarray(rng.standard_normal((2, 9, 13, 24), np.float32))
w = jnp.asarray(rng.standard_normal((1, 1, 24, 44), np.float32) / 5)
b = jnp.asarray(rng.standard_normal(44).astype(np.float32))
gate = jnp.asarray(rng.uniform(size=(2, 24)).astype(np.float32))
got = kernels.fused_pointwise(x, w, b, "swish", gate)
want = jax.nn.silu(jnp.einsum("nhwk,kc->nhwc", x * gate[:, None, None], w[0, 0], precision="highest") + b)
dw = jnp.asarray(rng.standard_normal((3, 3, 1, 44), np.float32) / 3)
got_dw, _ = kernels.fused_depthwise(x, dw, b, 1, [(1, 1), (1, 1)], "swish", b, "swish", w)
e = jax.nn.silu(jnp.einsum("nhwk,kc->nhwc", x, w[0, 0], precision="highest") + b)
want_dw = jax.nn.silu(lax.conv_general_dilated(e, dw, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                      feature_group_count=44, precision="highest") + b)
img = jnp.asarray(rng.standard_normal((1, 17, 19, 3), np.float32))
stem_w = jnp.asarray(rng.standard_normal((3, 3, 3, 40), np.float32) / 5)
got_stem = kernels.fused_stem(img, stem_w, b[:40], 2, [(0, 1), (0, 1)], "swish")
want_stem = jax.nn.silu(lax.conv_general_dilated(img, stem_w, (2, 2), [(0, 1), (0, 1)],
                        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest") + b[:40])
print("ERR", float(jnp.abs(got - want).max()), float(jnp.abs(got_dw - want_dw).max()),
      float(jnp.abs(got_stem - want_stem).max()))
"""


def test_avx2_register_tiles(tmp_path):
    """Built for AVX2 (GEMM tiles 6 x 2 instead of AVX-512's 8 x 3, depthwise 4 pixels instead of
    8, stem 2 instead of 6), in a fresh process with its own kernel cache: the tile shapes some CPUs
    run must be right too."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, EFFICIENTNET_JAX_KERNEL_MARCH="haswell", EFFICIENTNET_JAX_KERNEL_CACHE=str(tmp_path),
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    errs = [float(v) for v in out.stdout.split("ERR", 1)[1].split()]
    assert max(errs) < 3e-5, errs
    assert len(list(tmp_path.glob("cpu_kernels-*.so"))) == 1  # built here, not the native one
