"""This process's training batches, assembled from virtual input shards.

The data pipeline gives each of `process_count` processes a disjoint shard of the train split,
so the global batch of step k depends on how many processes read the data. `input_shards`
decouples the two: the stream is always cut into `input_shards` shards (default: one per
process) and each process reads and concatenates its consecutive share of them. A one-process
run with `input_shards=N` therefore sees exactly the global batches of an N-process run, which
is how a multi-host run is reproduced (and tested) on one machine.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import jax
import numpy as np

from efficientnet_jax import data as data_lib
from efficientnet_jax.training.progressive import Stage

KEYS = ("image", "label", "label_onehot")


def num_input_shards(config: Any) -> int:
    """`config.input_shards`, or the process count; must be a multiple of the process count."""
    shards = config.input_shards or jax.process_count()
    if shards % jax.process_count():
        raise ValueError(f"config.input_shards={shards} must be a multiple of the {jax.process_count()} processes")
    if config.batch_size % shards:
        raise ValueError(f"config.batch_size={config.batch_size} is not divisible by {shards} input shards")
    return shards


def train_batches(exp: Any, stage: Stage, start_step: int) -> Iterator[Dict[str, np.ndarray]]:
    """Local batches for updates start_step+1, start_step+2, ... of `stage` (infinite)."""
    config = exp.config
    shards = num_input_shards(config)
    per_process = shards // jax.process_count()
    first = jax.process_index() * per_process
    streams = [
        data_lib.make_train_iterator(
            exp.input_config, global_batch_size=config.batch_size, image_size=stage.image_size,
            seed=config.seed, start_step=start_step, process_index=first + i, process_count=shards,
            randaug_magnitude=stage.randaug_magnitude, mixup_alpha=stage.mixup_alpha,
            cutmix_alpha=stage.cutmix_alpha,
        )
        for i in range(per_process)
    ]
    if per_process == 1:
        for batch in streams[0]:
            yield {k: batch[k] for k in KEYS}
        return
    for parts in zip(*streams):
        yield {k: np.concatenate([p[k] for p in parts]) for k in KEYS}
