"""AutoAugment (policy v0) and RandAugment on uint8 images, driven by stateless seeds.

Facts from the official EfficientNet code (google/automl efficientnetv2/autoaugment.py, the same
as tensorflow/tpu models/official/efficientnet/autoaugment.py): the v0 sub-policy table, the
level -> argument maps (levels 0..10), the translate/cutout constants (AutoAugment 250/100 px,
RandAugment 100/40 px), and RandAugment's 16 ops applied at a fixed magnitude.

One deliberate difference: the pixel constants were chosen for ImageNet-sized images, so for an
image whose short side is below 224 they are scaled by side/224 (a 100 px translation would
blank a 32x32 image). At 224 px and above the official values apply unchanged.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

from efficientnet_jax.data import augment_ops as ops
from efficientnet_jax.data import seeds
from efficientnet_jax.data._tf import no_autograph, tf

MAX_LEVEL = 10.0
REFERENCE_SIDE = 224.0

# (op, probability, level) pairs; one sub-policy is drawn uniformly per image.
POLICY_V0: Tuple[Tuple[Tuple[str, float, int], Tuple[str, float, int]], ...] = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)

RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
)

AUTOAUGMENT_CONSTS = dict(translate=250.0, cutout=100.0)
RANDAUGMENT_CONSTS = dict(translate=100.0, cutout=40.0)


def level_to_arg(name: str, level: float, consts: Dict[str, float]) -> float:
    """The official level -> argument map (computed in Python floats, exactly as there)."""
    if name in ("AutoContrast", "Equalize", "Invert"):
        return 0.0
    if name == "Rotate":
        return level / MAX_LEVEL * 30.0  # degrees, sign drawn later
    if name == "Posterize":
        return float(int(level / MAX_LEVEL * 4))  # bits kept
    if name == "Solarize":
        return float(int(level / MAX_LEVEL * 256))  # threshold
    if name == "SolarizeAdd":
        return float(int(level / MAX_LEVEL * 110))  # addition
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level / MAX_LEVEL * 1.8 + 0.1  # enhancement factor
    if name in ("ShearX", "ShearY"):
        return level / MAX_LEVEL * 0.3  # shear, sign drawn later
    if name in ("TranslateX", "TranslateY"):
        return level / MAX_LEVEL * float(consts["translate"])  # pixels at 224+, sign drawn later
    if name == "Cutout":
        return float(int(level / MAX_LEVEL * consts["cutout"]))  # half side, pixels at 224+
    raise ValueError(f"unknown augmentation op {name!r}; known: {sorted(OPS)}")


def _signed(value: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`value` with a random sign (the official code negates half of the magnitudes)."""
    return tf.where(tf.random.stateless_uniform([], seed=seed) < 0.5, -value, value)


# Each op: (image, arg, seed, pixel_scale) -> image, with `arg` from `level_to_arg` as a float32
# tensor; `seed` drives the op's own random choices (a sign, the cutout centre); `pixel_scale`
# shrinks pixel distances on small images (see the module docstring).
OpFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]

OPS: Dict[str, OpFn] = {
    "AutoContrast": lambda im, a, s, px: ops.autocontrast(im),
    "Equalize": lambda im, a, s, px: ops.equalize(im),
    "Invert": lambda im, a, s, px: ops.invert(im),
    "Rotate": lambda im, a, s, px: ops.rotate(im, _signed(a, s)),
    "Posterize": lambda im, a, s, px: ops.posterize(im, tf.cast(a, tf.int32)),
    "Solarize": lambda im, a, s, px: ops.solarize(im, tf.cast(a, tf.int32)),
    "SolarizeAdd": lambda im, a, s, px: ops.solarize_add(im, tf.cast(a, tf.int32)),
    "Color": lambda im, a, s, px: ops.color(im, a),
    "Contrast": lambda im, a, s, px: ops.contrast(im, a),
    "Brightness": lambda im, a, s, px: ops.brightness(im, a),
    "Sharpness": lambda im, a, s, px: ops.sharpness(im, a),
    "ShearX": lambda im, a, s, px: ops.shear_x(im, _signed(a, s)),
    "ShearY": lambda im, a, s, px: ops.shear_y(im, _signed(a, s)),
    "TranslateX": lambda im, a, s, px: ops.translate_x(im, _signed(a * px, s)),
    "TranslateY": lambda im, a, s, px: ops.translate_y(im, _signed(a * px, s)),
    "Cutout": lambda im, a, s, px: ops.cutout(im, tf.cast(tf.floor(a * px), tf.int32), s),
}


def _pixel_scale(image: tf.Tensor) -> tf.Tensor:
    """1 for images of 224 px and more; side/224 below (pixel constants were tuned at 224+)."""
    side = tf.cast(tf.reduce_min(tf.shape(image)[:2]), tf.float32)
    return tf.minimum(1.0, side / REFERENCE_SIDE)


def _check_image(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f"augmentation expects a uint8 image, got {image.dtype.name}")
    if image.shape.rank != 3 or (image.shape[-1] is not None and image.shape[-1] != 3):
        raise ValueError(f"augmentation expects an [H, W, 3] image, got shape {image.shape}")
    return image


@no_autograph
def apply_op(image: tf.Tensor, name: str, level: float, seed: tf.Tensor,
             consts: Optional[Dict[str, float]] = None) -> tf.Tensor:
    """Apply one named op at `level` (0..10) to a uint8 [H, W, 3] image (RandAugment constants
    unless `consts` says otherwise)."""
    if name not in OPS:
        raise ValueError(f"unknown augmentation op {name!r}; known: {sorted(OPS)}")
    image = _check_image(image)
    arg = tf.constant(level_to_arg(name, float(level), consts or RANDAUGMENT_CONSTS), tf.float32)
    return tf.ensure_shape(OPS[name](image, arg, tf.convert_to_tensor(seed), _pixel_scale(image)), image.shape)


def _switch(image: tf.Tensor, names: Sequence[str], index: tf.Tensor, arg: tf.Tensor, seed: tf.Tensor,
            scale: tf.Tensor) -> tf.Tensor:
    """Apply names[index] (one Case op: only the chosen branch runs)."""
    branches = [lambda n=n: tf.ensure_shape(OPS[n](image, arg, seed, scale), image.shape) for n in names]
    return tf.switch_case(index, branches)


@no_autograph
def autoaugment(image: tf.Tensor, seed: tf.Tensor, policy: Sequence = POLICY_V0) -> tf.Tensor:
    """AutoAugment: one uniformly drawn sub-policy; each of its ops fires with its probability.

    The policy is laid out as tables (op, probability, argument per sub-policy and slot) so the
    graph holds one switch over the distinct ops per slot, not one branch per sub-policy.
    """
    image = _check_image(image)
    slots = max(len(p) for p in policy)
    names = sorted({name for sub in policy for name, _, _ in sub})
    table_op, table_prob, table_arg = [], [], []
    for sub in policy:
        padded = list(sub) + [(names[0], 0.0, 0)] * (slots - len(sub))  # prob 0: never fires
        table_op.append([names.index(n) for n, _, _ in padded])
        table_prob.append([p for _, p, _ in padded])
        table_arg.append([level_to_arg(n, float(lv), AUTOAUGMENT_CONSTS) for n, _, lv in padded])
    scale = _pixel_scale(image)
    pick_seed, *slot_seeds = tf.unstack(seeds.split(tf.convert_to_tensor(seed), 1 + 2 * slots))
    choice = tf.random.stateless_uniform([], seed=pick_seed, maxval=len(policy), dtype=tf.int32)
    out = image
    for k in range(slots):
        fire_seed, op_seed = slot_seeds[2 * k], slot_seeds[2 * k + 1]
        op = tf.gather(tf.constant(table_op, tf.int32)[:, k], choice)
        prob = tf.gather(tf.constant(table_prob, tf.float32)[:, k], choice)
        arg = tf.gather(tf.constant(table_arg, tf.float32)[:, k], choice)
        fire = tf.random.stateless_uniform([], seed=fire_seed) < prob
        out = tf.cond(fire, lambda o=out, i=op, a=arg, s=op_seed: _switch(o, names, i, a, s, scale),
                      lambda o=out: o)
    return out


@no_autograph
def randaugment(image: tf.Tensor, seed: tf.Tensor, num_layers: int = 2, magnitude: float = 10.0,
                op_names: Sequence[str] = RANDAUGMENT_OPS) -> tf.Tensor:
    """RandAugment: `num_layers` times, apply one uniformly chosen op at `magnitude` (0..10+)."""
    image = _check_image(image)
    scale = _pixel_scale(image)
    args = tf.constant([level_to_arg(n, float(magnitude), RANDAUGMENT_CONSTS) for n in op_names], tf.float32)
    layer_seeds = tf.unstack(seeds.split(tf.convert_to_tensor(seed), 2 * max(int(num_layers), 1)))
    out = image
    for layer in range(int(num_layers)):
        pick_seed, op_seed = layer_seeds[2 * layer], layer_seeds[2 * layer + 1]
        choice = tf.random.stateless_uniform([], seed=pick_seed, maxval=len(op_names), dtype=tf.int32)
        out = _switch(out, op_names, choice, tf.gather(args, choice), op_seed, scale)
    return out
