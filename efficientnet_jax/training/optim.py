"""Learning-rate schedules and optimizers: the TF RMSProp recipe and the usual alternatives.

Every number is a config value (configs/common.py). The recipe facts come from the official
code (tensorflow/tpu models/official/efficientnet: utils.build_learning_rate / build_optimizer,
main.py; google/automl efficientnetv2 hparams.py), summarised in shared/reference/training.md §B.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[Any], jax.Array]

SCHEDULES = ("exponential", "cosine", "constant")
OPTIMIZERS = ("rmsprop", "sgd", "momentum", "adam", "adamw")


def peak_learning_rate(lr_base: float, batch_size: int, lr_batch_base: int = 256) -> float:
    """The linear scaling rule: lr = lr_base * batch / 256 (0.016 * 2048 / 256 = 0.128 for B0)."""
    return lr_base * batch_size / lr_batch_base


def make_schedule(
    name: str,
    peak: float,
    steps_per_epoch: int,
    total_steps: int,
    warmup_epochs: float = 5.0,
    decay_epochs: float = 2.4,
    decay_factor: float = 0.97,
    lr_min: float = 0.0,
) -> Schedule:
    """`step -> lr`, jit-friendly.

    - 'exponential' is TF's `exponential_decay(peak, step, decay_epochs * steps_per_epoch,
      decay_factor, staircase=True)`: the staircase counts from step 0, *not* from the end of the
      warm-up, so right after 5 warm-up epochs the lr is already 0.97**2 * peak.
    - 'cosine' decays from `peak` to `lr_min` over [warm-up end, total_steps].
    - 'constant' stays at `peak`.
    All three share TF's linear warm-up `peak * step / warmup_steps` for step < warmup_steps.
    """
    if name not in SCHEDULES:
        raise ValueError(f"config.schedule={name!r}: expected one of {SCHEDULES}")
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    warmup_steps = int(warmup_epochs * steps_per_epoch)  # int() as TF's `int(warmup_epochs * spe)`
    decay_steps = decay_epochs * steps_per_epoch  # a float, as in TF

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        if name == "exponential":
            lr = peak * decay_factor ** jnp.floor(t / decay_steps)
        elif name == "cosine":
            span = max(total_steps - warmup_steps, 1)
            frac = jnp.clip((t - warmup_steps) / span, 0.0, 1.0)
            lr = lr_min + 0.5 * (peak - lr_min) * (1.0 + jnp.cos(math.pi * frac))
        else:
            lr = jnp.full_like(t, peak)
        if warmup_steps > 0:
            lr = jnp.where(t < warmup_steps, peak * t / warmup_steps, lr)
        return lr

    return schedule


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves of `tree` together (float32), as one reduction.

    Same value as `optax.tree.norm`, but over the concatenated leaves: XLA CPU compiles every
    per-leaf square-and-sum of optax's form as its own fusion (~330 for B0's 213 leaves), which
    cost 2.5-4 s of the B0 train step's 11-15 s compile on 2 CPU cores; the concatenation is one
    extra pass over the gradient (21 MB for B0).
    """
    leaves = [jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(jnp.sum(jnp.square(jnp.concatenate(leaves))))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` with the norm taken by `global_norm` (one fusion, not one per leaf)."""

    def update(updates, state, params=None):
        del params
        norm = global_norm(updates)
        keep = norm < max_norm

        def clip(t):
            return jnp.where(keep, t, (t / norm.astype(t.dtype)) * max_norm)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def weight_decay_mask(params: Any) -> Any:
    """True for conv and dense kernels, False for BN scale/bias and every bias.

    The V2 code excludes `.*(bias|gamma|beta).*` from the L2 term; every weight matrix in this
    project is a leaf named 'kernel', so the rule is "decay a leaf iff its name is kernel".
    """

    def is_kernel(path, _leaf):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return name == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(config: Any, schedule: Schedule) -> optax.GradientTransformation:
    """The optimizer named by `config.optimizer` with coupled L2, optional clipping.

    Coupled L2 (every optimizer but 'adamw'): `weight_decay * w` is added to the gradient
    *before* the RMS/Adam scaling, which is what TF's `loss += wd * sum(l2_loss(w))` does.
    'adamw' uses optax's decoupled decay instead. Clipping (`grad_clip_norm > 0`) acts on the
    full gradient, L2 term included, as automl's `gclip` does.
    """
    name = config.optimizer
    if name not in OPTIMIZERS:
        raise ValueError(f"config.optimizer={name!r}: expected one of {OPTIMIZERS}")
    o = config.opt
    parts = []
    if config.weight_decay and name != "adamw":
        parts.append(optax.add_decayed_weights(config.weight_decay, mask=weight_decay_mask))
    if config.grad_clip_norm:
        parts.append(clip_by_global_norm(config.grad_clip_norm))
    if name == "rmsprop":
        # optax chains scale_by_rms -> scale_by_learning_rate -> trace(momentum): the lr sits
        # inside the momentum buffer as in TF1's RMSPropOptimizer; eps inside the sqrt and the
        # mean square initialised to 1 are TF's, not optax's defaults (optax#49, PR #55).
        parts.append(optax.rmsprop(
            schedule, decay=o.rms_decay, eps=o.rms_eps, initial_scale=o.rms_initial_scale,
            eps_in_sqrt=True, momentum=o.momentum or None, nesterov=o.nesterov,
        ))
    elif name == "sgd":
        parts.append(optax.sgd(schedule))
    elif name == "momentum":
        parts.append(optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
    elif name == "adam":
        parts.append(optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.adam_eps))
    else:
        parts.append(optax.adamw(
            schedule, b1=o.b1, b2=o.b2, eps=o.adam_eps, weight_decay=config.weight_decay, mask=weight_decay_mask,
        ))
    return optax.chain(*parts)
