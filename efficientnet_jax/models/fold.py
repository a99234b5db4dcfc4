"""Fold every BatchNorm into the convolution before it, for inference.

At inference a BN is a per-channel affine map, `(y - mean) * scale / sqrt(var + eps) + bias`, of
its conv's output y. With `m = scale / sqrt(var + eps)` the pair is one conv with kernel `k * m`
(over the output-channel axis, HWIO's last) followed by `+ (bias - mean * m)`: what ONNX and
TFLite exports do. The folded model (`bn_folded=True`) has the same parameter tree minus the BN
scales and statistics, so the graph loses the per-channel rsqrt/scale fusions and the normalise
of every conv output becomes a bias add that XLA fuses into the activation.

The fold is computed on the host in float64 and stored in float32, so the folded model agrees with
the unfolded one to float32 rounding (tests/models/test_fold.py).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import jax.numpy as jnp
import numpy as np

from efficientnet_jax.models.efficientnet import EfficientNet

# Every BN in the family and the conv whose output it normalises (same parent scope).
CONV_OF_BN = {
    "stem_bn": "stem_conv",
    "expand_bn": "expand_conv",
    "dw_bn": "dw_conv",
    "project_bn": "project_conv",
    "head_bn": "head_conv",
}


def fold_batch_norm(model: EfficientNet, variables: Mapping[str, Any]) -> Tuple[EfficientNet, Dict[str, Any]]:
    """(inference model, its variables): every conv + BN pair of `variables` as one conv + bias.

    `variables` are the usual {'params', 'batch_stats'} of `model` (a trained or imported
    checkpoint). The returned model only runs `train=False`; train the unfolded one.
    """
    if model.bn_folded:
        raise ValueError(f"{model.spec.name}: the model is already folded")
    if "params" not in variables or "batch_stats" not in variables:
        raise ValueError(f"fold_batch_norm needs {{'params', 'batch_stats'}}, got keys {sorted(variables)}")
    params = _fold_scope(variables["params"], variables["batch_stats"], float(model.spec.bn_eps), "params")
    return model.clone(bn_folded=True), {"params": params}


def _fold_scope(params: Mapping[str, Any], stats: Mapping[str, Any], eps: float, path: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, sub in params.items():
        if name in CONV_OF_BN:
            continue  # written with its conv below
        if not isinstance(sub, Mapping):
            out[name] = sub
        elif name in stats and set(stats[name]) == {"mean", "var"}:
            raise ValueError(f"{path}/{name}: a BatchNorm with no conv of a known name before it")
        else:
            out[name] = _fold_scope(sub, stats.get(name, {}), eps, f"{path}/{name}")
    for bn, conv in CONV_OF_BN.items():
        if bn not in params:
            continue
        if conv not in params:
            raise ValueError(f"{path}/{bn}: expected its conv {conv!r} in the same scope, have {sorted(params)}")
        if bn not in stats:
            raise ValueError(f"{path}/{bn}: no batch_stats (mean, var) for this BatchNorm")
        out[conv], out[bn] = _fold_pair(params[conv], params[bn], stats[bn], eps, f"{path}/{bn}")
    return out


def _fold_pair(conv: Mapping[str, Any], bn: Mapping[str, Any], stats: Mapping[str, Any], eps: float, where: str):
    kernel = np.asarray(conv["kernel"], np.float64)
    scale, bias = (np.asarray(bn[k], np.float64) for k in ("scale", "bias"))
    mean, var = (np.asarray(stats[k], np.float64) for k in ("mean", "var"))
    c = kernel.shape[-1]
    for key, value in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
        if value.shape != (c,):
            raise ValueError(f"{where}/{key}: shape {value.shape} does not match the conv's {c} output channels")
    if "bias" in conv:
        raise ValueError(f"{where}: the conv before a BatchNorm has no bias in this family")
    m = scale / np.sqrt(var + eps)
    # Device arrays: numpy leaves would be copied (or run unaligned) on every call.
    folded_conv = {**conv, "kernel": jnp.asarray((kernel * m).astype(np.float32))}
    return folded_conv, {"bias": jnp.asarray((bias - mean * m).astype(np.float32))}
