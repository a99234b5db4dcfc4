"""What the training tests share: the compilation-cache directory and one small training run."""

import os
import tempfile

# One directory per test session (subprocesses inherit it through the environment).
CACHE_DIR = os.environ.setdefault("EFFJAX_TEST_COMPILATION_CACHE", tempfile.mkdtemp(prefix="effjax_jit_cache_"))

# One small training program shared by test_loop (in process) and test_multiprocess
# (train.py subprocesses): identical programs hit the compilation cache across both.
SMOKE_STEPS = 30
SMOKE_OVERRIDES = dict(total_steps=SMOKE_STEPS, checkpoint_every_steps=10, keep_checkpoints=10, input_shards=2,
                       eval_batch_size=120)  # 3 eval batches of the 360 held-out digits
SMOKE_FLAGS = ["--config=configs/quickstart.py:smoke"] + [f"--config.{k}={v}" for k, v in SMOKE_OVERRIDES.items()]


def smoke_config(**overrides):
    """configs/quickstart.py:smoke with SMOKE_OVERRIDES (what SMOKE_FLAGS give train.py)."""
    from configs import quickstart

    config = quickstart.get_config("smoke")
    for k, v in {**SMOKE_OVERRIDES, **overrides}.items():
        config[k] = v
    return config
