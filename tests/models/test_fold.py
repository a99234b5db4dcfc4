"""BatchNorm folded into the convs (models/fold.py) and the deployment forward (inference.py)."""

import jax
import numpy as np
import pytest

from efficientnet_jax import create_model, init_variables
from efficientnet_jax.inference import inference_fn
from efficientnet_jax.models.fold import fold_batch_norm

SMALL = dict(width_mult=0.25, depth_mult=0.25, dw_impl="xla")  # fast compiles; the fold is lowering-agnostic


def _variables(model, size=64, batch=2):
    """Initialised variables with BN statistics and affine parameters far from (0, 1), so a fold
    that dropped or misapplied any of them shows in the logits."""
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
    v = init_variables(model, jax.random.key(1))  # the unoptimised init compile: ~2x quicker than jit(init)
    rng = np.random.default_rng(2)  # all on the host: eager jax ops would compile one program per leaf shape

    def perturb(path, a):
        name, a = path[-1].key, np.asarray(a)
        u = rng.uniform(size=a.shape).astype(np.float32)
        if name in ("var", "scale"):
            return a * (0.5 + u)  # positive
        if name in ("mean", "bias") and len(path) > 1 and "bn" in path[-2].key:
            return a + u - 0.5
        return a

    return jax.tree_util.tree_map_with_path(perturb, dict(v)), x


def _eval_apply(model):
    """One jitted eval-mode apply per model: every call with same-shaped variables reuses its compile."""
    return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.fixture(scope="module")
def b0():
    """(model, perturbed variables, images) of a small B0, initialised once for the module."""
    model = create_model("efficientnet_b0", num_classes=7, **SMALL)
    return (model, *_variables(model))


@pytest.fixture(scope="module")
def b0_apply(b0):
    return _eval_apply(b0[0])


@pytest.fixture(scope="module")
def b0_logits(b0, b0_apply):
    _, v, x = b0
    return b0_apply(v, x)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnetv2_s"])  # MBConv + SE, and Fused-MBConv
def test_folded_model_matches_apply(name, request):
    if name == "efficientnet_b0":  # the module's model and its compiled apply
        model, v, x = request.getfixturevalue("b0")
        apply = request.getfixturevalue("b0_apply")
    else:
        model = create_model(name, num_classes=7, **SMALL)
        v, x = _variables(model)
        apply = _eval_apply(model)
    want = apply(v, x)
    fmodel, fv = fold_batch_norm(model, v)
    assert set(fv) == {"params"}
    # Every BN keeps only its bias; every conv keeps its kernel's shape.
    bn_keys = {tuple(sorted(d)) for p, d in _scopes(fv["params"]) if p.endswith("_bn")}
    assert bn_keys == {("bias",)}
    assert jax.tree.map(np.shape, _kernels(fv["params"])) == jax.tree.map(np.shape, _kernels(v["params"]))
    got = jax.jit(lambda v, x: fmodel.apply(v, x, train=False))(fv, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The perturbed statistics matter: the fold is not passing by luck.
    fresh = apply(dict(v, batch_stats=jax.tree.map(np.ones_like, v["batch_stats"])), x)
    assert not np.allclose(want, fresh, atol=1e-3)


def test_folded_init_has_the_folded_layout(b0):
    model, v, x = b0
    fmodel, fv = fold_batch_norm(model, v)
    init = jax.eval_shape(lambda: fmodel.init(jax.random.key(0), x, train=False))
    assert jax.tree.map(lambda a: a.shape, init) == jax.tree.map(np.shape, fv)


def test_inference_fn_forms_agree(b0, b0_logits):
    model, v, x = b0
    want = b0_logits
    # None: the CPU inference compiler options (dots on XLA's emitter); {}: XLA's defaults.
    for fold, const, opts in [(True, True, None), (True, False, None), (False, True, None), (True, True, {})]:
        got = inference_fn(model, v, fold_bn=fold, constant_weights=const, compiler_options=opts)(x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"fold_bn={fold} const={const} opts={opts}")


def test_folded_model_refuses_training_and_refolding(b0):
    model, v, x = b0
    fmodel, fv = fold_batch_norm(model, v)
    with pytest.raises(ValueError, match="folded BatchNorm has no statistics to train"):
        fmodel.apply(fv, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    with pytest.raises(ValueError, match="already folded"):
        fold_batch_norm(fmodel, fv)


def test_fold_names_the_broken_variable(b0):
    model, v, _ = b0
    with pytest.raises(ValueError, match="batch_stats"):
        fold_batch_norm(model, {"params": v["params"]})
    stats = jax.tree.map(lambda a: a, v["batch_stats"])  # a copy: the fixture is shared
    stats["stage1_block0"]["dw_bn"]["var"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"stage1_block0/dw_bn/var: shape \(3,\)"):
        fold_batch_norm(model, {"params": v["params"], "batch_stats": stats})
    del stats["stage1_block0"]["dw_bn"]
    with pytest.raises(ValueError, match="stage1_block0/dw_bn: no batch_stats"):
        fold_batch_norm(model, {"params": v["params"], "batch_stats": stats})


def _scopes(tree, prefix=""):
    for k, d in tree.items():
        if isinstance(d, dict) and all(not isinstance(x, dict) for x in d.values()):
            yield f"{prefix}/{k}", d
        elif isinstance(d, dict):
            yield from _scopes(d, f"{prefix}/{k}")


def _kernels(tree):
    return {p: d["kernel"] for p, d in _scopes(tree) if "kernel" in d}
