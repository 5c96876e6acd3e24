"""Constant-Q cepstral coefficients (CQCC), the ASVspoof 2017 baseline front-end.

Todisco, Delgado and Evans, "Constant Q cepstral coefficients: a spoofing countermeasure
for automatic speaker verification", Computer Speech and Language 2017; the ASVspoof 2017
baseline (Kinnunen et al. 2017; Delgado et al. 2018, the paper's B1) uses a constant-Q
transform with 96 bins per octave over 9 octaves below ``f_max = fs / 2``
(``f_min = f_max / 2^9`` = 15.6 Hz), the log power spectrum resampled to a uniform
frequency grid (``d = 16`` points in the first octave, i.e. a spacing of ``f_min / 16``),
a DCT, 19 coefficients plus log energy, with deltas and double deltas: 60 values per frame.

The constant-Q transform here is librosa's (``librosa.cqt``, hop 256 samples = 16 ms,
ours: the MATLAB baseline's toolbox sets its own hop). The resampling is linear
interpolation (ours; the baseline uses MATLAB's polyphase ``resample``). The baseline
keeps coefficient 0 ("Z" in its ``ZsdD`` option) where we, following the paper's
description of B1, append the frame's log energy (sum of constant-Q power) to c1-c19.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from audioexp.features.replay import utterance_mvn, with_deltas

__all__ = ["CQCCFeatures", "cqcc"]


def cqcc(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    bins_per_octave: int = 96,
    num_octaves: int = 9,
    f_max: float | None = None,
    hop_length: int = 256,
    resample_d: int = 16,
    num_ceps: int = 19,
    eps: float = 1e-10,
) -> np.ndarray:
    """Static CQCCs of one utterance: c1..c``num_ceps`` and log energy.

    Parameters
    ----------
    waveform : ndarray, shape (time,)
    sample_rate : int
    bins_per_octave, num_octaves : int
        96 and 9 in the baseline.
    f_max : float, optional
        Highest analysed frequency (default: Nyquist); ``f_min = f_max / 2^num_octaves``.
    hop_length : int
        In samples (librosa needs a multiple of ``2^(num_octaves - 1)`` for exact hops of the
        lowest octaves; 256 works at 16 kHz).
    resample_d : int
        Uniform grid points per first octave.
    num_ceps : int

    Returns
    -------
    ndarray, float64, shape (frames, num_ceps + 1)
        Last column: log energy.

    Examples
    --------
    >>> cqcc(np.random.default_rng(0).standard_normal(8000)).shape
    (32, 20)
    """
    import librosa
    from scipy.fft import dct

    y = np.asarray(waveform, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"waveform must be 1-D, got shape {y.shape}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    f_min = f_max / 2.0**num_octaves
    n_bins = bins_per_octave * num_octaves
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.*too large")
        spec = librosa.cqt(y, sr=sample_rate, hop_length=hop_length, fmin=f_min, n_bins=n_bins,
                           bins_per_octave=bins_per_octave)
    power = np.abs(spec) ** 2  # (bins, frames)
    log_power = np.log(power + eps)
    geo = f_min * 2.0 ** (np.arange(n_bins) / bins_per_octave)
    step = f_min / resample_d
    linear = f_min + step * np.arange(int(np.floor((geo[-1] - f_min) / step)) + 1)
    # linear interpolation of every frame's log spectrum onto the uniform grid
    idx = np.clip(np.searchsorted(geo, linear, side="right") - 1, 0, n_bins - 2)
    w = ((linear - geo[idx]) / (geo[idx + 1] - geo[idx]))[:, None]
    uniform = (1.0 - w) * log_power[idx] + w * log_power[idx + 1]
    ceps = dct(uniform, type=2, norm="ortho", axis=0)[1 : num_ceps + 1]
    energy = np.log(power.sum(axis=0) + eps)
    return np.concatenate([ceps, energy[None]], axis=0).T


@dataclass(eq=False, repr=False)
class CQCCFeatures:
    """CQCC + deltas + double deltas (60 values per frame), a functional front-end of the GMM
    system: NumPy waveform in, NumPy ``(frames, 60)`` out, no state beyond its settings.

    Parameters
    ----------
    delta_width : int
        HTK delta half-width (ours: 2).
    mvn : bool
        Utterance mean and variance normalisation (the baseline: none).
    Other parameters: see :func:`cqcc`.
    """

    sample_rate: int = 16000
    bins_per_octave: int = 96
    num_octaves: int = 9
    hop_length: int = 256
    resample_d: int = 16
    num_ceps: int = 19
    delta_width: int = 2
    mvn: bool = False

    def settings(self) -> dict:
        return {"class": "CQCCFeatures", **vars(self)}

    @property
    def dim(self) -> int:
        return 3 * (self.num_ceps + 1)

    def __call__(self, waveform) -> np.ndarray:
        static = torch.from_numpy(
            cqcc(np.asarray(waveform, dtype=np.float64), self.sample_rate, self.bins_per_octave, self.num_octaves,
                 hop_length=self.hop_length, resample_d=self.resample_d, num_ceps=self.num_ceps).T.copy()
        )
        feats = with_deltas(static, self.delta_width)
        if self.mvn:
            feats = utterance_mvn(feats)
        return feats.T.contiguous().numpy()
