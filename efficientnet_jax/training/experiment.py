"""From a config to the objects of a run: data set facts, model, schedule, optimizer, stages.

Shared by the training loop and by eval.py so both resolve a config the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any, List, Optional

import jax
import ml_collections
import optax
from flax import linen as nn
from jax.sharding import Mesh

from efficientnet_jax import data as data_lib
from efficientnet_jax.models import create_model
from efficientnet_jax.training import parallel
from efficientnet_jax.training.optim import Schedule, make_optimizer, make_schedule, peak_learning_rate
from efficientnet_jax.training.pretrained import merge_pretrained
from efficientnet_jax.training.progressive import Stage, stages_from_config
from efficientnet_jax.training.state import TrainState, create_train_state, init_variables

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Experiment:
    """A config resolved against the data set, the model registry and the devices."""

    config: Any
    input_config: ml_collections.ConfigDict
    info: Any  # efficientnet_jax.data.dataset_info(...)
    model: nn.Module
    num_classes: int
    image_size: int  # final training size (the last progressive stage)
    eval_image_size: int
    steps_per_epoch: int
    total_steps: int
    schedule: Schedule
    tx: optax.GradientTransformation
    stages: List[Stage]
    mesh: Mesh

    @property
    def use_ema(self) -> bool:
        return bool(self.config.ema_decay)


def input_config(config: Any) -> ml_collections.ConfigDict:
    """`config.input` with `config.dataset` (the single source of truth) filled in."""
    inp = ml_collections.ConfigDict(config.input.to_dict())
    inp.dataset = config.dataset
    return inp


def pretrained_numerics(path: str) -> dict:
    """Padding and BN eps recorded with converted weights (timm's PyTorch-native models differ
    from the TF defaults); the model must compute with them for the weights to mean anything."""
    from efficientnet_jax.weights import read_metadata

    if not os.path.isdir(path):
        raise ValueError(f"config.init_from={path!r} is not a converted-weights directory; make one with "
                         "`python -m efficientnet_jax.tools.convert`")
    meta = read_metadata(path)
    return {k: meta[k] for k in ("padding", "bn_eps") if meta.get(k) is not None}


def build_model(config: Any, num_classes: int) -> nn.Module:
    """`create_model(config.model_name, ...)` with every non-None `config.model` override.

    With `config.init_from`, the weights' numerics (padding, BN eps) apply unless the config
    sets them explicitly.
    """
    overrides = {k: v for k, v in config.model.items() if v is not None}
    if config.init_from:
        overrides = {**pretrained_numerics(config.init_from), **overrides}
    return create_model(config.model_name, num_classes=num_classes, dtype=config.dtype, **overrides)


def resolve(config: Any) -> Experiment:
    inp = input_config(config)
    info = data_lib.info_from_config(inp)
    num_classes = config.num_classes or info.num_classes
    model = build_model(config, num_classes)
    spec = model.spec
    image_size = config.image_size or spec.train_resolution or spec.resolution
    eval_image_size = config.eval_image_size or spec.resolution
    parallel.check_batch_size(config.batch_size)
    parallel.check_batch_size(config.eval_batch_size, "config.eval_batch_size")
    # The pipeline's own epoch length (equal step counts on every process), never 0.
    steps_per_epoch = max(data_lib.steps_per_epoch(
        inp, global_batch_size=config.batch_size, process_count=jax.process_count()), 1)
    total_steps = config.total_steps or int(math.ceil(config.num_epochs * steps_per_epoch))
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0 (config.total_steps={config.total_steps}, "
                         f"num_epochs={config.num_epochs})")
    peak = peak_learning_rate(config.lr_base, config.batch_size, config.lr_batch_base)
    schedule = make_schedule(
        config.schedule, peak, steps_per_epoch, total_steps, warmup_epochs=config.warmup_epochs,
        decay_epochs=config.lr_decay_epochs, decay_factor=config.lr_decay_factor, lr_min=config.lr_min,
    )
    return Experiment(
        config=config, input_config=inp, info=info, model=model, num_classes=num_classes,
        image_size=image_size, eval_image_size=eval_image_size, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, schedule=schedule, tx=make_optimizer(config, schedule),
        stages=stages_from_config(config, total_steps, image_size), mesh=parallel.make_mesh(),
    )


def _init_fn(model: nn.Module, tx: optax.GradientTransformation, use_ema: bool):
    def init(seed_key, variables=None):
        init_key, train_key = jax.random.split(seed_key)
        if variables is None:
            # Parameter shapes do not depend on the image size: initialise on a small image.
            variables = init_variables(model, init_key, 32)
        return create_train_state(variables, tx, train_key, use_ema)

    return init


def abstract_state(exp: Experiment) -> TrainState:
    """The state's shapes/dtypes with the current (replicated) sharding: the restore target."""
    shapes = jax.eval_shape(_init_fn(exp.model, exp.tx, exp.use_ema), jax.random.PRNGKey(0))
    rep = parallel.replicated(exp.mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), shapes)


# Least compile time: no backend optimisation, no expensive LLVM passes, and XLA:CPU's legacy
# emitters instead of its fusion emitters (half the compile time of a small train step on CPU;
# other backends ignore the xla_cpu_ option). Initialisation runs once and is mostly random-number
# generation, so it always compiles this way; the steps do with `config.compile_mode='fast'`.
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
COMPILE_MODES = ("default", "fast")


def compiler_options(config: Any) -> Optional[dict]:
    """XLA options for the train/eval steps: None (XLA's defaults) or FAST_COMPILE."""
    if config.compile_mode not in COMPILE_MODES:
        raise ValueError(f"config.compile_mode={config.compile_mode!r}: expected one of {COMPILE_MODES}")
    return dict(FAST_COMPILE) if config.compile_mode == "fast" else None


def init_state(exp: Experiment, variables: Optional[dict] = None) -> TrainState:
    """A fresh replicated state from `config.seed` (or from given `variables`, e.g. pretrained)."""
    return new_train_state(exp.model, exp.tx, exp.mesh, exp.config.seed, exp.use_ema, variables)


def new_train_state(model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh, seed: int,
                    use_ema: bool, variables: Optional[dict] = None) -> TrainState:
    """Initialisation and optimizer state as one program, compiled with FAST_COMPILE and run once.

    One compile instead of one per optimizer-state leaf shape (`tx.init` run eagerly costs ~2.5 s
    for B0 on 2 CPU cores); the benchmarks' time to first step goes through here too.
    """
    key = jax.random.PRNGKey(seed)
    args = (key,) if variables is None else (key, variables)
    init = jax.jit(_init_fn(model, tx, use_ema), out_shardings=parallel.replicated(mesh))
    return init.lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def load_pretrained(exp: Experiment, path: str, reinit_head: bool = True) -> dict:
    """Converted weights from `path` merged into a fresh init of the model (new head if needed)."""
    from efficientnet_jax import load_weights

    loaded = load_weights(path)
    init_key = jax.random.split(jax.random.PRNGKey(exp.config.seed))[0]  # the key _init_fn uses
    fresh = jax.jit(lambda k: init_variables(exp.model, k, 32)).lower(init_key).compile(
        compiler_options=FAST_COMPILE)(init_key)
    merged, _ = merge_pretrained(fresh, loaded, path, reinit_head=reinit_head)
    return merged
