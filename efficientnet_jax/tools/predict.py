"""Top-5 ImageNet classes for images, with converted or foreign weights.

    python -m efficientnet_jax.tools.predict --weights weights/b0 cat.jpg dog.png
    python -m efficientnet_jax.tools.predict --model tf_efficientnet_b0 --weights b0.pth --json *.jpg
    python -m efficientnet_jax.tools.predict --model efficientnet_lite0 --source efficientnet_pytorch \\
        --weights efficientnet-lite0.pth cat.jpg

--weights is a converted checkpoint directory (from `efficientnet_jax.tools.convert`; it names its
model) or a foreign weight file (timm .pth/.safetensors, Keras .h5/.weights.h5, efficientnet_pytorch
.pth), converted on the fly; a foreign file needs --model and, where the extension does not tell,
--source. Preprocessing is the weights' own (metadata): shorter side to round(res / crop_pct)
with their interpolation, centre crop res x res, pixel / 255, (x - mean) / std.

Text output: per image, the path then `rank. probability  class name (index)`. With --json, one
JSON object per line: {"image": PATH, "top5": [{"index": I, "class": NAME, "prob": P}, ...]}
("top5" holds --top-k entries, most probable first).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Sequence

import numpy as np


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m efficientnet_jax.tools.predict",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL reads)")
    p.add_argument("--weights", required=True, help="converted checkpoint directory or foreign weight file")
    p.add_argument("--model", default=None,
                   help="model name for a foreign file (timm names: a tf_ prefix means TF numerics, "
                        "none means timm's PyTorch-native numerics); optional for a converted directory")
    p.add_argument("--source", default=None, choices=("timm", "keras", "efficientnet_pytorch"),
                   help="format of a foreign weight file (default: inferred from extension and key names)")
    p.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--json", action="store_true", help="one JSON object per image and line")
    p.add_argument("--dw-impl", default="auto", choices=("auto", "xla", "shift"), help="depthwise conv lowering")
    return p.parse_args(argv)


def class_names(num_classes: int) -> List[str]:
    if num_classes == 1000:
        from efficientnet_jax.weights import imagenet_class_names

        return imagenet_class_names()
    return [f"class {i}" for i in range(num_classes)]


def predict(images: Sequence[str], model, variables, meta, top_k: int = 5, batch_size: int = 8) -> List[dict]:
    """[{'image', 'top5': [{'index', 'class', 'prob'}]}] for each image path, in order."""
    import jax

    from efficientnet_jax.tools._images import preprocess

    if model.spec.num_classes == 0:
        raise ValueError(f"{meta.get('model')}: these weights have no classifier (num_classes 0); nothing to predict")
    # Read every image first: a bad file fails before any compute.
    inputs = [preprocess(path, meta) for path in images]
    names = class_names(model.spec.num_classes)
    k = max(1, min(top_k, model.spec.num_classes))
    from efficientnet_jax.inference import inference_fn

    logits_fn = inference_fn(model, variables)  # BN folded, weights compiled in: one program per run
    bs = max(1, min(batch_size, len(inputs)))
    results = []
    for start in range(0, len(inputs), bs):
        chunk = np.stack(inputs[start:start + bs])
        n = len(chunk)
        if n < bs:  # pad to a fixed batch: one compilation
            chunk = np.concatenate([chunk, np.zeros((bs - n,) + chunk.shape[1:], chunk.dtype)])
        probs = np.asarray(jax.nn.softmax(logits_fn(chunk), axis=-1))[:n]
        for i, p in enumerate(probs):
            top = np.argsort(-p, kind="stable")[:k]
            results.append({
                "image": images[start + i],
                "top5": [{"index": int(j), "class": names[j], "prob": float(p[j])} for j in top],
            })
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from efficientnet_jax.weights import load_pretrained

    try:
        model, variables, meta = load_pretrained(args.weights, model=args.model, source=args.source, dw_impl=args.dw_impl)
        results = predict(args.images, model, variables, meta, args.top_k, args.batch_size)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(r["image"])
            for rank, t in enumerate(r["top5"], 1):
                print(f"  {rank}. {t['prob']:.4f}  {t['class']} ({t['index']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
