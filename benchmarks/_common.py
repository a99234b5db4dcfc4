"""Shared helpers of the benchmark drivers and their worker processes: timing inside a worker,
statistics and tables, the machine summary. Launching the workers is `_launch.py`.

Importing this module imports only the standard library (the driver must not start any
framework's threads); `matmul_peak` imports numpy and jax when a worker calls it.

Method (shared/reference/perf_baseline.md, "Method"): every implementation runs alone in its
own process, the driver runs them in interleaved rounds (A B C A B C ...), waits (a bounded
time) for the machine to be quiet before each one and records the CPU that *other* processes
used while it ran. In one process the idle worker threads of ONNX Runtime, XLA and OpenMP spin
and steal the cores from each other (timm batch 8 ran ~10x slower next to them), and a 2-thread
PyTorch run collapses when another process holds a core; both make single-process figures lie.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_worker.py")
RESULT_PREFIX = "RESULT "
WINDOW_PREFIX = "WINDOW "  # --serve workers: one timed window
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------------------------
# Worker side: timing inside one process.
# --------------------------------------------------------------------------------------------

def time_reps(fn: Callable[[], Any], reps: int, target_s: float,
              max_iters: int = 10_000) -> Tuple[List[int], List[float]]:
    """Seconds per call of `reps` repetitions of back-to-back calls of a warmed-up, blocking `fn`.

    Each repetition calls `fn` until `target_s` seconds have passed (at least once), so fast and
    slow implementations get comparable timing windows, and an iterator whose first calls return
    prefetched items instantly cannot inflate the count. Returns (calls per rep, s per call).
    """
    iters, out = [], []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= target_s or n >= max_iters:
                break
        iters.append(n)
        out.append(elapsed / n)
    return iters, out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best_seconds(fn: Callable[[], Any], reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(sizes: Sequence[int], precision: str, with_numpy: bool, reps: int = 3) -> Dict[str, float]:
    """Best GFLOP/s of an n x n matmul per library and size: numpy (OpenBLAS) and jax (XLA).

    The ceiling the GFLOP/s columns are compared with; numpy and jax are imported here, in the
    worker that measures it, never in the driver.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    dot = jax.jit(jnp.dot)
    out: Dict[str, float] = {}
    for n in sizes:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), np.float32)
        b = rng.standard_normal((n, n), np.float32)
        if with_numpy:
            out[f"numpy n={n}"] = 2 * n**3 / _best_seconds(lambda: a @ b, reps) / 1e9
        ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        out[f"jax n={n}"] = 2 * n**3 / _best_seconds(lambda: dot(ja, jb).block_until_ready(), reps) / 1e9
    return out


def emit(result: Dict[str, Any]) -> None:
    """The one line a worker prints for the driver."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Statistics and tables.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class WorkerRun:
    result: Optional[Dict[str, Any]]  # the worker's RESULT, None when it failed
    error: str  # empty on success
    other_before: float  # cores other processes used just before the start
    other_during: float  # cores other processes used, on average, while it ran
    waited_s: float
    wall_s: float


@dataclasses.dataclass
class Stats:
    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Optional["Stats"]:
        return cls(statistics.median(xs), min(xs), max(xs), len(xs)) if xs else None


def pooled_reps(runs: Sequence[WorkerRun], batch: int) -> List[float]:
    """Per-call seconds of every repetition of every round, for one batch size."""
    out: List[float] = []
    for run in runs:
        if run.result and not run.result.get("skipped"):
            out += run.result.get("batches", {}).get(str(batch), {}).get("reps", [])
    return out


def first_ok(runs: Sequence[WorkerRun]) -> Optional[Dict[str, Any]]:
    return next((r.result for r in runs if r.result and not r.result.get("skipped")), None)


def max_other(runs: Sequence[WorkerRun]) -> Optional[float]:
    vals = [r.other_during for r in runs if r.result]
    return max(vals) if vals else None


def fmt_ms(s: Optional[Stats], scale: float = 1e3, digits: int = 1) -> str:
    if s is None:
        return "-"
    return f"{s.median * scale:.{digits}f} [{s.lo * scale:.{digits}f}-{s.hi * scale:.{digits}f}]"


def fmt(x: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns are padded to line up in a terminal too."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


# --------------------------------------------------------------------------------------------
# Machine description (recorded with every run, so a figure always says where it came from).
# --------------------------------------------------------------------------------------------

def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem = float("nan")
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    pkgs = ", ".join(f"{p} {_version(p)}" for p in ("jax", "jaxlib", "flax", "torch", "timm", "keras", "onnxruntime"))
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}; {pkgs}; "
            f"loadavg at start {load}")


def gpu_present() -> bool:
    """An NVIDIA GPU is visible (checked without importing any framework into the driver)."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
