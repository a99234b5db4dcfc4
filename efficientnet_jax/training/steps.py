"""The train and eval steps: pure functions of (state, batch), jitted with explicit shardings.

The state is replicated and donated; the batch is a global array sharded along 'data'. Mixed
precision lives in the model (`dtype='bfloat16'` computes convolutions in bf16 while params,
BN statistics, the classifier, the loss and the EMA stay float32).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from efficientnet_jax.training import losses, parallel
from efficientnet_jax.training.ema import ema_update
from efficientnet_jax.training.optim import Schedule, global_norm
from efficientnet_jax.training.state import TrainState

Batch = Dict[str, jax.Array]
Metrics = Dict[str, jax.Array]


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: Schedule,
    label_smoothing: float,
    ema_decay: float,
) -> Tuple[TrainState, Metrics]:
    """One optimizer update on a global batch {'image', 'label', 'label_onehot'}.

    Dropout and stochastic depth draw from `fold_in(state.rng, state.step)`, so a step's
    randomness depends only on the seed and the step number (exact resume, any device count).
    """
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        logits, mutated = model.apply(
            {"params": params, "batch_stats": state.batch_stats}, batch["image"],
            train=True, mutable=["batch_stats"], rngs={"dropout": rng},
        )
        loss = losses.cross_entropy(logits, batch["label_onehot"], label_smoothing).mean()
        return loss, (logits, mutated["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
    if ema_params is not None:
        ema_params = ema_update(ema_params, params, step, ema_decay)
        ema_batch_stats = ema_update(ema_batch_stats, batch_stats, step, ema_decay)
    new_state = state.replace(
        step=step, params=params, batch_stats=batch_stats, opt_state=opt_state,
        ema_params=ema_params, ema_batch_stats=ema_batch_stats,
    )
    metrics = {
        "loss": loss,
        "top1": losses.topk_correct(logits, batch["label"], 1).mean(),
        "grad_norm": global_norm(grads),  # one fusion, not one per leaf (compile time)
        "lr": schedule(state.step),  # the lr this update used
    }
    return new_state, metrics


def eval_step(variables: Dict[str, Any], batch: Batch, *, model: nn.Module) -> Metrics:
    """Masked sums over a global eval batch {'image', 'label', 'mask'}: padded examples count 0.

    The loss is plain cross-entropy (no label smoothing), so it is comparable across recipes.
    """
    logits = model.apply(variables, batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)
    onehot = jax.nn.one_hot(batch["label"], logits.shape[-1], dtype=jnp.float32)
    return {
        "loss": jnp.sum(losses.cross_entropy(logits, onehot) * mask),
        "top1": jnp.sum(losses.topk_correct(logits, batch["label"], 1) * mask),
        "top5": jnp.sum(losses.topk_correct(logits, batch["label"], 5) * mask),
        "count": jnp.sum(mask),
    }


def jit_train_step(
    mesh: Mesh, model: nn.Module, tx: optax.GradientTransformation, schedule: Schedule,
    label_smoothing: float, ema_decay: float, compiler_options: Optional[Dict[str, Any]] = None,
) -> Callable[[TrainState, Batch], Tuple[TrainState, Metrics]]:
    """`train_step` bound to a model/recipe, jitted: state replicated and donated, batch on 'data'."""

    def step(state, batch):
        return train_step(
            state, batch, model=model, tx=tx, schedule=schedule,
            label_smoothing=label_smoothing, ema_decay=ema_decay,
        )

    rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0,
                   compiler_options=compiler_options)


def jit_eval_step(
    mesh: Mesh, model: nn.Module, compiler_options: Optional[Dict[str, Any]] = None
) -> Callable[[Dict[str, Any], Batch], Metrics]:
    rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    return jax.jit(lambda v, b: eval_step(v, b, model=model), in_shardings=(rep, data), out_shardings=rep,
                   compiler_options=compiler_options)
