"""Keras applications weights (`keras.applications.EfficientNetB0..B7`, `EfficientNetV2B0..L`).

Read with h5py, no Keras needed. Three containers hold the same per-layer variables:

* Keras 3 `.weights.h5` (`model.save_weights`): `layers/<auto key>/vars/{0,1,..}`, the layer
  name in the `name` attribute of each `vars` group (nested models: `layers/<model>/layers/...`);
* legacy HDF5 (`model.save('x.h5')`, tf.keras `save_weights('x.h5')`, and the published
  `efficientnetb0.h5` / `..._notop.h5` files): groups per layer with a `weight_names` attribute
  (`'stem_conv/kernel:0'`), under `model_weights/` for whole-model files;
* Keras 3 `.keras` archives: a zip holding `model.weights.h5` (read in memory).

Variables are taken in the order Keras creates them: Conv2D [kernel(, bias)], DepthwiseConv2D
[depthwise_kernel (k, k, C, 1)], BatchNormalization [gamma, beta, moving_mean,
moving_variance], Dense [kernel (in, out), bias].

Layer names (stage s = 1.., block letter c = 'a', 'b', ... within the stage):

    stem_conv, stem_bn                      -> stem_conv, stem_bn
    block{s}{c}_expand_conv, _expand_bn     -> expand_conv, expand_bn (MBConv expand / Fused kxk)
    block{s}{c}_dwconv (V1) | _dwconv2 (V2), block{s}{c}_bn -> dw_conv, dw_bn
    block{s}{c}_se_reduce, _se_expand       -> se/reduce, se/expand
    block{s}{c}_project_conv, _project_bn   -> project_conv, project_bn
    top_conv, top_bn, predictions           -> head_conv, head_bn, classifier

Numerics: TF SAME padding, BN eps 1e-3 (Keras' default; V2 passes it explicitly).

Preprocessing is inside the Keras graph and is recorded in the metadata instead (our models do
not normalise): V1 `Rescaling(1/255)` + `Normalization` whose mean/variance are weights in the
file -> mean, sqrt(variance). The published V1 `imagenet` files store the std in the variance
slot and Keras adds `Rescaling(1/sqrt(std))` for them (tensorflow/tensorflow#49930): a variance
equal to the ImageNet std is read as that std. V2 B0-B3: `Rescaling(1/255)` + ImageNet
mean/std constants; V2 S/M/L: `Rescaling(1/128, offset=-1)`, i.e. mean = std = 128/255. These V2
constants are not in the file: they assume the default `include_preprocessing=True`.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from typing import Dict, List, Mapping, Tuple

import numpy as np

from efficientnet_jax.models import ModelSpec, build_blocks
from efficientnet_jax.weights.common import BN_TARGETS, IMAGENET_MEAN, IMAGENET_STD, KERAS_LAYOUT, Entry

SOURCE = "keras"
LAYOUT = KERAS_LAYOUT
KERAS_EXTENSIONS = (".h5", ".hdf5", ".keras")
_BN = ("gamma", "beta", "moving_mean", "moving_variance")
V2_SML_MEAN = (128.0 / 255.0,) * 3
V2_SML_STD = (128.0 / 255.0,) * 3
# Keras V1 leaves its input Normalization unnamed: 'normalization', 'normalization_1', ...
# depending on how many the session had built before.
NORMALIZATION_LAYER = re.compile(r"^normalization(_\d+)?$")


def is_keras_file(path: str) -> bool:
    return path.lower().endswith(KERAS_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# Reading


def _open(path: str):
    import h5py

    if path.lower().endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith(".weights.h5")), None)
                if name is None:
                    raise ValueError(f"{path}: a .keras archive without a *.weights.h5 member ({z.namelist()})")
                data = z.read(name)
        except zipfile.BadZipFile:
            raise ValueError(f"{path}: not a .keras (zip) archive") from None
        return h5py.File(io.BytesIO(data), "r")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: cannot open as HDF5 ({e})") from None


def _decode(x) -> str:
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def _read_keras3(f) -> Dict[str, List[Tuple[str, np.ndarray]]]:
    import h5py

    layers: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    unnamed: List[str] = []

    def visit(name, obj):
        if not (isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars"):
            return
        ds = sorted((k for k in obj if isinstance(obj[k], h5py.Dataset)), key=lambda k: int(k) if k.isdigit() else k)
        if not ds:
            return
        lname = obj.attrs.get("name")
        if lname is None:
            unnamed.append(name)
            return
        lname = _decode(lname)
        if lname in layers:
            raise ValueError(f"two Keras layers named {lname!r} in the file ({name})")
        layers[lname] = [(k, np.asarray(obj[k])) for k in ds]

    f.visititems(visit)
    if unnamed and not layers:
        raise ValueError(
            f"this Keras 3 .weights.h5 file does not record layer names (e.g. {unnamed[0]}); it was written by an "
            f"older Keras 3. Load it into the Keras model and re-save it with a current Keras, or as legacy .h5"
        )
    return layers


def _read_legacy(g) -> Dict[str, List[Tuple[str, np.ndarray]]]:
    layers: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    for outer in (_decode(n) for n in g.attrs["layer_names"]):
        grp = g[outer]
        for wname in (_decode(n) for n in grp.attrs.get("weight_names", [])):
            parts = wname.split("/")
            layer = parts[-2] if len(parts) >= 2 else outer
            var = parts[-1].split(":")[0]
            layers.setdefault(layer, []).append((var, np.asarray(grp[wname])))
    return layers


def read_layers(path: str) -> Dict[str, List[Tuple[str, np.ndarray]]]:
    """{layer name: [(variable name or index, array), ...]} in Keras' variable order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weight file: {path}")
    with _open(path) as f:
        if "layer_names" in f.attrs:
            return _read_legacy(f)
        if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
            return _read_legacy(f["model_weights"])
        if "layers" in f or "vars" in f:
            return _read_keras3(f)
    raise ValueError(f"{path}: neither a Keras 3 .weights.h5 nor a legacy Keras HDF5 weight file")


def read_tensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, List[Tuple[str, np.ndarray]]]]:
    """Flat {'<layer>/<index>': array} (what the name table addresses) and the per-layer dict."""
    layers = read_layers(path)
    flat = {f"{layer}/{i}": a for layer, vs in layers.items() for i, (_, a) in enumerate(vs)}
    return flat, layers


# ---------------------------------------------------------------------------------------------
# The name table


def _conv(layer: str, ours, bias: bool = False, kind: str = "conv", var: str = "kernel") -> List[Entry]:
    out = [Entry(f"{layer}/0", ("params",) + ours + ("kernel",), kind, f"{layer}/{var}")]
    if bias:
        out.append(Entry(f"{layer}/1", ("params",) + ours + ("bias",), "vec", f"{layer}/bias"))
    return out


def _bn(layer: str, ours) -> List[Entry]:
    return [Entry(f"{layer}/{i}", (col,) + ours + (leaf,), "vec", f"{layer}/{n}")
            for i, (n, (col, leaf)) in enumerate(zip(_BN, BN_TARGETS))]


def entries(spec: ModelSpec) -> List[Entry]:
    v2 = spec.family == "v2"
    out: List[Entry] = _conv("stem_conv", ("stem_conv",)) + _bn("stem_bn", ("stem_bn",))
    for cfg in build_blocks(spec):
        k = f"block{cfg.stage + 1}{chr(97 + cfg.index)}_"
        b = (f"stage{cfg.stage}_block{cfg.index}",)
        se = (_conv(k + "se_reduce", b + ("se", "reduce"), bias=True)
              + _conv(k + "se_expand", b + ("se", "expand"), bias=True)) if cfg.se_channels else []
        if cfg.block == "mbconv":
            if cfg.expand_ratio != 1:
                out += _conv(k + "expand_conv", b + ("expand_conv",)) + _bn(k + "expand_bn", b + ("expand_bn",))
            dw = k + ("dwconv2" if v2 else "dwconv")
            out += _conv(dw, b + ("dw_conv",), kind="dw", var="depthwise_kernel") + _bn(k + "bn", b + ("dw_bn",)) + se
            out += _conv(k + "project_conv", b + ("project_conv",)) + _bn(k + "project_bn", b + ("project_bn",))
        elif cfg.expand_ratio != 1:
            out += _conv(k + "expand_conv", b + ("expand_conv",)) + _bn(k + "expand_bn", b + ("expand_bn",)) + se
            out += _conv(k + "project_conv", b + ("project_conv",)) + _bn(k + "project_bn", b + ("project_bn",))
        else:
            out += _conv(k + "project_conv", b + ("project_conv",)) + _bn(k + "project_bn", b + ("project_bn",)) + se
    out += _conv("top_conv", ("head_conv",)) + _bn("top_bn", ("head_bn",))
    if spec.num_classes:
        out += _conv("predictions", ("classifier",), bias=True, kind="dense")
    return out


def num_classes(tensors: Mapping[str, np.ndarray]) -> int:
    w = tensors.get("predictions/0")
    return int(w.shape[-1]) if w is not None else 0


def ignore(key: str) -> bool:
    # The V1 input Normalization (mean, variance, count) is preprocessing, recorded as metadata.
    return bool(NORMALIZATION_LAYER.match(key.split("/")[0]))


def _normalization_weights(tensors: Mapping[str, np.ndarray]):
    layers = sorted({k.split("/")[0] for k in tensors if NORMALIZATION_LAYER.match(k.split("/")[0])})
    if not layers:
        return None, None
    if len(layers) > 1:
        raise ValueError(f"more than one input Normalization layer in the file: {layers}")
    return tensors.get(f"{layers[0]}/0"), tensors.get(f"{layers[0]}/1")


def looks_like(tensors: Mapping[str, np.ndarray]) -> bool:
    return "stem_conv/0" in tensors


def check_variable_names(entries_: List[Entry], layers: Mapping[str, List[Tuple[str, np.ndarray]]]) -> None:
    """Where the file names its variables (legacy HDF5), make sure position i is the one we expect."""
    for e in entries_:
        layer, idx = e.key.rsplit("/", 1)
        vs = layers.get(layer)
        if not vs or int(idx) >= len(vs):
            continue
        got = vs[int(idx)][0]
        want = e.display.rsplit("/", 1)[1]
        ok = {want, "kernel"} if want == "depthwise_kernel" else {want}  # Keras 3 says 'kernel'
        if not got.isdigit() and got not in ok:
            raise ValueError(f"keras layer {layer!r}: variable {idx} is {got!r}, expected {want!r}")


def _imagenet_std_in_variance(var: np.ndarray) -> bool:
    return np.allclose(var, IMAGENET_STD, atol=1e-4)


def preprocessing(spec: ModelSpec, tensors: Mapping[str, np.ndarray]) -> Dict:
    """mean/std (on [0, 1] pixels) equivalent to the Keras model's in-graph preprocessing."""
    if spec.family == "v2":
        if spec.mean == (0.5, 0.5, 0.5) or spec.name.rsplit("_", 1)[-1] in ("s", "m", "l", "xl"):
            return dict(mean=V2_SML_MEAN, std=V2_SML_STD)
        return dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    mean, var = _normalization_weights(tensors)
    if mean is None or var is None:
        return dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    mean, var = np.asarray(mean, np.float64).reshape(-1), np.asarray(var, np.float64).reshape(-1)
    if mean.size == 1:
        mean = np.repeat(mean, 3)
    if var.size == 1:
        var = np.repeat(var, 3)
    std = var if _imagenet_std_in_variance(var) else np.sqrt(np.maximum(var, 0.0))
    # Keras' Normalization divides by max(sqrt(var), epsilon) with epsilon = backend.epsilon() = 1e-7.
    std = np.maximum(std, 1e-7)
    # Shortest float32 repr: the file holds float32 (0.485 rather than 0.48500001430511475).
    return dict(mean=tuple(float(str(np.float32(x))) for x in mean), std=tuple(float(str(np.float32(x))) for x in std))
