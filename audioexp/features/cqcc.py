"""Constant-Q cepstral coefficients (CQCC), the ASVspoof 2017 baseline front-end (B1).

Todisco, Delgado and Evans, "Constant Q cepstral coefficients: a spoofing countermeasure
for automatic speaker verification", Computer Speech and Language 2017 (Odyssey 2016); the
ASVspoof 2017 v2 baseline (Delgado et al., Odyssey 2018: the paper's B1, reference [18]).

Two coefficient sets (``variant``):

``baseline_cm`` (default)
    What the public challenge script ``baseline_CM.m`` computes:
    ``cqcc(x, fs, 96, fs/2, fs/2^10, 16, 29, 'ZsdD')`` of the CQCC_v1.0 toolbox (``cqcc.m``):
    96 bins per octave from ``f_min = fs / 2^10`` (15.6 Hz) to ``f_max = fs / 2`` (9 octaves),
    ``d = 16`` uniform points in the first octave, c0-c29 ("Z": c0 kept), static + delta +
    double delta ("sdD"): 90 values per frame, no normalisation.
``paper_text``
    The paper's description of B1 ("19th order CQCC ... with log energy appended"): c1-c19
    and the log of the frame's summed constant-Q power, + D + DD: 60 values per frame.

The steps of ``cqcc.m`` (v1.0) and how they are computed here:

1. ``cqt(x, B, fs, fmin, fmax, 'rasterize', 'full', 'gamma', 228.7*(2^(1/B)-2^(-1/B)))``:
   the Schoerkhuber-Klapuri-Holighaus-Doerfler nonstationary-Gabor CQT toolbox (2013).
   Its bandwidths are ``Q f + gamma`` with ``Q = 2^(1/B) - 2^(-1/B)`` and
   ``gamma = 228.7 Q`` (228.7 = 24.7 / 0.108: bandwidths proportional to the ERB, a
   variable-Q transform); Hann windows in the frequency domain; a bin is kept if its
   support stays below Nyquist (863 bins at 16 kHz, not 864); 'full' rasterisation gives
   every bin the hop of the widest one, ``xlen / M`` with ``M = round(bw_top xlen / fs)``:
   about 136.5 samples (8.5 ms) at 16 kHz, slightly dependent on the file's length.
   **Ours**: ``librosa.vqt`` with ``gamma=None`` (librosa's ERB rule: bandwidths
   ``alpha (f + 228.7)``, the same offset in librosa's bandwidth units; ``variable_q=False``:
   constant-Q, ``gamma = 0``), time-domain filters, a fixed hop of ``hop_length`` samples
   (128 = 8 ms, the power of two nearest the toolbox's hop: librosa halves the hop once per
   octave), the toolbox's bin count rule. The transforms' windows and scaling differ, so
   the numbers are close in kind, not equal to the toolbox's.
2. ``log(abs(c).^2 + eps)`` with MATLAB's ``eps`` (2.2e-16): the same.
3. ``resample(LogP, FreqVec, d/fmin, 1, 1, 'spline')``: MATLAB's resampling of non-uniformly
   sampled data: an interpolation (here ``interp1`` 'spline': a not-a-knot cubic spline) of
   each frame's log spectrum, given at the nominal geometric frequencies
   ``fmin 2^(k/B)``, onto the uniform grid ``fmin : fmin/d : fmin 2^((K-1)/B)`` (8,059
   points at 16 kHz), followed by a polyphase rate change by ``p/q = 1/1``, which changes
   nothing. Here: ``scipy.interpolate.CubicSpline`` (not-a-knot) on the same grid; no
   polyphase stage (``scipy.signal.resample_poly(x, 1, 1)`` is the identity too).
   ``interpolation="linear"`` (ours, the default before issue 15) interpolates linearly.
4. ``dct`` (MATLAB: orthonormal DCT-II along frequency): ``scipy.fft.dct(norm="ortho")``.
   Steps 3 and 4 are linear in the log spectrum and are applied as one precomputed
   (coefficients x bins) matrix, :func:`uniform_cepstrum_operator`.
5. Coefficients 1..cf+1 in MATLAB's indexing with "Z" (c0-c29), else 2..cf+1.
6. ``Deltas(x, 3)`` (``f_d = 3`` in ``cqcc.m``): the HTK regression over +-3 frames,
   ``sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)``, edges repeated; double deltas are the
   deltas of the deltas: :func:`audioexp.features.replay.with_deltas` with width 3.
7. No CMVN (``cqcc.m`` v1.0 has none; later toolbox versions added an option).

Sources read: ``CQCC_v1.0/cqcc.m``, ``CQT_toolbox_2013/{cqt,nsgcqwin}.m`` and
``ASVspoof2019_baseline_CM.m`` in the ASVspoof 2019 baseline package (github
nesl/asvspoof2019, ``baseline/``), the ASVspoof 2017 v2 ``baseline_CM.m`` (github
HawkAaron/ASVSpoof), the same toolbox in github asvspoof-challenge/2021. The GMM back-end
of the script (``vl_gmm``, 512 components, 100 EM iterations) is
:mod:`audioexp.backends.gmm` with the values set in ``conf/experiment/asvspoof17_cqcc_gmm.yaml``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from audioexp.features.replay import frames_out, frontend_settings, with_deltas

__all__ = ["CQCCFeatures", "cqcc", "toolbox_num_bins", "uniform_cepstrum_operator"]

#: MATLAB's ``eps``, added to the power before the log in ``cqcc.m``.
MATLAB_EPS = float(np.finfo(np.float64).eps)
#: ``cqcc.m``'s bandwidth offset in units of ``Q``: 24.7 / 0.108 (Glasberg and Moore's ERB).
ERB_OFFSET_HZ = 228.7
INTERPOLATIONS = ("spline", "linear")
#: coefficient sets: static columns kept and whether the log energy is appended
VARIANTS = {
    "baseline_cm": {"num_ceps": 29, "include_c0": True, "log_energy": False},
    "paper_text": {"num_ceps": 19, "include_c0": False, "log_energy": True},
}


def toolbox_num_bins(sample_rate: int, f_min: float, f_max: float, bins_per_octave: int, variable_q: bool = True) -> int:
    """Constant-Q bins the CQT toolbox keeps (``nsgcqwin.m``).

    Candidate centres ``f_min 2^(k/B)``, ``k = 0 .. floor(B log2(f_max / f_min))``; the first
    one whose band ``f + (Q f + gamma) / 2`` passes Nyquist, and all above it, are dropped.

    Examples
    --------
    >>> toolbox_num_bins(16000, 15.625, 8000, 96), toolbox_num_bins(16000, 15.625, 8000, 96, variable_q=False)
    (863, 864)
    """
    nyquist = sample_rate / 2.0
    f_max = min(float(f_max), nyquist)
    q = 2.0 ** (1.0 / bins_per_octave) - 2.0 ** (-1.0 / bins_per_octave)
    gamma = ERB_OFFSET_HZ * q if variable_q else 0.0
    last = int(np.floor(bins_per_octave * np.log2(f_max / f_min)))
    centres = f_min * 2.0 ** (np.arange(last + 1) / bins_per_octave)
    over = centres + (q * centres + gamma) / 2.0 > nyquist
    return int(np.argmax(over)) if over.any() else last + 1


@functools.lru_cache(maxsize=8)
def uniform_cepstrum_operator(
    n_bins: int, bins_per_octave: int, resample_d: int, num_coeffs: int, interpolation: str = "spline"
) -> np.ndarray:
    """Steps 3-4 of ``cqcc.m`` as one matrix: interpolation of a log spectrum given at the
    geometric frequencies ``f_min 2^(k/B)`` onto the uniform grid ``f_min : f_min/d : f_top``,
    then the orthonormal DCT-II, first ``num_coeffs`` coefficients.

    Both steps are linear in the log spectrum (a not-a-knot spline's values are a fixed linear
    combination of its knots' values), so they are computed once, by interpolating the
    identity, and applied to every frame as one product: the same numbers up to rounding,
    without the (grid points x frames) intermediate (8,059 x frames at 16 kHz). The grid in
    units of ``f_min`` does not depend on ``f_min``.

    Returns
    -------
    ndarray, float64, shape (num_coeffs, n_bins), read-only

    Examples
    --------
    >>> uniform_cepstrum_operator(863, 96, 16, 30).shape
    (30, 863)
    """
    from scipy.fft import dct

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    geo = 2.0 ** (np.arange(n_bins) / bins_per_octave)  # in units of f_min
    # MATLAB's tx(1) : 1/fs : tx(end); the slack keeps a grid point that rounding puts a hair past the end
    grid = 1.0 + np.arange(int(np.floor((geo[-1] - 1.0) * resample_d + 1e-9)) + 1) / resample_d
    identity = np.eye(n_bins)
    if interpolation == "spline":
        from scipy.interpolate import CubicSpline

        uniform = CubicSpline(geo, identity, axis=0, bc_type="not-a-knot")(grid)
    else:
        uniform = np.stack([np.interp(grid, geo, column) for column in identity], axis=1)
    if num_coeffs > len(grid):
        raise ValueError(f"{num_coeffs} coefficients asked of a {len(grid)}-point uniform spectrum")
    operator = np.ascontiguousarray(dct(uniform, type=2, norm="ortho", axis=0)[:num_coeffs])
    operator.flags.writeable = False
    return operator


def cqcc(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    bins_per_octave: int = 96,
    num_octaves: int = 9,
    f_max: float | None = None,
    hop_length: int = 128,
    resample_d: int = 16,
    num_ceps: int = 29,
    include_c0: bool = True,
    log_energy: bool = False,
    variable_q: bool = True,
    interpolation: str = "spline",
    eps: float = MATLAB_EPS,
) -> np.ndarray:
    """Static CQCCs of one utterance (steps 1-5 of the module docstring).

    Parameters
    ----------
    waveform : ndarray, shape (time,)
    sample_rate : int
    bins_per_octave, num_octaves : int
        96 and 9 in the baseline.
    f_max : float, optional
        Highest analysed frequency (default: Nyquist); ``f_min = f_max / 2^num_octaves``.
    hop_length : int
        In samples (toolbox: about 136.5 at 16 kHz; see the module docstring).
    resample_d : int
        Uniform grid points per first octave (grid spacing ``f_min / resample_d``).
    num_ceps : int
        Highest cepstral index kept (``cf``).
    include_c0 : bool
        Keep c0 ("Z"); otherwise c1..c``num_ceps``.
    log_energy : bool
        Append the log of the frame's summed constant-Q power (ours; the paper-text variant).
    variable_q : bool
        ``cqcc.m``'s ERB-proportional bandwidth offset (``librosa.vqt(gamma=None)``); False:
        constant-Q.
    interpolation : {"spline", "linear"}
        Onto the uniform frequency grid.
    eps : float
        Added to the power before the log (MATLAB's ``eps``).

    Returns
    -------
    ndarray, float64, shape (frames, num_ceps + include_c0 + log_energy)

    Examples
    --------
    >>> cqcc(np.random.default_rng(0).standard_normal(8000)).shape
    (63, 30)
    """
    import librosa

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    y = np.asarray(waveform, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"waveform must be 1-D, got shape {y.shape}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    f_min = f_max / 2.0**num_octaves
    n_bins = toolbox_num_bins(sample_rate, f_min, f_max, bins_per_octave, variable_q)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.*too large")
        spec = librosa.vqt(y, sr=sample_rate, hop_length=hop_length, fmin=f_min, n_bins=n_bins,
                           bins_per_octave=bins_per_octave, gamma=None if variable_q else 0.0)
    power = np.abs(spec) ** 2  # (bins, frames)
    log_power = np.log(power + eps)
    operator = uniform_cepstrum_operator(n_bins, bins_per_octave, resample_d, num_ceps + 1, interpolation)
    ceps = operator[0 if include_c0 else 1 :] @ log_power
    if log_energy:
        ceps = np.concatenate([ceps, np.log(power.sum(axis=0) + eps)[None]], axis=0)
    return ceps.T


@dataclass(eq=False, repr=False)
class CQCCFeatures:
    """CQCC + deltas + double deltas, a functional front-end of the GMM system: NumPy waveform
    in, NumPy ``(frames, dim)`` float64 out, no state beyond its settings.

    Parameters
    ----------
    variant : {"baseline_cm", "paper_text"}
        ``baseline_cm``: c0-c29 + D + DD (90 values, the public ``baseline_CM.m``);
        ``paper_text``: c1-c19 + log energy + D + DD (60, the paper's description of B1).
    num_ceps : int, optional
        Overrides the variant's highest cepstral index (29 or 19).
    delta_width : int
        HTK delta half-width (``cqcc.m``: 3).
    mvn : bool
        Utterance mean and variance normalisation (the baseline: none).
    Other parameters: see :func:`cqcc`.

    Examples
    --------
    >>> fe = CQCCFeatures()
    >>> fe(np.random.default_rng(0).standard_normal(8000)).shape, fe.dim
    ((63, 90), 90)
    >>> CQCCFeatures(variant="paper_text").dim
    60
    """

    sample_rate: int = 16000
    variant: str = "baseline_cm"
    num_ceps: int | None = None
    bins_per_octave: int = 96
    num_octaves: int = 9
    hop_length: int = 128
    resample_d: int = 16
    variable_q: bool = True
    interpolation: str = "spline"
    delta_width: int = 3
    mvn: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {self.variant!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    def coefficients(self) -> dict:
        """The variant's coefficient set: ``num_ceps``, ``include_c0``, ``log_energy``."""
        preset = dict(VARIANTS[self.variant])
        if self.num_ceps is not None:
            preset["num_ceps"] = int(self.num_ceps)
        return preset

    def settings(self) -> dict:
        """Everything the output depends on (keys the feature cache)."""
        return frontend_settings(self)

    @property
    def dim(self) -> int:
        c = self.coefficients()
        return 3 * (c["num_ceps"] + int(c["include_c0"]) + int(c["log_energy"]))

    def __call__(self, waveform) -> np.ndarray:
        """Features of one utterance: waveform (time,) in, float64 (frames, dim) out."""
        static = cqcc(np.asarray(waveform, dtype=np.float64), self.sample_rate, self.bins_per_octave,
                      self.num_octaves, hop_length=self.hop_length, resample_d=self.resample_d,
                      variable_q=self.variable_q, interpolation=self.interpolation, **self.coefficients())
        feats = with_deltas(torch.from_numpy(static.T.copy()), self.delta_width)
        return frames_out(feats, self.mvn)
