"""The train state: one pytree holding everything a step reads and writes. No globals."""

from __future__ import annotations

from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from efficientnet_jax.models.registry import initial_variables


@flax.struct.dataclass
class TrainState:
    """Everything needed to continue training exactly (the data position is `step`).

    `ema_params` / `ema_batch_stats` are None when EMA is off. `rng` is a raw uint32[2] key;
    each step folds its step number into it, so no key is ever threaded through Python.
    """

    step: jax.Array  # int32 scalar: optimizer updates done so far
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    ema_batch_stats: Any
    rng: jax.Array

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}

    @property
    def ema_variables(self) -> Optional[dict]:
        if self.ema_params is None:
            return None
        return {"params": self.ema_params, "batch_stats": self.ema_batch_stats}


def init_variables(model: nn.Module, rng: jax.Array, image_size: int) -> dict:
    """{'params', 'batch_stats'} of `model` for NHWC images of `image_size` (batch of 1), traceable:
    `models.registry.initial_variables` (every kernel from two random draws, seconds less compile)."""
    return initial_variables(model, rng, image_size)


def create_train_state(
    variables: dict, tx: optax.GradientTransformation, rng: jax.Array, use_ema: bool
) -> TrainState:
    """A fresh state at step 0 from initial `variables`; the EMA starts at the initial weights (as TF)."""
    params, batch_stats = variables["params"], variables["batch_stats"]

    def copy(tree):
        return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32), tree)

    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        ema_params=copy(params) if use_ema else None,
        ema_batch_stats=copy(batch_stats) if use_ema else None,
        rng=rng,
    )
