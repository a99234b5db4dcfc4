"""Reading PyTorch state dicts (`.pth`/`.pt`/`.bin`/`.pth.tar`/`.ckpt`, `.safetensors`) as numpy.

Pickled files go through `torch.load(..., weights_only=True, map_location='cpu')`, which only
rebuilds tensors and plain containers: a file that needs arbitrary objects is refused, never
unpickled. `.safetensors` files are read with the safetensors package (no torch needed).
Training checkpoints that wrap the state dict (`{'state_dict': ...}`, `{'model': ...}`) and
DataParallel `module.` prefixes are unwrapped.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping

import numpy as np

TORCH_EXTENSIONS = (".pth", ".pt", ".bin", ".pth.tar", ".tar", ".ckpt")
SAFETENSORS_EXTENSIONS = (".safetensors",)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "state_dict_ema", "model_ema")


def is_torch_file(path: str) -> bool:
    return path.lower().endswith(TORCH_EXTENSIONS + SAFETENSORS_EXTENSIONS)


def _unwrap(obj: Any, path: str) -> Mapping[str, Any]:
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(_is_tensor(v) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping) and obj:
        # Mixed content (tensors plus bookkeeping such as '_metadata'): keep the tensors.
        tensors = {k: v for k, v in obj.items() if _is_tensor(v)}
        if tensors:
            return tensors
    raise ValueError(
        f"{path}: not a state dict of tensors (top-level {type(obj).__name__}"
        f"{' with keys ' + ', '.join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ''}); "
        f"save one with torch.save(model.state_dict(), path)"
    )


def _is_tensor(v: Any) -> bool:
    return hasattr(v, "detach") and hasattr(v, "shape") or isinstance(v, np.ndarray)


def _strip_prefix(d: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    for prefix in ("module.", "model."):
        if d and all(k.startswith(prefix) for k in d):
            d = {k[len(prefix):]: v for k, v in d.items()}
    return d


def _to_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    v = v.detach().cpu()
    if v.is_floating_point():
        v = v.float()
    return v.numpy()


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """{name: numpy array} of a PyTorch weight file; floating tensors come back as float32."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weight file: {path}")
    if path.lower().endswith(SAFETENSORS_EXTENSIONS):
        try:
            from safetensors.numpy import load_file

            raw = load_file(path)
        except (TypeError, ValueError):  # bfloat16 and friends: go through torch if it is there
            from safetensors.torch import load_file as load_torch

            raw = load_torch(path)
        except Exception as e:  # noqa: BLE001 - report the file, whatever safetensors says
            raise ValueError(f"{path}: cannot read as safetensors: {e}") from None
        out = {k: _to_numpy(v) for k, v in raw.items()}
    else:
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading {path} needs PyTorch (`pip install torch`); or convert the file to "
                f".safetensors, which needs only the safetensors package"
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - weights_only refusals are UnpicklingError/RuntimeError
            raise ValueError(
                f"{path}: cannot load as a PyTorch state dict with weights_only=True ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Files that need arbitrary objects are refused; "
                f"re-save with torch.save(model.state_dict(), path)"
            ) from None
        out = {str(k): _to_numpy(v) for k, v in _unwrap(obj, path).items()}
    return _strip_prefix(out)
