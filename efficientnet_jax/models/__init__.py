"""Linen modules for the EfficientNet family and the variant registry."""

from efficientnet_jax.models.efficientnet import EfficientNet
from efficientnet_jax.models.fold import fold_batch_norm
from efficientnet_jax.models.registry import compound_scaling, create_model, get_spec, init_variables, list_models
from efficientnet_jax.models.spec import BlockConfig, ModelSpec, StageSpec, build_blocks

__all__ = [
    "EfficientNet", "ModelSpec", "StageSpec", "BlockConfig", "build_blocks",
    "create_model", "get_spec", "list_models", "compound_scaling", "init_variables",
    "fold_batch_norm",
]
