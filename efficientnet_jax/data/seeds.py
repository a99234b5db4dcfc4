"""Stateless seeds: every random choice is a pure function of (base seed, purpose, index).

Nothing in the pipeline draws from a stateful generator, so an example's crop, flip and
augmentation depend only on the run's seed and the example's position in the global stream.
That is what makes a stream exactly reproducible and resumable from any step.
"""

from __future__ import annotations

from efficientnet_jax.data._tf import tf

# One independent stream per kind of random decision.
PERMUTATION = 1
CROP = 2
FLIP = 3
AUGMENT = 4
MIX = 5
FILES = 6

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """A well-mixed 64-bit hash (splitmix64 finaliser); plain Python, identical everywhere."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def fold(base_seed: int, *data: int) -> int:
    """Python int in [0, 2**31) mixing `base_seed` with `data` (usable as a tf.data / TFDS seed)."""
    x = _splitmix64(int(base_seed) & _MASK64)
    for d in data:
        x = _splitmix64(x ^ (int(d) & _MASK64))
    return x & 0x7FFFFFFF


def tf_seed(base_seed: int, purpose: int, index) -> tf.Tensor:
    """int64 [..., 2] stateless seed for `index` (a scalar or vector tensor) in stream `purpose`."""
    index = tf.cast(index, tf.int64)
    key = tf.fill(tf.shape(index), tf.constant(fold(base_seed, purpose), tf.int64))
    return tf.stack([key, index], axis=-1)


def split(seed: tf.Tensor, num: int) -> tf.Tensor:
    """[num, 2] independent seeds derived from one [2] seed."""
    return tf.random.experimental.stateless_split(seed, num=num)
