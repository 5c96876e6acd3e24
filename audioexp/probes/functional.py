"""Pure functions of speaker-independent embedding probes: normalisation and splits.

Per-speaker standardisation and a split of the speakers (30 % in test) follow the
EmoDB notebook of the hybrid BYOL-S project; leave-one-speaker-out and repeated splits
are ours (one split of three test speakers is noisy).
"""

from __future__ import annotations

import numpy as np

SPLIT_PROTOCOLS = ("split", "loso", "repeated")


def speaker_standardize(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Standardise every column within each speaker: zero mean, unit (population) variance.

    Like ``sklearn.preprocessing.StandardScaler`` fitted on each speaker's rows, which is
    what the notebook does. A column that is constant within a speaker becomes 0 for that
    speaker (StandardScaler's convention: it divides by 1, not by 0), never NaN.

    Parameters
    ----------
    x : ndarray, shape (n, dim)
    speakers : array-like, shape (n,)

    Returns
    -------
    ndarray of float64, shape (n, dim)

    Raises
    ------
    ValueError
        Misaligned inputs, or non-finite values (named by row and column).

    Examples
    --------
    >>> speaker_standardize(np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [20.0, 2.0]]), ["a", "a", "b", "b"])
    array([[-1.,  0.],
           [ 1.,  0.],
           [-1., -1.],
           [ 1.,  1.]])
    """
    x = np.asarray(x, dtype=np.float64)
    speakers = np.asarray(speakers)
    if x.ndim != 2 or len(speakers) != len(x):
        raise ValueError(f"expected x of shape (n, dim) and n speakers, got {x.shape} and {speakers.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{int(bad.sum())} non-finite embedding values (first: row {r}, column {c})")
    out = np.empty_like(x)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        block = x[rows]
        out[rows] = standardize_with(block, block.mean(axis=0), block.std(axis=0))
    return out


def constant_columns(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Columns constant within a speaker: a standard deviation at most 1e-12 of the mean's size
    (relative, so that a column equal up to rounding counts as constant)."""
    return std <= 1e-12 * np.maximum(1.0, np.abs(mean))


def standardize_with(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Rows of one speaker standardised by that speaker's ``mean`` and (population) ``std``,
    :func:`speaker_standardize`'s arithmetic: a column constant within the speaker gives 0."""
    constant = constant_columns(mean, std)
    return np.where(constant, 0.0, (np.asarray(x, dtype=np.float64) - mean) / np.where(constant, 1.0, std))


def speaker_statistics(x: np.ndarray, speakers) -> dict[str, np.ndarray]:
    """Per speaker (sorted): mean and population standard deviation of the rows of ``x``, as
    :func:`speaker_standardize` computes them (what a saved probe standardises new files by).

    Returns
    -------
    dict
        ``speakers`` (S,) str, ``mean``, ``std``, ``scale`` (S, dim) float64 (``scale``: ``std``
        with the speaker's constant columns set to 1, as ``StandardScaler.scale_``), ``count`` (S,).

    Examples
    --------
    >>> x = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [20.0, 2.0]])
    >>> s = speaker_statistics(x, ["a", "a", "b", "b"])
    >>> s["mean"].tolist(), s["scale"].tolist()
    ([[2.0, 5.0], [15.0, 1.0]], [[1.0, 1.0], [5.0, 1.0]])
    >>> bool((standardize_with(x[2:], s["mean"][1], s["std"][1]) == speaker_standardize(x, ["a", "a", "b", "b"])[2:]).all())
    True
    """
    x = np.asarray(x, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    if x.ndim != 2 or len(speakers) != len(x):
        raise ValueError(f"expected x of shape (n, dim) and n speakers, got {x.shape} and {speakers.shape}")
    if not np.isfinite(x).all():
        raise ValueError("non-finite embedding values")
    unique = np.unique(speakers)
    mean = np.empty((len(unique), x.shape[1]))
    std = np.empty_like(mean)
    count = np.empty(len(unique), dtype=np.int64)
    for k, speaker in enumerate(unique):
        block = x[speakers == speaker]
        mean[k], std[k], count[k] = block.mean(axis=0), block.std(axis=0), len(block)
    scale = np.where(constant_columns(mean, std), 1.0, std)
    return {"speakers": unique, "mean": mean, "std": std, "scale": scale, "count": count}


def speaker_split(speakers: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speaker-independent train/test split: ``int(test_fraction * n_speakers)`` speakers in test.

    The test speakers are drawn with ``numpy.random.default_rng(seed)`` from the sorted
    speaker list, so the split depends only on the speakers and the seed: the same for every
    embedder (the notebook drew an unseeded split per embedder). ``int`` truncates as the
    notebook does (10 speakers -> 3 in test).

    Returns
    -------
    (train_index, test_index) : ndarrays of int
        Row indices, sorted.

    Examples
    --------
    >>> train, test = speaker_split(np.repeat(["03", "08", "09", "10"], 2), 0.5, seed=0)
    >>> len(train), len(test)
    (4, 4)
    """
    speakers = np.asarray(speakers)
    unique = np.unique(speakers)
    n_test = int(test_fraction * len(unique))
    if not 1 <= n_test < len(unique):
        raise ValueError(f"test_fraction={test_fraction} of {len(unique)} speakers gives {n_test} test speakers; need 1 to {len(unique) - 1}")
    test_speakers = np.random.default_rng(seed).choice(unique, size=n_test, replace=False)
    is_test = np.isin(speakers, test_speakers)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def leave_one_speaker_out(speakers: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (train, test) pair of row indices per speaker, in sorted speaker order."""
    speakers = np.asarray(speakers)
    return [(np.flatnonzero(speakers != s), np.flatnonzero(speakers == s)) for s in np.unique(speakers)]


def evaluation_splits(speakers: np.ndarray, protocol: str = "split", test_fraction: float = 0.3, seed: int = 0, repeats: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) row indices of an evaluation protocol.

    Parameters
    ----------
    protocol : {"split", "loso", "repeated"}
        ``split``: one seeded speaker split (the notebook's protocol); ``loso``: leave one
        speaker out; ``repeated``: ``repeats`` speaker splits with seeds ``seed``,
        ``seed + 1``, ...
    """
    if protocol == "split":
        return [speaker_split(speakers, test_fraction, seed)]
    if protocol == "loso":
        return leave_one_speaker_out(speakers)
    if protocol == "repeated":
        if repeats < 2:
            raise ValueError(f"protocol=repeated needs repeats >= 2, got {repeats}")
        return [speaker_split(speakers, test_fraction, seed + r) for r in range(repeats)]
    raise ValueError(f"protocol must be one of {SPLIT_PROTOCOLS}, got {protocol!r}")
