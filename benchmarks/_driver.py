"""What bench_inference.py and bench_train.py share: flags, set-up, the info/peak workers, tables.

The driver process imports no framework (no JAX, PyTorch or TensorFlow threads of its own that
could compete with a worker); everything measured runs in `_worker.py` subprocesses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import Stats, first_ok, fmt, fmt_ms, gpu_present, machine_summary, markdown_table, max_other, pooled_reps
from _launch import QuietPolicy, WorkerRun, run_interleaved, run_windows, run_worker, thread_env

LABELS = {
    "ours": "ours",
    "ours_real": "ours, real input pipeline",
    "ours_plain": "ours, model.apply (BN unfolded, weights as arguments)",
    "input": "input pipeline alone",
    "timm": "timm eager NCHW",
    "timm_cl": "timm eager channels_last",
    "timm_compile": "timm torch.compile NCHW",
    "timm_compile_cl": "timm torch.compile channels_last",
    "keras": "Keras 3 on JAX (stock)",
    "ort": "ONNX Runtime (timm export)",
}
PEERS = ("timm", "timm_cl", "timm_compile", "timm_compile_cl", "keras", "ort")


def label(impl: str) -> str:
    if impl in LABELS:
        return LABELS[impl]
    return f"ours, dw_impl={impl[5:]}" if impl.startswith("ours_") else impl


_T0 = time.perf_counter()
STARTUP_TITLE = ("Set-up and time to first step (round 0; time to first step counts from process start, "
                 "imports included):")


def log(msg: str) -> None:
    """Progress goes to stderr (tables go to stdout), stamped with seconds since start."""
    print(f"[{time.perf_counter() - _T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def comma_list(s: str) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_common_args(p: argparse.ArgumentParser, batches: Sequence[int]) -> None:
    p.add_argument("--model", default="efficientnet_b0", help="variant (any name of efficientnet_jax.list_models())")
    p.add_argument("--models", default="", help="comma-separated variants, run one after another (overrides --model)")
    p.add_argument("--resolution", type=int, default=0, help="image size (default: each variant's own; B0: 224)")
    p.add_argument("--batches", type=int, nargs="+", default=list(batches))
    p.add_argument("--impls", default="", help="comma-separated implementations (default: depends on the device)")
    p.add_argument("--ours-variants", default="",
                   help="extra dw_impl values of ours to time too, e.g. 'xla' (XLA's grouped conv)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (a fresh process per impl and round)")
    p.add_argument("--windows", type=int, default=0,
                   help="instead of rounds: one long-lived process per impl, timed in this many alternating "
                        "windows of --target s per batch (robust to a host whose speed drifts)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per batch in each process")
    p.add_argument("--target", type=float, default=1.0, help="seconds per repetition (at least one call)")
    p.add_argument("--warmup", type=int, default=2, help="calls before timing; the first compiles")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads per implementation (fewer than the cores: pinned with taskset)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: fp32 on CPU; bf16 on GPU (ours dtype=bfloat16, timm/keras bf16 autocast)")
    p.add_argument("--compile-only", action="store_true",
                   help="only ours: set-up, compile and one step per batch (time to first step); no timing")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul-peak measurement")
    p.add_argument("--peak-sizes", type=int, nargs="+", default=None,
                   help="n of the n x n peak matmuls (default: 2048 4096 on CPU, 8192 16384 on GPU)")
    p.add_argument("--max-busy", type=float, default=0.3,
                   help="start a worker only when other processes use at most this many cores ...")
    p.add_argument("--max-wait", type=float, default=30.0, help="... or after waiting this long (s)")
    p.add_argument("--timeout", type=float, default=1200.0, help="kill a worker after this many seconds")
    p.add_argument("--env", nargs="*", default=[], help="extra KEY=VALUE for the workers (e.g. XLA_FLAGS=...)")
    p.add_argument("--json", default="", help="also write every raw figure to this JSON file")


@dataclasses.dataclass
class Setup:
    models: List[str]
    device: str
    precision: str
    impls: List[str]
    env: Dict[str, str]
    policy: QuietPolicy
    args: argparse.Namespace


def resolve(args: argparse.Namespace, default_impls: Dict[str, List[str]], allowed: Sequence[str]) -> Setup:
    """Validate the flags (clear errors naming the flag) and fix device, precision and impls."""
    models = comma_list(args.models) or [args.model]
    device = args.device if args.device != "auto" else ("gpu" if gpu_present() else "cpu")
    precision = args.precision if args.precision != "auto" else ("bf16" if device == "gpu" else "fp32")
    impls = comma_list(args.impls) or list(default_impls[device])
    impls += [f"ours_{v}" for v in comma_list(args.ours_variants) if f"ours_{v}" not in impls]
    if args.compile_only:
        impls = [i for i in impls if i.startswith("ours")] or ["ours"]
    # ours_<x> passes x as dw_impl (the model validates it); ours_real is bench_train's only,
    # ours_plain bench_inference's.
    bad = [i for i in impls if i not in allowed and (not i.startswith("ours_") or i in ("ours_real", "ours_plain"))]
    if bad:
        raise SystemExit(f"--impls: unknown implementation(s) {bad}; choose from {list(allowed)} or ours_<dw_impl>")
    if args.windows < 0:
        raise SystemExit(f"--windows must be >= 0, got {args.windows}")
    for flag in ("rounds", "reps", "warmup", "threads"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if any(b < 1 for b in args.batches):
        raise SystemExit(f"--batches must be >= 1, got {args.batches}")
    if args.resolution < 0 or 0 < args.resolution < 32:
        raise SystemExit(f"--resolution must be >= 32 (the network downsamples 32x), got {args.resolution}")
    env = thread_env(args.threads, args.env)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    policy = QuietPolicy(max_busy=args.max_busy, max_wait=args.max_wait, timeout_s=args.timeout,
                         cpus=args.threads if device == "cpu" else None)
    return Setup(models, device, precision, impls, env, policy, args)


def worker_argv(s: Setup, mode: str, impl: str, model: str, resolution: int, extra: Sequence[str] = ()) -> List[str]:
    a = s.args
    argv = ["--mode", mode, "--impl", impl, "--model", model, "--resolution", str(resolution),
            "--batches", *map(str, a.batches), "--reps", str(a.reps), "--target", str(a.target),
            "--warmup", str(a.warmup), "--threads", str(a.threads), "--device", s.device,
            "--precision", s.precision, *extra]
    return argv + (["--compile-only"] if a.compile_only else [])


def run_jobs(s: Setup, model: str, jobs: Sequence[Tuple[str, List[str]]]) -> Dict[str, List[WorkerRun]]:
    """The workers of one model: interleaved rounds of fresh processes, or with --windows
    long-lived processes timed in alternating windows (`_launch.run_windows`)."""
    a = s.args
    if a.windows and not a.compile_only:
        log(f"{model}: {len(jobs)} implementations, {a.windows} alternating windows of {a.target:g} s per batch")
        return run_windows(jobs, a.windows, a.batches, s.env, s.policy, log)
    rounds = 1 if a.compile_only else a.rounds
    log(f"{model}: {len(jobs)} implementations x {rounds} round(s)")
    return run_interleaved(jobs, rounds, s.env, s.policy, log)


def header(s: Setup, title: str) -> None:
    print(f"# {title}")
    print(f"command: {' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}")
    print(f"machine: {machine_summary()}")
    how = ("compile only: one process per implementation, set-up, compile and one call, no timing"
           if s.args.compile_only else
           f"each implementation in its own process, {s.args.rounds} interleaved round(s) x {s.args.reps} reps; "
           "figures are median [min-max] over all reps of all rounds")
    print(f"device {s.device}, {s.precision}, {s.args.threads} threads per implementation; {how}")
    print()


def model_info(s: Setup) -> Dict[str, Dict[str, Any]]:
    """Parameters, depth, size and multiply-adds of every requested variant (one worker)."""
    argv = ["--mode", "info", "--models", ",".join(s.models), "--resolution", str(s.args.resolution)]
    run = run_worker(argv, s.env, s.policy.timeout_s, None, max_busy=99, max_wait=0)
    if run.error:
        raise SystemExit(f"could not build the model(s) {s.models}: {run.error}")
    return run.result["models"]


def matmul_peak(s: Setup) -> Optional[Dict[str, Any]]:
    """The machine's measured matmul peak in the benchmark's precision (its own worker)."""
    if s.args.no_peak or s.args.compile_only:
        return None
    sizes = s.args.peak_sizes or ([8192, 16384] if s.device == "gpu" else [2048, 4096])
    argv = ["--mode", "peak", "--peak-sizes", *map(str, sizes), "--threads", str(s.args.threads),
            "--device", s.device, "--precision", s.precision]
    run = run_worker(argv, s.env, s.policy.timeout_s, s.policy.cpus, s.policy.max_busy, s.policy.max_wait)
    if run.error:
        log(f"matmul peak FAILED: {run.error}")
        return None
    r = run.result
    log("matmul peak: " + ", ".join(f"{k} {v:.0f}" for k, v in r["gflops"].items())
        + f" GFLOP/s (other load during {run.other_during:.2f} cores)")
    return dict(r, other_during=run.other_during)


def peak_line(peak: Optional[Dict[str, Any]], precision: str) -> str:
    if not peak:
        return "matmul peak not measured"
    return (f"matmul peak {peak['best_gflops']:.0f} GFLOP/s ({precision}, best of "
            + ", ".join(f"{k} {v:.0f}" for k, v in peak["gflops"].items()) + ")")


def speeds(runs: Dict[str, List[WorkerRun]], batch: int) -> Dict[str, Stats]:
    out = {}
    for impl, rs in runs.items():
        st = Stats.of(pooled_reps(rs, batch))
        if st:
            out[impl] = st
    return out


def paired_speedups(runs: Dict[str, List[WorkerRun]], batches: Sequence[int]) -> Optional[str]:
    """--windows only: per batch and peer, the median [min-max] of the per-window ratios peer time /
    ours time (both timed within seconds of each other), a speed-up that the host's drift
    cancels out of."""
    lines = []
    for b in batches:
        ours = pooled_reps(runs.get("ours", []), b)
        for impl in runs:
            theirs = pooled_reps(runs[impl], b)
            if impl in ("ours", "input") or not ours or len(theirs) != len(ours):
                continue
            ratios = sorted(t / o for t, o in zip(theirs, ours))
            lines.append(f"- B{b}: ours over {label(impl)} {statistics.median(ratios):.2f}x "
                         f"[{ratios[0]:.2f}-{ratios[-1]:.2f}] over {len(ratios)} windows")
    return "Per-window speed-up of ours (peer / ours in the same window):\n" + "\n".join(lines) if lines else None


def speed_table(runs: Dict[str, List[WorkerRun]], batches: Sequence[int], flop_per_img: Optional[float],
                peak: Optional[Dict[str, Any]], unit: str, items: str = "img") -> str:
    """impl x batch: time per call, items/s, speed-up of ours (row time / ours time), GFLOP/s, % of peak."""
    scale, tname = (1e3, "ms/batch") if unit == "ms" else (1.0, "s/step")
    headers = ["impl", "batch", f"{tname} median [min-max]", f"{items}/s", "speed-up of ours", "GFLOP/s",
               "% of peak", "other load"]
    rows = []
    for b in batches:
        sp = speeds(runs, b)
        ours = sp.get("ours")
        for impl in runs:
            st = sp.get(impl)
            if st is None:
                why = "skipped" if any(r.result and r.result.get("skipped") for r in runs[impl]) else "failed"
                rows.append([label(impl), str(b), why, "-", "-", "-", "-", "-"])
                continue
            gf = flop_per_img * b / st.median / 1e9 if flop_per_img and impl != "input" else None
            ratio = st.median / ours.median if ours and impl != "input" else None
            rows.append([
                label(impl), str(b), fmt_ms(st, scale, 1 if unit == "ms" else 2), f"{b / st.median:.1f}",
                fmt(ratio, ".2f", "x"), fmt(gf, ".1f"),
                fmt(100 * gf / peak["best_gflops"] if gf and peak else None, ".1f", "%"),
                fmt(max_other(runs[impl]), ".2f"),
            ])
    return markdown_table(headers, rows)


def startup_table(runs: Dict[str, List[WorkerRun]], batches: Sequence[int]) -> str:
    """Set-up, per-batch compile (`prepare`) and first call, time to first step, peak memory (round 0)."""
    headers = ["impl", "import s", "set-up s", "prepare (compile) s per batch", "first call s per batch",
               "time to first step s", "peak RSS MB"]
    rows = []
    for impl, rs in runs.items():
        r = first_ok(rs)
        if r is None:
            continue
        bd = r["batches"]

        def per(key: str, digits: int) -> str:
            return " / ".join(f"B{b} {bd[str(b)][key]:.{digits}f}" for b in batches if str(b) in bd)

        rows.append([label(impl), f"{r['import_s']:.1f}", f"{r['setup_s']:.1f}", per("prepare_s", 1),
                     per("first_call_s", 2), f"{r['time_to_first_step_s']:.1f}", f"{r['peak_rss_mb']:.0f}"])
    return markdown_table(headers, rows)


def notes(runs: Dict[str, List[WorkerRun]]) -> str:
    lines = []
    for impl, rs in runs.items():
        r = first_ok(rs)
        if r and (r.get("notes") or r.get("host_malloc")):
            extra = [f"host malloc {r['host_malloc']}"] if r.get("host_malloc") else []
            lines.append(f"- {label(impl)}: {'; '.join(list(r.get('notes') or []) + extra)}")
    return "\n".join(lines)


def dump_json(path: str, s: Setup, info: Dict[str, Any], peak: Optional[Dict[str, Any]],
              results: Dict[str, Dict[str, List[WorkerRun]]]) -> None:
    if not path:
        return
    obj = {
        "argv": sys.argv, "machine": machine_summary(), "device": s.device, "precision": s.precision,
        "info": info, "peak": peak,
        "results": {m: {i: [dataclasses.asdict(r) for r in rs] for i, rs in per.items()} for m, per in results.items()},
    }
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    log(f"wrote {path}")
