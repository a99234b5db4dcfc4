"""Weight import: timm, Keras applications and efficientnet_pytorch checkpoints -> our variables.

    from efficientnet_jax.weights import convert_file, save_converted, load_weights, load_pretrained

    variables, meta = convert_file("tf_efficientnet_b0.pth", "tf_efficientnet_b0")   # source inferred
    save_converted("weights/b0", variables, meta)
    model, variables, meta = load_pretrained("weights/b0")
    logits = model.apply(variables, images)        # images normalised per meta['mean'] / meta['std']

Numerics follow the source: timm `tf_*` names, Keras and efficientnet_pytorch are TF numerics
('same' padding, BN eps 1e-3); timm names without `tf_` are PyTorch-native (symmetric padding,
BN eps 1e-5). `num_classes` is read from the file's classifier (0 when it has none). The
classifier always lives at params['classifier'], so fine-tuning can drop it.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from efficientnet_jax.weights import from_efficientnet_pytorch, from_keras, from_timm
from efficientnet_jax.weights.checkpoint import (
    describe, is_converted_dir, load_converted, make_metadata, read_metadata, save_converted, spec_from_metadata,
)
from efficientnet_jax.weights.common import (
    SOURCES, ModelLike, check_variables, fit_tensors, numerics_for, resolve_spec,
)
from efficientnet_jax.weights.imagenet import imagenet_class_names
from efficientnet_jax.weights.torchfile import is_torch_file, read_state_dict

_MODULES = {"timm": from_timm, "keras": from_keras, "efficientnet_pytorch": from_efficientnet_pytorch}

__all__ = [
    "SOURCES", "convert_file", "save_converted", "load_converted", "load_weights", "load_pretrained",
    "read_metadata", "infer_source", "numerics_for", "imagenet_class_names", "describe",
]


def _read(path: str, source: Optional[str]) -> Tuple[str, Dict[str, Any], Any]:
    """(source, flat tensors, Keras per-layer dict or None)."""
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    keras_file = from_keras.is_keras_file(path)
    if source == "keras" or (source is None and keras_file):
        tensors, layers = from_keras.read_tensors(path)
        return "keras", tensors, layers
    if source is None and not is_torch_file(path):
        raise ValueError(
            f"cannot tell the source of {path} from its extension; pass source= one of {SOURCES} "
            f"(.h5/.keras: keras; .pth/.pt/.bin/.safetensors: timm or efficientnet_pytorch)"
        )
    if keras_file:
        raise ValueError(f"{path} is a Keras HDF5 file; source {source!r} reads PyTorch state dicts")
    tensors = read_state_dict(path)
    inferred = next((s for s in ("timm", "efficientnet_pytorch") if _MODULES[s].looks_like(tensors)), None)
    if source is None:
        if inferred is None:
            raise ValueError(
                f"{path}: neither a timm state dict (conv_stem.weight) nor an efficientnet_pytorch one "
                f"(_conv_stem.weight); first keys: {', '.join(list(tensors)[:5])}"
            )
        source = inferred
    elif inferred is not None and inferred != source:
        raise ValueError(f"{path} looks like a {inferred} state dict, not {source}; pass source={inferred!r}")
    return source, tensors, None


def infer_source(path: str) -> str:
    """'timm', 'keras' or 'efficientnet_pytorch' for a weight file (reads the file)."""
    return _read(os.fspath(path), None)[0]


def convert_file(
    path: str, model: ModelLike, source: Optional[str] = None, **preprocessing: Any
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Convert a foreign weight file for `model`: returns (variables, metadata).

    `model`: a name (timm, Keras or efficientnet_pytorch spelling), a ModelSpec or an
    EfficientNet. `source`: 'timm' | 'keras' | 'efficientnet_pytorch', inferred from the
    extension and key names when None. `preprocessing` overrides the recorded mean, std,
    resolution, crop_pct or interpolation (None values are ignored).
    """
    path = os.fspath(path)
    source, tensors, layers = _read(path, source)
    mod = _MODULES[source]
    spec, name = resolve_spec(model, source, num_classes=mod.num_classes(tensors))
    table = mod.entries(spec)
    if layers is not None:
        from_keras.check_variable_names(table, layers)
    variables = fit_tensors(table, tensors, spec, mod.LAYOUT, source, ignore=mod.ignore, file_label=os.path.basename(path))
    pre = mod.preprocessing(spec, tensors)
    pre.update({k: v for k, v in preprocessing.items() if v is not None})
    return variables, make_metadata(spec, name, source, path, variables, **pre)


def load_weights(path: str, model: Optional[ModelLike] = None, source: Optional[str] = None) -> Dict[str, Any]:
    """{'params', 'batch_stats'} (float32 numpy) from a converted checkpoint dir or a foreign file.

    A converted directory names its model in metadata.json (a `model` given too must fit it). A
    foreign file needs `model`; `source` is inferred from the extension / key names when None.
    Build the module for these variables with `load_pretrained` (it applies the source's
    padding / BN eps, which `create_model(name)` alone does not for timm's non-`tf_` models).
    """
    return load_pretrained(path, model=model, source=source)[1]


def load_pretrained(
    path: str, model: Optional[ModelLike] = None, source: Optional[str] = None, **module_kw: Any
) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """(EfficientNet module, variables, metadata) ready for `module.apply(variables, x)`.

    The module is rebuilt from the metadata's spec (padding, BN eps, num_classes, ...);
    `module_kw` are module options (dtype, dw_impl, remat, ...).
    """
    from efficientnet_jax.models import EfficientNet

    path = os.fspath(path)
    if os.path.isdir(path):
        if not is_converted_dir(path):
            raise ValueError(f"{path} is a directory without metadata.json: not a converted checkpoint "
                             f"(make one with `python -m efficientnet_jax.tools.convert`)")
        variables, meta = load_converted(path)
        spec = spec_from_metadata(meta)
        check_variables(variables, spec, f"converted checkpoint {path}")
        if model is not None:
            want, _ = resolve_spec(model, meta.get("source"), num_classes=spec.num_classes)
            check_variables(variables, want, f"converted checkpoint {path} ({describe(meta)}) for model {want.name}")
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such weight file or converted checkpoint: {path}")
        if model is None:
            raise ValueError(f"{path} is a foreign weight file: name its model (model=, or --model on the command line, e.g. 'tf_efficientnet_b0') to convert it")
        variables, meta = convert_file(path, model, source=source)
        spec = spec_from_metadata(meta)
    return EfficientNet(spec=spec, **module_kw), variables, meta
