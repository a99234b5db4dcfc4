"""Save-on-preemption: notice SIGTERM so the loop can checkpoint and exit cleanly."""

from __future__ import annotations

import logging
import signal
import threading

import jax

log = logging.getLogger(__name__)


class PreemptionWatcher:
    """Notices SIGTERM (a preemption notice) so the loop can save and exit cleanly.

    Single process: our own SIGTERM handler sets a flag. Multi-process: every host must agree on
    the step at which to stop, so JAX's preemption sync point (coordination service, set up by
    `jax.distributed.initialize`) decides instead.
    """

    def __init__(self):
        self._flag = threading.Event()
        self._previous = None
        self._multi = jax.process_count() > 1
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint at the end of this step, then exiting")
        self._flag.set()

    def reached(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # preemption service disabled
                return False
        return self._flag.is_set()

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
