"""One implementation, alone in its process: set up, compile, time; print one RESULT JSON line.

    python benchmarks/_worker.py --mode infer --impl ours --model efficientnet_b0 --resolution 224 --batches 1 8 32
    python benchmarks/_worker.py --mode train --impl timm_cl --batches 32
    python benchmarks/_worker.py --mode info --models efficientnet_b0,efficientnet_b3
    python benchmarks/_worker.py --mode peak --peak-sizes 2048 4096
    python benchmarks/_worker.py --mode infer --impl ort --batches 1 --serve   # then "1" lines on stdin

With --serve the worker prints its RESULT (set-up, compile, first calls; no timing) and then
times one window of --target seconds per batch size read from stdin, answering each with a
WINDOW line, until "quit" (the driver's --windows mode alternates the implementations' windows).

Implementations (--impl):
  ours, ours_<dw_impl>   our model (`dw_impl` auto, or e.g. ours_xla for XLA's grouped conv)
  ours_real              train mode: our step fed by the real tf.data pipeline (digits, upsampled)
  input                  train mode: that pipeline alone (seconds per batch)
  timm, timm_cl          timm eager, NCHW / channels_last
  timm_compile[_cl]      timm under torch.compile
  keras                  keras.applications on the JAX backend (jit of stateless_call)
  ort                    infer mode: ONNX Runtime on a timm export
Each process imports only what its implementation needs: idle runtimes in the same process
steal cores, and TensorFlow imported before torchvision segfaults here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, Optional

_T_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import WINDOW_PREFIX, emit, matmul_peak, peak_rss_mb, time_reps  # noqa: E402
from _names import keras_name, timm_name  # noqa: E402

TORCH_IMPLS = ("timm", "timm_cl", "timm_compile", "timm_compile_cl", "ort")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["infer", "train", "info", "peak"], required=True)
    p.add_argument("--impl", default="ours")
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--models", default="", help="info mode: comma-separated variants")
    p.add_argument("--resolution", type=int, default=0, help="0: the variant's own")
    p.add_argument("--batches", type=int, nargs="+", default=[1])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--target", type=float, default=1.0, help="seconds per timed repetition")
    p.add_argument("--warmup", type=int, default=2, help="calls before timing (the first one compiles)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile-only", action="store_true", help="set up, compile and run one step; no timing")
    p.add_argument("--serve", action="store_true", help="after the RESULT, time windows on request (stdin)")
    p.add_argument("--optimizer", choices=["momentum", "rmsprop"], default="momentum")
    p.add_argument("--augment", default="autoaugment", help="ours_real / input: the pipeline's augmentation")
    p.add_argument("--peak-sizes", type=int, nargs="+", default=[2048, 4096])
    return p.parse_args(argv)


def is_ours(impl: str) -> bool:
    return impl == "ours" or impl.startswith("ours_")


def import_impl(impl: str, mode: str):
    """The module of `impl`, its framework imported (timed apart from the set-up)."""
    if impl in TORCH_IMPLS:
        import _impl_torch as mod
    elif impl == "keras":
        os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported
        import _impl_keras as mod
    else:
        import _impl_ours as mod

        if mode == "train":
            import efficientnet_jax.training.steps  # noqa: F401
        if impl in ("ours_real", "input"):  # the tf.data pipeline: TensorFlow
            import efficientnet_jax.data  # noqa: F401
    return mod


def build(a: argparse.Namespace, mod, resolution: int):
    """The implementation object: `.make(batch) -> blocking callable` and `.notes`."""
    impl, mode = a.impl, a.mode
    if impl in TORCH_IMPLS:
        name = timm_name(a.model)
        if impl == "ort":
            if mode != "infer":
                raise SystemExit("ort is an inference-only implementation")
            return mod.OrtInference(name, resolution, a.threads, a.device)
        kw = dict(channels_last=impl.endswith("_cl"), compiled="compile" in impl, device=a.device,
                  precision=a.precision)
        if mode == "infer":
            return mod.TimmInference(name, resolution, a.threads, **kw)
        return mod.TimmTrain(name, resolution, a.threads, optimizer=a.optimizer, **kw)
    if impl == "keras":
        cls = keras_name(a.model)  # not None: run_timed skips variants Keras lacks
        return (mod.KerasInference if mode == "infer" else mod.KerasTrain)(cls, resolution, a.precision)
    if impl == "input":
        return mod.InputOnly(resolution, a.augment)
    if impl == "ours_real":
        if mode != "train":
            raise SystemExit("ours_real is a training implementation")
        return mod.RealTrain(a.model, resolution, "auto", a.precision, a.optimizer, a.augment)
    if impl == "ours_plain":
        if mode != "infer":
            raise SystemExit("ours_plain is an inference implementation (model.apply, unfolded)")
        return mod.Inference(a.model, resolution, "auto", a.precision, deploy=False)
    if is_ours(impl):
        dw = impl[5:] or "auto"
        if mode == "infer":
            return mod.Inference(a.model, resolution, dw, a.precision)
        return mod.Train(a.model, resolution, dw, a.precision, a.optimizer)
    raise SystemExit(f"unknown --impl {impl!r}; see --help")


def run_timed(a: argparse.Namespace, fns: Optional[Dict[int, Callable[[], object]]] = None) -> dict:
    """Set up, compile and time every batch size; with `fns` given, keep each warmed-up callable
    there and leave the timing to `serve_windows`."""
    if a.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if a.impl == "keras" and keras_name(a.model) is None:
        return {"impl": a.impl, "model": a.model, "skipped": f"keras.applications has no {a.model}"}
    # Each implementation as its users run it: ours with the allocator eval.py (inference: huge
    # pages, which relaunches this worker) or train.py (cache_large, which does too) sets, everything
    # else with glibc's defaults; `--env EFFICIENTNET_JAX_HOST_MALLOC=huge_pages` (cache_large, keep_freed, system) gives
    # every implementation the same. Set before any import starts a thread.
    from efficientnet_jax.host_memory import configure_host_malloc  # imports no JAX

    ours_default = "huge_pages" if a.mode == "infer" else "cache_large"
    host_malloc = configure_host_malloc(ours_default if is_ours(a.impl) else "system")
    t0 = time.perf_counter()
    mod = import_impl(a.impl, a.mode)
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {"impl": a.impl, "mode": a.mode, "model": a.model, "device": a.device, "precision": a.precision,
           "threads": a.threads, "host_malloc": host_malloc, "batches": {}}
    resolution = a.resolution
    if not resolution:
        from efficientnet_jax import get_spec

        resolution = get_spec(a.model).resolution
    out["resolution"] = resolution
    bench = build(a, mod, resolution)
    # Set-up = model construction (+ init / ONNX export / session), imports excluded.
    out["import_s"], out["setup_s"] = import_s, time.perf_counter() - t0
    out["notes"] = bench.notes
    for i, b in enumerate(a.batches):
        t = time.perf_counter()
        fn = bench.make(b)
        prepare = time.perf_counter() - t
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        rec = {"prepare_s": prepare, "first_call_s": first}
        if i == 0:
            # Time to first step: from the start of this process (imports included) to a result.
            out["time_to_first_step_s"] = time.perf_counter() - _T_START
        if not a.compile_only:
            for _ in range(a.warmup - 1):  # the first call (above) compiled
                fn()
            if fns is not None:
                fns[b] = fn
            else:
                rec["iters"], rec["reps"] = time_reps(fn, a.reps, a.target)
        out["batches"][str(b)] = rec
        print(f"{a.impl} B{b}: prepare {prepare:.1f} s, first call {first:.2f} s"
              + (f", reps {[round(r * 1e3, 1) for r in rec['reps']]} ms" if "reps" in rec else ""),
              file=sys.stderr, flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_info(a: argparse.Namespace) -> dict:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # counting only: no accelerator needed
    import _impl_ours as O

    models = {}
    for name in [m for m in a.models.split(",") if m] or [a.model]:
        c = O.complexity(name, a.resolution or 0)
        models[name] = c
    return {"mode": "info", "models": models}


def run_peak(a: argparse.Namespace) -> dict:
    if a.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    gflops = matmul_peak(a.peak_sizes, a.precision, with_numpy=a.device == "cpu")
    best = max(gflops, key=gflops.get)
    return {"mode": "peak", "precision": a.precision, "threads": a.threads, "gflops": gflops,
            "best_gflops": gflops[best], "best_by": best}


def main(argv=None) -> int:
    a = parse(argv)
    if a.mode == "info":
        emit(run_info(a))
    elif a.mode == "peak":
        emit(run_peak(a))
    elif a.serve and not a.compile_only:
        fns: Dict[int, Callable[[], object]] = {}
        result = run_timed(a, fns)
        emit(result)
        if not result.get("skipped"):
            serve_windows(fns, a.target)
    else:
        emit(run_timed(a))
    return 0


def serve_windows(fns: Dict[int, Callable[[], object]], target_s: float) -> None:
    """Answer each batch size read from stdin with one timed window (WINDOW JSON line), until 'quit'."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            return
        b = int(cmd)
        iters, reps = time_reps(fns[b], 1, target_s)
        print(WINDOW_PREFIX + json.dumps({"batch": b, "s_per_call": reps[0], "iters": iters[0]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
