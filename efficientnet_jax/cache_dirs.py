"""Where the package keeps what it builds for a machine (standard library only: host_memory.py
uses it before JAX may be imported)."""

from __future__ import annotations

import os
from pathlib import Path


def kernel_cache_dir() -> Path:
    """Built native code (the CPU kernels, the large-block allocator): `$EFFICIENTNET_JAX_KERNEL_CACHE`,
    else `$XDG_CACHE_HOME/efficientnet_jax/kernels`, else `~/.cache/efficientnet_jax/kernels`."""
    if os.environ.get("EFFICIENTNET_JAX_KERNEL_CACHE"):
        return Path(os.environ["EFFICIENTNET_JAX_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "efficientnet_jax" / "kernels"
