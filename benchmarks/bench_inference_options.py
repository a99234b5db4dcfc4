"""What `efficientnet_jax.inference_fn`'s pieces buy: BN folded, constant weights, compiler options,
and (with BN folded, on CPU) the fused C++ kernels of efficientnet_jax/kernels.

    python benchmarks/bench_inference_options.py                      # B0 @224, batches 1 and 32
    python benchmarks/bench_inference_options.py --model efficientnet_b3 --batches 1

All forms are compiled in one process and called in alternation (the machine's noise hits
each alike); prints the median and quartiles of ms per call, the speed-up over `model.apply`,
the compile time and the largest logit difference from `model.apply`.
"""

from __future__ import annotations

import argparse
import time

from efficientnet_jax.host_memory import configure_host_malloc

FORMS = (  # (label, inference_fn keywords, dw_impl); None: model.apply with the variables as arguments
    ("model.apply", None, "auto"),
    ("BN folded", dict(fold_bn=True, constant_weights=False, compiler_options={}), "shift"),
    ("constant weights", dict(fold_bn=False, constant_weights=True, compiler_options={}), "shift"),
    ("folded + constant", dict(fold_bn=True, constant_weights=True, compiler_options={}), "shift"),
    ("compiler options alone", dict(fold_bn=False, constant_weights=False), "shift"),
    ("all three, no CPU kernels", dict(), "shift"),
    ("inference_fn (all three + CPU kernels)", dict(), "auto"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--resolution", type=int, default=0, help="0: the variant's own")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=0, help="alternation rounds (0: 100 at batch 1, 8 above)")
    a = p.parse_args()
    host_malloc = configure_host_malloc("huge_pages")  # as eval.py; may relaunch this process

    import jax
    import numpy as np

    from efficientnet_jax import create_model, init_variables
    from efficientnet_jax.inference import inference_fn

    model = create_model(a.model)
    r = a.resolution or model.spec.resolution
    variables = init_variables(model, jax.random.PRNGKey(0))
    # Statistics away from (0, 1), so that the fold does real arithmetic.
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 10_000))
    variables["batch_stats"] = jax.tree.map(
        lambda s: s + 0.5 * jax.random.uniform(next(keys), s.shape), variables["batch_stats"])
    print(f"{a.model} @{r}, float32, {jax.device_count()} {jax.default_backend()} device(s), host malloc {host_malloc}")
    for batch in a.batches:
        x = jax.device_put(np.random.default_rng(0).standard_normal((batch, r, r, 3), np.float32))
        fns, compile_s, diffs = {}, {}, {}
        for label, kw, dw_impl in FORMS:
            t0 = time.perf_counter()
            if kw is None:
                apply = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
                fn = lambda apply=apply: apply(variables, x)  # noqa: E731
            else:
                fwd = inference_fn(model.clone(dw_impl=dw_impl), variables, **kw)
                fn = lambda fwd=fwd: fwd(x)  # noqa: E731
            out = np.asarray(fn())
            compile_s[label] = time.perf_counter() - t0
            fns[label] = fn
            diffs[label] = float(np.abs(out - np.asarray(fns["model.apply"]())).max())
        rounds = a.rounds or (100 if batch == 1 else 8)
        times = {label: [] for label in fns}
        for _ in range(rounds):
            for label, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[label].append((time.perf_counter() - t0) * 1e3)
        base = np.median(times["model.apply"])
        print(f"\nbatch {batch}: {rounds} alternated rounds")
        print("| form | ms median [p25-p75] | speed-up over apply | compile + first call s | max abs logit diff |")
        print("|---|---|---|---|---|")
        for label, ts in times.items():
            q1, med, q3 = np.percentile(ts, [25, 50, 75])
            print(f"| {label} | {med:.2f} [{q1:.2f}-{q3:.2f}] | {base / med:.2f}x | {compile_s[label]:.1f} | {diffs[label]:.1e} |")


if __name__ == "__main__":
    main()
