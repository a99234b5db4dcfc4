"""Inference speed, side by side: ours vs timm, Keras 3 on JAX and ONNX Runtime (interleaved processes).

    python benchmarks/bench_inference.py                                   # B0 @224, batches 1 8 32
    python benchmarks/bench_inference.py --ours-variants xla               # + XLA's grouped depthwise conv
    python benchmarks/bench_inference.py --impls ours,ours_plain,ort       # + model.apply, BN unfolded
    python benchmarks/bench_inference.py --models efficientnet_b0,efficientnet_b3,efficientnetv2_s --batches 1 32
    python benchmarks/bench_inference.py --model efficientnet_b7 --compile-only --batches 1

'ours' is `efficientnet_jax.inference_fn` (BN folded into the convs, weights compiled in, as a
served model; the ONNX export folds BN too); 'ours_plain' is `model.apply` with the variables as
arguments. Prints, per variant: ms per batch, img/s, the speed-up of ours over each implementation (its time /
ours), achieved GFLOP/s (2 x multiply-adds counted from our model) and the % of the matmul peak measured
in the same run; set-up / compile / time to first step; then the Keras-applications table (size,
parameters, depth, ms per inference step at the smallest and largest batch for ours, timm and
Keras, with ratios) over all variants. On a GPU: bf16 (ours dtype=bfloat16 vs timm AMP
channels_last and torch.compile). Timing is never a pass/fail criterion here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _driver as D  # noqa: E402
from _common import WorkerRun, first_ok, fmt, markdown_table  # noqa: E402

DEFAULT_IMPLS = {
    "cpu": ["ours", "timm_cl", "timm", "keras", "ort"],
    "gpu": ["ours", "timm_cl", "timm_compile_cl", "keras", "ort"],
}
ALLOWED = ("ours", "ours_plain", "timm", "timm_cl", "timm_compile", "timm_compile_cl", "keras", "ort")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    D.add_common_args(p, batches=(1, 8, 32))
    return p.parse_args(argv)


def keras_table(info: Dict[str, Any], results: Dict[str, Dict[str, List[WorkerRun]]], res: Dict[str, int],
                batches: List[int]) -> str:
    """The classic Keras-applications table, measured: one row per variant."""
    lo, hi = min(batches), max(batches)
    bs = [lo] if lo == hi else [lo, hi]
    headers = ["model", "res", "size (MB)", "params", "depth", "GMACs"]
    for b in bs:
        headers += [f"ours ms B{b}", f"timm ms B{b}", f"Keras ms B{b}", f"ORT ms B{b}"]
    headers += [f"speed-up over {p} (B{'/B'.join(map(str, bs))})" for p in ("timm", "Keras", "ORT")]
    rows = []
    for m, runs in results.items():
        i = info[m]
        row = [m, str(res[m]), f"{i['size_mb']:.1f}", f"{i['params']:,}", str(i["depth"]), f"{i['macs'] / 1e9:.3f}"]
        timm = "timm_cl" if "timm_cl" in runs else "timm"
        per_b = {b: D.speeds(runs, b) for b in bs}
        for b in bs:
            row += [fmt(per_b[b][k].median * 1e3 if k in per_b[b] else None, ".1f")
                    for k in ("ours", timm, "keras", "ort")]
        for peer in (timm, "keras", "ort"):
            ratios = [per_b[b][peer].median / per_b[b]["ours"].median if peer in per_b[b] and "ours" in per_b[b]
                      else None for b in bs]
            row.append(" / ".join(fmt(r, ".2f", "x") for r in ratios))
        rows.append(row)
    return (markdown_table(headers, rows)
            + "\n(timm = eager channels_last when it was run; size = float32 weights incl. BN statistics)")


def targets(model: str, resolution: int, s: D.Setup, runs: Dict[str, List[WorkerRun]]) -> Optional[str]:
    """issue 5's inference targets, for B0 @224 fp32 on CPU only (where they were set)."""
    if model.removeprefix("tf_") != "efficientnet_b0" or resolution != 224:
        return None
    if s.device != "cpu" or s.precision != "fp32":
        return None
    lines = []
    for b in (1, 32):
        sp = D.speeds(runs, b)
        if "ours" not in sp:
            continue
        for peer, goal in (("ort", 1.0), ("timm_cl", 1.5)):
            if peer in sp:
                r = sp[peer].median / sp["ours"].median
                lines.append(f"- B{b}: speed-up of ours over {D.label(peer)} {r:.2f}x (target >= {goal}x): "
                             + ("met" if r >= goal else "NOT met"))
    ours = first_ok(runs.get("ours", []))
    if ours:
        t = ours["time_to_first_step_s"]
        lines.append(f"- time to first step (process start to first result, B{s.args.batches[0]}): {t:.1f} s "
                     f"(target < 20 s): " + ("met" if t < 20 else "NOT met"))
    return "\n".join(lines) if lines else None


def main(argv=None) -> int:
    args = parse(argv)
    s = D.resolve(args, DEFAULT_IMPLS, ALLOWED)
    D.header(s, "Inference benchmark" + (" (compile only)" if args.compile_only else ""))
    D.log(f"models {s.models}, impls {s.impls}, batches {args.batches}")
    info = D.model_info(s)
    peak = D.matmul_peak(s)
    res = {m: args.resolution or info[m]["spec_resolution"] for m in s.models}
    results: Dict[str, Dict[str, List[WorkerRun]]] = {}
    for m in s.models:
        jobs = [(impl, D.worker_argv(s, "infer", impl, m, res[m])) for impl in s.impls]
        results[m] = runs = D.run_jobs(s, f"{m} @{res[m]}", jobs)
        flop = 2.0 * info[m]["macs"]
        print(f"## {m} @{res[m]}: {info[m]['macs'] / 1e9:.3f} GMAC = {flop / 1e9:.3f} GFLOP per image forward; "
              + D.peak_line(peak, s.precision))
        print()
        if not args.compile_only:
            print(D.speed_table(runs, args.batches, flop, peak, unit="ms"))
            paired = D.paired_speedups(runs, args.batches) if args.windows else None
            if paired:
                print()
                print(paired)
            print()
        print(D.STARTUP_TITLE)
        print(D.startup_table(runs, args.batches))
        print()
        print(D.notes(runs))
        t = None if args.compile_only else targets(m, res[m], s, runs)
        if t:
            print("\nTargets (issue 5):\n" + t)
        print(flush=True)
    if not args.compile_only:
        print("## Keras-applications table (measured here, fp32 unless stated above)")
        print()
        print(keras_table(info, results, res, args.batches))
    D.dump_json(args.json, s, info, peak, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
