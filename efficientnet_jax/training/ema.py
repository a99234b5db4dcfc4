"""Exponential moving average of the weights *and* the BN statistics, as TF does it.

TF's `ExponentialMovingAverage(decay, num_updates=global_step)` uses
`decay_t = min(decay, (1 + t) / (10 + t))`, so early in training the average follows the
weights closely instead of being stuck near the random init. The official code averages the
trainable variables and the BN moving mean/variance (google/automl efficientnetv2
utils.get_ema_vars); eval reads the averages.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_decay(step: Any, decay: float) -> jax.Array:
    """TF's warm-up decay `min(decay, (1 + t) / (10 + t))` for update number `t`."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def ema_update(average: Any, new: Any, step: Any, decay: float) -> Any:
    """`d * average + (1 - d) * new` leaf by leaf, in float32 whatever the compute dtype.

    `step` is TF's `num_updates`: the global step *after* the optimizer update it follows
    (TF applies the average under a control dependency on the train op, which has already
    incremented global_step), i.e. 1 for the first update.
    """
    d = ema_decay(step, decay)
    return jax.tree.map(
        lambda a, x: (d * a.astype(jnp.float32) + (1.0 - d) * x.astype(jnp.float32)).astype(a.dtype),
        average, new,
    )
