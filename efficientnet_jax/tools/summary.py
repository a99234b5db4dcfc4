"""The classic Keras-applications table for every variant, measured here.

    python -m efficientnet_jax.tools.summary                      # all variants, CPU timing
    python -m efficientnet_jax.tools.summary efficientnet_b0 efficientnetv2_s --batch 8
    python -m efficientnet_jax.tools.summary --no-timing --format csv
    python -m efficientnet_jax.tools.summary efficientnet_b0 --form apply   # model.apply instead

Columns: size (MB of float32 weights incl. BN statistics), parameters (trainable), depth (weighted
layers), multiply-adds at the eval resolution, ms per inference step (median of repeats, on each
local backend), compile seconds, memory of the compiled step (XLA's buffer plan: weights, input,
output and temporaries), and the published ImageNet top-1 with its source.

`--form deployed` (default) times `efficientnet_jax.inference_fn`, the program a served model runs
(BN folded into the convs, weights compiled in, CPU inference compiler options): faster per step
(B0 ~1.2x at batch 1 on CPU) but slower to compile (B7 ~3x), since the weights are constants.
`--form apply` times `jax.jit(model.apply)` with the variables as arguments, as inside your own
jitted code.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp

from efficientnet_jax.inference import default_compiler_options, inference_fn
from efficientnet_jax.models import create_model, fold_batch_norm, init_variables, list_models
from efficientnet_jax.models.complexity import count_depth, count_macs, count_params

FORMS = ("deployed", "apply")


def _nbytes(tree) -> int:
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))


def time_inference(model, resolution: int, batch: int, device, min_seconds: float = 1.0, min_runs: int = 3,
                   form: str = "deployed") -> Dict:
    """Median ms per compiled forward step on `device`, compile seconds and memory (MB).

    `form`: 'deployed' (`inference_fn`: BN folded, weights compiled in) or 'apply'
    (`jax.jit(model.apply)`, variables as arguments).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    x = jax.device_put(jnp.ones((batch, resolution, resolution, 3), jnp.float32), device)
    variables = jax.device_put(init_variables(model, jax.random.key(0)), device)
    t0 = time.perf_counter()
    if form == "deployed":
        # Folded once here (its weights are counted below); options for the timed device, which
        # need not be the default backend inference_fn would go by.
        folded_model, folded = fold_batch_norm(model, variables)
        compiled = inference_fn(folded_model, folded, fold_bn=False,
                                compiler_options=default_compiler_options(device.platform)).lower(x).compile()
        step = lambda: compiled(x)  # noqa: E731
        weight_bytes = _nbytes(folded)  # compiled-in constants: not in the buffer plan
    else:
        compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
        step = lambda: compiled(variables, x)  # noqa: E731
        weight_bytes = 0  # arguments: counted by the plan
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()  # XLA's buffer plan: arguments, output, temporaries
    mem_mb = None if mem is None else (weight_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
                                       + mem.temp_size_in_bytes) / 2**20
    step().block_until_ready()  # warm-up
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        step().block_until_ready()
        times.append(time.perf_counter() - t)
    return {"ms": 1e3 * statistics.median(times), "compile_s": compile_s, "runs": len(times), "mem_mb": mem_mb}


def summarize(name: str, batch: int = 1, timing: bool = True, backends: Optional[Sequence[str]] = None,
              form: str = "deployed") -> Dict:
    model = create_model(name)
    spec = model.spec
    params = count_params(model)
    bn_stats = sum(2 * b for b in _bn_widths(model))
    row = {
        "model": name,
        "size_mb": round((params + bn_stats) * 4 / 2**20, 1),
        "params": params,
        "depth": count_depth(model),
        "resolution": spec.resolution,
        "gmacs": round(count_macs(model) / 1e9, 3),
        "top1": spec.published_top1,
        "top1_source": spec.published_top1_source,
    }
    if timing:
        for backend in backends or _backends():
            r = time_inference(model, spec.resolution, batch, jax.devices(backend)[0], form=form)
            row[f"{backend}_ms"] = round(r["ms"], 1)
            row[f"{backend}_compile_s"] = round(r["compile_s"], 1)
            if r["mem_mb"] is not None:
                row[f"{backend}_mem_mb"] = round(r["mem_mb"])
    return row


def _bn_widths(model) -> List[int]:
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    return [math.prod(x.shape) for x in jax.tree.leaves(v["batch_stats"])][::2]


def _backends() -> List[str]:
    out = ["cpu"]
    for b in ("gpu", "tpu"):
        try:
            if jax.devices(b):
                out.append(b)
        except RuntimeError:
            pass
    return out


def format_table(rows: List[Dict], fmt: str = "markdown") -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "top1_source"))
    if fmt == "csv":
        lines = [",".join(keys + ["top1_source"])]
        lines += [",".join(str(r.get(k, "")) for k in keys) + f',"{r["top1_source"]}"' for r in rows]
        return "\n".join(lines)
    head = {"size_mb": "size (MB)", "params": "params", "depth": "depth", "resolution": "res",
            "gmacs": "GMACs", "top1": "top-1 (%)"}
    names = [head.get(k, k.replace("_ms", " ms/step").replace("_compile_s", " compile (s)")
                      .replace("_mem_mb", " memory (MB)")) for k in keys]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:,}" if k == "params" else str(r.get(k, "")) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    sources = sorted({r["top1_source"] for r in rows if r["top1_source"]})
    return "\n".join(lines + [""] + [f"top-1 sources: {'; '.join(sources)}"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="variants (default: all)")
    p.add_argument("--batch", type=int, default=1, help="images per timed inference step")
    p.add_argument("--no-timing", action="store_true", help="skip the (slow) timing columns")
    p.add_argument("--format", choices=["markdown", "csv", "json"], default="markdown")
    p.add_argument("--form", choices=FORMS, default="deployed",
                   help="what is timed: inference_fn (BN folded, weights compiled in) or jit(model.apply)")
    args = p.parse_args(argv)
    names = args.models or list_models()
    unknown = [n for n in names if n.removeprefix("tf_") not in list_models()]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list_models()}")
    rows = []
    for n in names:
        rows.append(summarize(n, args.batch, timing=not args.no_timing, form=args.form))
        if args.format == "json":
            print(json.dumps(rows[-1]), flush=True)
    if args.format != "json":
        print(f"# batch {args.batch}, float32, {args.form} form, devices: {', '.join(str(d) for d in jax.devices())}")
        print(format_table(rows, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
