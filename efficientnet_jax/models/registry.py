"""`create_model` / `list_models` and compound (phi) scaling."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp

from efficientnet_jax.models.batched_init import batched_random_init
from efficientnet_jax.models.efficientnet import EfficientNet
from efficientnet_jax.models.spec import ModelSpec
from efficientnet_jax.models.variants import REGISTRY, base_name

# The paper's grid-searched coefficients at phi = 1 (alpha * beta^2 * gamma^2 ~= 2).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15

_MODULE_FIELDS = ("dtype", "dw_impl", "remat", "features_only", "out_strides", "bn_axis_name", "perturb_layers",
                  "bn_folded")
_SCALING_KEYS = ("phi", "alpha", "beta", "gamma")
# Architecture edits that are not ModelSpec fields (block ablations).
_EDIT_KEYS = ("fused_stages",)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compound_scaling(
    phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA, base_resolution: int = 224
) -> Tuple[float, float, int]:
    """(depth_mult, width_mult, resolution) = (alpha^phi, beta^phi, round(base * gamma^phi)).

    The published B1-B7 table is a rounded special case of this rule, not the rule itself.
    """
    return alpha**phi, beta**phi, int(round(base_resolution * gamma**phi))


def list_models() -> List[str]:
    """Names of the registered variants (timm's spelling), family by family, small to large."""
    return list(REGISTRY)


def get_spec(name: str, **overrides: Any) -> ModelSpec:
    """The `ModelSpec` of a variant with overrides applied (spec fields and phi/alpha/beta/gamma).

    A `tf_` prefix (e.g. `tf_efficientnet_b0`) names the TF numerics explicitly ('same' padding,
    BN eps 1e-3), which are the defaults here.
    """
    key, implied = base_name(name)
    if key not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; list_models() has: {', '.join(list_models())}")
    spec = REGISTRY[key]
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    bad = [k for k in overrides if k not in fields and k not in _SCALING_KEYS + _EDIT_KEYS]
    if bad:
        raise ValueError(
            f"unknown override(s) {bad} for {name!r}; valid: "
            f"{sorted(fields | set(_SCALING_KEYS) | set(_EDIT_KEYS) | set(_MODULE_FIELDS))}"
        )
    if "fused_stages" in overrides:
        spec = with_fused_stages(spec, int(overrides.pop("fused_stages")))
    scaling = {k: overrides.pop(k) for k in _SCALING_KEYS if k in overrides}
    if scaling:
        if "phi" not in scaling:
            raise ValueError(f"alpha/beta/gamma need phi (got {sorted(scaling)})")
        d, w, r = compound_scaling(
            scaling["phi"], scaling.get("alpha", ALPHA), scaling.get("beta", BETA), scaling.get("gamma", GAMMA),
        )
        # Multipliers replace the variant's own: phi is measured from the family's base (B0).
        train_res = None
        if spec.train_resolution:
            base = REGISTRY[key.rsplit("_", 1)[0] + "_b0"] if key.startswith("efficientnetv2") else None
            train_res = int(round((base.train_resolution if base else spec.train_resolution) * r / 224))
        spec = dataclasses.replace(
            spec, width_mult=w, depth_mult=d, resolution=r, train_resolution=train_res,
            name=f"{key}_phi{scaling['phi']:g}",
        )
    return dataclasses.replace(spec, **{**implied, **overrides})


def with_fused_stages(spec: ModelSpec, n: int) -> ModelSpec:
    """Turn the first `n` stages into Fused-MBConv (no SE), as V2 does for its early stages.

    The block ablation of the V2 paper (Table 3: Fused-MBConv in stages 1-3) expressed on any base.
    Stages already fused stay fused; `n=0` turns every fused stage back into MBConv (with SE 0.25).
    """
    if not 0 <= n <= len(spec.stages):
        raise ValueError(f"fused_stages must be in [0, {len(spec.stages)}] for {spec.name}, got {n}")
    stages = tuple(
        dataclasses.replace(s, block="fused", se_ratio=0.0) if i < n
        else (dataclasses.replace(s, block="mbconv", se_ratio=s.se_ratio or 0.25) if s.block == "fused" else s)
        for i, s in enumerate(spec.stages)
    )
    return dataclasses.replace(spec, stages=stages)


def initial_variables(model: EfficientNet, rng: jax.Array, image_size: int = 32) -> Dict[str, Any]:
    """{'params', 'batch_stats'} of `model`, traceable (the body of `init_variables`' program and of
    the trainer's). Every random kernel comes from `batched_init`'s two draws (same distributions
    as `model.init`, other values); a remat model initialises without remat (same variables), as
    nn.remat's lifted trace would defeat the batching."""
    if getattr(model, "remat", False):
        model = model.clone(remat=False)
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = batched_random_init(lambda: model.init(rng, x, train=False), rng)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def init_variables(model: EfficientNet, rng: jax.Array, image_size: int = 32) -> Dict[str, Any]:
    """{'params', 'batch_stats'} of `model`, fast.

    Parameters do not depend on the input size or the depthwise lowering, so this initialises
    through a small image, draws every random kernel from two long random vectors
    (`initial_variables`), and compiles the one-off program without XLA's backend optimisations
    (about 1 s for B0 on 2 CPU cores, against 6-7 s with a draw per kernel and 14 s for a plain
    `jax.jit(model.init)`).
    """
    init = jax.jit(lambda key: initial_variables(model, key, image_size))
    compiled = init.lower(rng).compile(compiler_options={"xla_backend_optimization_level": 0})
    return compiled(rng)


def create_model(name: str, num_classes: int = 1000, **overrides: Any) -> EfficientNet:
    """Build a variant: `create_model('efficientnet_b3', num_classes=10, drop_rate=0.1)`.

    Overrides are ModelSpec fields (padding, bn_eps, bn_momentum, drop_rate, drop_path_rate, act,
    se, width_mult, depth_mult, resolution, ...), the compound-scaling knobs phi/alpha/beta/gamma,
    `fused_stages=N` (first N stages as Fused-MBConv),
    or module options: dtype ('bfloat16' or a jnp dtype), dw_impl ('auto'|'xla'|'shift'|'shift_autodiff'|'cpu_kernel'), remat,
    features_only, out_strides, bn_axis_name, perturb_layers, bn_folded (inference with
    `fold_batch_norm`'s variables).
    """
    module_kw: Dict[str, Any] = {k: overrides.pop(k) for k in _MODULE_FIELDS if k in overrides}
    if isinstance(module_kw.get("dtype"), str):
        try:
            module_kw["dtype"] = _DTYPES[module_kw["dtype"]]
        except KeyError:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {module_kw['dtype']!r}") from None
    if "out_strides" in module_kw:
        module_kw["out_strides"] = tuple(module_kw["out_strides"])
    spec = get_spec(name, num_classes=num_classes, **overrides)
    return EfficientNet(spec=spec, **module_kw)
