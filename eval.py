"""Evaluate: `python eval.py --config=configs/b0.py --workdir=DIR [--checkpoint=latest|best|STEP]`.

Without checkpoints in the workdir, `--config.init_from=DIR` evaluates converted pretrained
weights with no training. The metrics are printed as one JSON object on the last line of stdout
(top1, top5, loss, and ema_top1, ema_top5, ema_loss when the run kept an EMA).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from efficientnet_jax.host_memory import configure_host_malloc  # noqa: E402  (imports no JAX)

# Before anything starts a thread: huge pages for XLA's host buffers (may relaunch the process).
if __name__ == "__main__":
    configure_host_malloc("huge_pages")

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (optional with --config.init_from).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", None,
                                 "Call jax.distributed.initialize() (default: EFFICIENTNET_JAX_DISTRIBUTED).")
flags.mark_flag_as_required("config")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from efficientnet_jax.training import metrics, parallel

    metrics.quiet_library_logs()
    parallel.initialize_distributed(_DISTRIBUTED.value)
    from efficientnet_jax.training import compile_cache

    compile_cache.enable(_CONFIG.value.compilation_cache_dir)  # before the first compile
    from efficientnet_jax.training.evaluate_checkpoint import evaluate_checkpoint

    results = evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _CHECKPOINT.value)
    import jax

    if jax.process_index() == 0:
        print(json.dumps(results), flush=True)


if __name__ == "__main__":
    app.run(main)
