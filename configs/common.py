"""The EfficientNet training recipes, every number a config value.

V1 / Lite (tensorflow/tpu models/official/efficientnet main.py + utils.py; the same values in
google/automl efficientnetv2 hparams.py): RMSProp(decay 0.9, momentum 0.9, eps 1e-3 inside the
sqrt, mean square initialised to 1), lr 0.016 x batch/256, 5 linear warm-up epochs, x0.97 every
2.4 epochs (staircase from step 0), weight decay 1e-5 as a coupled L2 on kernels, label
smoothing 0.1, EMA 0.9999 of weights and BN statistics, 350 epochs at batch 2048, BN momentum
0.99, AutoAugment (the paper's numbers; README of tensorflow/tpu efficientnet).
V2 (google/automl efficientnetv2 hparams.py, datasets.py ImageNet, effnetv2_configs.py): the
same optimizer at batch 4096, BN momentum 0.9, RandAugment + mixup/cutmix per model and
progressive learning over 4 stages from 128 px (main.py).

A config file calls `v1_config(...)` / `v2_config(...)` with the variant's own numbers and
`finalize(config, arg)`, which applies the `:arg` of `--config=configs/b0.py:smoke`.
"""

from __future__ import annotations

from typing import Optional

import ml_collections
from ml_collections import config_dict

from efficientnet_jax.data import default_input_config
from efficientnet_jax.models import get_spec

ARGS = ("smoke",)


def base_config() -> ml_collections.ConfigDict:
    """Every key any part of training reads, with the V1 recipe's values."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # --- Data -------------------------------------------------------------------------------
    c.dataset = "imagenet2012"  # 'digits' | any TFDS name | 'folder:/path'; the one source of truth
    c.input = default_input_config()
    c.input.dataset = c.get_ref("dataset")  # linked: setting either sets both
    c.input.shuffle_buffer = 16_384
    c.num_classes = config_dict.placeholder(int)  # None: from the data set
    c.image_size = config_dict.placeholder(int)  # None: the variant's training resolution
    c.eval_image_size = config_dict.placeholder(int)  # None: the variant's eval resolution
    c.input_shards = config_dict.placeholder(int)  # None: one per process (training/inputs.py)
    # --- Model (None = the variant's own value; see efficientnet_jax.create_model) -----------
    c.model_name = "efficientnet_b0"
    c.model = ml_collections.ConfigDict(dict(
        width_mult=config_dict.placeholder(float),
        depth_mult=config_dict.placeholder(float),
        phi=config_dict.placeholder(float),  # compound scaling from B0 (replaces width/depth/res)
        drop_rate=config_dict.placeholder(float),  # dropout before the classifier
        drop_path_rate=config_dict.placeholder(float),  # stochastic depth (max, linear in depth)
        bn_momentum=config_dict.placeholder(float),
        bn_eps=config_dict.placeholder(float),
        act=config_dict.placeholder(str),
        se=config_dict.placeholder(bool),
        fused_stages=config_dict.placeholder(int),  # first N stages as Fused-MBConv (block ablation)
        padding=config_dict.placeholder(str),  # 'same' (TF) | 'symmetric' (PyTorch)
        dw_impl="auto",  # depthwise lowering: 'auto' | 'xla' | 'shift' (custom VJP) | 'shift_autodiff' | 'cpu_kernel'
        remat=False,  # rematerialise blocks in the backward pass (memory for compute)
    ))
    c.dtype = "bfloat16"  # compute dtype; params, BN statistics, loss and EMA stay float32
    c.compile_mode = "default"  # 'fast': least XLA compile time, slower steps (smoke runs, tests)
    # --- Duration -----------------------------------------------------------------------------
    c.batch_size = 2048  # global
    c.eval_batch_size = 1024
    c.num_epochs = 350.0
    c.total_steps = config_dict.placeholder(int)  # when set, overrides num_epochs
    # --- Optimizer and schedule ----------------------------------------------------------------
    c.optimizer = "rmsprop"  # 'rmsprop' | 'sgd' | 'momentum' | 'adam' | 'adamw'
    c.lr_base = 0.016  # per lr_batch_base images: lr = lr_base * batch_size / lr_batch_base
    c.lr_batch_base = 256
    c.schedule = "exponential"  # 'exponential' (TF staircase) | 'cosine' | 'constant'
    c.warmup_epochs = 5.0
    c.lr_decay_epochs = 2.4
    c.lr_decay_factor = 0.97
    c.lr_min = 0.0  # cosine floor
    c.opt = ml_collections.ConfigDict(dict(
        momentum=0.9, nesterov=False,  # rmsprop and momentum
        rms_decay=0.9, rms_eps=1e-3, rms_initial_scale=1.0,  # TF RMSProp
        b1=0.9, b2=0.999, adam_eps=1e-8,  # adam / adamw
    ))
    c.weight_decay = 1e-5  # coupled L2 on kernels (decoupled for adamw)
    c.grad_clip_norm = 0.0  # 0 = off
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999  # 0 = no EMA
    # --- V2 progressive learning (stages <= 1: off) ---------------------------------------------
    c.progressive = ml_collections.ConfigDict(dict(
        stages=0,
        min_image_size=config_dict.placeholder(int),  # first-stage base size (automl ibase); None: size/2
        min_randaug_magnitude=5.0,
    ))
    # --- Bookkeeping -------------------------------------------------------------------------------
    c.init_from = config_dict.placeholder(str)  # converted weights dir: fine-tune (new head if needed)
    c.log_every_steps = 100
    c.eval_every_steps = 6250  # 0 = only at the end; evaluated checkpoints compete for 'best'
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.keep_best_checkpoints = 1  # by EMA top-1 (raw top-1 without EMA)
    c.async_checkpointing = True
    c.tensorboard = True
    c.profile_start_step = -1  # >= 0: jax.profiler trace of the next profile_num_steps steps
    c.profile_num_steps = 5
    # train.py / eval.py: JAX's persistent compilation cache ('' = off; JAX_COMPILATION_CACHE_DIR wins).
    # A rerun of the same program loads it instead of compiling (training/compile_cache.py).
    c.compilation_cache_dir = "~/.cache/efficientnet_jax/jax_cache"
    return c


def _model_defaults(c: ml_collections.ConfigDict, model_name: str, drop_rate: float, drop_path_rate: float,
                    image_size: int, eval_image_size: int) -> None:
    c.model_name = model_name
    c.model.drop_rate = drop_rate
    c.model.drop_path_rate = drop_path_rate
    c.image_size = image_size
    c.eval_image_size = eval_image_size
    spec = get_spec(model_name)
    c.input.mean, c.input.std = tuple(spec.mean), tuple(spec.std)
    c.input.interpolation = spec.interpolation


def v1_config(model_name: str, image_size: int, drop_rate: float, drop_path_rate: float = 0.2,
              augment: str = "autoaugment") -> ml_collections.ConfigDict:
    """The V1 / Lite recipe: trains and evaluates at the variant's resolution."""
    c = base_config()
    _model_defaults(c, model_name, drop_rate, drop_path_rate, image_size, image_size)
    c.input.augment = augment
    return c


def v2_config(model_name: str, image_size: int, eval_image_size: int, drop_rate: float,
              drop_path_rate: float = 0.2, augment: str = "randaugment", randaug_magnitude: float = 10,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, stages: int = 4,
              min_image_size: int = 128) -> ml_collections.ConfigDict:
    """The V2 recipe: batch 4096, progressive learning to `image_size`, eval at `eval_image_size`."""
    c = base_config()
    _model_defaults(c, model_name, drop_rate, drop_path_rate, image_size, eval_image_size)
    c.batch_size = 4096
    c.eval_every_steps = 3125  # ~10 epochs
    c.input.augment = augment
    c.input.randaug_magnitude = randaug_magnitude
    c.input.mixup_alpha = mixup_alpha
    c.input.cutmix_alpha = cutmix_alpha
    c.progressive.stages = stages
    c.progressive.min_image_size = min_image_size
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrink any config to run on one CPU in seconds: tiny net, small images, digits, few steps.

    Everything else (optimizer, schedule, augmentation, EMA, progressive stages) is kept, so a
    smoke run exercises the same code path as the real one.
    """
    c.dataset = "digits"
    c.input.shuffle_buffer = 64
    c.model.width_mult = 0.25
    c.model.depth_mult = 0.01  # one block per stage, whatever the variant's depth
    c.model.phi = None
    c.model.dw_impl = "xla"  # compiles several times faster than 'shift' on CPU
    c.compile_mode = "fast"
    c.image_size = 32
    c.eval_image_size = 32
    if c.progressive.stages > 1:
        c.progressive.min_image_size = 16
    c.dtype = "float32"
    c.batch_size = 16
    c.eval_batch_size = 16
    c.total_steps = 4
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 2
    c.async_checkpointing = False
    return c


def finalize(c: ml_collections.ConfigDict, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Apply the comma-separated `:arg` of `--config=FILE:arg` ('smoke'); unknown args fail by name."""
    for a in filter(None, (arg or "").split(",")):
        if a not in ARGS:
            raise ValueError(f"unknown config arg {a!r}; known: {', '.join(ARGS)}")
        if a == "smoke":
            c = smoke(c)
    return c
