"""Classification loss and accuracy, always computed in float32.

bf16 log-softmax made EfficientNet training collapse late in the run (google/flax#677), so the
logits are upcast before anything else happens to them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_labels(labels_onehot: jax.Array, label_smoothing: float) -> jax.Array:
    """TF's smoothing: `onehot * (1 - ls) + ls / num_classes` (also for mixup's soft labels)."""
    num_classes = labels_onehot.shape[-1]
    labels = labels_onehot.astype(jnp.float32)
    return labels * (1.0 - label_smoothing) + label_smoothing / num_classes


def cross_entropy(logits: jax.Array, labels_onehot: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy against (soft) one-hot labels, shape [batch]."""
    if logits.shape != labels_onehot.shape:
        raise ValueError(f"logits {logits.shape} and one-hot labels {labels_onehot.shape} differ in shape")
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(smooth_labels(labels_onehot, label_smoothing) * log_probs, axis=-1)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """Per-example 1.0 where `labels` is among the k largest logits (ties count as a hit)."""
    logits = logits.astype(jnp.float32)
    true_logit = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)
    # Rank = number of classes scoring strictly higher than the true class.
    rank = jnp.sum(logits > true_logit, axis=-1)
    return (rank < k).astype(jnp.float32)
