"""Driver side of the benchmarks: wait for a quiet machine, launch the workers (one process per
implementation), run them in interleaved rounds or in alternating windows, and record the CPU
other processes used meanwhile (the method is described in `_common.py`).

Standard library only: the driver must not start any framework's threads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from _common import RESULT_PREFIX, THREAD_VARS, WINDOW_PREFIX, WORKER, WorkerRun



def _cpu_busy_seconds() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle + iowait


def busy_cores(interval: float = 1.0) -> float:
    """Cores kept busy by all processes over the next `interval` seconds."""
    b0, t0 = _cpu_busy_seconds(), time.perf_counter()
    time.sleep(interval)
    return (_cpu_busy_seconds() - b0) / (time.perf_counter() - t0)


def wait_quiet(max_busy: float, max_wait: float) -> Tuple[float, float]:
    """Wait until other load <= `max_busy` cores, at most `max_wait` s: (last load, seconds waited)."""
    t0 = time.perf_counter()
    while True:
        load = busy_cores(1.0 if max_wait > 0 else 0.2)
        waited = time.perf_counter() - t0
        if load <= max_busy or waited >= max_wait:
            return load, waited


def thread_env(threads: int, extra: Sequence[str] = ()) -> Dict[str, str]:
    """Environment of a worker: `threads` for OpenMP/MKL/OpenBLAS, quiet TF, plus KEY=VAL extras."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONWARNINGS"] = "ignore"
    for kv in extra:
        if "=" not in kv:
            raise ValueError(f"--env expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        env[k] = v
    return env


def worker_command(argv: Sequence[str], cpus: Optional[int]) -> List[str]:
    """`python _worker.py argv`, pinned to the first `cpus` cores (taskset) when that is fewer than all:
    the only way to give XLA and ONNX Runtime fewer threads; OpenMP/MKL follow the env variables."""
    cmd = [sys.executable, WORKER, *argv]
    if cpus and cpus < (os.cpu_count() or cpus):
        cmd = ["taskset", "-c", f"0-{cpus - 1}", *cmd]
    return cmd


def run_worker(argv: Sequence[str], env: Dict[str, str], timeout_s: float, cpus: Optional[int],
               max_busy: float, max_wait: float) -> WorkerRun:
    """Run `_worker.py argv` alone (after a bounded wait for quiet, pinned as `worker_command`
    says) and parse its RESULT line."""
    before, waited = wait_quiet(max_busy, max_wait)
    cmd = worker_command(argv, cpus)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, t0 = _cpu_busy_seconds(), time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {timeout_s:.0f} s", -1
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    other = max(0.0, (_cpu_busy_seconds() - b0 - mine) / max(wall, 1e-6))
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    if rc != 0 or not lines:
        tail = "\n".join((err or "").strip().splitlines()[-15:])
        return WorkerRun(None, f"rc={rc}: {tail}", before, other, waited, wall)
    return WorkerRun(json.loads(lines[-1][len(RESULT_PREFIX):]), "", before, other, waited, wall)


@dataclasses.dataclass
class QuietPolicy:
    max_busy: float  # other load (cores) below which a worker may start
    max_wait: float  # seconds to wait for that at most, per worker
    timeout_s: float  # a worker is killed after this
    cpus: Optional[int]


def run_interleaved(jobs: Sequence[Tuple[str, List[str]]], rounds: int, env: Dict[str, str], policy: QuietPolicy,
                    log: Callable[[str], None]) -> Dict[str, List[WorkerRun]]:
    """Run each (key, worker argv) once per round in A B C A B C order; key -> runs.

    A job whose worker reports `skipped` (the peer lacks the variant) is not run again.
    """
    runs: Dict[str, List[WorkerRun]] = {key: [] for key, _ in jobs}
    for r in range(rounds):
        for key, argv in jobs:
            if runs[key] and runs[key][0].result and runs[key][0].result.get("skipped"):
                continue
            run = run_worker(argv, env, policy.timeout_s, policy.cpus, policy.max_busy, policy.max_wait)
            runs[key].append(run)
            if run.error:
                log(f"round {r} {key}: FAILED after {run.wall_s:.0f} s\n    " + run.error.replace("\n", "\n    "))
            elif run.result.get("skipped"):
                log(f"round {r} {key}: skipped ({run.result['skipped']})")
            else:
                log(f"round {r} {key}: {run.wall_s:.0f} s, other load before {run.other_before:.2f} "
                    f"(waited {run.waited_s:.0f} s), during {run.other_during:.2f} cores; "
                    + brief(run.result))
    return runs


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _read_prefixed(p: subprocess.Popen, prefix: str, deadline: float) -> Optional[Dict[str, Any]]:
    """The next stdout line of `p` starting with `prefix`, parsed; None at EOF or past `deadline`."""
    while time.perf_counter() < deadline:
        line = p.stdout.readline()
        if not line:
            return None
        if line.startswith(prefix):
            return json.loads(line[len(prefix):])
    return None


def run_windows(jobs: Sequence[Tuple[str, List[str]]], windows: int, batches: Sequence[int], env: Dict[str, str],
                policy: QuietPolicy, log: Callable[[str], None]) -> Dict[str, List[WorkerRun]]:
    """Every implementation in one long-lived worker (`--serve`), timed in alternating windows.

    The workers start one at a time, each alone on a quiet machine (their set-up, compile and
    time to first step are measured as in `run_interleaved`), and stay up; then for each of
    `windows` rounds and each batch size every worker times one window in turn (the order rotates
    per round). A host whose speed drifts over tens of seconds then slows every implementation
    alike, where a whole process per round could catch a slow phase alone. Returns key -> [one
    WorkerRun] whose reps are the windows.
    """
    procs: Dict[str, subprocess.Popen] = {}
    runs: Dict[str, List[WorkerRun]] = {}
    stderr_files: Dict[str, Any] = {}
    try:
        for key, argv in jobs:
            before, waited = wait_quiet(policy.max_busy, policy.max_wait)
            cmd = worker_command([*argv, "--serve"], policy.cpus)
            stderr_files[key] = tempfile.TemporaryFile(mode="w+")
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr_files[key],
                                 text=True, env=env, bufsize=1)
            result = _read_prefixed(p, RESULT_PREFIX, t0 + policy.timeout_s)
            wall = time.perf_counter() - t0
            if result is None:
                p.kill()
                stderr_files[key].seek(0)
                tail = "\n".join(stderr_files[key].read().strip().splitlines()[-15:])
                runs[key] = [WorkerRun(None, f"no RESULT line: {tail}", before, 0.0, waited, wall)]
                log(f"{key}: FAILED after {wall:.0f} s\n    " + runs[key][0].error.replace("\n", "\n    "))
                continue
            runs[key] = [WorkerRun(result, "", before, 0.0, waited, wall)]
            if result.get("skipped"):
                log(f"{key}: skipped ({result['skipped']})")
                continue
            procs[key] = p
            log(f"{key}: up after {wall:.0f} s (set-up {result['setup_s']:.1f} s, time to first step "
                f"{result.get('time_to_first_step_s', float('nan')):.1f} s)")
        reps: Dict[str, Dict[int, List[float]]] = {k: {b: [] for b in batches} for k in procs}
        keys = list(procs)
        b0, t0 = _cpu_busy_seconds(), time.perf_counter()
        c0 = sum(_proc_cpu_seconds(p.pid) for p in procs.values())
        for w in range(windows):
            order = keys[w % len(keys):] + keys[:w % len(keys)] if keys else []
            line = []
            for b in batches:
                for key in order:
                    p = procs[key]
                    p.stdin.write(f"{b}\n")
                    p.stdin.flush()
                    got = _read_prefixed(p, WINDOW_PREFIX, time.perf_counter() + policy.timeout_s)
                    if got is None:
                        raise RuntimeError(f"{key} stopped answering in window {w} (batch {b})")
                    reps[key][b].append(got["s_per_call"])
                    line.append(f"{key} B{b} {got['s_per_call'] * 1e3:.1f}")
            log(f"window {w}: " + ", ".join(line) + " ms")
        wall = time.perf_counter() - t0
        mine = sum(_proc_cpu_seconds(p.pid) for p in procs.values()) - c0
        other = max(0.0, (_cpu_busy_seconds() - b0 - mine) / max(wall, 1e-6))
        for key in keys:
            run = runs[key][0]
            for b in batches:
                run.result["batches"][str(b)]["reps"] = reps[key][b]
                run.result["batches"][str(b)]["iters"] = []
            run.other_during = other
    finally:
        for p in procs.values():
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
                p.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                p.kill()
        for f in stderr_files.values():
            f.close()
    return runs


def brief(result: Dict[str, Any]) -> str:
    """One-line per-batch medians of a worker result, for progress logs."""
    parts = []
    for b, d in result.get("batches", {}).items():
        if d.get("reps"):
            parts.append(f"B{b} {statistics.median(d['reps']) * 1e3:.1f} ms")
        elif "first_call_s" in d:
            parts.append(f"B{b} first call {d['first_call_s']:.1f} s")
    return ", ".join(parts)
