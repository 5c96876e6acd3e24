"""Pure functions of the embedders: BYOL-S preprocessing and pooling, index-ordered reassembly.

Hybrid BYOL-S (Elbanna et al., "Hybrid Handcrafted and Learnable Audio Representation
for Analysis of Speech Under Cognitive and Physical Load", Interspeech 2022; code:
github.com/GasserElbanna/serab-byols, MIT) embeds a clip as follows (checked against
``serab_byols/serab.py`` and ``serab_byols/utils.py`` at commit 115fd81):

1. power mel spectrogram (torchaudio defaults otherwise: n_fft 1024, window 400, hop 160,
   64 mels, 60-7800 Hz, power 2, centred frames), then ``log(x + eps)`` with
   ``eps = torch.finfo(torch.float).eps``;
2. normalised by ``(x - mean) / std`` where ``mean`` and ``std`` are the averages over the
   clips being embedded of each clip's own mean and standard deviation (``compute_scene_stats``);
3. the CvT encoder gives a (batch, 512, 4, T') map; the scene embedding is the time mean
   plus the time max of its (mel x channel) vectors, a sum, not a concatenation.
"""

from __future__ import annotations

import numpy as np
import torch

#: ``torch.finfo(torch.float).eps``: added before the log upstream.
LOG_EPS = float(torch.finfo(torch.float32).eps)


def log_mel(power_mel: torch.Tensor) -> torch.Tensor:
    """``log(x + eps)`` of a power mel spectrogram, as serab-byols.

    >>> log_mel(torch.zeros(1, 64, 3)).shape
    torch.Size([1, 64, 3])
    """
    return (power_mel + LOG_EPS).log()


def clip_statistics(log_mels: list[torch.Tensor]) -> tuple[float, float]:
    """Mean over clips of each clip's mean and of each clip's (unbiased) standard deviation.

    Parameters
    ----------
    log_mels : list of Tensor, each (n_mels, frames) (any shape)

    Returns
    -------
    (mean, std) : tuple of float

    Examples
    --------
    >>> clip_statistics([torch.tensor([0.0, 2.0]), torch.tensor([4.0, 4.0])])
    (2.5, 0.7071067690849304)
    """
    if not log_mels:
        raise ValueError("no clips to compute normalisation statistics from")
    means = torch.stack([x.float().mean() for x in log_mels])
    stds = torch.stack([x.float().std() for x in log_mels])
    return float(means.mean()), float(stds.mean())


def mean_plus_max_pool(feature_map: torch.Tensor, frames: int | None = None) -> torch.Tensor:
    """Scene embedding of a CvT map: time mean plus time max of its (mel x channel) vectors.

    Parameters
    ----------
    feature_map : Tensor, shape (batch, channels, mels, time)
    frames : int, optional
        Use only the first ``frames`` time steps.

    Returns
    -------
    Tensor, shape (batch, mels * channels)
        Feature ``f * channels + c`` is mel bin ``f``, channel ``c`` (the upstream order).

    Examples
    --------
    >>> mean_plus_max_pool(torch.randn(2, 512, 4, 7)).shape
    torch.Size([2, 2048])
    """
    if feature_map.dim() != 4:
        raise ValueError(f"expected a (batch, channels, mels, time) map, got shape {tuple(feature_map.shape)}")
    if frames is not None:
        feature_map = feature_map[..., :frames]
    b, c, f, t = feature_map.shape
    x = feature_map.permute(0, 3, 2, 1).reshape(b, t, f * c)
    return x.mean(dim=1) + x.amax(dim=1)


def reassemble_by_index(indices: list[np.ndarray] | np.ndarray, rows: list[np.ndarray] | np.ndarray, total: int,
                        allow_missing: bool = False) -> np.ndarray:
    """Put rows predicted in any order (several ranks, padded samplers) back in file order.

    Parameters
    ----------
    indices : array-like of int, or list of them
        Position in the file list of each row.
    rows : array-like, shape (n, dim), or list of them (aligned with ``indices``)
    total : int
        Number of files.
    allow_missing : bool
        Leave the rows of items without a prediction NaN (bad files skipped when read)
        instead of raising.

    Returns
    -------
    ndarray, shape (total, dim)
        Row ``i`` is the one predicted for index ``i``; a duplicate (the distributed sampler
        repeats items to even out ranks) must agree with the first copy.

    Raises
    ------
    ValueError
        An index outside ``[0, total)``, a missing one, or duplicates that disagree.

    Examples
    --------
    >>> reassemble_by_index([np.array([2, 0]), np.array([1, 2])], [np.array([[2.], [0.]]), np.array([[1.], [2.]])], 3).ravel()
    array([0., 1., 2.])
    """
    idx = np.concatenate([np.asarray(i).reshape(-1) for i in indices]) if isinstance(indices, list) else np.asarray(indices).reshape(-1)
    data = (np.concatenate([np.asarray(r) for r in rows]) if isinstance(rows, list) and rows
            else np.asarray(rows).reshape(len(idx), -1) if isinstance(rows, list) else np.asarray(rows))
    if len(idx) != len(data):
        raise ValueError(f"{len(idx)} indices for {len(data)} rows")
    if len(idx) and (idx.min() < 0 or idx.max() >= total):
        raise ValueError(f"indices must lie in [0, {total}), got {idx.min()}..{idx.max()}")
    out = np.full((total, *data.shape[1:]), np.nan, dtype=np.float64)
    seen = np.zeros(total, dtype=bool)
    for i, row in zip(idx, data):
        if seen[i]:
            if not np.allclose(out[i], row, rtol=1e-4, atol=1e-5, equal_nan=True):
                raise ValueError(f"two different predictions for item {i}")
            continue
        out[i] = row
        seen[i] = True
    if not seen.all() and not allow_missing:
        missing = np.flatnonzero(~seen)
        raise ValueError(f"{len(missing)} of {total} items have no prediction (first: {missing[:5].tolist()})")
    return out
