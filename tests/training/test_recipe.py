"""Pins of the training recipe against TF's formulas and hand computations."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from efficientnet_jax.models.layers import DropPath
from efficientnet_jax.training import losses
from efficientnet_jax.training.ema import ema_decay, ema_update
from efficientnet_jax.training.optim import clip_by_global_norm, global_norm, make_optimizer, make_schedule, peak_learning_rate, weight_decay_mask


def _opt_config(**kw):
    c = ml_collections.ConfigDict(dict(
        optimizer="rmsprop", weight_decay=0.0, grad_clip_norm=0.0,
        opt=dict(momentum=0.9, nesterov=False, rms_decay=0.9, rms_eps=1e-3, rms_initial_scale=1.0,
                 b1=0.9, b2=0.999, adam_eps=1e-8),
    ))
    c.update(kw)
    return c


# --- Learning rate ------------------------------------------------------------------------------

def tf_learning_rate(step, peak, steps_per_epoch, warmup_epochs=5, decay_epochs=2.4, decay=0.97):
    """tensorflow/tpu efficientnet utils.build_learning_rate('exponential') via TF's own op."""
    import tensorflow as tf

    decay_steps = steps_per_epoch * decay_epochs
    lr = tf.compat.v1.train.exponential_decay(peak, step, decay_steps, decay, staircase=True)
    lr = float(lr() if callable(lr) else lr)
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    return peak * step / warmup_steps if step < warmup_steps else lr


def test_exponential_schedule_matches_tf():
    spe = 1_281_167 // 2048  # B0 on ImageNet at batch 2048
    peak = peak_learning_rate(0.016, 2048)
    assert peak == pytest.approx(0.128)
    sched = make_schedule("exponential", peak, spe, total_steps=350 * spe)
    for step in (0, 1, 1000, 3124, 3125, 3126, 4499, 4500, 10_000, 100_000, 218_000):
        assert float(sched(step)) == pytest.approx(tf_learning_rate(step, peak, spe), rel=1e-5), step
    # The staircase counts from step 0: right after warm-up the lr is already 0.97**2 * peak.
    assert float(sched(5 * spe)) == pytest.approx(peak * 0.97 ** math.floor(5 / 2.4), rel=1e-6)


def test_cosine_and_constant_schedules():
    sched = make_schedule("cosine", 1.0, steps_per_epoch=10, total_steps=110, warmup_epochs=1, lr_min=0.1)
    assert float(sched(5)) == pytest.approx(0.5)
    assert float(sched(10)) == pytest.approx(1.0)
    assert float(sched(60)) == pytest.approx(0.55)
    assert float(sched(110)) == pytest.approx(0.1)
    const = make_schedule("constant", 0.3, steps_per_epoch=10, total_steps=100, warmup_epochs=0)
    assert float(const(0)) == float(const(99)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="config.schedule"):
        make_schedule("linear", 1.0, 10, 100)


# --- RMSProp as TF ------------------------------------------------------------------------------

def test_rmsprop_tf_steps_equal_hand_computation():
    """TF1 RMSPropOptimizer: ms = 0.9 ms + 0.1 g^2 (ms0 = 1); mom = 0.9 mom + lr g / sqrt(ms + eps)."""
    lr, wd = 0.1, 0.01
    tx = make_optimizer(_opt_config(weight_decay=wd), lambda step: lr)
    params = {"conv": {"kernel": jnp.array([0.5, -1.0])}, "bn": {"bias": jnp.array([2.0])}}
    grads = [{"conv": {"kernel": jnp.array([0.3, 0.2])}, "bn": {"bias": jnp.array([-0.4])}},
             {"conv": {"kernel": jnp.array([-0.1, 0.6])}, "bn": {"bias": jnp.array([0.5])}}]
    state = tx.init(params)
    w = {"k": np.array([0.5, -1.0]), "b": np.array([2.0])}
    ms = {"k": np.ones(2), "b": np.ones(1)}
    mom = {"k": np.zeros(2), "b": np.zeros(1)}
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        hand_g = {"k": np.asarray(g["conv"]["kernel"]) + wd * w["k"],  # coupled L2 on the kernel only
                  "b": np.asarray(g["bn"]["bias"])}
        for k in w:
            ms[k] = 0.9 * ms[k] + 0.1 * hand_g[k] ** 2
            mom[k] = 0.9 * mom[k] + lr * hand_g[k] / np.sqrt(ms[k] + 1e-3)
            w[k] = w[k] - mom[k]
        np.testing.assert_allclose(params["conv"]["kernel"], w["k"], rtol=1e-6)
        np.testing.assert_allclose(params["bn"]["bias"], w["b"], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_other_optimizers_build_and_step(name):
    tx = make_optimizer(_opt_config(optimizer=name, weight_decay=1e-4, grad_clip_norm=1.0), lambda s: 0.1)
    params = {"kernel": jnp.ones(3)}
    updates, _ = tx.update({"kernel": jnp.full(3, 10.0)}, tx.init(params), params)
    assert np.all(np.asarray(updates["kernel"]) < 0)
    with pytest.raises(ValueError, match="config.optimizer"):
        make_optimizer(_opt_config(optimizer="lamb"), lambda s: 0.1)


def test_gradient_clipping_bounds_the_update():
    tx = make_optimizer(_opt_config(optimizer="sgd", grad_clip_norm=1.0), lambda s: 1.0)
    params = {"kernel": jnp.zeros(2)}
    updates, _ = tx.update({"kernel": jnp.array([30.0, 40.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], [-0.6, -0.8], rtol=1e-6)


def test_global_norm_and_clipping_match_optax_on_a_mixed_tree():
    rng = np.random.default_rng(0)
    tree = {"a": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 1, 8)), jnp.float32)},
            "b": jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16), "c": jnp.float32(2.0)}
    exact = math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in jax.tree.leaves(tree)))
    np.testing.assert_allclose(global_norm(tree), exact, rtol=1e-6)  # bf16 leaves squared in float32
    np.testing.assert_allclose(global_norm(tree), optax.tree.norm(tree), rtol=2e-4)  # optax: in bf16
    assert global_norm({}).shape == () and float(global_norm({})) == 0.0
    tree32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)  # optax's norm is exact here
    norm = float(optax.tree.norm(tree32))
    for max_norm in (norm / 3, norm * 2):  # clipped, then left alone
        ours, _ = clip_by_global_norm(max_norm).update(tree32, optax.EmptyState())
        ref, _ = optax.clip_by_global_norm(max_norm).update(tree32, optax.EmptyState())
        for o, r in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(o, r, rtol=1e-5)
        scale = min(1.0, max_norm / norm)
        np.testing.assert_allclose(global_norm(ours), norm * scale, rtol=1e-5)


# --- Weight decay mask ----------------------------------------------------------------------------

def test_weight_decay_mask_selects_conv_and_dense_kernels_only():
    import efficientnet_jax

    model = efficientnet_jax.create_model("efficientnet_b0", num_classes=5, width_mult=0.25, depth_mult=0.25)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))["params"]
    flat = jax.tree_util.tree_flatten_with_path(weight_decay_mask(params))[0]
    mask = {"/".join(str(k.key) for k in p): v for p, v in flat}
    assert mask["stem_conv/kernel"] and mask["classifier/kernel"] and mask["head_conv/kernel"]
    assert mask["stage1_block0/dw_conv/kernel"] and mask["stage1_block0/se/reduce/kernel"]
    assert not mask["classifier/bias"] and not mask["stage1_block0/se/reduce/bias"]
    assert not mask["stem_bn/scale"] and not mask["stem_bn/bias"] and not mask["head_bn/scale"]
    assert sum(mask.values()) == sum(k.endswith("/kernel") for k in mask)
    assert sum(not v for v in mask.values()) == sum(k.endswith(("/bias", "/scale")) for k in mask)


def test_weight_decay_reaches_kernels_only():
    tx = make_optimizer(_opt_config(optimizer="sgd", weight_decay=0.1), lambda s: 1.0)
    params = {"dense": {"kernel": jnp.full(2, 2.0), "bias": jnp.full(2, 2.0)}, "bn": {"scale": jnp.full(2, 2.0)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["dense"]["kernel"], [-0.2, -0.2])
    np.testing.assert_allclose(updates["dense"]["bias"], [0.0, 0.0])
    np.testing.assert_allclose(updates["bn"]["scale"], [0.0, 0.0])


# --- EMA ------------------------------------------------------------------------------------------

def test_ema_warmup_decay_is_tf_formula():
    for t in (0, 1, 10, 100, 1000, 10**6):
        assert float(ema_decay(t, 0.9999)) == pytest.approx(min(0.9999, (1 + t) / (10 + t)), rel=1e-6)
    assert float(ema_decay(1, 0.9999)) == pytest.approx(2 / 11)  # TF num_updates=1 after the first step


def test_ema_update_averages_params_and_stats_in_float32():
    avg = {"params": {"w": jnp.array([1.0])}, "batch_stats": {"mean": jnp.array([0.0])}}
    new = {"params": {"w": jnp.array([3.0], jnp.bfloat16)}, "batch_stats": {"mean": jnp.array([10.0])}}
    out = ema_update(avg, new, step=1, decay=0.9999)  # decay_1 = 2/11
    d = 2 / 11
    np.testing.assert_allclose(out["params"]["w"], [d * 1 + (1 - d) * 3], rtol=1e-6)
    np.testing.assert_allclose(out["batch_stats"]["mean"], [(1 - d) * 10], rtol=1e-6)
    assert out["params"]["w"].dtype == jnp.float32


# --- Label smoothing and accuracy ---------------------------------------------------------------------

def test_label_smoothing_matches_tf_and_hand_value():
    import keras  # Keras 3 (on the JAX backend in these tests): TF's smoothing formula

    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0]], np.float32)
    onehot = np.eye(4, dtype=np.float32)[[0, 2]]
    ours = np.asarray(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(onehot), 0.1))
    ref = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction="none")
    np.testing.assert_allclose(ours, np.asarray(ref(onehot, logits)), rtol=1e-5)
    logp = logits[0] - np.log(np.sum(np.exp(logits[0])))
    target = np.array([0.9 + 0.025, 0.025, 0.025, 0.025])
    assert ours[0] == pytest.approx(-np.sum(target * logp), rel=1e-5)


def test_cross_entropy_is_float32_and_checks_shapes():
    logits = jnp.array([[100.0, -100.0]], jnp.bfloat16)
    assert losses.cross_entropy(logits, jnp.array([[1.0, 0.0]]), 0.1).dtype == jnp.float32
    with pytest.raises(ValueError, match="differ in shape"):
        losses.cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


def test_topk_correct():
    logits = jnp.array([[0.1, 0.5, 0.2, 0.9], [3.0, 1.0, 2.0, 0.0]])
    labels = jnp.array([2, 0])
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 1), [0.0, 1.0])
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 2), [0.0, 1.0])
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 3), [1.0, 1.0])


# --- Stochastic depth ---------------------------------------------------------------------------------

def test_stochastic_depth_keeps_the_expectation():
    x = jnp.ones((20_000, 2, 2, 3))
    layer = DropPath(rate=0.3)
    y = layer.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    per_sample = np.asarray(y[:, 0, 0, 0])
    kept = per_sample != 0
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.7], rtol=1e-6)  # survivors scaled by 1/keep
    flat = np.asarray(y).reshape(len(x), -1)
    np.testing.assert_array_equal(flat, np.repeat(flat[:, :1], flat.shape[1], axis=1))  # whole samples
    assert kept.mean() == pytest.approx(0.7, abs=0.015)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_array_equal(layer.apply({}, x, train=False), x)


# --- Mixed precision ------------------------------------------------------------------------------

def test_bfloat16_step_keeps_params_stats_loss_and_ema_in_float32():
    import efficientnet_jax
    from efficientnet_jax.training import state as state_lib
    from efficientnet_jax.training import steps
    from efficientnet_jax.training.experiment import FAST_COMPILE

    model = efficientnet_jax.create_model("efficientnet_b0", num_classes=4, width_mult=0.25, depth_mult=0.01,
                                          dtype="bfloat16", dw_impl="xla")
    tx = make_optimizer(_opt_config(weight_decay=1e-5), lambda s: 0.01)
    variables = efficientnet_jax.init_variables(model, jax.random.PRNGKey(0), 16)
    state = state_lib.create_train_state(variables, tx, jax.random.PRNGKey(1), use_ema=True)
    batch = {"image": jnp.ones((4, 16, 16, 3)), "label": jnp.arange(4), "label_onehot": jnp.eye(4)}
    step = jax.jit(lambda s, b: steps.train_step(s, b, model=model, tx=tx, schedule=lambda t: 0.01,
                                                 label_smoothing=0.1, ema_decay=0.9999),
                   compiler_options=FAST_COMPILE)
    new, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and metrics["loss"].dtype == jnp.float32
    for tree in (new.params, new.batch_stats, new.ema_params, new.ema_batch_stats):
        assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}
    assert int(new.step) == 1
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params, state.params)
    assert max(jax.tree.leaves(moved)) > 0  # the update went through
