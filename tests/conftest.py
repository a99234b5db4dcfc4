"""Test-session setup shared by every test module.

Import order matters on this stack: importing tensorflow before torchvision segfaults
(observed with tensorflow-cpu 2.21 + torchvision 0.29.1), so the PyTorch side is imported
first whenever it is installed. Keras runs on the JAX backend in the parity tests.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # noqa: SIM105 - optional reference libraries
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import timm  # noqa: F401
except ImportError:
    pass
