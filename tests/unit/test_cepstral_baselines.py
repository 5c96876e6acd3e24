"""LFCC and MFCC baselines against references.

LFCC: a reference written here after ``extract_lfcc.m`` of the ASVspoof 2019 baseline, line by
line (MATLAB ``filter``, ``buffer``, ``hamming``, ``fft``, ``trimf``, ``log10``, ``dct``, rastamat
``deltas``), float64 on both sides: tolerance 1e-9 of each block's largest value (measured:
about 1e-14).
MFCC: ``librosa.feature.mfcc`` with the same settings and ``librosa.feature.delta`` (HTK +-2
frames is its width-5 Savitzky-Golay slope with ``mode="nearest"``). Both libraries build their
mel filters in float32: tolerance 1e-5 of each block's largest value (measured: about 5e-7).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioexp.features.cepstral import LFCCFeatures, MFCCFeatures, lfcc, matlab_buffer, mfcc, slope_deltas

FS = 16000


def rastamat_deltas(x: np.ndarray, w: int) -> np.ndarray:
    """``deltas.m`` (dpwe): ``filter(hlen:-1:-hlen, 1, xx, [], 2)`` over edge-repeated rows,
    columns ``2 hlen + (1:nc)`` kept, no normalisation."""
    from scipy.signal import lfilter

    hlen = w // 2
    win = np.arange(hlen, -hlen - 1, -1, dtype=np.float64)
    xx = np.concatenate([np.repeat(x[:, :1], hlen, axis=1), x, np.repeat(x[:, -1:], hlen, axis=1)], axis=1)
    return lfilter(win, 1.0, xx, axis=1)[:, 2 * hlen : 2 * hlen + x.shape[1]]


def reference_extract_lfcc(speech: np.ndarray, Fs=FS, Window_Length=20, NFFT=512, No_Filter=20):
    """``[stat, delta, double_delta] = extract_lfcc(speech, Fs, 20, 512, 20)``, as (frames, 60)."""
    from scipy.fft import dct
    from scipy.signal import lfilter
    from scipy.signal.windows import hamming

    speech = lfilter([1, -0.97], 1, speech)
    L = int(Fs / 1000 * Window_Length)
    p = L // 2
    # buffer(speech, L, L/2, 'nodelay'): columns start at 1, 1 + (L - p), ...; the last zero-padded
    cols = []
    start = 0
    while True:
        col = np.zeros(L)
        seg = speech[start : start + L]
        col[: len(seg)] = seg
        cols.append(col)
        if start + L >= len(speech):
            break
        start += L - p
    framedspeech = np.array(cols)
    y_framed = framedspeech * hamming(L, sym=True)
    f = (Fs / 2) * np.linspace(0, 1, NFFT // 2 + 1)
    filbandwidthsf = np.linspace(f.min(), f.max(), No_Filter + 2)
    fr_all = np.abs(np.fft.fft(y_framed, NFFT, axis=1)) ** 2
    fa_all = fr_all[:, : NFFT // 2 + 1]
    filterbank = np.zeros((NFFT // 2 + 1, No_Filter))
    for i in range(No_Filter):  # trimf(f, [a b c])
        a, b, c = filbandwidthsf[i : i + 3]
        filterbank[:, i] = np.where((f > a) & (f < b), (f - a) / (b - a), 0.0)
        filterbank[:, i] += np.where((f >= b) & (f < c), (c - f) / (c - b), 0.0)
    filbanksum = fa_all @ filterbank
    t = dct(np.log10(filbanksum.T + np.finfo(np.float64).eps), type=2, norm="ortho", axis=0)
    stat = t[:No_Filter].T
    delta = rastamat_deltas(stat.T, 3).T
    double_delta = rastamat_deltas(delta.T, 3).T
    return np.concatenate([stat, delta, double_delta], axis=1)


@pytest.fixture(scope="module")
def audio():
    return 0.1 * np.random.default_rng(23).standard_normal(12345)


def _assert_blocks_close(ours, ref, rel):
    for block in (slice(0, 20), slice(20, 40), slice(40, 60)):
        scale = np.abs(ref[:, block]).max()
        np.testing.assert_allclose(ours[:, block], ref[:, block], rtol=0, atol=rel * scale)


def test_lfcc_matches_extract_lfcc(audio):
    ref = reference_extract_lfcc(audio)
    fe = LFCCFeatures()
    ours = fe(audio)
    # buffer: ceil((12345 - 160) / 160) = 77 frames, the last zero-padded
    assert ours.shape == ref.shape == (77, 60) and fe.dim == 60 and ours.dtype == np.float64
    _assert_blocks_close(ours, ref, 1e-9)


def test_lfcc_frames_follow_matlab_buffer():
    assert lfcc(np.random.default_rng(0).standard_normal(16000)).shape == (99, 20)  # frames end exactly
    assert lfcc(np.random.default_rng(0).standard_normal(16001)).shape == (100, 20)  # one zero-padded frame
    assert matlab_buffer(np.ones(100), 320, 160).shape == (1, 320)  # shorter than a frame: one, padded


def test_slope_deltas_are_unnormalised_differences():
    x = torch.randn(3, 10, dtype=torch.float64)
    expected = rastamat_deltas(x.numpy(), 3)
    np.testing.assert_allclose(slope_deltas(x, 3).numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(slope_deltas(x, 5).numpy(), rastamat_deltas(x.numpy(), 5), rtol=0, atol=1e-12)


def test_mfcc_matches_librosa(audio):
    import librosa

    fe = MFCCFeatures()
    ours = fe(audio)
    static = librosa.feature.mfcc(y=audio, sr=FS, n_mfcc=20, n_fft=512, win_length=320, hop_length=160,
                                  window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=40,
                                  fmin=0.0, fmax=FS / 2, htk=False, dct_type=2, norm="ortho")
    d1 = librosa.feature.delta(static, width=5, order=1, mode="nearest")
    d2 = librosa.feature.delta(d1, width=5, order=1, mode="nearest")
    ref = np.concatenate([static, d1, d2], axis=0).T
    assert ours.shape == ref.shape == (1 + len(audio) // 160, 60) and fe.dim == 60 and ours.dtype == np.float64
    _assert_blocks_close(ours, ref, 1e-5)
    np.testing.assert_array_equal(mfcc(audio), ours[:, :20])


def test_settings_name_everything_and_bad_options_raise():
    assert LFCCFeatures().settings() == {"class": "LFCCFeatures", "sample_rate": 16000, "frame_ms": 20.0, "hop_ms": 10.0,
                                         "n_fft": 512, "num_filters": 20, "num_ceps": 20, "f_min": 0.0, "f_max": None,
                                         "preemphasis": 0.97, "delta_window": 3, "mvn": False}
    assert MFCCFeatures().settings()["class"] == "MFCCFeatures"
    with pytest.raises(ValueError, match="num_ceps"):
        LFCCFeatures(num_ceps=21)
    with pytest.raises(ValueError, match="num_ceps"):
        MFCCFeatures(num_ceps=41)
    with pytest.raises(ValueError, match="window"):
        slope_deltas(torch.zeros(4), 1)
