"""Training and evaluation: the TF recipe, jit + sharding, Orbax checkpoints, the loop.

Entry points: `train_and_evaluate(config, workdir)` (loop.py) and
`evaluate_checkpoint(config, workdir, checkpoint)` (evaluate_checkpoint.py); configs/ holds
the experiments.
"""

from efficientnet_jax.training.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]
