"""Converted checkpoints: an Orbax variables tree plus a JSON metadata file beside it.

    DIR/variables/       Orbax (StandardCheckpointer) tree {'params': ..., 'batch_stats': ...}
    DIR/metadata.json    model name, full ModelSpec, numerics, source, preprocessing

Preprocessing in the metadata is what the weights expect: scale 8-bit pixels to `value_range`
(always [0, 1] here: pixel / 255), then `(x - mean) / std` per channel; `resolution`, `crop_pct`
and `interpolation` describe the eval resize / centre crop. The stored `spec` rebuilds the exact
module (padding, BN eps, num_classes, any scaling); `model` is the name it was converted for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from efficientnet_jax.models import ModelSpec
from efficientnet_jax.weights.common import flatten, num_params, resolve_spec, spec_from_dict, spec_to_dict, unflatten

METADATA_FILE = "metadata.json"
VARIABLES_DIR = "variables"
FORMAT = "efficientnet_jax.converted"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Metadata


def make_metadata(
    spec: ModelSpec,
    name: str,
    source: str,
    source_file: Optional[str],
    variables: Optional[Mapping[str, Any]] = None,
    **preprocessing: Any,
) -> Dict[str, Any]:
    """Metadata for converted weights. Preprocessing keys (mean, std, resolution, crop_pct,
    interpolation) default to the spec's; the spec stored is updated to match them."""
    import efficientnet_jax

    pre = dict(mean=spec.mean, std=spec.std, resolution=spec.resolution, crop_pct=spec.crop_pct,
               interpolation=spec.interpolation)
    pre.update({k: v for k, v in preprocessing.items() if v is not None})
    pre["mean"] = tuple(float(x) for x in pre["mean"])
    pre["std"] = tuple(float(x) for x in pre["std"])
    if len(pre["mean"]) != 3 or len(pre["std"]) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {pre['mean']} / {pre['std']}")
    spec = dataclasses.replace(spec, mean=pre["mean"], std=pre["std"], resolution=int(pre["resolution"]),
                               crop_pct=float(pre["crop_pct"]), interpolation=str(pre["interpolation"]))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "num_classes": spec.num_classes,
        "padding": spec.padding,
        "bn_eps": spec.bn_eps,
        "source": source,
        "source_file": os.path.abspath(source_file) if source_file else None,
        "value_range": [0.0, 1.0],
        "mean": list(spec.mean),
        "std": list(spec.std),
        "resolution": spec.resolution,
        "crop_pct": spec.crop_pct,
        "interpolation": spec.interpolation,
        "created_by": f"efficientnet_jax {efficientnet_jax.__version__}",
        "spec": spec_to_dict(spec),
    }
    if variables is not None:
        meta["num_params"] = num_params(variables)
    return json.loads(json.dumps(meta))  # exactly what metadata.json will read back (lists, not tuples)


def spec_from_metadata(meta: Mapping[str, Any]) -> ModelSpec:
    if "spec" in meta:
        return spec_from_dict(meta["spec"])
    # Minimal metadata (hand-written): rebuild from the name and the recorded numerics.
    spec, _ = resolve_spec(meta["model"], meta.get("source"), meta.get("num_classes"))
    repl = {k: meta[k] for k in ("padding", "bn_eps", "resolution", "crop_pct", "interpolation") if k in meta}
    for k in ("mean", "std"):
        if k in meta:
            repl[k] = tuple(meta[k])
    return dataclasses.replace(spec, **repl)


# ---------------------------------------------------------------------------------------------
# Converted checkpoints (Orbax + JSON)


def is_converted_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, METADATA_FILE))


def _to_numpy(tree: Mapping[str, Any]) -> Dict[str, Any]:
    return unflatten({p: np.asarray(v, dtype=np.float32) for p, v in flatten(tree).items()})


def save_converted(directory: str, variables: Mapping[str, Any], metadata: Mapping[str, Any], overwrite: bool = False) -> str:
    """Write {'params', 'batch_stats'} with Orbax under DIR/variables and DIR/metadata.json.

    Refuses a non-empty directory unless `overwrite`. Returns the absolute directory.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    if set(variables) - {"params", "batch_stats"} or "params" not in variables:
        raise ValueError(f"variables must be {{'params', 'batch_stats'}}, got keys {sorted(variables)}")
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        if not overwrite:
            raise FileExistsError(f"{directory} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
        if os.path.isdir(directory) and not is_converted_dir(directory):
            raise FileExistsError(f"{directory} is not a converted checkpoint; refusing to delete it")
        shutil.rmtree(directory) if os.path.isdir(directory) else os.remove(directory)
    os.makedirs(directory, exist_ok=True)
    tree = {"params": _to_numpy(variables["params"]), "batch_stats": _to_numpy(variables.get("batch_stats", {}))}
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(directory, VARIABLES_DIR), tree)
    ckptr.wait_until_finished()
    ckptr.close()
    tmp = os.path.join(directory, METADATA_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(dict(metadata), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, os.path.join(directory, METADATA_FILE))
    return directory


def read_metadata(directory: str) -> Dict[str, Any]:
    path = os.path.join(directory, METADATA_FILE)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read converted-checkpoint metadata {path}: {e}") from None
    if meta.get("format") not in (None, FORMAT):
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if "model" not in meta and "spec" not in meta:
        raise ValueError(f"{path}: names no model ('model' or 'spec' key)")
    return meta


def load_converted(directory: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(variables as float32 numpy, metadata) of a converted checkpoint directory."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    meta = read_metadata(directory)
    vdir = os.path.join(directory, VARIABLES_DIR)
    if not os.path.isdir(vdir):
        raise ValueError(f"{directory}: no {VARIABLES_DIR}/ (Orbax) directory beside {METADATA_FILE}")
    ckptr = ocp.StandardCheckpointer()
    try:
        tree = ckptr.restore(vdir)
    finally:
        ckptr.close()
    variables = {"params": _to_numpy(tree["params"]), "batch_stats": _to_numpy(tree.get("batch_stats", {}))}
    return variables, meta


def describe(meta: Mapping[str, Any]) -> str:
    return (f"{meta.get('model')} ({meta.get('num_classes')} classes, padding={meta.get('padding')}, "
            f"bn_eps={meta.get('bn_eps')}, from {meta.get('source')})")
