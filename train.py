"""Train an EfficientNet: `python train.py --config=configs/b0.py --workdir=DIR [--config.key=value ...]`.

Re-running the same command in the same workdir resumes from the latest checkpoint. On a
multi-host system (TPU pod, GPU cluster) run the same command on every host with
`--distributed` (or EFFICIENTNET_JAX_DISTRIBUTED=1).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from efficientnet_jax.host_memory import configure_host_malloc  # noqa: E402  (imports no JAX)

# Before anything starts a thread: reuse host buffers across steps (efficientnet_jax/host_memory.py;
# cache_large relaunches this process with its allocator preloaded, keep_freed where it cannot).
if __name__ == "__main__":
    configure_host_malloc("cache_large")

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", None,
                                 "Call jax.distributed.initialize() (default: EFFICIENTNET_JAX_DISTRIBUTED).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from efficientnet_jax.training import metrics, parallel

    metrics.quiet_library_logs()
    parallel.initialize_distributed(_DISTRIBUTED.value)  # before any other JAX call
    from efficientnet_jax.training import compile_cache

    compile_cache.enable(_CONFIG.value.compilation_cache_dir)  # before the first compile

    import jax

    from efficientnet_jax.training import train_and_evaluate

    logging.info("JAX %s: %d process(es), %d device(s): %s", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if result.get("preempted"):
        sys.exit(143)  # 128 + SIGTERM: the scheduler should rerun the same command to resume


if __name__ == "__main__":
    app.run(main)
