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
import functools
import logging

import numpy as np
import torch

from audioexp.features.sd_filterbank import (
    BANDWIDTH_FACTOR,
    F_MIN,
    compiled_kernel_error,
    differentiation_matrix,
    resonator_bank,
    sd_filterbank,
    sd_filterbank_centroids,
)
from audioexp.utils.logging import log_once

log = logging.getLogger(__name__)

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


def deltas(features: torch.Tensor, width: int = 2, out: torch.Tensor | None = None) -> torch.Tensor:
    """HTK regression deltas along the last axis, edges padded by repetition.

    ``d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``.

    Parameters
    ----------
    features : Tensor, shape (..., frames)
    width : int
        ``N`` (2: the HTK default).
    out : Tensor, optional
        Where to write them (same shape; not overlapping ``features``).

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
    if out is None:
        out = torch.empty_like(features)
    torch.sub(padded[..., width + 1 : width + 1 + t], padded[..., width - 1 : width - 1 + t], out=out)
    for n in range(2, width + 1):
        out.add_(padded[..., width + n : width + n + t] - padded[..., width - n : width - n + t], alpha=n)
    return out.div_(2 * sum(n * n for n in range(1, width + 1)))


def with_deltas(static: torch.Tensor, width: int = 2, out: torch.Tensor | None = None) -> torch.Tensor:
    """``static`` (features, frames), its :func:`deltas` and double deltas, stacked: (3 features,
    frames), written into ``out`` when given (``static`` may be ``out``'s first rows)."""
    f = static.shape[0]
    if out is None:
        out = torch.empty(3 * f, *static.shape[1:], dtype=static.dtype, device=static.device)
    if static.data_ptr() != out.data_ptr():
        out[:f] = static
    deltas(static, width, out=out[f : 2 * f])
    deltas(out[f : 2 * f], width, out=out[2 * f :])
    return out


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
    return feats.T.contiguous().cpu().numpy()


def _envelope_dft(frame_length: int, n_fft: int, num_bins: int, dtype, device) -> torch.Tensor:
    """Hamming-windowed DFT of the first ``num_bins`` bins as a real (frame, 2 * bins) matrix."""
    window = torch.hamming_window(frame_length, periodic=True, dtype=torch.float64)
    n = torch.arange(frame_length, dtype=torch.float64)[:, None]
    k = torch.arange(num_bins, dtype=torch.float64)[None, :]
    phase = -2.0 * torch.pi * n * k / n_fft
    basis = torch.cat([window[:, None] * torch.cos(phase), window[:, None] * torch.sin(phase)], dim=1)
    return basis.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _hop_dft_operators(frame: int, hop: int, n_fft: int, num_bins: int) -> dict:
    """The DFT matrices of :func:`_envelope_spectra` for frames of ``frame = r * hop`` samples (NumPy, cached).

    ``halves`` (the paper's case, ``r = 2`` and a DFT as long as the frame): the rectangular DFT
    of a hop-long chunk, bins ``0 .. num_bins``, times 0.54 (the window's constant term), as rows
    ``[cos of even bins, -sin of even bins, cos of odd bins, -sin of odd bins]``. Otherwise
    ``windowed``: one windowed basis per chunk offset ``q`` (rows: cos, then sin, of bins
    ``0 .. num_bins - 1``, each offset in turn).
    """
    r = frame // hop
    n = np.arange(hop, dtype=np.float64)[None, :]
    if r == 2 and n_fft == frame:
        rows = []
        for k in (np.arange(0, num_bins + 1, 2), np.arange(1, num_bins + 1, 2)):
            angle = 2.0 * np.pi * k[:, None].astype(np.float64) * n / n_fft
            rows += [np.cos(angle), -np.sin(angle)]
        return {"r": r, "halves": 0.54 * np.concatenate(rows, axis=0)}
    window = torch.hamming_window(frame, periodic=True, dtype=torch.float64).numpy()
    k = np.arange(num_bins, dtype=np.float64)[:, None]
    blocks = []
    for q in range(r):
        m = n + q * hop
        w = window[None, q * hop : (q + 1) * hop]
        blocks += [w * np.cos(-2.0 * np.pi * k * m / n_fft), w * np.sin(-2.0 * np.pi * k * m / n_fft)]
    return {"r": r, "windowed": np.concatenate(blocks, axis=0)}  # (r * 2 bins, hop)


def _envelope_spectra(env: torch.Tensor, frame: int, hop: int, n_fft: int, num_bins: int,
                      ) -> tuple[torch.Tensor, np.ndarray]:
    """The Hamming-windowed DFT of the frames of ``env`` (rows, time), bins ``0 .. num_bins - 1``.

    Returns ``spec`` (rows, 2, bins, frames), real and imaginary parts, and ``order``: the bin of
    each row of the bins axis (the halves path keeps even bins before odd ones).
    """
    rows, t = env.shape
    frames = 1 + (t - frame) // hop
    dtype, dev = env.dtype, env.device
    order = np.arange(num_bins)
    if frame % hop:  # frames that are no whole number of hops: copy the frames (the general case)
        basis = _envelope_dft(frame, n_fft, num_bins, dtype, dev)
        spec = torch.matmul(basis.T, env.unfold(-1, frame, hop).transpose(-1, -2))
        return spec.unflatten(1, (2, num_bins)), order
    ops = _hop_dft_operators(frame, hop, n_fft, num_bins)
    r = ops["r"]
    chunks = env[:, : (frames + r - 1) * hop].unflatten(-1, (frames + r - 1, hop))  # a view, no copy
    if "windowed" in ops:
        basis = torch.as_tensor(ops["windowed"], dtype=dtype, device=dev)
        parts = torch.matmul(basis, chunks.transpose(-1, -2)).unflatten(1, (r, 2, num_bins))
        spec = parts[:, 0, :, :, :frames]
        for q in range(1, r):
            spec = spec + parts[:, q, :, :, q : q + frames]
        return spec, order
    # halves: frame j = chunks j and j + 1; chunk j + 1's DFT enters with the sign (-1)^k
    ne, no = num_bins // 2 + 1, (num_bins + 1) // 2  # even and odd bins among 0 .. num_bins
    we, wo = (num_bins + 1) // 2, num_bins // 2  # even and odd bins among 0 .. num_bins - 1
    rect = torch.matmul(torch.as_tensor(ops["halves"], dtype=dtype, device=dev), chunks.transpose(-1, -2))
    even, odd = rect[:, : 2 * ne].unflatten(1, (2, ne)), rect[:, 2 * ne :].unflatten(1, (2, no))
    fe = torch.add(even[..., :frames], even[..., 1:])  # (rows, re/im, bins, frames), times 0.54
    fo = torch.sub(odd[..., :frames], odd[..., 1:])
    # the window in the frequency domain: W[k] = 0.54 F[k] - 0.23 (F[k - 1] + F[k + 1]), F[-1] = conj(F[1])
    c = 0.23 / 0.54
    spec = torch.empty(rows, 2, num_bins, frames, dtype=dtype, device=dev)
    w_even, w_odd = spec[:, :, :we], spec[:, :, we:]
    w_even[:, 0, 0] = fe[:, 0, 0] - 2.0 * c * fo[:, 0, 0]
    w_even[:, 1, 0] = fe[:, 1, 0]  # 0: F[-1] + F[1] is real
    if we > 1:
        torch.add(fe[:, :, 1:we], fo[:, :, : we - 1], alpha=-c, out=w_even[:, :, 1:])
        w_even[:, :, 1:].add_(fo[:, :, 1:we], alpha=-c)
    if wo:
        torch.add(fo[:, :, :wo], fe[:, :, :wo], alpha=-c, out=w_odd)
        w_odd.add_(fe[:, :, 1 : wo + 1], alpha=-c)
    return spec, np.concatenate([np.arange(0, num_bins, 2), np.arange(1, num_bins, 2)])


def _centroids(env: torch.Tensor, sample_rate: int, frame_ms: float, hop_ms: float, n_fft: int, f_max: float,
               include_dc: bool, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`spectral_envelope_centroids` of rectified bands ``env`` (..., bands, time)."""
    frame = int(round(frame_ms * sample_rate / 1000))
    hop = int(round(hop_ms * sample_rate / 1000))
    num_bins = int(np.floor(f_max * n_fft / sample_rate)) + 1
    lead = env.shape[:-1]
    flat = env.reshape(-1, env.shape[-1])
    spec, order = _envelope_spectra(flat, frame, hop, n_fft, num_bins)
    mag = torch.hypot(spec[:, 0], spec[:, 1])  # (rows, bins, frames), bins in ``order``
    freqs = torch.as_tensor(order * (sample_rate / n_fft), dtype=env.dtype, device=env.device)
    weighted = torch.matmul(freqs, mag)  # (rows, frames)
    denom = mag.sum(1) if include_dc else mag[:, 1:].sum(1)  # order[0] is bin 0
    cf = torch.where(denom > eps, weighted / denom.clamp_min(eps), torch.zeros_like(weighted))
    cm = weighted / freqs.sum()
    return cf.reshape(*lead, -1), cm.reshape(*lead, -1)


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

    How (issue 17): when the frame is a whole number of hops (the paper: 2), the frames are not
    copied: each hop-long chunk of the envelope, shared by overlapping frames, is transformed
    once by one product over all bands and chunks, and the chunks' spectra are added per frame;
    in the paper's case (a frame of two hops, the DFT as long as the frame) the chunks' DFT is
    rectangular and the periodic Hamming window is applied afterwards, as its three-bin
    convolution in the frequency domain (half the products of windowed bases). Everything is batched torch on the input's
    device and dtype (CPU or CUDA alike); the result equals the direct windowed DFT of each
    frame to rounding (tested at 1e-9 in ``tests/unit/test_replay_speed.py``).

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
    _check_framing(bands.shape[-1], sample_rate, frame_ms, n_fft)
    return _centroids(bands.abs(), sample_rate, frame_ms, hop_ms, n_fft, f_max, include_dc, eps)


def _check_framing(length: int, sample_rate: int, frame_ms: float, n_fft: int) -> None:
    frame = int(round(frame_ms * sample_rate / 1000))
    if n_fft < frame:
        raise ValueError(f"n_fft ({n_fft}) must be at least the frame length ({frame} samples)")
    if length < frame:
        raise ValueError(f"signal of {length} samples is shorter than one {frame_ms:g} ms frame")


@functools.lru_cache(maxsize=16)
def _dct_matrix(num_filters: int, num_cepstra: int) -> np.ndarray:
    """The first ``num_cepstra`` rows of the orthonormal DCT-II of ``num_filters`` points (SciPy's)."""
    from scipy.fft import dct

    return dct(np.eye(num_filters), type=2, norm="ortho", axis=0)[:num_cepstra].copy()


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

    def bands(self, waveform: torch.Tensor, implementation: str | None = None) -> torch.Tensor:
        """Differentiated band signals, shape (batch, bands, time) (``implementation``: of
        :func:`audioexp.features.sd_filterbank.sd_filterbank`, default "auto"; IIR only)."""
        if self.filterbank == "iir":
            return sd_filterbank(waveform, self.sample_rate, self.num_filters, self.num_differentiations,
                                 f_min=self.f_min, bandwidth_factor=self.bandwidth_factor, unit_center_gain=self.unit_center_gain,
                                 center_grid=self.center_grid, implementation=implementation or "auto")
        from audioexp.features.sd_filterbank import spatially_differentiate

        bands = triangular_filterbank_bands(waveform, self.sample_rate, self.num_filters, center_grid=self.center_grid,
                                            f_min=self.f_min)
        return spatially_differentiate(bands, self.num_differentiations)

    def centroids(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CF and CM (eq. 6/7) of waveforms ``x`` (batch, time), float64: (batch, bands, frames) each.

        On the CPU, with the IIR filterbank and the paper's framing (a frame of two hops, the DFT
        as long as the frame), the compiled kernel computes them behind its filters
        (:func:`audioexp.features.sd_filterbank.sd_filterbank_centroids`: the rectified bands are
        never stored); otherwise, or with one warning when the kernel cannot be built, the band
        signals and then :func:`spectral_envelope_centroids`' torch steps, on ``x``'s device (the
        reference the compiled path is tested against at 1e-9)."""
        frame_ms, hop_ms, n_fft = 20.0, 10.0, 320
        _check_framing(x.shape[-1], self.sample_rate, frame_ms, n_fft)
        frame = int(round(frame_ms * self.sample_rate / 1000))
        hop = int(round(hop_ms * self.sample_rate / 1000))
        num_bins = int(np.floor(self.f_max * n_fft / self.sample_rate)) + 1
        impl = None
        if (self.filterbank == "iir" and x.device.type == "cpu" and frame == n_fft == 2 * hop and hop % 4 == 0
                and num_bins <= hop // 2 - 1):
            why = compiled_kernel_error()
            if why is None:
                return sd_filterbank_centroids(
                    x, self.sample_rate, self.num_filters, self.num_differentiations, f_min=self.f_min,
                    bandwidth_factor=self.bandwidth_factor, unit_center_gain=self.unit_center_gain,
                    center_grid=self.center_grid, hop=hop, num_bins=num_bins, include_dc=self.include_dc, eps=1e-12)
            log_once(log, "replay_fused_kernel",
                     "SDFBFeatures: the compiled CPU kernel could not be built (%s); using the BLAS filterbank and "
                     "the torch envelope spectra, several times slower. Install g++ and ninja.", why,
                     level=logging.WARNING)
            impl = "blas"
        bands = self.bands(x, implementation=impl).to(x.device)  # (batch, bands, time), ours: rectified in place
        return _centroids(bands.abs_(), self.sample_rate, frame_ms, hop_ms, n_fft, self.f_max, self.include_dc, 1e-12)

    def __call__(self, waveform) -> np.ndarray:
        """Features of one utterance: waveform (time,) in, float64 (frames, dim) out.

        A torch tensor on an accelerator is computed there (the filterbank's torch path and the
        batched steps after it); the result comes back as NumPy."""
        if isinstance(waveform, torch.Tensor):
            x = waveform.detach().to(torch.float64).reshape(1, -1)
        else:
            x = torch.as_tensor(np.asarray(waveform, dtype=np.float64)).reshape(1, -1)
        cf, cm = self.centroids(x)
        n = {"cf": self.num_filters, "cm": self.num_cepstra}
        feats = torch.empty(self.dim, cf.shape[-1], dtype=cf.dtype, device=cf.device)
        row = 0
        if self.feature in ("cf", "cf_cm"):
            with_deltas(cf[0], self.delta_width, out=feats[row : row + 3 * n["cf"]])
            row += 3 * n["cf"]
        if self.feature in ("cm", "cf_cm"):
            dct = torch.as_tensor(_dct_matrix(self.num_filters, self.num_cepstra), device=x.device)
            torch.matmul(dct, torch.log(cm[0] + self.log_floor), out=feats[row : row + n["cm"]])
            with_deltas(feats[row : row + n["cm"]], self.delta_width, out=feats[row : row + 3 * n["cm"]])
        if self.mvn:  # two passes: a tenth of torch.std_mean's time on these (dim, frames) matrices
            feats.sub_(feats.mean(dim=-1, keepdim=True))
            feats.div_(feats.square().mean(dim=-1, keepdim=True).sqrt_().add_(1e-8))
        return np.ascontiguousarray(feats.cpu().numpy().T)
