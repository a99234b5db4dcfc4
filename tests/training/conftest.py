"""Shared setup for the training tests: a compilation cache shared by every run of the same
program (in process and in train.py subprocesses), and the small training config they share.

Compile time dominates these tiny networks. The smoke configs compile with
`compile_mode='fast'`, and a persistent compilation cache, switched on only while this
folder's tests run, lets runs of identical programs (configs differing only in data or
bookkeeping, resumed runs, eval.py) load compiled code instead of compiling again.
"""

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache
from train_helpers import CACHE_DIR

_CACHE_OPTIONS = {
    "jax_compilation_cache_dir": CACHE_DIR,
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="module", autouse=True)
def _persistent_compilation_cache():
    """The cache on for this module only; other test folders keep their own settings."""
    saved = {k: getattr(jax.config, k) for k in _CACHE_OPTIONS}
    for k, v in _CACHE_OPTIONS.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()  # JAX decides once whether to use the cache: decide again
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()
