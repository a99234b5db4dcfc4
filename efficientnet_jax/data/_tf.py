"""The one place the data package imports TensorFlow.

TensorFlow is only the input pipeline here; it must never take accelerator memory that JAX
needs, so GPUs are hidden from it once, on first import (the flax/big_vision convention).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # already initialised by the caller: leave their choice alone
    pass

# Our functions are plain TF ops with no Python control flow on tensors; marking the public ones
# keeps tf.data from running AutoGraph over them (it halves the tracing time of AutoAugment).
no_autograph = tf.autograph.experimental.do_not_convert

__all__ = ["tf", "no_autograph"]
