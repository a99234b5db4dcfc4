"""Ablation sweeps: big_vision-style `get_hyper(h)` configs, trial runners and result tables."""

from efficientnet_jax.sweeps.hyper import Hyper, expand_sweep

__all__ = ["Hyper", "expand_sweep"]
