"""Convert timm / Keras / efficientnet_pytorch weights into a converted checkpoint directory.

    python -m efficientnet_jax.tools.convert --source timm --model tf_efficientnet_b0 \\
        --input tf_efficientnet_b0.pth --output weights/tf_b0
    python -m efficientnet_jax.tools.convert --source keras --model EfficientNetV2S \\
        --input efficientnetv2-s.h5 --output weights/v2s
    python -m efficientnet_jax.tools.convert --source efficientnet_pytorch --model efficientnet-lite0 \\
        --input efficientnet-lite0-57934424.pth --output weights/lite0

The output directory holds the variables (Orbax, variables/) and metadata.json (model, full spec,
padding, BN eps, num_classes, source, preprocessing). The converted model is run once on a dummy
input before anything is written, and a summary line is printed.

Numerics (padding, BatchNorm eps) follow the source, because they decide the logits:
  --source timm, model name WITH a tf_ prefix (tf_efficientnet_b0, tf_efficientnetv2_s,
      tf_efficientnet_lite0): TF-ported weights -> padding 'same' (TF SAME), BN eps 1e-3.
  --source timm, name WITHOUT tf_ (efficientnet_b0, efficientnetv2_s, efficientnet_lite0):
      timm's PyTorch-native weights -> padding 'symmetric' ((s-1)+(k-1))//2, BN eps 1e-5.
      Passing the wrong name for a file changes the logits by O(1) without any error.
  --source keras, --source efficientnet_pytorch: always 'same' and eps 1e-3.
Model names may be spelled the timm way (efficientnet_b0), the Keras way (EfficientNetB0,
EfficientNetV2S) or the efficientnet_pytorch way (efficientnet-b0). num_classes is read from the
file's classifier (0 when it has none).

Preprocessing recorded (override with --mean/--std/--resolution/--crop-pct/--interpolation):
timm tf_* -> the variant's published cfg (ImageNet mean/std; 0.5/0.5 for Lite and V2-S/M/L/XL);
timm non-tf -> ImageNet mean/std (check the cfg of the timm tag you downloaded); keras -> the
model's in-graph preprocessing (V1: the Normalization layer's weights; V2 B0-B3 ImageNet mean/std;
V2 S/M/L: x/128 - 1); efficientnet_pytorch -> ImageNet mean/std, Lite (x - 127) / 128.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import numpy as np


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    doc = __doc__
    p = argparse.ArgumentParser(
        prog="python -m efficientnet_jax.tools.convert",
        description=doc.split("\n\n", 1)[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", default=None, choices=("timm", "keras", "efficientnet_pytorch"),
                   help="weight format (default: inferred from the extension and key names)")
    p.add_argument("--model", required=True, help="model name; for timm the tf_ prefix decides the numerics (below)")
    p.add_argument("--input", required=True, help="weight file: .pth/.pt/.bin/.safetensors (timm, efficientnet_pytorch), "
                                                  ".h5/.weights.h5/.keras (keras)")
    p.add_argument("--output", required=True, help="converted checkpoint directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing converted checkpoint at --output")
    p.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input mean on [0, 1] pixels")
    p.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input std on [0, 1] pixels")
    p.add_argument("--resolution", type=int, default=None, help="eval resolution to record")
    p.add_argument("--crop-pct", type=float, default=None, help="eval centre-crop fraction to record")
    p.add_argument("--interpolation", default=None, help="eval resize interpolation to record (bicubic, bilinear, ...)")
    p.add_argument("--verify-resolution", type=int, default=224,
                   help="dummy-input size of the check run (default 224, capped at the eval resolution)")
    p.add_argument("--no-verify", action="store_true", help="skip the check run")
    return p.parse_args(argv)


def verify(variables, meta, resolution: int) -> float:
    """Run the converted model once on a dummy batch; returns mean |logit| (raises if not finite)."""
    import jax

    from efficientnet_jax.models import EfficientNet
    from efficientnet_jax.weights.checkpoint import spec_from_metadata

    model = EfficientNet(spec_from_metadata(meta))
    x = np.random.default_rng(0).standard_normal((1, resolution, resolution, 3)).astype(np.float32)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
    if not np.all(np.isfinite(out)):
        raise ValueError(f"the converted model gives non-finite outputs on a dummy input (shape {out.shape})")
    return float(np.mean(np.abs(out)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from efficientnet_jax.weights import convert_file, save_converted

    t0 = time.perf_counter()
    try:
        variables, meta = convert_file(
            args.input, args.model, source=args.source, mean=args.mean, std=args.std, resolution=args.resolution,
            crop_pct=args.crop_pct, interpolation=args.interpolation,
        )
        check = "not run"
        if not args.no_verify:
            res = max(32, min(args.verify_resolution, int(meta["resolution"])))
            check = f"dummy {res}x{res} -> finite, mean |out| {verify(variables, meta, res):.3g}"
        out = save_converted(args.output, variables, meta, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"converted {meta['source']}:{args.input} -> {out}: {meta['model']}, {meta['num_params']:,} params, "
        f"{meta['num_classes']} classes, padding={meta['padding']}, bn_eps={meta['bn_eps']:g}, "
        f"mean={tuple(round(m, 4) for m in meta['mean'])}, std={tuple(round(s, 4) for s in meta['std'])}, "
        f"res={meta['resolution']}; check: {check}; {time.perf_counter() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
