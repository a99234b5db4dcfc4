"""efficientnet-jax: the EfficientNet family (V1, Lite, V2) in JAX/Flax.

The top-level names load lazily, so `import efficientnet_jax.host_memory` (which must run before
JAX starts any thread) does not import JAX.
"""

from importlib import import_module
from typing import Any

_FROM_MODELS = ("EfficientNet", "ModelSpec", "compound_scaling", "create_model", "fold_batch_norm", "get_spec",
                "init_variables", "list_models")


def load_weights(path, model=None, source=None):
    """{'params', 'batch_stats'} from a converted checkpoint dir or a foreign weight file."""
    from efficientnet_jax.weights import load_weights as _load

    return _load(path, model=model, source=source)


def __getattr__(name: str) -> Any:
    if name in _FROM_MODELS:
        return getattr(import_module("efficientnet_jax.models"), name)
    if name == "inference_fn":
        return import_module("efficientnet_jax.inference").inference_fn
    raise AttributeError(f"module 'efficientnet_jax' has no attribute {name!r}")


__all__ = [
    "EfficientNet", "ModelSpec", "create_model", "get_spec", "list_models", "compound_scaling", "init_variables",
    "load_weights", "inference_fn", "fold_batch_norm",
]
__version__ = "0.1.0"
