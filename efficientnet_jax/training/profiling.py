"""Optional `jax.profiler` trace of steps N..N+k (process 0), viewable in TensorBoard/Perfetto."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax

log = logging.getLogger(__name__)


class StepProfiler:
    """Traces updates `start_step + 1 .. start_step + num_steps` into `workdir/profile`; off when start < 0."""

    def __init__(self, workdir: str, start_step: int, num_steps: int):
        self.enabled = start_step >= 0 and num_steps > 0 and jax.process_index() == 0
        self.start, self.stop = start_step, start_step + num_steps
        self.logdir = os.path.join(workdir, "profile")
        self._active = False

    def before_step(self, step: int) -> None:
        """`step` = updates done so far."""
        if self.enabled and not self._active and step == self.start:
            jax.profiler.start_trace(self.logdir)
            self._active = True

    def after_step(self, step: int, outputs: Any) -> None:
        if self._active and step >= self.stop:
            jax.block_until_ready(outputs)  # the trace must contain the work, not just its dispatch
            jax.profiler.stop_trace()
            self._active = False
            log.info("profile of steps %d..%d written to %s", self.start + 1, self.stop, self.logdir)

    def close(self) -> None:
        if self._active:
            jax.profiler.stop_trace()
            self._active = False
