"""Depthwise lowerings: forward and both gradients equal XLA's grouped convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from efficientnet_jax import create_model
from efficientnet_jax.models.depthwise import DW_IMPLS, depthwise_conv, resolve_dw_impl
from efficientnet_jax.models.layers import conv_padding
from efficientnet_jax.training.experiment import FAST_COMPILE

IMPLS = [i for i in DW_IMPLS if i != "auto"]
# FAST_COMPILE (the training code's compile_mode='fast' options): 3-7x less compile time for the
# matrix of cases and the model (same ops; the other tests compile with XLA's defaults).


def _reference(x, w, stride, pads):
    return lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=w.shape[-1], precision=lax.Precision.HIGHEST,
    )


def _case(h, w, kernel, stride, mode, c=6, dtype=jnp.float32, seed=0):
    """Inputs from numpy (eager jax.random would compile a program per shape, seconds in all)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((2, h, w, c), np.float32), dtype)
    k = jnp.asarray(rng.standard_normal((kernel, kernel, 1, c), np.float32), dtype)
    pads = [conv_padding(h, kernel, stride, mode), conv_padding(w, kernel, stride, mode)]
    out = jax.eval_shape(lambda x, k: _reference(x, k, stride, pads), x, k)
    r = jnp.asarray(rng.standard_normal(out.shape, np.float32))  # random weights of the summed output
    return x, k, pads, r


def _value_and_grads(fns, x, k, r, fast_compile=False):
    """For each fn: its output and d/d(x, kernel) of sum(r * fn(x, kernel)), all in one jit."""
    def one(fn, x, k):
        loss = lambda x, k: jnp.sum(r * fn(x, k).astype(jnp.float32))  # noqa: E731
        return fn(x, k), jax.grad(loss, argnums=(0, 1))(x, k)
    lowered = jax.jit(lambda x, k: [one(fn, x, k) for fn in fns]).lower(x, k)
    return lowered.compile(compiler_options=FAST_COMPILE if fast_compile else None)(x, k)


def _close(actual, expected, rtol):
    """Elementwise within rtol of the reference's largest magnitude (sums of products cancel)."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * float(np.abs(expected).max()))


@pytest.mark.parametrize("mode", ["same", "symmetric"])
@pytest.mark.parametrize("h,w", [(9, 9), (8, 8), (7, 10)])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_forward_and_grads_equal_grouped_conv(mode, h, w, kernel, stride):
    x, k, pads, r = _case(h, w, kernel, stride, mode, seed=h * 7 + w + kernel)
    fns = [lambda x, k: _reference(x, k, stride, pads)]
    fns += [lambda x, k, impl=impl: depthwise_conv(x, k, stride, pads, impl) for impl in IMPLS]
    (y_ref, (gx_ref, gk_ref)), *results = _value_and_grads(fns, x, k, r, fast_compile=True)
    for impl, (y, (gx, gk)) in zip(IMPLS, results):
        assert y.dtype == gx.dtype == gk.dtype == jnp.float32, impl
        _close(y, y_ref, 1e-5)
        _close(gx, gx_ref, 1e-5)
        _close(gk, gk_ref, 1e-5)


@pytest.mark.parametrize("kernel,stride,h,w", [(1, 2, 8, 7), (7, 1, 6, 9), (7, 2, 11, 12), (2, 2, 8, 8)])
def test_custom_vjp_any_kernel_size(kernel, stride, h, w):
    # k=1 at stride 2 leaves phases of dx without taps; k=7 and even k=2 stress the offsets.
    # 'cpu_kernel' computes the kernel gradient in C++ (kernels.depthwise_kernel_grad) on CPU.
    x, k, pads, r = _case(h, w, kernel, stride, "same", seed=kernel + stride)
    impls = ["shift", "cpu_kernel"] if jax.default_backend() == "cpu" else ["shift"]
    fns = [lambda x, k: _reference(x, k, stride, pads)]
    fns += [lambda x, k, impl=impl: depthwise_conv(x, k, stride, pads, impl) for impl in impls]
    (y_ref, (gx_ref, gk_ref)), *results = _value_and_grads(fns, x, k, r)
    for y, (gx, gk) in results:
        _close(y, y_ref, 1e-5)
        _close(gx, gx_ref, 1e-5)
        _close(gk, gk_ref, 1e-5)


@pytest.mark.parametrize("kernel,stride", [(3, 1), (5, 2)])
def test_bfloat16_in_bfloat16_out_and_close_to_float32(kernel, stride):
    x, k, pads, r = _case(12, 12, kernel, stride, "same", c=16, dtype=jnp.bfloat16, seed=3)
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    [(y_ref, (gx_ref, gk_ref))] = _value_and_grads([lambda x, k: _reference(x, k, stride, pads)], f32(x), f32(k), r)
    [(y, (gx, gk))] = _value_and_grads([lambda x, k: depthwise_conv(x, k, stride, pads, "shift")], x, k, r)
    assert y.dtype == gx.dtype == gk.dtype == jnp.bfloat16
    _close(y, y_ref, 2e-2)
    _close(gx, gx_ref, 2e-2)
    _close(gk, gk_ref, 2e-2)


def test_shift_uses_the_custom_vjp_and_autodiff_does_not():
    x, k, pads, _ = _case(8, 8, 3, 1, "same")
    jaxpr = lambda impl: str(jax.make_jaxpr(lambda x, k: depthwise_conv(x, k, 1, pads, impl))(x, k))  # noqa: E731
    assert "custom_vjp_call" in jaxpr("shift")
    assert "custom_vjp_call" not in jaxpr("shift_autodiff")


def test_impl_names():
    assert resolve_dw_impl("auto") == ("shift" if jax.default_backend() == "cpu" else "xla")
    assert resolve_dw_impl("shift_autodiff") == "shift_autodiff"
    with pytest.raises(ValueError, match="dw_impl"):
        resolve_dw_impl("shift_vjp")


def test_model_grads_default_impl_equal_xla():
    """Under jit + grad inside the Flax model (train mode, BN, drop path) 'auto' equals 'xla'."""
    kw = dict(width_mult=0.25, depth_mult=0.25, num_classes=5)
    ref_model = create_model("efficientnet_b0", dw_impl="xla", **kw)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 32, 32, 3), np.float32))
    labels = jnp.arange(4) % 5
    init = jax.jit(lambda x: ref_model.init(jax.random.key(1), x, train=False))
    v = init.lower(x).compile(compiler_options=FAST_COMPILE)(x)

    def grads(model):
        def loss(params):
            logits, _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                                    mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
        step = jax.jit(jax.value_and_grad(loss)).lower(v["params"]).compile(compiler_options=FAST_COMPILE)
        return jax.tree.map(np.asarray, step(v["params"]))

    loss_ref, g_ref = grads(ref_model)
    loss, g = grads(create_model("efficientnet_b0", **kw))  # dw_impl='auto'
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    flat_ref = jax.tree_util.tree_leaves_with_path(g_ref)
    flat = jax.tree.leaves(g)
    assert len(flat) == len(flat_ref)
    # Per leaf, relative to its own scale; plus a floor from the largest gradient, because the
    # project_bn biases' gradients are mathematically zero (the next BN removes the mean) and
    # only float noise (~1e-6) is left to compare there.
    floor = 1e-6 * max(np.abs(r).max() for _, r in flat_ref)
    dw_kernels = 0
    for (path, ref), got in zip(flat_ref, flat):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max() + floor,
                                   err_msg=jax.tree_util.keystr(path))
        dw_kernels += "dw_conv" in jax.tree_util.keystr(path)
    assert dw_kernels == len([k for k in g_ref if k.startswith("stage")])  # every B0 block has one
