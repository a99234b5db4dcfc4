"""Class activation maps: Grad-CAM of any layer and the classic CAM of the last conv layer.

Grad-CAM (Selvaraju et al. 2017): weights = spatial mean of d logit_c / d A; map = relu(sum_k w_k A_k).
CAM (Zhou et al. 2016): the head is conv -> global average pool -> dense, so the class map is the
classifier's column for class c applied at every position of the head activation.
On `head_out` the two coincide up to scale (the gradient of a GAP -> dense head is the class's
weight column, constant over positions), which the tests use as a check; Grad-CAM is what
generalises to inner layers. Both come from one forward and one backward pass through the
model's opt-in layer taps
(`perturb_layers=True`), so they work for every variant, any block output, fp32 or bf16.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from efficientnet_jax.models.efficientnet import EfficientNet


@dataclasses.dataclass
class CamResult:
    """Maps are [batch, H, W] in [0, 1] at the input resolution; classes/probs are per image."""

    grad_cam: np.ndarray
    cam: Optional[np.ndarray]
    classes: np.ndarray
    probs: np.ndarray
    layer: str


def layer_names(model: EfficientNet, image_size: int = 64) -> Sequence[str]:
    """Layers whose activation can be mapped: every `stage{s}_block{j}_out` and `head_out`."""
    tapped = model.clone(perturb_layers=True)
    shapes = jax.eval_shape(
        lambda: tapped.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)), train=False)
    )
    return list(shapes["perturbations"])


def _normalise(maps: jax.Array, size) -> jax.Array:
    maps = jax.image.resize(maps, (maps.shape[0],) + tuple(size), "bilinear")
    maps = jnp.maximum(maps, 0.0)
    peak = jnp.max(maps, axis=(1, 2), keepdims=True)
    return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)


def compute_cam(
    model: EfficientNet,
    variables: Dict,
    images: jax.Array,
    class_index: Optional[Sequence[int]] = None,
    layer: str = "head_out",
) -> CamResult:
    """Grad-CAM of `layer` (and CAM when layer == 'head_out') for the top class or `class_index`.

    `images` are NHWC and already normalised the way the weights expect.
    """
    tapped = model.clone(perturb_layers=True)
    zeros = jax.eval_shape(lambda: tapped.init(jax.random.key(0), images[:1], train=False))["perturbations"]
    if layer not in zeros:
        raise ValueError(f"unknown layer {layer!r}; choose one of: {', '.join(zeros)}")
    perturbations = jax.tree.map(lambda s: jnp.zeros((images.shape[0],) + s.shape[1:], s.dtype), zeros)
    base = {"params": variables["params"], "batch_stats": variables["batch_stats"]}

    def forward(pert):
        logits, state = tapped.apply({**base, "perturbations": pert}, images, train=False, mutable=["intermediates"])
        return logits, state["intermediates"][layer][0]

    logits, acts = jax.jit(forward)(perturbations)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    classes = jnp.argmax(logits, -1) if class_index is None else jnp.asarray(class_index, jnp.int32)
    if classes.shape != (images.shape[0],):
        raise ValueError(f"class_index needs one class per image ({images.shape[0]}), got {classes.shape}")

    def target(pert):
        return jnp.sum(jnp.take_along_axis(forward(pert)[0], classes[:, None], axis=1))

    grads = jax.jit(jax.grad(target))(perturbations)[layer].astype(jnp.float32)
    acts = acts.astype(jnp.float32)
    weights = jnp.mean(grads, axis=(1, 2), keepdims=True)
    size = images.shape[1:3]
    grad_cam = _normalise(jnp.sum(weights * acts, axis=-1), size)
    cam = None
    if layer == "head_out" and "classifier" in variables["params"]:
        kernel = variables["params"]["classifier"]["kernel"]  # [head, classes]
        cam = _normalise(jnp.einsum("bhwk,kb->bhw", acts, kernel[:, classes]), size)
    return CamResult(
        grad_cam=np.asarray(grad_cam), cam=None if cam is None else np.asarray(cam),
        classes=np.asarray(classes), probs=np.asarray(jnp.take_along_axis(probs, classes[:, None], 1)[:, 0]),
        layer=layer,
    )


def overlay(image_uint8: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (any size) over an RGB uint8 image with the 'jet' colour map."""
    from matplotlib import colormaps
    from PIL import Image

    h, w = image_uint8.shape[:2]
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)) / 255.0
    colour = colormaps["jet"](heat)[..., :3] * 255
    return np.clip((1 - alpha) * image_uint8 + alpha * colour, 0, 255).astype(np.uint8)


def mass_in_box(heat: np.ndarray, box) -> float:
    """Fraction of a heat map's total mass inside box = (x0, y0, x1, y1) in fractions of W and H."""
    h, w = heat.shape
    x0, y0, x1, y1 = box
    inside = heat[int(y0 * h) : int(np.ceil(y1 * h)), int(x0 * w) : int(np.ceil(x1 * w))].sum()
    return float(inside / max(heat.sum(), 1e-12))
