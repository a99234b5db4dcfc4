"""Depthwise convolution micro-benchmark: our lowerings next to PyTorch channels_last.

Prints figures, never pass/fail. Per shape (B0's depthwise layers at batch 32 by default) it
times, interleaved in one process (A B C D A B C D ..., median of --reps calls after a warm-up):

  fwd          y = dwconv(x, w)
  fwd+bwd      y and (dx, dw) for a random cotangent r: jax.vjp(dwconv, x, w) / torch
               autograd.grad(y, (x, w), r). The vjp form, not value_and_grad of sum(r * y):
               with a scalar loss XLA hands the forward's multiply-adds to the loss's YNNPACK
               reduce, which materialises k*k shifted copies of x, a workload training (where y
               feeds BatchNorm and is kept) does not have.

for: XLA's grouped conv ('xla'), the shift form with JAX's autodiff ('shift_autodiff'), the
shift form with the custom VJP ('shift', the CPU default), and torch F.conv2d(groups=C) on
channels_last tensors (symmetric padding k//2; the JAX side uses TF SAME, same output size).
XLA's grouped conv is 10-30x slower than the rest, so it gets --slow-reps calls.

    python benchmarks/bench_depthwise.py                      # 8 B0 shapes, batch 32
    python benchmarks/bench_depthwise.py --shapes 112x112x96k3s2,56x56x144k5s2 --reps 5
    python benchmarks/bench_depthwise.py --batch 8 --impls shift,shift_autodiff,torch
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

try:  # torch before jax/tensorflow (see tests/conftest.py); optional
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - reference only
    torch = None

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from efficientnet_jax.models.depthwise import depthwise_conv  # noqa: E402
from efficientnet_jax.models.layers import conv_padding  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown_table  # noqa: E402

# (H, W, C, kernel, stride) of EfficientNet-B0's depthwise convs at 224x224.
B0_SHAPES = "112x112x32k3s1,112x112x96k3s2,56x56x144k3s1,56x56x144k5s2,28x28x240k5s1,14x14x480k3s1,14x14x672k5s1,7x7x1152k5s1"
JAX_IMPLS = ("xla", "shift_autodiff", "shift")
SLOW = ("xla",)

Shape = Tuple[int, int, int, int, int]


def parse_shape(s: str) -> Shape:
    """'56x56x144k5s2' -> (56, 56, 144, 5, 2)."""
    hwc, rest = s.split("k")
    k, stride = rest.split("s")
    h, w, c = (int(v) for v in hwc.split("x"))
    return h, w, c, int(k), int(stride)


def jax_fns(impl: str, x, w, r, stride: int, pads) -> Tuple[Callable, Callable]:
    """(fwd, fwd+bwd) thunks, compiled ahead of time, that block until done."""
    conv = lambda x, w: depthwise_conv(x, w, stride, pads, impl)  # noqa: E731

    def fwd_bwd(x, w, r):
        y, back = jax.vjp(conv, x, w)
        return y, back(r)

    f = jax.jit(conv).lower(x, w).compile()
    g = jax.jit(fwd_bwd).lower(x, w, r).compile()
    return (lambda: jax.block_until_ready(f(x, w))), (lambda: jax.block_until_ready(g(x, w, r)))


def torch_fns(x_np: np.ndarray, w_np: np.ndarray, r_np: np.ndarray, stride: int) -> Tuple[Callable, Callable]:
    """torch channels_last F.conv2d(groups=C): NHWC arrays -> NCHW views with NHWC memory."""
    cl = torch.channels_last
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous(memory_format=cl).requires_grad_(True)
    w = torch.from_numpy(w_np).permute(3, 2, 0, 1).contiguous().requires_grad_(True)  # (C, 1, k, k)
    r = torch.from_numpy(r_np).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    pad, c = w_np.shape[0] // 2, w_np.shape[-1]

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, w, stride=stride, padding=pad, groups=c)

    def fwd_bwd():
        y = F.conv2d(x, w, stride=stride, padding=pad, groups=c)
        return torch.autograd.grad(y, (x, w), r)

    return fwd, fwd_bwd


def time_interleaved(fns: Dict[str, Callable], reps: Dict[str, int]) -> Dict[str, float]:
    """Median seconds per call; one warm-up each, then rounds A B C ... (an fn drops out at its reps)."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for i in range(max(reps.values())):
        for name, fn in fns.items():
            if i < reps[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def max_rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))


def bench_shape(shape: Shape, batch: int, impls: List[str], reps: int, slow_reps: int) -> Dict[str, float]:
    h, w_, c, k, stride = shape
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, h, w_, c), np.float32)
    w_np = rng.standard_normal((k, k, 1, c), np.float32)
    pads = [conv_padding(h, k, stride, "same"), conv_padding(w_, k, stride, "same")]
    x, w = jnp.asarray(x_np), jnp.asarray(w_np)
    out = jax.eval_shape(lambda x, w: depthwise_conv(x, w, stride, pads, "shift"), x, w)
    r_np = rng.standard_normal(out.shape, np.float32)
    r = jnp.asarray(r_np)
    fns: Dict[str, Callable] = {}
    for impl in impls:
        if impl == "torch":
            fns["torch fwd"], fns["torch fwd+bwd"] = torch_fns(x_np, w_np, r_np, stride)
        elif impl == "shift_autodiff":  # same forward as 'shift': time only its fwd+bwd
            fns["shift_autodiff fwd+bwd"] = jax_fns(impl, x, w, r, stride, pads)[1]
        else:
            fns[f"{impl} fwd"], fns[f"{impl} fwd+bwd"] = jax_fns(impl, x, w, r, stride, pads)
    if "shift" in impls and "shift_autodiff" in impls:  # sanity: both backward passes agree
        gx_a, gw_a = jax.vjp(lambda x, w: depthwise_conv(x, w, stride, pads, "shift_autodiff"), x, w)[1](r)
        gx, gw = jax.vjp(lambda x, w: depthwise_conv(x, w, stride, pads, "shift"), x, w)[1](r)
        print(f"  {shape_name(shape)}: custom vs autodiff grads, max rel diff dx {max_rel_diff(gx, gx_a):.1e} "
              f"dw {max_rel_diff(gw, gw_a):.1e}", flush=True)
    reps_by = {name: slow_reps if name.split()[0] in SLOW else reps for name in fns}
    return time_interleaved(fns, reps_by)


def shape_name(shape: Shape) -> str:
    h, w, c, k, s = shape
    return f"{h}x{w}x{c} k{k}s{s}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def print_table(rows: List[Tuple[Shape, Dict[str, float]]], batch: int) -> None:
    cols = ["torch fwd", "xla fwd", "shift fwd", "torch fwd+bwd", "xla fwd+bwd", "shift_autodiff fwd+bwd", "shift fwd+bwd"]
    heads = ["torch CL fwd", "xla fwd", "shift fwd", "torch CL f+b", "xla f+b", "autodiff f+b", "custom f+b"]
    print(f"\nms per call, batch {batch} (median); custom = dw_impl 'shift', autodiff = 'shift_autodiff'")
    table = [[shape_name(shape)] + [f"{1e3 * t[c]:.1f}" if c in t else "-" for c in cols]
             + [ratio(t.get("shift fwd+bwd"), t.get("shift_autodiff fwd+bwd")),
                ratio(t.get("shift fwd+bwd"), t.get("torch fwd+bwd")),
                ratio(t.get("shift fwd"), t.get("torch fwd"))]
             for shape, t in rows]
    print(markdown_table(["shape"] + heads + ["custom/autodiff", "custom/torch", "shift fwd/torch"], table))
    total = {c: sum(t.get(c, 0.0) for _, t in rows) for c in cols}
    if all(all(c in t for _, t in rows) for c in ("shift fwd+bwd", "shift_autodiff fwd+bwd")):
        print(f"sum over shapes, fwd+bwd: custom {1e3 * total['shift fwd+bwd']:.0f} ms, autodiff "
              f"{1e3 * total['shift_autodiff fwd+bwd']:.0f} ms"
              + (f", torch CL {1e3 * total['torch fwd+bwd']:.0f} ms" if total["torch fwd+bwd"] else ""))


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=B0_SHAPES, help="comma-separated HxWxCkKsS (default: B0's depthwise convs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=3, help="timed calls per implementation after 1 warm-up")
    p.add_argument("--slow-reps", type=int, default=1, help="timed calls of XLA's grouped conv")
    p.add_argument("--impls", default="torch,xla,shift_autodiff,shift", help="subset of torch,xla,shift_autodiff,shift")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    a = p.parse_args(argv)
    impls = [i for i in a.impls.split(",") if i]
    bad = [i for i in impls if i not in JAX_IMPLS + ("torch",)]
    if bad:
        raise SystemExit(f"--impls: unknown {bad}")
    if "torch" in impls and torch is None:
        print("torch not installed: no reference column")
        impls.remove("torch")
    if torch is not None:
        torch.set_num_threads(a.threads)
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores"
          + (f"; torch {torch.__version__}, {torch.get_num_threads()} threads" if torch is not None else ""))
    rows = []
    for s in a.shapes.split(","):
        shape = parse_shape(s)
        t0 = time.perf_counter()
        rows.append((shape, bench_shape(shape, a.batch, impls, a.reps, a.slow_reps)))
        print(f"  {shape_name(shape)}: {time.perf_counter() - t0:.0f} s", flush=True)
    print_table(rows, a.batch)


if __name__ == "__main__":
    main()
