"""Start from converted weights (`config.init_from=DIR`): the transfer-learning workflow.

The loaded {'params', 'batch_stats'} must fit the model key by key; only the classifier may
differ (a new head for a new number of classes), and it is then kept at its fresh init.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp

from efficientnet_jax.training.checkpointing import key_path_str, network_order, shapes_in_order

log = logging.getLogger(__name__)

HEAD = "classifier"


def _is_head(key: str) -> bool:
    return key.split("/")[1:2] == [HEAD]  # params/classifier/..., batch_stats/classifier/...


def merge_pretrained(
    init: Dict[str, Any], loaded: Dict[str, Any], source: str, reinit_head: bool = True
) -> Tuple[Dict[str, Any], List[str]]:
    """`init` with every leaf replaced by the same-named leaf of `loaded`.

    Returns (variables, names of the leaves kept at init). Raises ValueError naming the first
    key (in network order) that is missing, unexpected or of another shape, unless it is a
    classifier leaf and `reinit_head` is set.
    """
    init = {"params": init["params"], "batch_stats": init.get("batch_stats", {})}
    loaded = {"params": loaded.get("params", {}), "batch_stats": loaded.get("batch_stats", {})}
    src, dst = shapes_in_order(loaded), shapes_in_order(init)
    kept: List[str] = []
    for key, shape in sorted(dst.items(), key=lambda kv: network_order(kv[0])):
        if src.get(key) == shape:
            continue
        if reinit_head and _is_head(key):
            kept.append(key)
        elif key not in src:
            raise ValueError(f"weights {source} do not fit the model: {key} {shape} is missing from them")
        else:
            raise ValueError(f"weights {source} do not fit the model: {key} has shape {src[key]} "
                             f"in the weights but {shape} in the model")
    for key, shape in sorted(src.items(), key=lambda kv: network_order(kv[0])):
        if key not in dst and not (reinit_head and _is_head(key)):
            raise ValueError(f"weights {source} do not fit the model: they have {key} {shape}, "
                             "the model has no such key (another variant?)")
    flat_loaded = {key_path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    kept_set = set(kept)

    def pick(path, x):
        key = key_path_str(path)
        return x if key in kept_set else jnp.asarray(flat_loaded[key], dtype=x.dtype)

    merged = jax.tree_util.tree_map_with_path(pick, init)
    if kept:
        log.info("init_from %s: new classifier head (kept at init): %s", source, ", ".join(kept))
    return merged, kept
