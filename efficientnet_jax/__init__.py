"""efficientnet-jax: the EfficientNet family (V1, Lite, V2) in JAX/Flax."""

from efficientnet_jax.models import (
    EfficientNet, ModelSpec, compound_scaling, create_model, get_spec, init_variables, list_models,
)


def load_weights(path, model=None, source=None):
    """{'params', 'batch_stats'} from a converted checkpoint dir or a foreign weight file."""
    from efficientnet_jax.weights import load_weights as _load

    return _load(path, model=model, source=source)


__all__ = [
    "EfficientNet", "ModelSpec", "create_model", "get_spec", "list_models", "compound_scaling", "init_variables",
    "load_weights",
]
__version__ = "0.1.0"
