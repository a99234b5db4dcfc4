"""Folded inference through the fused CPU kernels: the same logits as model.apply, and only where
they belong (folded, float32, CPU; never in training or with dw_impl='xla'/'shift')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax import create_model, init_variables, kernels
from efficientnet_jax.inference import inference_fn
from efficientnet_jax.kernels import build
from efficientnet_jax.models.fold import fold_batch_norm
from efficientnet_jax.models.spec import build_blocks

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU kernel")

TARGET = "efficientnet_jax_fused_depthwise"
EXPAND = "efficientnet_jax_fused_expand_depthwise"
POINTWISE = "efficientnet_jax_fused_pointwise"
STEM = "efficientnet_jax_fused_stem"
ALL = (TARGET, EXPAND, POINTWISE, STEM)
SMALL = dict(width_mult=0.25, depth_mult=0.25, num_classes=7)


def _perturbed(model, size):
    """Variables whose BN statistics and affine parameters are far from (0, 1), as in test_fold."""
    v = init_variables(model, jax.random.key(1))
    rng = np.random.default_rng(2)

    def perturb(path, a):
        name, a = path[-1].key, np.asarray(a)
        u = rng.uniform(size=a.shape).astype(np.float32)
        if name in ("var", "scale"):
            return a * (0.5 + u)
        if name in ("mean", "bias") and len(path) > 1 and "bn" in path[-2].key:
            return a + u - 0.5
        return a

    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    return jax.tree_util.tree_map_with_path(perturb, dict(v)), x


def _folded_hlo(model, v, x) -> str:
    fmodel, fv = fold_batch_norm(model, v)
    return jax.jit(lambda x: fmodel.apply(fv, x, train=False)).lower(x).as_text()


# V1 (SE, swish, 3x3 and 5x5, a stage without expand), Lite (relu6, no SE), V2 (Fused-MBConv
# stages, then MBConv with SE).
@pytest.mark.parametrize("name,size", [("efficientnet_b0", 64), ("efficientnet_lite0", 64), ("efficientnetv2_b0", 64)])
def test_deployed_form_uses_the_kernel_and_matches_apply(name, size):
    model = create_model(name, **SMALL)  # dw_impl='auto'
    v, x = _perturbed(model, size)
    want = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
    hlo = _folded_hlo(model, v, x)
    mbconv = [b for b in build_blocks(model.spec) if b.block == "mbconv"]
    n_expand = sum(1 for b in mbconv if b.expand_ratio != 1)
    # Fused-MBConv: the project conv of those with an expand conv (which stays XLA's).
    n_fused_project = sum(1 for b in build_blocks(model.spec) if b.block == "fused" and b.expand_ratio != 1)
    # Every MBConv: its middle (with the expand conv where it has one) and its project conv (with
    # the SE gate); the head conv and the classifier.
    assert n_expand > 0 and hlo.count(f"custom_call @{EXPAND}(") == n_expand
    assert hlo.count(f"custom_call @{TARGET}(") == len(mbconv) - n_expand
    assert hlo.count(f"custom_call @{POINTWISE}(") == len(mbconv) + n_fused_project + 2  # + head conv, classifier
    assert hlo.count(f"custom_call @{STEM}(") == 1
    got = inference_fn(model, v)(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The XLA lowering of the same folded model: the kernel changes nothing but the speed.
    xla = inference_fn(model.clone(dw_impl="shift"), v)(x)
    np.testing.assert_allclose(got, xla, rtol=1e-4, atol=1e-5)



def test_fused_mbconv_project_with_skip():
    """V2-S at half depth has Fused-MBConv blocks with an expand conv and a skip: their project
    conv runs on the 1x1 kernel. 21 blocks of perturbed BN make the logits large (~100s) and
    ill-conditioned: XLA's own folded program differs from model.apply by ~3e-4 relative, so the
    kernels are held to that, not to 1e-4 (a wrong kernel is off by O(1))."""
    model = create_model("efficientnetv2_s", **{**SMALL, "depth_mult": 0.5})
    blocks = build_blocks(model.spec)
    fused_project = [b for b in blocks if b.block == "fused" and b.expand_ratio != 1]
    assert any(b.has_skip for b in fused_project)
    v, x = _perturbed(model, 64)
    hlo = _folded_hlo(model, v, x)
    n_mbconv = sum(1 for b in blocks if b.block == "mbconv")
    assert hlo.count(f"custom_call @{POINTWISE}(") == n_mbconv + len(fused_project) + 2
    want = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x))
    rel = lambda a: float(np.max(np.abs(np.asarray(a) - want) / (np.abs(want) + 1e-3)))
    xla_error = rel(inference_fn(model.clone(dw_impl="shift"), v)(x))
    assert rel(inference_fn(model, v)(x)) <= max(2 * xla_error, 1e-4)

@pytest.mark.parametrize("dw_impl", ["xla", "shift"])
def test_other_lowerings_keep_xla(dw_impl):
    model = create_model("efficientnet_b0", dw_impl=dw_impl, **SMALL)
    v, x = _perturbed(model, 32)
    hlo = _folded_hlo(model, v, x)
    assert not any(t in hlo for t in ALL)


def test_never_in_training_forward_or_unfolded():
    """The fused inference kernels need folded BN: the unfolded program is XLA's. A training
    step's backward runs the depthwise dx on the depthwise kernel (models/depthwise.py), one call
    per stride-1 block and four per stride-2 block; nothing else of these kernels is in it."""
    model = create_model("efficientnet_b0", dw_impl="cpu_kernel", **SMALL)
    v, x = _perturbed(model, 32)
    hlo = jax.jit(lambda x: model.apply(v, x, train=False)).lower(x).as_text()
    assert not any(t in hlo for t in ALL)

    def loss(params):
        out, _ = model.apply(dict(v, params=params), x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(3)})
        return jnp.sum(out)

    hlo = jax.jit(jax.grad(loss)).lower(v["params"]).as_text()
    strides = [b.stride for b in build_blocks(model.spec)]
    assert hlo.count(f"@{TARGET}") == sum(1 if s == 1 else 4 for s in strides)
    assert not any(t in hlo for t in ALL if t != TARGET)


def test_bfloat16_keeps_xla():
    model = create_model("efficientnet_b0", dtype="bfloat16", **SMALL)
    v, x = _perturbed(model, 32)
    hlo = _folded_hlo(model, v, x)
    assert not any(t in hlo for t in ALL)


def test_auto_falls_back_when_the_kernel_cannot_be_built(monkeypatch):
    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("EFFICIENTNET_JAX_CPU_KERNELS", "0")
    model = create_model("efficientnet_b0", **SMALL)
    v, x = _perturbed(model, 32)
    hlo = _folded_hlo(model, v, x)
    assert not any(t in hlo for t in ALL)
    with pytest.raises(kernels.KernelUnavailable, match="disabled"):  # 'cpu_kernel' insists
        _folded_hlo(model.clone(dw_impl="cpu_kernel"), v, x)
