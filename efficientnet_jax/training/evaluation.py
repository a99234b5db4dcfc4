"""Evaluation over one full pass of the eval split: raw and EMA weights in the same pass.

The eval iterator pads its last batch and marks real examples with `mask`, so every example
counts exactly once whatever the batch size or the number of processes.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import jax
import numpy as np

from efficientnet_jax import data as data_lib
from efficientnet_jax.training import parallel, steps


def evaluate(
    exp: Any,
    variables: Dict[str, Any],
    ema_variables: Optional[Dict[str, Any]] = None,
    eval_step: Optional[Callable] = None,
) -> Dict[str, float]:
    """{'top1', 'top5', 'loss', 'num_examples'} (+ 'ema_*' when `ema_variables` is given).

    Accuracies are fractions in [0, 1]; loss is the mean plain cross-entropy.
    """
    eval_step = eval_step or steps.jit_eval_step(exp.mesh, exp.model)
    sets = {"": variables}
    if ema_variables is not None:
        sets["ema_"] = ema_variables
    sums: Dict[str, list] = {p: [] for p in sets}
    batches = data_lib.make_eval_iterator(
        exp.input_config, global_batch_size=exp.config.eval_batch_size, image_size=exp.eval_image_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
    )
    for local in batches:
        batch = parallel.global_batch({k: local[k] for k in ("image", "label", "mask")}, exp.mesh)
        for prefix, v in sets.items():
            sums[prefix].append(eval_step(v, batch))  # stays on device: no per-batch host sync
    out: Dict[str, float] = {}
    for prefix, parts in sums.items():
        host = jax.device_get(parts)
        total = {k: float(np.sum([p[k] for p in host], dtype=np.float64)) for k in ("loss", "top1", "top5", "count")}
        n = max(total["count"], 1.0)
        out.update({f"{prefix}top1": total["top1"] / n, f"{prefix}top5": total["top5"] / n,
                    f"{prefix}loss": total["loss"] / n})
        out["num_examples"] = total["count"]
    return out
