"""Seeded train/validation/test splits: random, or grouped so a group never straddles two parts."""

from __future__ import annotations

import numpy as np


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"need 0 <= val_fraction, test_fraction and val_fraction + test_fraction < 1, "
            f"got {val_fraction} and {test_fraction}"
        )


def random_split(
    n: int, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded random train/val/test split of ``n`` items.

    Returns
    -------
    train, val, test : ndarray of int64, sorted
        ``round(n * test_fraction)`` test and ``round(n * val_fraction)`` val items.
    """
    _check_fractions(val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    test = order[:n_test]
    val = order[n_test : n_test + n_val]
    train = order[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def grouped_split(
    groups: np.ndarray, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split items so every group (recording, speaker) lies in exactly one part.

    Groups are shuffled with ``seed`` and assigned to test, then validation, until each
    holds at least its fraction of the items; the rest is training data.

    Parameters
    ----------
    groups : ndarray of int, shape (n,)

    Returns
    -------
    train, val, test : ndarray of int64, sorted item indices
    """
    _check_fractions(val_fraction, test_fraction)
    groups = np.asarray(groups)
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    n = len(groups)
    part = np.zeros(len(unique), dtype=np.int8)  # 0 train, 1 val, 2 test
    filled = {1: 0, 2: 0}
    target = {2: test_fraction * n, 1: val_fraction * n}
    for g in order:
        for p in (2, 1):
            if filled[p] < target[p]:
                part[g] = p
                filled[p] += counts[g]
                break
    if (part == 0).sum() == 0:
        raise ValueError(
            f"{len(unique)} groups are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: no group is left for training"
        )
    item_part = part[inverse]
    return (
        np.flatnonzero(item_part == 0),
        np.flatnonzero(item_part == 1),
        np.flatnonzero(item_part == 2),
    )


def first_per_group(groups, n: int | None) -> np.ndarray:
    """Indices of the first ``n`` items of every group, in their original order.

    Used to shrink a corpus for a quick run of the whole path (``+debug=fdr``): every
    class (or speaker and class) keeps a few items. ``n=None`` keeps everything.

    >>> first_per_group(["a", "b", "a", "a", "b"], 2).tolist()
    [0, 1, 2, 4]
    """
    keys = list(groups)
    if n is None:
        return np.arange(len(keys))
    if n < 1:
        raise ValueError(f"n must be at least 1 (or None for every item), got {n}")
    seen: dict = {}
    keep = []
    for i, key in enumerate(keys):
        if seen.get(key, 0) < n:
            seen[key] = seen.get(key, 0) + 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)
