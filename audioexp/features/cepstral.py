"""Cepstral front-ends of the standard spoofing baselines beside the SD systems: LFCC and MFCC.

LFCC: the ASVspoof 2019 baseline (``ASVspoof2019_baseline_CM.m``:
``extract_lfcc(x, fs, 20, 512, 20)``, by Md Sahidullah; Sahidullah, Kinnunen and Hanilci,
"A comparison of features for synthetic speech detection", Interspeech 2015), step by step:

1. pre-emphasis ``filter([1 -0.97], 1, x)`` (zero initial state);
2. ``buffer(x, L, L/2, 'nodelay')`` with ``L = 20 ms`` (320 samples at 16 kHz): frames every
   ``L/2`` (10 ms) from the first sample, ``ceil((T - L/2) / (L/2))`` of them, the last one
   zero-padded;
3. a symmetric Hamming window (MATLAB ``hamming(L)``), ``|fft(frame, 512)|^2``, bins
   ``0 .. NFFT/2`` (0-8 kHz);
4. 20 triangular filters (``trimf``) on ``linspace(0, fs/2, 22)`` edges: linear frequency,
   equal widths, peak 1, no area normalisation;
5. ``log10(filterbank energy + eps)`` (MATLAB ``eps`` = 2.2e-16);
6. ``dct`` (orthonormal DCT-II), all 20 coefficients kept (c0 included);
7. ``deltas(x, 3)`` of Dan Ellis's rastamat (``LFCC/deltas.m`` in the baseline package): a
   3-point window, ``d[t] = x[t+1] - x[t-1]``, edges repeated and *not* divided by
   ``2 sum n^2`` (HTK's N = 1 delta times 2); double deltas are the deltas of the deltas.
   :func:`slope_deltas`;

60 values per frame (20 + 20 + 20), no normalisation; 512-component GMMs trained with 10 EM
iterations (``vl_gmm``, 'MaxNumIterations', 10). Read from github nesl/asvspoof2019
(``baseline/LFCC/extract_lfcc.m``, ``baseline/LFCC/deltas.m``,
``baseline/ASVspoof2019_baseline_CM.m``); the official ASVspoof 2021 Python port
(github asvspoof-challenge/2021, ``LA/Baseline-LFCC-GMM/python/gmm.py``) computes the same
deltas (``Deltas(x, width=3)``). Everything here is float64 NumPy/SciPy. Not
``torchaudio.transforms.LFCC``: it takes ``10 log10`` with an 80 dB floor (or ``log(x + 1e-6)``),
has no pre-emphasis and frames centred, reflect-padded windows, so it does not reproduce the
script.

MFCC (ours: no reference script; a standard configuration at the LFCC's framing):
``torchaudio.transforms.MFCC`` with 20 coefficients (c0 included) from 40 Slaney-scale,
Slaney-normalised mel filters over 0-8 kHz (librosa's defaults), 20 ms periodic Hann windows
every 10 ms, a 512-point FFT of the power spectrum, centred frames with reflect padding
(``1 + T // hop`` frames), ``10 log10(max(power, 1e-10))`` floored 80 dB below the
utterance's maximum, orthonormal DCT-II; + HTK deltas over +-2 frames and double deltas
(:func:`audioexp.features.replay.with_deltas`): 60 values per frame, no normalisation. It
equals ``librosa.feature.mfcc`` with the same settings (``pad_mode="reflect"``) and
``librosa.feature.delta(width=5, mode="nearest")`` applied twice (tested).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from audioexp.features.replay import deltas, frames_out, frontend_settings, with_deltas
from audioexp.features.spectral import ms_to_samples

__all__ = [
    "LFCCFeatures",
    "MFCCFeatures",
    "lfcc",
    "linear_triangular_filterbank",
    "matlab_buffer",
    "mfcc",
    "pre_emphasis",
    "slope_deltas",
]

#: MATLAB's ``eps``, added to the filterbank energies before the log in ``extract_lfcc.m``.
MATLAB_EPS = float(np.finfo(np.float64).eps)


def pre_emphasis(waveform: np.ndarray, coefficient: float = 0.97) -> np.ndarray:
    """``y[n] = x[n] - coefficient x[n-1]``, ``y[0] = x[0]`` (MATLAB ``filter([1 -c], 1, x)``).

    >>> pre_emphasis(np.array([1.0, 1.0, 2.0]), 0.5).tolist()
    [1.0, 0.5, 1.5]
    """
    x = np.asarray(waveform, dtype=np.float64)
    return np.concatenate([x[:1], x[1:] - coefficient * x[:-1]])


def matlab_buffer(waveform: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Frames as MATLAB's ``buffer(x, frame_length, frame_length - hop_length, 'nodelay')``.

    Frames start at samples ``0, hop, 2 hop, ...`` and continue until every sample has been
    in one (``max(1, ceil((T - overlap) / hop))`` frames); the last frame is zero-padded.

    Parameters
    ----------
    waveform : ndarray, shape (time,)

    Returns
    -------
    ndarray, shape (frames, frame_length)

    Examples
    --------
    >>> matlab_buffer(np.arange(1.0, 12.0), 4, 3).tolist()
    [[1.0, 2.0, 3.0, 4.0], [4.0, 5.0, 6.0, 7.0], [7.0, 8.0, 9.0, 10.0], [10.0, 11.0, 0.0, 0.0]]
    """
    if not 0 < hop_length <= frame_length:
        raise ValueError(f"hop_length must be in [1, frame_length={frame_length}], got {hop_length}")
    x = np.asarray(waveform, dtype=np.float64)
    overlap = frame_length - hop_length
    count = max(1, -(-(len(x) - overlap) // hop_length))
    padded = np.zeros((count - 1) * hop_length + frame_length)
    padded[: len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length].copy()


def linear_triangular_filterbank(
    sample_rate: int, n_fft: int, num_filters: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Triangles of equal width on a linear frequency axis (``extract_lfcc.m``: ``trimf``).

    Filter ``i`` rises from edge ``i`` to 1 at edge ``i+1`` and falls to 0 at edge ``i+2``,
    edges ``linspace(f_min, f_max, num_filters + 2)``, sampled on the FFT bin frequencies
    ``linspace(0, fs/2, n_fft/2 + 1)``. Peak 1, no area normalisation.

    Returns
    -------
    ndarray, float64, shape (n_fft // 2 + 1, num_filters)

    Examples
    --------
    >>> fb = linear_triangular_filterbank(16000, 512, 20)
    >>> fb.shape, bool(np.allclose(fb.sum(axis=1)[13:244], 1.0))  # between the outer centres
    ((257, 20), True)
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = np.linspace(float(f_min), f_max, num_filters + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lower) / (centre - lower)
    fall = (upper - freqs[None, :]) / (upper - centre)
    return np.clip(np.minimum(rise, fall), 0.0, None).T


def slope_deltas(features: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Deltas of Dan Ellis's ``deltas.m`` (rastamat), along the last axis.

    ``d[t] = sum_{n=1..h} n (x[t+n] - x[t-n])`` with ``h = window // 2``, edges repeated, and
    no division by ``2 sum n^2``: :func:`audioexp.features.replay.deltas` (HTK) times
    ``2 sum n^2`` (2 for the 3-point window of the LFCC baseline).

    Parameters
    ----------
    features : Tensor, shape (..., frames)
    window : int
        ``W`` of ``deltas(x, W)`` (odd; an even one acts as ``W + 1``, as in ``deltas.m``).

    Returns
    -------
    Tensor, same shape

    Examples
    --------
    >>> slope_deltas(torch.tensor([0.0, 1.0, 4.0, 9.0])).tolist()
    [1.0, 4.0, 8.0, 5.0]
    """
    half = window // 2
    if half < 1:
        raise ValueError(f"window must be at least 2 (a half-width of 1), got {window}")
    return deltas(features, half) * (2 * sum(n * n for n in range(1, half + 1)))


def lfcc(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    frame_ms: float = 20.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
    num_filters: int = 20,
    num_ceps: int = 20,
    f_min: float = 0.0,
    f_max: float | None = None,
    preemphasis: float = 0.97,
    eps: float = MATLAB_EPS,
) -> np.ndarray:
    """Static LFCCs of one utterance as ``extract_lfcc.m`` computes them (steps 1-6 above).

    Parameters
    ----------
    waveform : ndarray, shape (time,)
    sample_rate : int
    frame_ms, hop_ms : float
        Window and hop (the script: 20 ms and half of it).
    n_fft : int
        FFT length (512).
    num_filters : int
        Linear triangular filters (20).
    num_ceps : int
        DCT coefficients kept, c0 first (the script: all ``num_filters``).
    f_min, f_max : float
        Filterbank range (the script: 0 to Nyquist).
    preemphasis : float
        Pre-emphasis coefficient (0.97; 0: none).
    eps : float
        Added before ``log10`` (MATLAB's ``eps``).

    Returns
    -------
    ndarray, float64, shape (frames, num_ceps)

    Examples
    --------
    >>> lfcc(np.random.default_rng(0).standard_normal(16000)).shape
    (99, 20)
    """
    from scipy.fft import dct

    if not 1 <= num_ceps <= num_filters:
        raise ValueError(f"num_ceps must be in [1, num_filters={num_filters}], got {num_ceps}")
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"waveform must be 1-D, got shape {x.shape}")
    frame, hop = ms_to_samples(frame_ms, sample_rate), ms_to_samples(hop_ms, sample_rate)
    if preemphasis:
        x = pre_emphasis(x, preemphasis)
    frames = matlab_buffer(x, frame, hop) * np.hamming(frame)  # np.hamming: symmetric, as MATLAB's
    power = np.abs(np.fft.rfft(frames, n_fft, axis=-1)) ** 2  # (frames, n_fft / 2 + 1)
    energies = power @ linear_triangular_filterbank(sample_rate, n_fft, num_filters, f_min, f_max)
    return dct(np.log10(energies + eps), type=2, norm="ortho", axis=-1)[:, :num_ceps]


@functools.lru_cache(maxsize=4)
def _mfcc_transform(sample_rate, num_ceps, n_mels, win_length, hop_length, n_fft, f_min, f_max):
    import torchaudio

    melkwargs = {"n_fft": n_fft, "win_length": win_length, "hop_length": hop_length, "f_min": f_min,
                 "f_max": f_max, "n_mels": n_mels, "window_fn": torch.hann_window, "power": 2.0,
                 "center": True, "pad_mode": "reflect", "norm": "slaney", "mel_scale": "slaney"}
    transform = torchaudio.transforms.MFCC(sample_rate, n_mfcc=num_ceps, dct_type=2, norm="ortho",
                                           log_mels=False, melkwargs=melkwargs)
    return transform.to(torch.float64).eval()


def mfcc(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    num_ceps: int = 20,
    n_mels: int = 40,
    frame_ms: float = 20.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """Static MFCCs of one utterance (``torchaudio.transforms.MFCC``, settings above).

    The filterbank and DCT matrices are computed by torchaudio in float32 and applied in
    float64.

    Parameters
    ----------
    waveform : ndarray, shape (time,)
    num_ceps : int
        Coefficients kept, c0 first.
    n_mels : int
        Mel filters.
    frame_ms, hop_ms : float
        Hann window length and hop.
    n_fft : int
    f_min, f_max : float
        Filterbank range (default: 0 to Nyquist).

    Returns
    -------
    ndarray, float64, shape (1 + time // hop, num_ceps)

    Examples
    --------
    >>> mfcc(np.random.default_rng(0).standard_normal(16000)).shape
    (101, 20)
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"waveform must be 1-D, got shape {x.shape}")
    transform = _mfcc_transform(int(sample_rate), int(num_ceps), int(n_mels), ms_to_samples(frame_ms, sample_rate),
                                ms_to_samples(hop_ms, sample_rate), int(n_fft), float(f_min),
                                None if f_max is None else float(f_max))
    with torch.no_grad():
        return transform(torch.from_numpy(x)).T.contiguous().numpy()


@dataclass(eq=False, repr=False)
class LFCCFeatures:
    """LFCC + deltas + double deltas as the ASVspoof 2019 baseline computes them (60 values per
    frame), a functional front-end of the GMM system: NumPy waveform in, NumPy
    ``(frames, dim)`` float64 out, no state beyond its settings.

    Parameters
    ----------
    delta_window : int
        ``W`` of ``deltas.m`` (3: ``d[t] = x[t+1] - x[t-1]``, see :func:`slope_deltas`).
    mvn : bool
        Utterance mean and variance normalisation (the baseline: none).
    Other parameters: see :func:`lfcc`.

    Examples
    --------
    >>> fe = LFCCFeatures()
    >>> fe(np.random.default_rng(0).standard_normal(16000)).shape, fe.dim
    ((99, 60), 60)
    """

    sample_rate: int = 16000
    frame_ms: float = 20.0
    hop_ms: float = 10.0
    n_fft: int = 512
    num_filters: int = 20
    num_ceps: int = 20
    f_min: float = 0.0
    f_max: float | None = None
    preemphasis: float = 0.97
    delta_window: int = 3
    mvn: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.num_ceps <= self.num_filters:
            raise ValueError(f"num_ceps must be in [1, num_filters={self.num_filters}], got {self.num_ceps}")
        if self.delta_window // 2 < 1:
            raise ValueError(f"delta_window must be at least 2, got {self.delta_window}")

    def settings(self) -> dict:
        """Everything the output depends on (keys the feature cache)."""
        return frontend_settings(self)

    @property
    def dim(self) -> int:
        return 3 * self.num_ceps

    def __call__(self, waveform) -> np.ndarray:
        """Features of one utterance: waveform (time,) in, float64 (frames, dim) out."""
        static = lfcc(np.asarray(waveform, dtype=np.float64), self.sample_rate, self.frame_ms, self.hop_ms,
                      self.n_fft, self.num_filters, self.num_ceps, self.f_min, self.f_max, self.preemphasis)
        s = torch.from_numpy(static.T.copy())
        d1 = slope_deltas(s, self.delta_window)
        feats = torch.cat([s, d1, slope_deltas(d1, self.delta_window)], dim=0)
        return frames_out(feats, self.mvn)


@dataclass(eq=False, repr=False)
class MFCCFeatures:
    """MFCC + deltas + double deltas (60 values per frame; settings in the module docstring),
    a functional front-end of the GMM system: NumPy waveform in, NumPy ``(frames, dim)``
    float64 out, no state beyond its settings.

    Parameters
    ----------
    delta_width : int
        HTK delta half-width (ours: 2).
    mvn : bool
        Utterance mean and variance normalisation (ours: none, as the other baselines).
    Other parameters: see :func:`mfcc`.

    Examples
    --------
    >>> fe = MFCCFeatures()
    >>> fe(np.random.default_rng(0).standard_normal(16000)).shape, fe.dim
    ((101, 60), 60)
    """

    sample_rate: int = 16000
    num_ceps: int = 20
    n_mels: int = 40
    frame_ms: float = 20.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 0.0
    f_max: float | None = None
    delta_width: int = 2
    mvn: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.num_ceps <= self.n_mels:
            raise ValueError(f"num_ceps must be in [1, n_mels={self.n_mels}], got {self.num_ceps}")

    def settings(self) -> dict:
        """Everything the output depends on (keys the feature cache)."""
        return frontend_settings(self)

    @property
    def dim(self) -> int:
        return 3 * self.num_ceps

    def __call__(self, waveform) -> np.ndarray:
        """Features of one utterance: waveform (time,) in, float64 (frames, dim) out."""
        static = mfcc(np.asarray(waveform, dtype=np.float64), self.sample_rate, self.num_ceps, self.n_mels,
                      self.frame_ms, self.hop_ms, self.n_fft, self.f_min, self.f_max)
        feats = with_deltas(torch.from_numpy(static.T.copy()), self.delta_width)
        return frames_out(feats, self.mvn)
