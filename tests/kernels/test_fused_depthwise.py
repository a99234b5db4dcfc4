"""The fused depthwise CPU kernel (efficientnet_jax/kernels) against XLA's own convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax import kernels
from efficientnet_jax.kernels import build, fused_depthwise
from efficientnet_jax.models.layers import conv_padding, get_activation

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")


def _reference(x, kernel, out_bias, stride, pads, out_act, in_bias, in_act):
    """The graph the kernel replaces, with XLA's grouped convolution (not our shift form)."""
    a = x if in_bias is None else get_activation(in_act)(x + in_bias)
    y = lax.conv_general_dilated(a, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 feature_group_count=x.shape[-1], precision=lax.Precision.HIGHEST)
    y = get_activation(out_act)(y + out_bias)
    return y, jnp.mean(y, axis=(1, 2))


def _case(n, h, w, c, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c), np.float32) * 2
    kernel = rng.standard_normal((k, k, 1, c), np.float32) * 0.5
    ob, ib = (rng.standard_normal(c).astype(np.float32) for _ in range(2))
    return jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(ob), jnp.asarray(ib)


# Every shape the family has (3x3 / 5x5, stride 1 / 2, TF-SAME's asymmetric pad at even sizes and
# PyTorch's symmetric one), channel counts with a partial last vector of 8 (13, 70) and below one
# vector (5), widths below the kernel's pixel tile, every tail length after 8-pixel tiles (11: 3,
# 15: 7, 6 alone), rows of 7-pixel tiles (14) and batches that split into several items.
CASES = [
    # n, h, w, c, k, stride, padding, in_act, out_act
    (1, 8, 8, 16, 3, 1, "same", "swish", "swish"),
    (2, 9, 7, 13, 3, 2, "same", "swish", "swish"),
    (1, 10, 10, 70, 5, 2, "same", "relu6", "relu6"),
    (3, 11, 11, 24, 5, 1, "symmetric", "swish", "swish"),
    (1, 6, 6, 5, 3, 2, "symmetric", "identity", "swish"),
    (2, 3, 2, 40, 5, 1, "same", "relu", "relu"),
    (1, 14, 14, 200, 3, 1, "same", "swish", "identity"),
    (4, 12, 12, 96, 3, 2, "same", "swish", "swish"),
    (1, 15, 15, 16, 5, 1, "same", "swish", "swish"),
    (2, 6, 6, 24, 3, 1, "symmetric", "relu", "swish"),
]


@pytest.mark.parametrize("n,h,w,c,k,stride,padding,in_act,out_act", CASES)
def test_matches_xla_convolution(n, h, w, c, k, stride, padding, in_act, out_act):
    x, kernel, ob, ib = _case(n, h, w, c, k)
    in_bias = None if in_act == "identity" else ib
    pads = [conv_padding(s, k, stride, padding) for s in (h, w)]
    got, got_pool = jax.jit(lambda x: fused_depthwise(x, kernel, ob, stride, pads, out_act, in_bias, in_act))(x)
    want, want_pool = _reference(x, kernel, ob, stride, pads, out_act, in_bias, in_act)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got_pool, want_pool, rtol=2e-5, atol=2e-5)



# The expand conv inside the kernel: input widths around the GEMM's register tile (6 or 8 pixels:
# 1, 5, 7, 9, 13, 16 columns reach the taps), channel counts with partial vectors on either side
# (C_in 3 / 13, C 13 / 70 / 100) and batches that split into bands (halo rows expanded twice).
EXPAND_CASES = [
    # n, h, w, c_in, c, k, stride, padding, act
    (1, 7, 7, 192, 96, 5, 1, "same", "swish"),
    (2, 9, 5, 13, 70, 3, 2, "same", "swish"),
    (1, 6, 1, 8, 24, 3, 1, "symmetric", "relu6"),
    (3, 16, 13, 24, 100, 3, 1, "same", "relu"),
    (1, 28, 9, 3, 13, 5, 2, "symmetric", "identity"),
    (4, 20, 16, 40, 48, 3, 2, "same", "swish"),
]


@pytest.mark.parametrize("n,h,w,c_in,c,k,stride,padding,act", EXPAND_CASES)
def test_expand_inside_matches_xla(n, h, w, c_in, c, k, stride, padding, act):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((n, h, w, c_in), np.float32))
    expand = jnp.asarray(rng.standard_normal((1, 1, c_in, c), np.float32) / np.sqrt(c_in) * 2)
    _, kernel, ob, ib = _case(1, 1, 1, c, k, seed=4)
    pads = [conv_padding(s, k, stride, padding) for s in (h, w)]
    got, got_pool = jax.jit(lambda x: fused_depthwise(x, kernel, ob, stride, pads, act, ib, act, expand))(x)
    expanded = lax.dot_general(x, expand[0, 0], (((3,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    want, want_pool = _reference(expanded, kernel, ob, stride, pads, act, ib, act)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=3e-5)
    np.testing.assert_allclose(got_pool, want_pool, rtol=2e-5, atol=3e-5)


def test_expand_kernel_of_the_wrong_shape_is_refused():
    x = jnp.zeros((1, 6, 6, 8))
    with pytest.raises(ValueError, match=r"expand_kernel \(1, 1, 4, 16\) must be \(1, 1, C_in, C\)"):
        fused_depthwise(x, jnp.zeros((3, 3, 1, 16)), jnp.zeros(16), 1, [(1, 1), (1, 1)], "swish",
                        jnp.zeros(16), "swish", jnp.zeros((1, 1, 4, 16)))

def test_bias_without_activation_is_applied():
    x, kernel, ob, ib = _case(1, 7, 7, 12, 3)
    pads = [(1, 1), (1, 1)]
    got, _ = fused_depthwise(x, kernel, ob, 1, pads, "swish", ib, "identity")
    want, _ = _reference(x + ib, kernel, ob, 1, pads, "swish", None, "identity")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_many_items_cover_every_output_once():
    """Large enough to split into row bands and channel groups over the threads: every output
    element and every pooled sum must come from exactly one item."""
    x, kernel, ob, ib = _case(3, 40, 33, 300, 5, seed=1)
    pads = [conv_padding(s, 5, 1, "same") for s in (40, 33)]
    got, pooled = jax.jit(lambda x: fused_depthwise(x, kernel, ob, 1, pads, "swish", ib, "swish"))(x)
    want, want_pool = _reference(x, kernel, ob, 1, pads, "swish", ib, "swish")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(pooled, want_pool, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("bad,match", [
    (dict(kernel_shape=(3, 3, 2, 8)), "kernel"),
    (dict(dtype=jnp.bfloat16), "float32 only"),
    (dict(out_act="gelu"), "out_act='gelu'"),
    (dict(in_act="swish", in_bias=None), "needs its in_bias"),
])
def test_bad_input_is_refused_with_its_name(bad, match):
    x = jnp.zeros((1, 6, 6, 8), bad.get("dtype", jnp.float32))
    kernel = jnp.zeros(bad.get("kernel_shape", (3, 3, 1, 8)))
    with pytest.raises(ValueError, match=match):
        fused_depthwise(x, kernel, jnp.zeros(8), 1, [(1, 1), (1, 1)], bad.get("out_act", "swish"),
                        bad.get("in_bias", jnp.zeros(8)), bad.get("in_act", "swish"))


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(build, "_state", {})  # a fresh process's state
    monkeypatch.setenv("EFFICIENTNET_JAX_CPU_KERNELS", "0")
    assert not kernels.available()
    assert "EFFICIENTNET_JAX_CPU_KERNELS=0" in kernels.unavailable_reason()
    with pytest.raises(kernels.KernelUnavailable, match="disabled"):
        kernels.load()


def test_a_failed_build_says_why_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("EFFICIENTNET_JAX_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/bin/false")  # a "compiler" that fails
    with pytest.raises(kernels.KernelUnavailable, match="building the CPU kernels failed: /bin/false"):
        kernels.load()
    assert list(tmp_path.iterdir()) == []  # no half-written library for the next process to load
    with pytest.raises(kernels.KernelUnavailable):  # remembered: no second build attempt
        kernels.load()


def test_library_is_keyed_by_compiler_and_source(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFICIENTNET_JAX_KERNEL_CACHE", str(tmp_path))
    path = build.library_path()
    assert path.parent == tmp_path and path.suffix == ".so"
    monkeypatch.setenv("CXX", "/bin/false")
    assert build.library_path() != path
