"""Observability: a NaN/Inf guard, a progress line with ETA, TensorBoard + JSONL metrics.

Only process 0 writes files; every process runs the guard (they all hold the same replicated
metrics, so they all stop at the same step).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

log = logging.getLogger(__name__)

GUARDED = ("loss", "grad_norm")


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient norm; `.step` is the first bad update."""

    def __init__(self, step: int, values: Dict[str, float]):
        self.step = step
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        super().__init__(
            f"non-finite training metrics at step {step} ({shown}); stopping. No checkpoint was "
            "written after this step, so the last saved one is still good: lower the learning "
            "rate, add --config.grad_clip_norm=1.0, or check the input data."
        )


class MetricBuffer:
    """Per-step metrics kept on device until the next log/save point, then checked at once.

    Pulling every step's loss to the host would stall the async dispatch pipeline; checking
    the buffered steps before each log and each save finds the *first* bad step exactly and
    guarantees that no non-finite state is ever checkpointed.
    """

    def __init__(self):
        self._pending: List[Tuple[int, Dict[str, jax.Array]]] = []
        self._checked: List[Dict[str, Any]] = []

    def add(self, step: int, metrics: Dict[str, jax.Array]) -> None:
        self._pending.append((step, metrics))

    def check(self) -> None:
        """Raise NonFiniteError at the first buffered step with a NaN/Inf loss or grad-norm."""
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        host = jax.device_get([m for _, m in self._pending])
        self._pending = []
        for step, m in zip(steps, host):
            if any(k in m and not np.isfinite(m[k]) for k in GUARDED):
                raise NonFiniteError(step, {k: float(m[k]) for k in GUARDED if k in m})
        self._checked.extend(host)

    def summary(self) -> Dict[str, float]:
        """Check, then the mean of each metric over the steps since the last summary."""
        self.check()
        host, self._checked = self._checked, []
        if not host:
            return {}
        return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Throughput and ETA from wall time spent in training (evals and saves are excluded)."""

    def __init__(self, total_steps: int, steps_per_epoch: int, global_batch_size: int, start_step: int):
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.batch = global_batch_size
        self._last_step, self._last_time = start_step, time.perf_counter()
        self._paused_at: Optional[float] = None
        self.img_per_sec = float("nan")

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._last_time += time.perf_counter() - self._paused_at
            self._paused_at = None

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def update(self, step: int) -> Dict[str, float]:
        now = time.perf_counter()
        dt = now - self._last_time
        if step > self._last_step and dt > 0:
            self.img_per_sec = (step - self._last_step) * self.batch / dt
        self._last_step, self._last_time = step, now
        steps_per_sec = self.img_per_sec / self.batch
        eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else float("nan")
        return {"epoch": self.epoch(step), "img_per_sec": self.img_per_sec,
                "img_per_sec_per_device": self.img_per_sec / jax.device_count(), "eta_sec": eta}

    def line(self, step: int, info: Dict[str, float], metrics: Dict[str, float]) -> str:
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        return (f"step {step}/{self.total_steps} | epoch {info['epoch']:.2f} | {shown} | "
                f"{info['img_per_sec']:.0f} img/s | ETA {_fmt_duration(info['eta_sec'])}")


class MetricWriter:
    """TensorBoard event files (tf.summary) and `metrics.jsonl`, on process 0 only."""

    def __init__(self, workdir: str, tensorboard: bool = True, resume_step: Optional[int] = None):
        """`resume_step`: the step training resumes from; records the interrupted run wrote after
        it are dropped from metrics.jsonl, since those steps are about to be trained again."""
        self.enabled = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None and os.path.exists(path):
            _truncate_jsonl(path, resume_step)
        self._jsonl = open(path, "a", buffering=1)
        if tensorboard:
            self._tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: Dict[str, Any], prefix: str = "") -> None:
        if not self.enabled or not metrics:
            return
        scalars = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        if self._tb is not None:
            tf, writer, metadata = self._tb
            with writer.as_default():
                for k, v in scalars.items():
                    tf.summary.write(k, tf.constant(v, tf.float32), step=int(step), metadata=metadata)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb[1].flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb[1].close()
            self._tb = None


def _truncate_jsonl(path: str, last_step: int) -> None:
    """Keep the records of steps <= last_step (and any unreadable tail line is dropped)."""
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError):
                continue  # a line cut short by a kill
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def _tensorboard_writer(logdir: str):
    """(tf, a tf.summary writer, scalar metadata); TensorFlow runs on the CPU only here.

    Scalars are written as TensorBoard's 'scalars' plugin does (a rank-0 float tensor tagged
    with plugin_name='scalars'), through TF core alone: `tf.summary.scalar` would need the
    separate `tensorboard` package, which is only required to *view* the event files.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised by the caller: leave their choice alone
        pass
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    ).SerializeToString()
    return tf, tf.summary.create_file_writer(logdir), metadata


class _DropLibraryInfo(logging.Filter):
    """Drops INFO records from Orbax (dozens of lines per save); warnings and errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname.replace("\\", "/")


def quiet_library_logs() -> None:
    """Keep the progress lines readable: silence Orbax's per-save INFO logging."""
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _DropLibraryInfo) for f in handler.filters):
        handler.addFilter(_DropLibraryInfo())
