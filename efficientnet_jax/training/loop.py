"""`train_and_evaluate(config, workdir)`: a whole training run, top to bottom. Start reading here.

1. Resolve the config (data set, model, schedule, optimizer, progressive stages, mesh).
2. Get a state: resume the latest checkpoint in `workdir` if there is one, else start from
   converted weights (`config.init_from`), else from a fresh init.
3. Train stage by stage; each stage opens the deterministic input stream at the current step,
   so a resumed run sees exactly the batches an uninterrupted one would.
4. Log, evaluate (raw and EMA weights), checkpoint; on SIGTERM save and leave.
5. Final evaluation and checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict

import jax

from efficientnet_jax.training import experiment, inputs, parallel, steps
from efficientnet_jax.training.checkpointing import Checkpointer
from efficientnet_jax.training.evaluation import evaluate
from efficientnet_jax.training.metrics import MetricBuffer, MetricWriter, Progress
from efficientnet_jax.training.preemption import PreemptionWatcher
from efficientnet_jax.training.profiling import StepProfiler

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


def checkpointer(config: Any, workdir: str, read_only: bool = False) -> Checkpointer:
    return Checkpointer(
        os.path.join(workdir, CHECKPOINT_DIR), config.checkpoint_every_steps, keep=config.keep_checkpoints,
        keep_best=config.keep_best_checkpoints, async_save=config.async_checkpointing, read_only=read_only,
    )


def save_config(config: Any, exp: experiment.Experiment, workdir: str) -> None:
    """`workdir/config.json`: the config as given plus the values resolved from it."""
    if jax.process_index() != 0:
        return
    resolved = {
        "num_classes": exp.num_classes, "image_size": exp.image_size, "eval_image_size": exp.eval_image_size,
        "steps_per_epoch": exp.steps_per_epoch, "total_steps": exp.total_steps,
        "num_train_examples": int(exp.info.num_train), "num_eval_examples": int(exp.info.num_eval),
        "devices": jax.device_count(), "processes": jax.process_count(),
        "stages": [vars(s) for s in exp.stages],
    }
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"config": json.loads(config.to_json_best_effort()), "resolved": resolved}, f, indent=2,
                  default=lambda o: o.item() if hasattr(o, "item") else str(o))  # numpy scalars


def train_and_evaluate(config: Any, workdir: str) -> Dict[str, Any]:
    """Train `config` in `workdir` (resuming if it holds checkpoints); returns the final eval metrics.

    On SIGTERM it saves a checkpoint and returns {'preempted': True, 'step': ...} early.
    """
    # --- 1. Resolve -----------------------------------------------------------------------
    exp = experiment.resolve(config)
    os.makedirs(workdir, exist_ok=True)
    save_config(config, exp, workdir)
    ckpt = checkpointer(config, workdir)

    # --- 2. State -------------------------------------------------------------------------
    latest = ckpt.latest_step()
    writer = MetricWriter(workdir, tensorboard=config.tensorboard, resume_step=latest or 0)
    if latest is not None:
        state, meta = ckpt.restore(latest, experiment.abstract_state(exp))
        log.info("resumed from %s/%d (stage %s)", ckpt.directory, latest, meta.get("stage"))
    elif config.init_from:
        state = experiment.init_state(exp, experiment.load_pretrained(exp, config.init_from))
        log.info("initialised from converted weights %s", config.init_from)
    else:
        state = experiment.init_state(exp)
    step = int(jax.device_get(state.step))

    # --- 3. Compiled steps (the train step compiles once per stage image size) -------------
    options = experiment.compiler_options(config)
    train_step = steps.jit_train_step(
        exp.mesh, exp.model, exp.tx, exp.schedule, config.label_smoothing, config.ema_decay, options,
    )
    eval_step = steps.jit_eval_step(exp.mesh, exp.model, options)

    # --- 4. Train -------------------------------------------------------------------------
    buffer = MetricBuffer()  # per-step metrics, checked for NaN/Inf before every log and save
    progress = Progress(exp.total_steps, exp.steps_per_epoch, config.batch_size, step)
    profiler = StepProfiler(workdir, config.profile_start_step, config.profile_num_steps)
    preemption = PreemptionWatcher()
    stage_index = 0
    results: Dict[str, Any] = {}

    def run_eval() -> Dict[str, float]:
        progress.pause()
        out = evaluate(exp, state.variables, state.ema_variables, eval_step)
        writer.write(step, out, prefix="eval/")
        log.info("eval at step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in out.items()))
        progress.resume()
        return out

    def save(metrics=None, force=False) -> None:
        """Checkpoint now if forced or due; `metrics` make it a candidate for 'best'."""
        if not (force or ckpt.should_save(step)):
            return
        buffer.check()  # never checkpoint a state that went through a NaN/Inf step
        stage = exp.stages[stage_index]
        meta = {"step": step, "stage": stage.index, "image_size": stage.image_size,
                "model_name": config.model_name, "num_classes": exp.num_classes, "devices": jax.device_count()}
        progress.pause()
        ckpt.save(step, state, meta, metrics=metrics)
        progress.resume()

    try:
        for stage_index, stage in enumerate(exp.stages):
            if step >= stage.end_step:
                continue
            log.info("stage %d: steps %d..%d at %dpx, randaug %.1f, mixup %.2f, cutmix %.2f", stage.index,
                     step + 1, stage.end_step, stage.image_size, stage.randaug_magnitude, stage.mixup_alpha,
                     stage.cutmix_alpha)
            batches = inputs.train_batches(exp, stage, start_step=step)
            while step < stage.end_step:
                profiler.before_step(step)
                batch = parallel.global_batch(next(batches), exp.mesh)
                state, metrics = train_step(state, batch)
                step += 1
                buffer.add(step, metrics)
                profiler.after_step(step, state)

                if step % config.log_every_steps == 0 or step == exp.total_steps:
                    train_metrics = buffer.summary()
                    info = progress.update(step)
                    writer.write(step, {**train_metrics, **info}, prefix="train/")
                    log.info(progress.line(step, info, train_metrics))
                if step == exp.total_steps:
                    pass  # the final evaluation and checkpoint follow the loop
                elif config.eval_every_steps and step % config.eval_every_steps == 0:
                    buffer.check()
                    save(run_eval(), force=True)  # evaluated checkpoints compete for 'best'
                else:
                    save()
                if preemption.reached(step):
                    save(force=True)
                    ckpt.wait()
                    log.warning("preempted: checkpoint at step %d saved in %s; rerun the same command to resume",
                                step, ckpt.directory)
                    return {"preempted": True, "step": step}

        # --- 5. Final evaluation and checkpoint -------------------------------------------
        buffer.check()
        results = run_eval()
        save(results, force=True)
        writer.flush()
    finally:
        profiler.close()
        preemption.close()
        ckpt.close()
        writer.close()
    return {**results, "step": step}
