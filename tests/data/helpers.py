"""Run a TF function both eagerly and inside tf.data.map (the big_vision test idiom: the two
differ more often than one would think)."""

import numpy as np
import tensorflow as tf


def eager_and_in_pipeline(fn, *args):
    """[eager result, tf.data.map result] as numpy arrays (or tuples of them)."""
    eager = fn(*[tf.convert_to_tensor(a) for a in args])
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(lambda *a: fn(*a))
    graph = next(ds.as_numpy_iterator())
    to_np = lambda x: tuple(np.asarray(v) for v in x) if isinstance(x, (tuple, list)) else np.asarray(x)  # noqa: E731
    return [to_np(eager), to_np(graph)]


def rgb(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
