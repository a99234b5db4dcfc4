"""JAX's persistent compilation cache for the command-line jobs (train.py, eval.py).

XLA compiles the B0 train step in ~13 s and the one-off init program in ~1 s on 2 CPU cores,
most of the time to the first update. With the cache, a rerun of an identical program (a resumed
or repeated run, a sweep point that differs only in data or bookkeeping, eval.py after train.py)
loads the compiled executable instead. The key covers the program, the compile options, the
jax/jaxlib version and the device, so a changed model or flag compiles afresh.

Only the entry points call this: it sets process-wide JAX options, which a library function
should not change behind its caller's back.
"""

import os
from typing import Optional

import jax
from absl import logging

DEFAULT_MAX_BYTES = 4 << 30  # least recently used entries go past this (JAX's default: no limit)


def enable(directory: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Optional[str]:
    """Cache compiled programs in `directory` (`~` expanded; '' leaves the cache off).

    A cache already configured (`JAX_COMPILATION_CACHE_DIR`, or `jax.config` set by the caller)
    wins and is left as it is. Returns the directory in use, or None when the cache is off
    (also when `directory` cannot be created: a warning, and training goes on without it).
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not directory:
        return None
    path = os.path.abspath(os.path.expanduser(directory))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        logging.warning("compilation cache off: cannot create %s (%s)", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    if jax.config.jax_compilation_cache_max_size == -1:
        jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    return path
