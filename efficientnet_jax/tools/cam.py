"""Class activation maps of any variant and layer, as PNG overlays.

    python -m efficientnet_jax.tools.cam --weights DIR [--model NAME] IMAGE... --out DIR
        [--class N] [--layer head_out|stageS_blockJ_out] [--dtype float32|bfloat16] [--list-layers]

For each image writes OUT/<name>_gradcam.png (Grad-CAM of --layer for the top class, or --class)
and, for the default last conv layer, OUT/<name>_cam.png (the classic CAM), each the heat map over
the image as the model saw it (resized and centre-cropped), plus OUT/<name>_panel.png with the
image and both maps side by side, and prints one line per image with the class and its probability.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m efficientnet_jax.tools.cam", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--weights", required=True, help="converted checkpoint directory or foreign weight file")
    p.add_argument("--model", default=None, help="model name (needed for a foreign weight file)")
    p.add_argument("--source", default=None, choices=("timm", "keras", "efficientnet_pytorch"))
    p.add_argument("--out", default="cam_out", help="output directory for the PNGs")
    p.add_argument("--class", dest="class_index", type=int, default=None, help="class to explain (default: top-1)")
    p.add_argument("--layer", default="head_out", help="layer to map (see --list-layers)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--list-layers", action="store_true", help="print the mappable layers and exit")
    return p.parse_args(argv)


def _panel(images: Sequence[np.ndarray]) -> np.ndarray:
    gap = np.full((images[0].shape[0], 6, 3), 255, np.uint8)
    parts = []
    for im in images:
        parts += [im, gap]
    return np.concatenate(parts[:-1], axis=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import jax.numpy as jnp
    from PIL import Image

    from efficientnet_jax.analysis.cam import compute_cam, layer_names, overlay
    from efficientnet_jax.tools._images import load_rgb, normalise, resize_center_crop
    from efficientnet_jax.tools.predict import class_names
    from efficientnet_jax.weights import load_pretrained

    dtype = None if args.dtype == "float32" else jnp.bfloat16
    model, variables, meta = load_pretrained(args.weights, model=args.model, source=args.source, dtype=dtype)
    if args.list_layers:
        print("\n".join(layer_names(model)))
        return 0
    if not args.images:
        print("no images given", file=sys.stderr)
        return 2
    names = class_names(model.spec.num_classes)
    res = int(meta["resolution"])
    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        pixels = resize_center_crop(load_rgb(path), res, float(meta["crop_pct"]), meta.get("interpolation", "bicubic"))
        x = normalise(pixels, meta["mean"], meta["std"], tuple(meta.get("value_range", (0.0, 1.0))))[None]
        cls = None if args.class_index is None else [args.class_index]
        r = compute_cam(model, variables, jnp.asarray(x), class_index=cls, layer=args.layer)
        stem = os.path.splitext(os.path.basename(path))[0]
        shown = [pixels, overlay(pixels, r.grad_cam[0])]
        Image.fromarray(shown[1]).save(os.path.join(args.out, f"{stem}_gradcam.png"))
        if r.cam is not None:
            shown.append(overlay(pixels, r.cam[0]))
            Image.fromarray(shown[2]).save(os.path.join(args.out, f"{stem}_cam.png"))
        Image.fromarray(_panel(shown)).save(os.path.join(args.out, f"{stem}_panel.png"))
        c = int(r.classes[0])
        print(f"{path}: class {c} ({names[c]}) p={float(r.probs[0]):.4f}, layer {r.layer} -> {args.out}/{stem}_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
