"""Keras 3 applications on the JAX backend, in a worker (KERAS_BACKEND=jax is set by `_worker.py`).

Stock Keras, untouched: its depthwise convolutions go through XLA's grouped convolution, which
is the gap our `dw_impl` closes on CPU. Inference and training are one `jax.jit` of
`stateless_call`, which is what `predict_on_batch` / a jitted Keras train step run.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import keras
import numpy as np

Fn = Callable[[], Any]


def _build(cls_name: str, resolution: int, precision: str):
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cls = getattr(keras.applications, cls_name)
    return cls(weights=None, input_shape=(resolution, resolution, 3), classes=1000, classifier_activation=None)


class KerasInference:
    def __init__(self, cls_name: str, resolution: int, precision: str):
        self.model = _build(cls_name, resolution, precision)
        self.resolution = resolution
        self.tv = [jnp.array(v.value) for v in self.model.trainable_variables]
        self.ntv = [jnp.array(v.value) for v in self.model.non_trainable_variables]
        model = self.model

        @jax.jit
        def fwd(tv, ntv, x):
            y, _ = model.stateless_call(tv, ntv, x, training=False)
            return y

        self.fwd = fwd
        self.notes = [f"keras.applications.{cls_name}(weights=None)", "jit(stateless_call)",
                      f"dtype policy {keras.mixed_precision.global_policy().name}"]

    def make(self, batch: int) -> Fn:
        r = self.resolution
        x = jax.device_put(np.random.default_rng(0).random((batch, r, r, 3), np.float32))
        compiled = self.fwd.lower(self.tv, self.ntv, x).compile()
        return lambda: compiled(self.tv, self.ntv, x).block_until_ready()


class KerasTrain:
    """value_and_grad of stateless_call(training=True), BN statistics threaded through, optax SGD-momentum."""

    def __init__(self, cls_name: str, resolution: int, precision: str):
        import optax

        self.model = _build(cls_name, resolution, precision)
        self.resolution = resolution
        model = self.model
        tx = optax.sgd(0.01, momentum=0.9)
        tv = [jnp.array(v.value) for v in model.trainable_variables]
        ntv = [jnp.array(v.value) for v in model.non_trainable_variables]
        self.state = (tv, ntv, tx.init(tv))

        def loss_fn(tv, ntv, x, y):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean(), ntv

        def step(state, x, y):
            tv, ntv, opt_state = state
            (loss, ntv), g = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x, y)
            upd, opt_state = tx.update(g, opt_state, tv)
            return (optax.apply_updates(tv, upd), ntv, opt_state), loss

        self.step = jax.jit(step, donate_argnums=0)
        self.notes = [f"keras.applications.{cls_name}(weights=None)", "jit(value_and_grad(stateless_call))",
                      "optimizer: optax.sgd momentum"]

    def make(self, batch: int) -> Fn:
        r = self.resolution
        rng = np.random.default_rng(0)
        x = jax.device_put(rng.random((batch, r, r, 3), np.float32))
        y = jax.device_put(rng.integers(0, 1000, batch).astype(np.int32))
        compiled = self.step.lower(self.state, x, y).compile()

        def run():
            self.state, loss = compiled(self.state, x, y)
            loss.block_until_ready()

        return run
