"""Keep freed host memory in the process, so XLA CPU does not page-fault its buffers every step.

XLA CPU allocates each executable's temporary buffer (300 MB for a B0 batch-32 forward, several
GB for a training step) with posix_memalign on its worker threads. glibc serves such sizes from a
fresh mmap and unmaps them on free, so every step the kernel zero-fills every page again: 76k
minor page faults and ~0.1 s of system time per B0 batch-32 forward on 2 cores (measured with
getrusage), ~10 % of the forward and ~25 % of a training step. ONNX Runtime avoids this with its
own arena; PyTorch on CPU does not (and gains as much from this setting: timm channels_last B0
batch-32 training step 2.25 -> 1.49 s).

`keep_freed_memory()` tells glibc to serve every thread from the main heap (one arena), never to
mmap large blocks and never to trim the heap, so the second step reuses the first step's pages.
Call it first thing in a process, before JAX runs anything: threads that have already allocated
keep their own arenas. What it costs (B0, 2 cores, measured with `benchmarks/`): the threads now
share one arena lock, so XLA compiles ~40 % slower and a batch-1 forward, all small allocations,
is ~20 % slower; a batch-32 forward is ~8 % faster and a batch-32 training step ~22 % faster. The
process also keeps its peak heap until it exits, and the heap is not compact: within the first ~10
training steps a freed block's hole can be split by small allocations, the next step's buffers then
come from fresh heap, and that step pays the page faults once more (one B0 batch-32 step of 9.6 s
instead of 1.8 s, peak RSS 5.1 -> 8.9 GB; later steps had no faults). Hence train.py and eval.py
(big batches, many steps) turn it on and the single-image tools do not. (glibc's thread arenas
cannot hold blocks above 64 MB, so no setting short of one arena stops the faults.)

EFFICIENTNET_JAX_HOST_MALLOC overrides the caller's choice: `system` leaves glibc alone,
`keep_freed` applies it wherever `keep_freed_memory` is called (the benchmarks use that to give
every implementation the same allocator).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from absl import logging

ENV_VAR = "EFFICIENTNET_JAX_HOST_MALLOC"  # 'system' | 'keep_freed' | unset (the caller decides)

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_applied = False


def keep_freed_memory(default: bool = True) -> bool:
    """Configure glibc malloc to reuse freed pages; True if it was applied (or already was).

    `default`: whether to apply it when EFFICIENTNET_JAX_HOST_MALLOC is unset. A no-op (False)
    off Linux/glibc, or with EFFICIENTNET_JAX_HOST_MALLOC=system.
    """
    global _applied
    if _applied:
        return True
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice not in ("", "system", "keep_freed"):
        raise ValueError(f"{ENV_VAR}={choice!r}: expected 'system' or 'keep_freed'")
    if not (choice == "keep_freed" or (default and not choice)) or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # raises AttributeError on musl and other non-glibc libcs
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # -1 becomes SIZE_MAX inside glibc (the value is converted to size_t): never trim.
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
    if not ok:
        logging.warning("glibc mallopt refused a setting; host buffers stay page-faulted per step")
        return False
    _applied = True
    return True
