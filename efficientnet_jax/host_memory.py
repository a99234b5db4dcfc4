"""Stop XLA CPU from page-faulting its host buffers every step: huge pages, or keep freed memory.

XLA CPU allocates each executable's temporary buffer (300 MB for a B0 batch-32 forward, several
GB for a training step) with posix_memalign on its worker threads. glibc serves such sizes from a
fresh mmap and unmaps them on free, so every step the kernel zero-fills every page again: 76k
minor page faults and ~0.1 s of system time per B0 batch-32 forward on 2 cores (measured with
getrusage), ~10 % of the forward and ~25 % of a training step. ONNX Runtime avoids this with its
own arena; PyTorch on CPU does not (and gains as much from either remedy below).

Three remedies, chosen by `configure_host_malloc` (eval.py and train.py call it first thing):

`cache_large` (train.py's default): relaunch the process with LD_PRELOAD of `large_blocks.c`
(built here with the C compiler on first use, ~0.3 s, cached beside the CPU kernels), which takes
every allocation of 64 MB or more out of glibc into blocks of its own that a free keeps for the
next request of about the same size. Everything smaller stays with glibc and its per-thread
arenas. Measured on B0 batch-32 training, 2 cores, against `keep_freed`: train-step compile 8.3-8.7
vs 12.7-13.2 s, steady steps 1.01-1.10 vs 1.17-1.41 s, peak RSS 4.5 GB over 40 steps (keep_freed:
11.1 GB after its heap holes were re-placed twice, each a step of ~6 s). XLA sometimes frees a
step's temporary only after the next step has asked for its own; the allocator then waits for it
(bounded) instead of faulting in a second block. Needs Linux, glibc and a C compiler (`$CC`, cc,
gcc, clang); else `keep_freed`.

`huge_pages` (eval.py's default): relaunch the process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1
(glibc >= 2.35), so malloc madvises its mmapped blocks for transparent huge pages: one fault per
2 MB instead of one per 4 KB. Needs the kernel's THP mode `madvise` (under `always` the kernel
does it unasked). Measured on B0, 2 cores, alternating processes: batch-32 forward 419-434 ->
350-355 ms, batch 1 unchanged (15.3-16.0 ms), compile time unchanged. Not for training: in the
real train step (donated state, optimizer) every other step spent ~3 s in the kernel (steps of
1.8, 3.7, 1.9, 3.6 s ...; ~2000 faults each, so not the faults themselves). Where huge pages
cannot be had, `keep_freed` is used.

`keep_freed` (the fallback of the other two): glibc mallopt to serve every thread from the main heap (one
arena), never mmap large blocks and never trim, so a step reuses the previous step's pages (0
faults per step after the first; B0 batch-32 training step 2.30 -> 1.95 s, steady). Any glibc,
in-process (before JAX starts threads: threads that have already allocated keep their own arenas).
Costs, measured: the threads share one arena lock, so XLA compiles ~40 % slower and a batch-1
forward is ~20 % slower; the heap keeps its peak and is not compact: within the first ~10 training
steps a freed block's hole can be split by small allocations and the next step pays the page faults
once more (one B0 batch-32 step of 9.6 s instead of 1.8 s, peak RSS 5.1 -> 8.9 GB). (glibc's thread
arenas cannot hold blocks above 64 MB, so no mallopt setting short of one arena stops the faults.)

EFFICIENTNET_JAX_HOST_MALLOC = system | keep_freed | huge_pages | cache_large overrides the caller's default
(the benchmarks use it to give every implementation the same allocator).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional, Tuple

from absl import logging

from efficientnet_jax.cache_dirs import kernel_cache_dir

ENV_VAR = "EFFICIENTNET_JAX_HOST_MALLOC"  # one of MODES, or unset (the caller's default)
MODES = ("system", "keep_freed", "huge_pages", "cache_large")
LARGE_BLOCKS_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "large_blocks.c")
_LARGE_BLOCKS_SYMBOL = "efficientnet_jax_large_blocks_mapped"  # exported by large_blocks.c

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
_RELAUNCHED = "EFFICIENTNET_JAX_MALLOC_RELAUNCHED"  # set in the relaunched process: never loop

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_applied = False


def configure_host_malloc(default: str) -> str:
    """Apply EFFICIENTNET_JAX_HOST_MALLOC, or `default` when it is unset; returns the mode in effect.

    Call it first thing in a script's entry point: 'huge_pages' may re-execute the process (same
    interpreter, arguments and environment, plus GLIBC_TUNABLES), so whatever ran before it runs
    again. Where huge pages cannot be had it falls back to 'keep_freed'.
    """
    choice = os.environ.get(ENV_VAR, "").strip().lower() or default
    if choice not in MODES:
        raise ValueError(f"{ENV_VAR}={choice!r}: expected one of {MODES}")
    if choice == "system":
        return "system"
    if choice == "huge_pages":
        if huge_pages_active():
            return "huge_pages"
        env = _huge_pages_env()
        if env is not None:
            _relaunch(env)
    if choice == "cache_large":
        if large_blocks_active():
            _forget_preload()
            return "cache_large"
        env = _large_blocks_env()
        if env is not None:
            _relaunch(env)
    return "keep_freed" if _apply_keep_freed() else "system"


def _relaunch(env: Dict[str, str]) -> None:
    """Replace this process by the same command under `env` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def large_blocks_active() -> bool:
    """Is large_blocks.c's allocator loaded into this process?"""
    try:
        ctypes.c_size_t.in_dll(ctypes.CDLL(None), _LARGE_BLOCKS_SYMBOL)
        return True
    except (OSError, ValueError, AttributeError):
        return False


def large_blocks_library() -> Optional[str]:
    """The built allocator library (built now if needed), or None without Linux/glibc/a C compiler."""
    if not sys.platform.startswith("linux") or not _glibc_version():
        return None
    compiler = next(filter(None, (shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c)), None)
    if compiler is None:
        return None
    with open(LARGE_BLOCKS_SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + b"\0" + compiler.encode()).hexdigest()[:16]
    base = str(kernel_cache_dir())
    target = os.path.join(base, f"large_blocks-{key}.so")
    if os.path.exists(target):
        return target
    try:
        os.makedirs(base, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base, prefix=".build-") as tmp:
            out = os.path.join(tmp, os.path.basename(target))
            proc = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", out, LARGE_BLOCKS_SOURCE],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                logging.warning("building %s failed (host allocator falls back to keep_freed): %s",
                                LARGE_BLOCKS_SOURCE, proc.stderr[-2000:])
                return None
            os.replace(out, target)  # atomic: a concurrent process never loads half a library
    except OSError as e:
        logging.warning("cannot build the large-block allocator in %s (%s); keep_freed instead", base, e)
        return None
    return target


def _large_blocks_env() -> Optional[Dict[str, str]]:
    """The environment to relaunch with for cache_large, or None where it cannot be had."""
    if os.environ.get(_RELAUNCHED) or not getattr(sys, "orig_argv", None):
        return None
    library = large_blocks_library()
    if library is None:
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    env[_RELAUNCHED] = "1"
    return env


def _forget_preload() -> None:
    """Drop the allocator from LD_PRELOAD and the relaunch marker: child processes (compilers,
    workers) start with the caller's environment and choose for themselves."""
    kept = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p and not os.path.basename(p).startswith("large_blocks-")]
    if kept:
        os.environ["LD_PRELOAD"] = ":".join(kept)
    else:
        os.environ.pop("LD_PRELOAD", None)
    os.environ.pop(_RELAUNCHED, None)


def huge_pages_active() -> bool:
    """Does this process's malloc already get transparent huge pages for its big blocks?"""
    return HUGE_PAGES_TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":") or _thp_mode() == "always"


def _thp_mode() -> str:
    """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'); '' if unknown."""
    try:
        with open(_THP_MODE_FILE) as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def _glibc_version() -> Tuple[int, ...]:
    """(major, minor) of the C library; () when it is not glibc."""
    try:
        lib, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"; absent elsewhere
    except (AttributeError, ValueError, OSError):
        return ()
    return tuple(int(p) for p in version.split(".")[:2]) if lib == "glibc" else ()


def _huge_pages_env() -> Optional[Dict[str, str]]:
    """The environment to relaunch with for huge pages, or None where relaunching would not help."""
    if (not sys.platform.startswith("linux") or os.environ.get(_RELAUNCHED) or _thp_mode() != "madvise"
            or _glibc_version() < (2, 35) or not getattr(sys, "orig_argv", None)):
        return None
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), HUGE_PAGES_TUNABLE) if t)
    env[_RELAUNCHED] = "1"
    return env


def _apply_keep_freed() -> bool:
    """glibc mallopt: one arena, no mmap, no trim. True if applied (now or earlier); False off glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
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
