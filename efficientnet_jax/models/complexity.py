"""Parameter counts, depth and multiply-adds, measured from the model itself.

Multiply-adds follow both papers' "FLOPs" convention: multiply-accumulates of convolutions and
dense layers (SE's 1x1 convs included), nothing for BN, activations or pooling. They are counted
from the traced jaxpr of the forward pass, so any custom spec or override is counted exactly
as it runs, not from a hand-kept table.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from efficientnet_jax.models.efficientnet import EfficientNet
from efficientnet_jax.models.spec import build_blocks


def _sub_jaxprs(params: Dict[str, Any]):
    for v in params.values():
        items = v if isinstance(v, (tuple, list)) else (v,)
        for item in items:
            if isinstance(item, jex_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex_core.Jaxpr):
                yield item


def _count_jaxpr_macs(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            dn = eqn.params["dimension_numbers"]
            # Kernel spatial dims and per-group input features, whatever the layout.
            k_in = rhs[dn.rhs_spec[1]]
            k_spatial = math.prod(rhs[d] for d in dn.rhs_spec[2:])
            total += math.prod(out) * k_in * k_spatial
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        else:
            mult = eqn.params.get("length", 1) if name == "scan" else 1
            for sub in _sub_jaxprs(eqn.params):
                total += mult * _count_jaxpr_macs(sub)
    return total


def count_macs(model: EfficientNet, resolution: Optional[int] = None, batch: int = 1) -> int:
    """Multiply-adds of one forward pass of `batch` images at `resolution` (default: the spec's).

    The depthwise lowering is forced to the grouped convolution so it shows up as a conv.
    """
    res = resolution or model.spec.resolution
    counting = model.clone(dw_impl="xla", dtype=None)
    x = jnp.zeros((batch, res, res, 3), jnp.float32)
    variables = jax.eval_shape(lambda: counting.init(jax.random.key(0), x[:1, :32, :32], train=False))
    jaxpr = jax.make_jaxpr(lambda v, x: counting.apply(v, x, train=False))(variables, x)
    return _count_jaxpr_macs(jaxpr.jaxpr)


def count_params(model: EfficientNet) -> int:
    """Trainable parameters (BN running statistics excluded), without allocating any."""
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)
    )
    return sum(math.prod(x.shape) for x in jax.tree.leaves(variables["params"]))


def count_depth(model: EfficientNet) -> int:
    """Layers with weights along the main path, Keras-table style: convs and the classifier.

    Counted as stem conv + every conv of every block (SE's two included) + head conv + classifier.
    """
    depth = 2 + (model.spec.num_classes > 0)
    for b in build_blocks(model.spec):
        depth += 2 if b.block == "mbconv" else 1  # depthwise + project, or the fused kxk
        depth += b.expand_ratio != 1  # expand conv (fused: the kxk is the expand, plus project)
        depth += 2 if b.se_channels else 0
    return depth
