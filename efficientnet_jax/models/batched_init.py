"""Initialise every random parameter of a model from two random draws instead of one per parameter.

`model.init` draws each kernel with its own `jax.random.normal` / `uniform` call on a key flax
derives per parameter: B0's 82 random kernels become ~1100 XLA fusions of threefry and erf-inverse
code, and compiling that one-off program was ~6 s of the ~25 s from process start to the first
training step on 2 CPU cores. Under `batched_random_init` the project's initializers
(`layers.conv_kernel_init`, `layers.dense_kernel_init`) return a placeholder and record what they
would have drawn; afterwards one standard-normal vector and one uniform vector, each as long as
all the recorded kernels together, are drawn from the caller's key, cut in recording order and
scaled, and replace the placeholders in the result. The per-parameter keys flax derives are then
unused and compiled away.

Each kernel has the same distribution as `model.init` gives it (the official init: normal with
std sqrt(2 / fan_out) for convs, uniform(-1/sqrt(out), 1/sqrt(out)) for the classifier); the
values differ from `model.init`'s, and are a deterministic function of the key and the model.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Callable, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp

Shape = Tuple[int, ...]


@dataclasses.dataclass
class _Draw:
    placeholder: Any  # the array (or tracer) the initializer returned
    kind: str  # 'normal' | 'uniform'
    shape: Shape
    dtype: Any
    scale: float  # normal: std; uniform: half-width (centred on 0)


_RECORDING: contextvars.ContextVar[Optional[List[_Draw]]] = contextvars.ContextVar("batched_init", default=None)


def normal(key: jax.Array, shape: Shape, dtype: Any, std: float) -> jax.Array:
    """normal(0, std) of `shape`: drawn now, or recorded under `batched_random_init`."""
    return _draw(key, "normal", tuple(shape), dtype, std)


def uniform(key: jax.Array, shape: Shape, dtype: Any, limit: float) -> jax.Array:
    """uniform(-limit, limit) of `shape`: drawn now, or recorded under `batched_random_init`."""
    return _draw(key, "uniform", tuple(shape), dtype, limit)


def _draw(key: jax.Array, kind: str, shape: Shape, dtype: Any, scale: float) -> jax.Array:
    records = _RECORDING.get()
    if records is None:
        if kind == "normal":
            return jax.random.normal(key, shape, dtype) * scale
        return jax.random.uniform(key, shape, dtype, -scale, scale)
    placeholder = jnp.zeros(shape, dtype)
    records.append(_Draw(placeholder, kind, shape, dtype, scale))
    return placeholder


@contextlib.contextmanager
def _recording() -> Iterator[List[_Draw]]:
    records: List[_Draw] = []
    token = _RECORDING.set(records)
    try:
        yield records
    finally:
        _RECORDING.reset(token)


def batched_random_init(init: Callable[[], Any], key: jax.Array) -> Any:
    """`init()` (e.g. `lambda: model.init(key, x)`) with its recorded random kernels drawn from `key`.

    Meant to run under `jax.jit` (that is where the saving is); eager works too. Where a flax
    lift (nn.remat, nn.scan) hides the kernels from the result, `init()` runs again without
    recording: the same result `model.init` gives, at the old cost.
    """
    with _recording() as records:
        variables = init()
    leaves, treedef = jax.tree.flatten(variables)
    present = {id(leaf) for leaf in leaves}
    if any(id(r.placeholder) not in present for r in records):
        # A recorded kernel is not in the result as its initializer returned it: a flax lift
        # (nn.remat, nn.scan) traced it and returned new arrays. Take init()'s own draws instead.
        return init()
    # Cut the draws in recording order (deterministic for a model), not in the output's key order.
    values = {}
    for kind, sub in zip(("normal", "uniform"), jax.random.split(key)):
        group = [r for r in records if r.kind == kind]
        total = sum(math.prod(r.shape) for r in group)
        if not total:
            continue
        if kind == "normal":
            flat = jax.random.normal(sub, (total,), jnp.float32)
        else:
            flat = jax.random.uniform(sub, (total,), jnp.float32, -1.0, 1.0)
        offset = 0
        for r in group:
            n = math.prod(r.shape)
            values[id(r.placeholder)] = (flat[offset:offset + n].reshape(r.shape) * r.scale).astype(r.dtype)
            offset += n
    return jax.tree.unflatten(treedef, [values.get(id(leaf), leaf) for leaf in leaves])
