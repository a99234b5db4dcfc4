"""Evaluate a checkpoint of a workdir, or converted pretrained weights with no training at all."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

from efficientnet_jax.training import experiment, steps
from efficientnet_jax.training.evaluation import evaluate
from efficientnet_jax.training.loop import CHECKPOINT_DIR, checkpointer

log = logging.getLogger(__name__)


def _eval_step(exp):
    return steps.jit_eval_step(exp.mesh, exp.model, experiment.compiler_options(exp.config))


def has_checkpoints(workdir: Optional[str]) -> bool:
    d = os.path.join(workdir, CHECKPOINT_DIR) if workdir else None
    return bool(d) and os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))


def evaluate_checkpoint(config: Any, workdir: Optional[str] = None, checkpoint: str = "latest") -> Dict[str, Any]:
    """top1/top5/loss (and ema_* when the run kept an EMA) of `checkpoint` ('latest' | 'best' | STEP).

    With no checkpoint in `workdir`, evaluates the converted weights at `config.init_from`
    (whose classifier must then match the data set's classes).
    """
    exp = experiment.resolve(config)
    if has_checkpoints(workdir):
        ckpt = checkpointer(config, workdir, read_only=True)
        step = ckpt.resolve(checkpoint)
        if step is None:
            raise FileNotFoundError(f"no evaluated checkpoint in {ckpt.directory} to pick 'best' from; "
                                    "use --checkpoint=latest or a step")
        state, _ = ckpt.restore(step, experiment.abstract_state(exp))
        ckpt.close()
        results = evaluate(exp, state.variables, state.ema_variables, _eval_step(exp))
        return {**results, "step": step, "checkpoint": f"{ckpt.directory}/{step}"}
    if config.init_from:
        variables = experiment.load_pretrained(exp, config.init_from, reinit_head=False)
        return {**evaluate(exp, variables, None, _eval_step(exp)), "step": 0, "checkpoint": config.init_from}
    raise FileNotFoundError(f"nothing to evaluate: no checkpoint in {workdir!r} and no --config.init_from")
