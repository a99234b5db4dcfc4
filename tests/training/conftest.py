"""Shared setup for the training tests: fast compiles, a compilation cache shared by the
subprocesses, and the training config used across test modules.

Compiling dominates the run time of these tiny networks, and a test only needs correct
numerics, so most XLA optimisations are off (as flax's examples/imagenet test does) and so are
XLA:CPU's fusion emitters. A persistent compilation cache lets in-process runs and train.py
subprocesses of the same program share compiled code.
"""

import os
import tempfile

# XLA:CPU's fusion emitters double the compile time of these small training steps for no
# run-time gain here; XLA reads the flag when the CPU backend starts (first computation).
FAST_COMPILE_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false"
if FAST_COMPILE_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_XLA_FLAGS).strip()

import jax  # noqa: E402

CACHE_DIR = os.environ.setdefault("EFFJAX_TEST_COMPILATION_CACHE", tempfile.mkdtemp(prefix="effjax_jit_cache_"))

jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
