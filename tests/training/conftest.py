"""Shared setup for the training tests: a compilation cache shared by every run of the same
program (in process and in train.py subprocesses), and the small training config they share.

Compile time dominates these tiny networks. The smoke configs compile with
`compile_mode='fast'`, and a persistent compilation cache, switched on only while this
folder's tests run, lets runs of identical programs (configs differing only in data or
bookkeeping, resumed runs, eval.py) load compiled code instead of compiling again.
"""

import os
import tempfile

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

CACHE_DIR = os.environ.setdefault("EFFJAX_TEST_COMPILATION_CACHE", tempfile.mkdtemp(prefix="effjax_jit_cache_"))
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


# One small training program shared by test_loop (in process) and test_multiprocess
# (train.py subprocesses): identical programs hit the compilation cache across both.
SMOKE_STEPS = 30
SMOKE_OVERRIDES = dict(total_steps=SMOKE_STEPS, checkpoint_every_steps=10, keep_checkpoints=10, input_shards=2)
SMOKE_FLAGS = ["--config=configs/quickstart.py:smoke"] + [f"--config.{k}={v}" for k, v in SMOKE_OVERRIDES.items()]


def smoke_config(**overrides):
    """configs/quickstart.py:smoke with SMOKE_OVERRIDES (what SMOKE_FLAGS give train.py)."""
    from configs import quickstart

    config = quickstart.get_config("smoke")
    for k, v in {**SMOKE_OVERRIDES, **overrides}.items():
        config[k] = v
    return config
