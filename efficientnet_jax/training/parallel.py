"""Devices, the mesh and shardings: data parallelism with jit, never pmap.

One `Mesh` with a 'data' axis over every device of every process. Batches are global arrays
sharded along 'data' (each process contributes its local slice through
`jax.make_array_from_process_local_data`); the train state is replicated. Under jit, BatchNorm
statistics are therefore computed over the global batch; XLA inserts the all-reduces.

Multi-host (TPU pods, GPU clusters): every host runs the *same* command, and
`jax.distributed.initialize()` must run before any other JAX call. It is switched on by
`train.py --distributed` or `EFFICIENTNET_JAX_DISTRIBUTED=1`. On Cloud TPU, Slurm and Open MPI
everything is auto-detected; elsewhere set `JAX_COORDINATOR_ADDRESS=host:port`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` on each process.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
ENV_FLAG = "EFFICIENTNET_JAX_DISTRIBUTED"


def distributed_requested(flag: Optional[bool] = None) -> bool:
    """True when the flag says so or, with no flag, when EFFICIENTNET_JAX_DISTRIBUTED is 1/true."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(ENV_FLAG, "").strip().lower() in ("1", "true", "yes")


def initialize_distributed(flag: Optional[bool] = None) -> bool:
    """`jax.distributed.initialize()` when requested; returns whether it ran.

    Arguments not given by the environment's auto-detection come from JAX_COORDINATOR_ADDRESS
    (read by JAX itself), JAX_NUM_PROCESSES and JAX_PROCESS_ID. CPU processes talk through gloo
    (JAX's CPU collectives), which lets a multi-process run be tested on one machine.
    """
    if not distributed_requested(flag):
        return False
    kwargs: Dict[str, Any] = {}
    if os.environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if os.environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    # Only affects computations placed on CPU devices; accelerators use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh() -> Mesh:
    """A 1-D mesh named 'data' over all devices of all processes.

    Auto axes: XLA propagates shardings (JAX 0.10's `make_mesh` defaults to Explicit axes, which
    would make every op in the model declare its output sharding).
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, what: str = "config.batch_size") -> None:
    """The global batch must split evenly over devices and processes."""
    n = jax.device_count()
    if global_batch_size % n:
        raise ValueError(f"{what}={global_batch_size} is not divisible by the {n} devices of the mesh")
    if global_batch_size % jax.process_count():
        raise ValueError(f"{what}={global_batch_size} is not divisible by {jax.process_count()} processes")


def global_batch(local_batch: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
    """This process's slice of the batch -> global arrays sharded along 'data'."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def to_host(tree: Any) -> Any:
    """Fully replicated (or fully addressable) arrays -> numpy, on every process."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
