"""CQCC as the ASVspoof 2017 baseline script computes it (``baseline_CM.m`` -> ``cqcc.m`` v1.0),
against a reference written here step by step after the MATLAB code.

The constant-Q transform itself is librosa's in both (see :mod:`audioexp.features.cqcc` for how
it differs from the toolbox's); everything after it follows ``cqcc.m`` line by line.
Tolerance: 1e-6 relative to the largest coefficient of each block (measured: about 1e-12;
ours applies spline + DCT as one precomputed matrix, the reference frame by frame).
"""

from __future__ import annotations

import numpy as np
import pytest

from audioexp.features.cqcc import CQCCFeatures, cqcc, toolbox_num_bins

FS = 16000


def matlab_deltas(x: np.ndarray, hlen: int) -> np.ndarray:
    """``Deltas`` of ``cqcc.m``: ``filter(hlen:-1:-hlen, 1, xx, [], 2)`` on the edge-repeated rows,
    the first ``2 hlen`` outputs dropped, divided by ``2 sum((1:hlen).^2)``."""
    from scipy.signal import lfilter

    win = np.arange(hlen, -hlen - 1, -1, dtype=np.float64)
    xx = np.concatenate([np.repeat(x[:, :1], hlen, axis=1), x, np.repeat(x[:, -1:], hlen, axis=1)], axis=1)
    d = lfilter(win, 1.0, xx, axis=1)[:, 2 * hlen :]
    return d / (2 * np.sum(np.arange(1, hlen + 1) ** 2))


def reference_cqcc(x: np.ndarray, B=96, d=16, cf=29, zsdd="ZsdD", hop=128) -> tuple[np.ndarray, np.ndarray]:
    """``cqcc(x, fs, 96, fs/2, fs/2^10, 16, 29, 'ZsdD')`` with librosa's VQT in place of the
    toolbox's CQT; returns (CQcc as (frames, coefficients), the CQT power)."""
    import warnings

    import librosa
    from scipy.fft import dct
    from scipy.interpolate import make_interp_spline
    from scipy.signal import resample_poly

    fmax, fmin = FS / 2, FS / 2**10
    # nsgcqwin.m: bins whose support (f + (Q f + gamma) / 2) passes Nyquist are dropped
    Q = 2 ** (1 / B) - 2 ** (-1 / B)
    gamma = 228.7 * Q
    fbas = fmin * 2.0 ** (np.arange(int(np.floor(B * np.log2(fmax / fmin))) + 1) / B)
    n_bins = int(np.flatnonzero(fbas + (Q * fbas + gamma) / 2 > FS / 2)[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.*too large")  # librosa, on the downsampled octaves
        Xcq = librosa.vqt(x, sr=FS, hop_length=hop, fmin=fmin, n_bins=n_bins, bins_per_octave=B, gamma=None)
    absCQT = np.abs(Xcq)
    FreqVec = fmin * 2.0 ** (np.arange(n_bins) / B)
    LogP_absCQT = np.log(absCQT**2 + np.finfo(np.float64).eps)
    # resample(LogP_absCQT, FreqVec, 1/(fmin*(2^(kl/B)-1)), 1, 1, 'spline'): interp1 'spline'
    # (not-a-knot) onto FreqVec(1) : 1/fs_u : FreqVec(end), then a 1/1 polyphase stage
    kl = B * np.log2(1 + 1 / d)
    fs_u = 1 / (fmin * (2 ** (kl / B) - 1))
    n_u = int(np.floor((FreqVec[-1] - FreqVec[0]) * fs_u + 1e-9)) + 1
    grid = FreqVec[0] + np.arange(n_u) / fs_u
    Ures = np.stack([make_interp_spline(FreqVec, LogP_absCQT[:, t], k=3)(grid) for t in range(absCQT.shape[1])], axis=1)
    Ures = resample_poly(Ures, 1, 1, axis=0)
    CQcepstrum = dct(Ures, type=2, norm="ortho", axis=0)  # MATLAB dct: orthonormal DCT-II per column
    scoeff = 1 if "Z" in zsdd else 2
    temp = CQcepstrum[scoeff - 1 : cf + 1]
    f_d = 3
    CQcc = np.concatenate([temp, matlab_deltas(temp, f_d), matlab_deltas(matlab_deltas(temp, f_d), f_d)], axis=0)
    return CQcc.T, absCQT**2


@pytest.fixture(scope="module")
def audio():
    return np.random.default_rng(17).standard_normal(8000)


@pytest.fixture(scope="module")
def reference(audio):
    return reference_cqcc(audio)


def test_toolbox_grid_facts():
    """863 bins at 16 kHz (not 864) and an 8,059-point uniform grid, as the toolbox gives."""
    assert toolbox_num_bins(FS, FS / 2**10, FS / 2, 96) == 863
    fmin = FS / 2**10
    top = fmin * 2 ** (862 / 96)
    assert int(np.floor((top - fmin) / (fmin / 16))) + 1 == 8059


def test_polyphase_stage_with_p_equal_q_is_the_identity():
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal((50, 3))
    np.testing.assert_array_equal(resample_poly(x, 1, 1, axis=0), x)


def test_baseline_cm_is_90_dimensional_and_matches_the_script(audio, reference):
    ref, _ = reference
    fe = CQCCFeatures()
    ours = fe(audio)
    assert fe.dim == 90 and ours.shape == ref.shape == (63, 90) and ours.dtype == np.float64
    for block in (slice(0, 30), slice(30, 60), slice(60, 90)):  # static, D, DD
        scale = np.abs(ref[:, block]).max()
        np.testing.assert_allclose(ours[:, block], ref[:, block], rtol=1e-6, atol=1e-6 * scale)
    # the settings key the feature cache and name what was computed
    assert fe.settings()["variant"] == "baseline_cm" and fe.settings()["class"] == "CQCCFeatures"


def test_paper_text_variant_is_60_dimensional(audio, reference):
    """c1..c19 + log energy (the paper's text), the same pipeline otherwise."""
    ref, power = reference
    fe = CQCCFeatures(variant="paper_text")
    ours = fe(audio)
    assert fe.dim == 60 and ours.shape == (63, 60)
    static = cqcc(audio, num_ceps=19, include_c0=False, log_energy=True)
    np.testing.assert_allclose(static[:, :19], ref[:, 1:20], rtol=1e-6, atol=1e-6 * np.abs(ref[:, 1:20]).max())
    np.testing.assert_allclose(static[:, 19], np.log(power.sum(0) + np.finfo(np.float64).eps), rtol=1e-12)
    np.testing.assert_allclose(ours[:, :20], static, rtol=1e-12, atol=0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="variant"):
        CQCCFeatures(variant="paper")
    with pytest.raises(ValueError, match="interpolation"):
        CQCCFeatures(interpolation="cubic")
