"""Replay-detection features of Wickramasinghe et al. (ICASSP 2019): CF and CM.

From the (spatially differentiated) band signals of :mod:`audioexp.features.sd_filterbank`:
full-wave rectification, 20 ms Hamming frames every 10 ms, a 320-point DFT of each frame
(the spectrum of the band's envelope), and per band and frame

- the centroid frequency (eq. 6), ``CF = sum_f f |W[f]| / sum_f |W[f]|``,
- the centroid magnitude (eq. 7), ``CM = sum_f f |W[f]| / sum_f f``,

over the DFT bins up to 950 Hz (50 Hz spacing). The text calls CM "the magnitude at the
frequency position given by CF", which eq. 7 does not compute; eq. 7 is what is computed
here. Eq. 6 sums from ``f_l``, "the lower frequency limit of the subband signal"; the
envelope's DC bin (its mean, which dominates an envelope spectrum) is not a frequency of
its fluctuation, and counting it in CF's denominator makes CF mostly a measure of the
envelope's level relative to its modulation. By default (``include_dc=False``) the sums run
over bins 1-19 (50-950 Hz); ``include_dc=True`` adds bin 0 (the default before issue 15).
DC never changes CM (its weight ``f`` is 0).

Feature vectors (section 4.2): CF + deltas + double deltas (80 x 3); log CM, DCT-II
across bands, first 40 coefficients, + deltas + double deltas (40 x 3); utterance-level
mean and variance normalisation over frames of the whole vector. Deltas use the HTK
regression over +-2 frames (ours; librosa's default window is 9 frames).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from audioexp.features.sd_filterbank import (
    BANDWIDTH_FACTOR,
    F_MIN,
    differentiation_matrix,
    resonator_bank,
    sd_filterbank,
)

__all__ = [
    "SDFBFeatures",
    "deltas",
    "frames_out",
    "frontend_settings",
    "spectral_envelope_centroids",
    "triangular_filterbank_bands",
    "utterance_mvn",
    "with_deltas",
]

FEATURES = ("cf", "cm", "cf_cm")
FILTERBANKS = ("iir", "triangular")


def deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    """HTK regression deltas along the last axis, edges padded by repetition.

    ``d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``.

    Parameters
    ----------
    features : Tensor, shape (..., frames)
    width : int
        ``N`` (2: the HTK default).

    Returns
    -------
    Tensor, same shape

    Examples
    --------
    >>> deltas(torch.arange(6.0)).tolist()
    [0.5, 0.800000011920929, 1.0, 1.0, 0.800000011920929, 0.5]
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    padded = torch.cat([features[..., :1].expand(*features.shape[:-1], width), features,
                        features[..., -1:].expand(*features.shape[:-1], width)], dim=-1)
    t = features.shape[-1]
    out = torch.zeros_like(features)
    for n in range(1, width + 1):
        out = out + n * (padded[..., width + n : width + n + t] - padded[..., width - n : width - n + t])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def with_deltas(static: torch.Tensor, width: int = 2) -> torch.Tensor:
    """``static`` (features, frames), its :func:`deltas` and double deltas, stacked: (3 features, frames)."""
    d1 = deltas(static, width)
    return torch.cat([static, d1, deltas(d1, width)], dim=0)


def utterance_mvn(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean and variance normalisation over frames (last axis) of one utterance.

    Examples
    --------
    >>> utterance_mvn(torch.tensor([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """
    mean = features.mean(dim=-1, keepdim=True)
    std = features.std(dim=-1, unbiased=False, keepdim=True)
    return (features - mean) / (std + eps)


def frontend_settings(frontend) -> dict:
    """A dataclass front-end's class name and every field: what its output depends on (the key
    of its cached features)."""
    return {"class": type(frontend).__name__, **{f.name: getattr(frontend, f.name) for f in fields(frontend)}}


def frames_out(feats: torch.Tensor, mvn: bool) -> np.ndarray:
    """A front-end's (dim, frames) tensor as the GMM system takes it: (frames, dim) float64 NumPy,
    mean and variance normalised over the utterance when ``mvn``.

    >>> frames_out(torch.arange(6.0).reshape(2, 3), mvn=False).shape
    (3, 2)
    """
    if mvn:
        feats = utterance_mvn(feats)
    return feats.T.contiguous().numpy()


def _envelope_dft(frame_length: int, n_fft: int, num_bins: int, dtype, device) -> torch.Tensor:
    """Hamming-windowed DFT of the first ``num_bins`` bins as a real (frame, 2 * bins) matrix."""
    window = torch.hamming_window(frame_length, periodic=True, dtype=torch.float64)
    n = torch.arange(frame_length, dtype=torch.float64)[:, None]
    k = torch.arange(num_bins, dtype=torch.float64)[None, :]
    phase = -2.0 * torch.pi * n * k / n_fft
    basis = torch.cat([window[:, None] * torch.cos(phase), window[:, None] * torch.sin(phase)], dim=1)
    return basis.to(dtype=dtype, device=device)


def spectral_envelope_centroids(
    bands: torch.Tensor,
    sample_rate: int = 16000,
    frame_ms: float = 20.0,
    hop_ms: float = 10.0,
    n_fft: int = 320,
    f_max: float = 950.0,
    include_dc: bool = False,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid frequency (eq. 6) and centroid magnitude (eq. 7) of band envelopes.

    Each band is full-wave rectified and cut into Hamming-windowed frames (periodic window,
    no padding: frames ``1 + (time - frame) // hop``); the DFT magnitudes ``|W[f]|`` of
    the bins ``f <= f_max`` give CF and CM per band and frame.

    Parameters
    ----------
    bands : Tensor, shape (..., bands, time)
    sample_rate : int
    frame_ms, hop_ms : float
        The paper: 20 ms frames, 10 ms hop.
    n_fft : int
        DFT length (the paper: 320, the frame length at 16 kHz).
    f_max : float
        Highest envelope frequency used, in Hz (the paper: 950 Hz).
    include_dc : bool
        Whether bin 0 enters eq. 6's sums (see the module docstring).

    Returns
    -------
    cf, cm : Tensor, shape (..., bands, frames)
        CF in Hz; CM in the units of ``|W|``. A silent frame gets CF = 0.

    Examples
    --------
    >>> cf, cm = spectral_envelope_centroids(torch.randn(2, 80, 16000))
    >>> cf.shape, cm.shape
    (torch.Size([2, 80, 99]), torch.Size([2, 80, 99]))
    """
    frame = int(round(frame_ms * sample_rate / 1000))
    hop = int(round(hop_ms * sample_rate / 1000))
    if n_fft < frame:
        raise ValueError(f"n_fft ({n_fft}) must be at least the frame length ({frame} samples)")
    if bands.shape[-1] < frame:
        raise ValueError(f"signal of {bands.shape[-1]} samples is shorter than one {frame_ms:g} ms frame")
    num_bins = int(np.floor(f_max * n_fft / sample_rate)) + 1
    freqs = torch.arange(num_bins, dtype=bands.dtype, device=bands.device) * (sample_rate / n_fft)
    frames = bands.abs().unfold(-1, frame, hop)  # (..., bands, frames, frame)
    basis = _envelope_dft(frame, n_fft, num_bins, bands.dtype, bands.device)
    spec = frames @ basis
    mag = torch.sqrt(spec[..., :num_bins] ** 2 + spec[..., num_bins:] ** 2)  # (..., bands, frames, bins)
    weighted = (mag * freqs).sum(-1)
    denom = mag.sum(-1) if include_dc else mag[..., 1:].sum(-1)
    cf = torch.where(denom > eps, weighted / denom.clamp_min(eps), torch.zeros_like(weighted))
    cm = weighted / freqs.sum()
    return cf, cm


def triangular_filterbank_bands(
    waveform: torch.Tensor,
    sample_rate: int = 16000,
    num_filters: int = 80,
    frame_ms: float = 20.0,
    center_grid: str = "inner",
    f_min: float = F_MIN,
) -> torch.Tensor:
    """Band signals of a triangular filterbank applied frame-wise in the DCT domain (section 5).

    The signal is cut into non-overlapping rectangular frames (ours: 20 ms; the paper
    gives no frame), each frame's DCT-II (orthonormal) is weighted by triangle ``i`` and
    transformed back (inverse DCT), and the frames are laid end to end: one time signal per
    band, ready for spatial differentiation. Triangles peak (value 1) on the same mel
    centres as the second-order filters (:func:`resonator_bank`) and reach zero on the
    neighbouring centres.

    Parameters
    ----------
    waveform : Tensor, shape (batch, time)

    Returns
    -------
    Tensor, shape (batch, num_filters, frames * frame_length)
        The trailing partial frame is dropped.
    """
    from scipy.fft import dct, idct

    frame = int(round(frame_ms * sample_rate / 1000))
    x = waveform.detach().cpu().numpy().astype(np.float64)
    nfr = x.shape[-1] // frame
    if nfr < 1:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one {frame_ms:g} ms frame")
    frames = x[..., : nfr * frame].reshape(x.shape[0], nfr, frame)
    spec = dct(frames, type=2, norm="ortho", axis=-1)  # bin k at k * fs / (2 * frame) Hz
    bank = resonator_bank(num_filters, sample_rate, f_min=f_min, center_grid=center_grid)
    centers = bank["center_hz"]
    lower = np.concatenate([[0.0], centers[:-1]])
    upper = np.concatenate([centers[1:], [sample_rate / 2.0]])
    f = np.arange(frame) * sample_rate / (2.0 * frame)
    rise = (f[None, :] - lower[:, None]) / (centers - lower)[:, None]
    fall = (upper[:, None] - f[None, :]) / (upper - centers)[:, None]
    weights = np.clip(np.minimum(rise, fall), 0.0, None)  # (bands, frame)
    bands = idct(spec[:, None, :, :] * weights[None, :, None, :], type=2, norm="ortho", axis=-1)
    return torch.from_numpy(bands.reshape(x.shape[0], num_filters, nfr * frame))


@dataclass(eq=False, repr=False)
class SDFBFeatures:
    """CF, CM or both (feature-level fusion) from the spatially differentiated filterbank.

    A functional front-end of the GMM system (:mod:`audioexp.systems.replay_countermeasure`):
    NumPy waveform in, NumPy ``(frames, dim)`` float64 out, no state beyond its settings (no
    gradients flow through a GMM, so it is not an ``nn.Module``; the filterbank itself runs
    in torch or the compiled kernel).

    Parameters
    ----------
    feature : {"cf", "cm", "cf_cm"}
        ``cf``: 80 CF + deltas + double deltas (240 values); ``cm``: DCT of log CM, first
        ``num_cepstra`` + deltas + double deltas (120); ``cf_cm``: both concatenated.
    num_differentiations : int
        ``k`` (the paper: 0, 2, 4, 6).
    filterbank : {"iir", "triangular"}
        Second-order IIR band-passes (eq. 1) or triangles in the DCT domain (Table 1, "Tri").
    num_filters, sample_rate, f_min, bandwidth_factor, unit_center_gain, center_grid
        See :func:`audioexp.features.sd_filterbank.resonator_bank`.
    num_cepstra : int
        DCT coefficients of log CM kept (the paper: 40).
    delta_width : int
        HTK delta regression half-width (ours: 2).
    include_dc, f_max
        See :func:`spectral_envelope_centroids`.
    mvn : bool
        Utterance-level mean and variance normalisation (the paper: yes).
    log_floor : float
        Added to CM before the log (ours).
    """

    feature: str = "cf"
    num_differentiations: int = 6
    filterbank: str = "iir"
    num_filters: int = 80
    sample_rate: int = 16000
    f_min: float = F_MIN
    bandwidth_factor: float = BANDWIDTH_FACTOR
    unit_center_gain: bool = False
    center_grid: str = "inner"
    num_cepstra: int = 40
    delta_width: int = 2
    include_dc: bool = False
    f_max: float = 950.0
    mvn: bool = True
    log_floor: float = 1e-10

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if self.filterbank not in FILTERBANKS:
            raise ValueError(f"filterbank must be one of {FILTERBANKS}, got {self.filterbank!r}")
        if not 1 <= self.num_cepstra <= self.num_filters:
            raise ValueError(f"num_cepstra must be in [1, {self.num_filters}], got {self.num_cepstra}")
        differentiation_matrix(self.num_filters, self.num_differentiations)  # validates k

    def settings(self) -> dict:
        """Everything the output depends on (keys the feature cache)."""
        return frontend_settings(self)

    @property
    def dim(self) -> int:
        per = {"cf": self.num_filters, "cm": self.num_cepstra, "cf_cm": self.num_filters + self.num_cepstra}
        return 3 * per[self.feature]

    def bands(self, waveform: torch.Tensor) -> torch.Tensor:
        """Differentiated band signals, shape (batch, bands, time)."""
        if self.filterbank == "iir":
            return sd_filterbank(waveform, self.sample_rate, self.num_filters, self.num_differentiations,
                                 f_min=self.f_min, bandwidth_factor=self.bandwidth_factor, unit_center_gain=self.unit_center_gain,
                                 center_grid=self.center_grid)
        from audioexp.features.sd_filterbank import spatially_differentiate

        bands = triangular_filterbank_bands(waveform, self.sample_rate, self.num_filters, center_grid=self.center_grid,
                                            f_min=self.f_min)
        return spatially_differentiate(bands, self.num_differentiations)

    def __call__(self, waveform) -> np.ndarray:
        """Features of one utterance: waveform (time,) in, float64 (frames, dim) out."""
        x = torch.as_tensor(np.asarray(waveform, dtype=np.float64)).reshape(1, -1)
        cf, cm = spectral_envelope_centroids(self.bands(x), self.sample_rate, f_max=self.f_max,
                                             include_dc=self.include_dc)
        parts = []
        if self.feature in ("cf", "cf_cm"):
            parts.append(with_deltas(cf[0], self.delta_width))
        if self.feature in ("cm", "cf_cm"):
            from scipy.fft import dct

            log_cm = torch.log(cm[0] + self.log_floor).numpy()
            cep = dct(log_cm, type=2, norm="ortho", axis=0)[: self.num_cepstra]
            parts.append(with_deltas(torch.from_numpy(cep), self.delta_width))
        feats = torch.cat(parts, dim=0)
        return frames_out(feats, self.mvn)
