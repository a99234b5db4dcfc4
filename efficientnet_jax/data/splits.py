"""Deterministic held-out splits and per-process shards of in-memory data sets (numpy only)."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(train_indices, test_indices), both sorted, with each class split in proportion.

    The test set has ceil(N * test_fraction) examples (360 of digits' 1,797, as scikit-learn's
    train_test_split gives), shared among classes by largest remainder. numpy's legacy
    RandomState is used because its streams are frozen across numpy versions, so the split
    is the same on every machine and every release.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    total_test = math.ceil(len(labels) * test_fraction)
    exact = counts * test_fraction
    quota = np.floor(exact).astype(int)
    # Largest remainder; ties go to the lower class index (stable sort).
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total_test - quota.sum()]] += 1
    rng = np.random.RandomState(seed)
    test = []
    for c, k in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        test.append(rng.permutation(members)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros([0], np.int64)
    train_mask = np.ones(len(labels), bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def shard_indices(num_examples: int, process_index: int, process_count: int) -> np.ndarray:
    """The examples process `process_index` owns: every process_count-th one (disjoint, covering).

    Strided rather than contiguous so each shard keeps the class mix of the whole set even when
    the examples are stored class by class (image folders).
    """
    check_process(process_index, process_count)
    return np.arange(process_index, num_examples, process_count)


def shard_sizes(num_examples: int, process_count: int) -> np.ndarray:
    """Sizes of the `shard_indices` shards of all processes."""
    return np.array([len(range(k, num_examples, process_count)) for k in range(process_count)])


def check_process(process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count})")
