"""What every converter shares: model resolution, the name table walk, fit checks, checkpoints.

A converter is a table. Each source module (`from_timm`, `from_keras`,
`from_efficientnet_pytorch`) walks `build_blocks(spec)` and yields one `Entry` per tensor: the
source's name for it, where it lands in our variables, and its kind (which fixes the layout
transform). `fit_tensors` then checks the table against the file and against the shapes our
module declares (via `jax.eval_shape`, so nothing is initialised), and fails on the FIRST
missing, mis-shaped or unexpected tensor with a message that names the source tensor, our path
and both shapes.

Converted checkpoints (Orbax variables + metadata.json) are in `checkpoint.py`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from efficientnet_jax.models import EfficientNet, ModelSpec, StageSpec, get_spec

SOURCES = ("timm", "keras", "efficientnet_pytorch")

Path = Tuple[str, ...]  # ('params', 'stage1_block0', 'expand_conv', 'kernel')
ModelLike = Union[str, ModelSpec, EfficientNet]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor of the source file and where it goes.

    `key`: the key in the tensors dict the reader returns; `name`: how to call it in messages
    (usually the same); `kind`: 'conv' (any conv kernel), 'dw' (depthwise kernel), 'dense'
    (classifier kernel) or 'vec' (bias, BN vector).
    """

    key: str
    path: Path
    kind: str
    name: Optional[str] = None

    @property
    def display(self) -> str:
        return self.name or self.key


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a source stores each kind of tensor relative to our (HWIO / (in, out)) layout."""

    name: str
    to_ours: Callable[[str, np.ndarray], np.ndarray]
    source_shape: Callable[[str, Tuple[int, ...]], Tuple[int, ...]]


def _torch_to_ours(kind: str, a: np.ndarray) -> np.ndarray:
    if kind in ("conv", "dw"):  # OIHW -> HWIO; depthwise (C, 1, k, k) -> (k, k, 1, C)
        return np.transpose(a, (2, 3, 1, 0))
    if kind == "dense":  # Linear (out, in) -> (in, out)
        return np.transpose(a)
    return a


def _torch_shape(kind: str, ours: Tuple[int, ...]) -> Tuple[int, ...]:
    if kind in ("conv", "dw"):
        kh, kw, i, o = ours
        return (o, i, kh, kw)
    if kind == "dense":
        return (ours[1], ours[0])
    return tuple(ours)


def _keras_to_ours(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "dw":  # DepthwiseConv2D (k, k, C, 1) -> (k, k, 1, C)
        return np.transpose(a, (0, 1, 3, 2))
    return a


def _keras_shape(kind: str, ours: Tuple[int, ...]) -> Tuple[int, ...]:
    if kind == "dw":
        kh, kw, one, c = ours
        return (kh, kw, c, one)
    return tuple(ours)


TORCH_LAYOUT = Layout("PyTorch (OIHW convs, (out, in) Linear)", _torch_to_ours, _torch_shape)
KERAS_LAYOUT = Layout("Keras (HWIO convs, (k, k, C, 1) depthwise, (in, out) Dense)", _keras_to_ours, _keras_shape)


# ---------------------------------------------------------------------------------------------
# Model resolution


_JOINED_NAME = re.compile(r"^efficientnet(v2)?(b\d|l2|s|m|l|xl|lite\d)$")


def canonical_model_name(name: str) -> str:
    """Accept timm ('tf_efficientnet_b0'), Keras ('EfficientNetB0', 'EfficientNetV2S') and
    efficientnet_pytorch ('efficientnet-b0') spellings; returns the timm-style name."""
    if name.startswith("tf_"):
        return "tf_" + canonical_model_name(name[3:])
    low = name.replace("-", "_").lower()
    m = _JOINED_NAME.match(low)
    if m:
        return f"efficientnet{m.group(1) or ''}_{m.group(2)}"
    return low


def numerics_for(source: Optional[str], name: str) -> Dict[str, Any]:
    """The padding / BN eps a weight source was trained with.

    timm: a `tf_` prefix means TF-ported weights ('same' padding, eps 1e-3); without it, timm's
    PyTorch-native models ('symmetric' padding, eps 1e-5). Keras and efficientnet_pytorch
    (lukemelas, and the Lite ports) are TF numerics for every model name.
    """
    if source == "timm" and not name.startswith("tf_"):
        return dict(padding="symmetric", bn_eps=1e-5)
    return dict(padding="same", bn_eps=1e-3)


def resolve_spec(model: ModelLike, source: Optional[str] = None, num_classes: Optional[int] = None) -> Tuple[ModelSpec, str]:
    """(ModelSpec, display name) for a model given by name, spec or module.

    A name gets the numerics of `source` (see `numerics_for`); a ModelSpec / EfficientNet is
    taken as given (its padding and eps are the caller's decision). `num_classes`, when given,
    replaces the spec's (it is read from the weight file's classifier).
    """
    if isinstance(model, EfficientNet):
        spec, name = model.spec, model.spec.name
    elif isinstance(model, ModelSpec):
        spec, name = model, model.name
    elif isinstance(model, str):
        name = canonical_model_name(model)
        spec = get_spec(name)
        spec = dataclasses.replace(spec, **numerics_for(source, name))
    else:
        raise TypeError(f"model must be a model name, a ModelSpec or an EfficientNet module, got {type(model).__name__}")
    if num_classes is not None and num_classes != spec.num_classes:
        spec = dataclasses.replace(spec, num_classes=int(num_classes))
    return spec, name


def spec_to_dict(spec: ModelSpec) -> Dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_dict(d: Mapping[str, Any]) -> ModelSpec:
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    kw = {k: v for k, v in d.items() if k in fields}
    kw["stages"] = tuple(StageSpec(**s) for s in d["stages"])
    for k in ("mean", "std"):
        if k in kw:
            kw[k] = tuple(float(x) for x in kw[k])
    return ModelSpec(**kw)


def expected_shapes(spec: ModelSpec) -> Dict[Path, Tuple[int, ...]]:
    """Every variable our module declares for `spec`, by path, without initialising anything."""
    import jax
    import jax.numpy as jnp

    model = EfficientNet(spec)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    return {path: tuple(leaf.shape) for path, leaf in flatten(shapes).items()}


def flatten(tree: Mapping[str, Any], prefix: Path = ()) -> Dict[Path, Any]:
    out: Dict[Path, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: Mapping[Path, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for path, v in flat.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return out


def path_str(path: Path) -> str:
    return "/".join(path)


# ---------------------------------------------------------------------------------------------
# Name-table helpers shared by the source modules


BN_TARGETS = (("params", "scale"), ("params", "bias"), ("batch_stats", "mean"), ("batch_stats", "var"))


def bn_entries(prefix: str, ours: Path, names: Sequence[str]) -> List[Entry]:
    """Four entries of a BatchNorm (PyTorch naming): scale, bias (params) and mean, var (batch_stats)."""
    return [Entry(f"{prefix}.{n}", (col,) + ours + (leaf,), "vec") for n, (col, leaf) in zip(names, BN_TARGETS)]


def block_path(stage: int, index: int) -> Path:
    return (f"stage{stage}_block{index}",)


# ---------------------------------------------------------------------------------------------
# Fitting a file to a model


def fit_tensors(
    entries: Sequence[Entry],
    tensors: Mapping[str, np.ndarray],
    spec: ModelSpec,
    layout: Layout,
    source: str,
    ignore: Callable[[str], bool] = lambda k: False,
    file_label: str = "",
) -> Dict[str, Any]:
    """Apply the name table to `tensors`; returns {'params', 'batch_stats'} as float32 numpy.

    Raises ValueError naming the first missing tensor, the first tensor whose shape does not fit
    (source name, our path, both shapes), or the first tensor of the file the table does not use.
    """
    where = f"{source} weights{f' {file_label}' if file_label else ''} for {spec.name}"
    expected = expected_shapes(spec)
    out: Dict[Path, np.ndarray] = {}
    used = set()
    for e in entries:
        if e.path not in expected:
            raise RuntimeError(f"converter bug: {e.display} maps to {path_str(e.path)}, which {spec.name} does not have")
        ours = expected[e.path]
        want = layout.source_shape(e.kind, ours)
        if e.key not in tensors:
            raise ValueError(
                f"{where}: missing tensor {e.display!r} (expected shape {want}; ours: {path_str(e.path)} {ours}). "
                f"Is the file for another model, or another source format?"
            )
        a = np.asarray(tensors[e.key])
        if tuple(a.shape) != tuple(want):
            raise ValueError(
                f"{where}: tensor {e.display!r} has shape {tuple(a.shape)}, expected {want} "
                f"(ours: {path_str(e.path)} {ours}). Is the file for another model variant?"
            )
        out[e.path] = np.ascontiguousarray(layout.to_ours(e.kind, a), dtype=np.float32)
        used.add(e.key)
    unexpected = [k for k in tensors if k not in used and not ignore(k)]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        shape = tuple(np.shape(tensors[unexpected[0]]))
        raise ValueError(
            f"{where}: unexpected tensor {unexpected[0]!r} with shape {shape}{more}: "
            f"{spec.name} has no place for it. Is the file for another model variant?"
        )
    missing = [p for p in expected if p not in out]
    if missing:
        raise RuntimeError(f"converter bug: no source tensor maps to {path_str(missing[0])} of {spec.name}")
    return unflatten(out)


def check_variables(variables: Mapping[str, Any], spec: ModelSpec, label: str) -> None:
    """Raise ValueError if a variables tree does not fit `spec` exactly."""
    expected = expected_shapes(spec)
    have = {p: tuple(np.shape(v)) for p, v in flatten(variables).items()}
    for p, shape in expected.items():
        if p not in have:
            raise ValueError(f"{label}: missing variable {path_str(p)} {shape} for {spec.name}")
        if have[p] != shape:
            raise ValueError(f"{label}: variable {path_str(p)} has shape {have[p]}, {spec.name} needs {shape}")
    extra = [p for p in have if p not in expected]
    if extra:
        raise ValueError(f"{label}: unexpected variable {path_str(extra[0])} {have[extra[0]]}: {spec.name} has no such variable")


def num_params(variables: Mapping[str, Any]) -> int:
    return int(sum(int(np.prod(np.shape(v))) for v in flatten(variables.get("params", {})).values()))
