"""Log-mel front-end against librosa, at stated tolerances, on random audio."""

import librosa
import numpy as np
import pytest
import torch

from audioexp.features import LogMelSpectrogram, amplitude_to_db, log_mel_spectrogram, mel_spectrogram
from audioexp.features import functional as F
from audioexp.features.fbank import LogFilterbank, log_filterbank, normalize_over_mask
from audioexp.features.functional import instance_standardize
from audioexp.features.spectral import LogPowerSpectrogram


@pytest.mark.parametrize(
    "sr,n_fft,hop,n_mels,fmin,fmax",
    # the speech/music recipe at 44.1 kHz (fastai audio v1's 2560 / 256), and others
    [(44100, 2560, 256, 128, 0.0, None), (16000, 2560, 256, 128, 0.0, None), (16000, 1024, 512, 64, 50.0, 7000.0),
     (22050, 512, 128, 40, 0.0, None)],
)
def test_mel_spectrogram_matches_librosa(sr, n_fft, hop, n_mels, fmin, fmax):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(sr) * 0.1
    ours = mel_spectrogram(torch.from_numpy(y), sr, n_fft, hop, n_mels, f_min=fmin, f_max=fmax).numpy()
    ref = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect",
        power=2.0, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None, dtype=np.float64,
    )
    assert ours.shape == ref.shape
    # float64 STFT on both sides; torchaudio builds its mel filterbank in float32, so
    # agreement is to float32 precision of the filter weights: rtol 1e-4
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7 * ref.max())


def test_log_mel_db_matches_librosa_power_to_db():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(16000) * 0.05
    ours = log_mel_spectrogram(torch.from_numpy(y)[None], 16000, 1024, 256, 64, top_db=80.0)[0].numpy()
    S = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=1024, hop_length=256, pad_mode="reflect", n_mels=64, htk=True, norm=None,
        dtype=np.float64,
    )
    ref = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0)
    np.testing.assert_allclose(ours, ref, atol=1e-3)  # dB; 1e-4 relative power = 4e-4 dB


def test_amplitude_to_db_floor_is_per_item():
    power = torch.rand(2, 8, 5, dtype=torch.float64) + 1e-3
    power[1] *= 1e6  # a much louder second item must not raise the first item's floor
    db = amplitude_to_db(power, top_db=20.0)
    for i in range(2):
        ref = librosa.power_to_db(power[i].numpy(), ref=1.0, amin=1e-10, top_db=20.0)
        np.testing.assert_allclose(db[i].numpy(), ref, atol=1e-9)


def test_module_float32_close_to_librosa_and_batched_equals_single():
    rng = np.random.default_rng(2)
    y = (rng.standard_normal((3, 16000)) * 0.1).astype(np.float32)
    fe = LogMelSpectrogram(16000, win_ms=64.0, hop_ms=16.0, n_mels=64, top_db=100.0, normalize="none")
    assert (fe.win_length, fe.hop_length, fe.n_fft) == (1024, 256, 1024)
    out = fe(torch.from_numpy(y))
    assert out.shape == (3, 1, 64, 1 + 16000 // 256)
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y[0].astype(np.float64), sr=16000, n_fft=1024, hop_length=256,
                                       pad_mode="reflect", n_mels=64, htk=True, norm=None),
        ref=1.0, amin=1e-10, top_db=100.0,
    )
    # float32 STFT: within 1e-3 dB where the power is well above the floor
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=2e-3)
    single = torch.cat([fe(torch.from_numpy(y[i : i + 1])) for i in range(3)])
    torch.testing.assert_close(out, single, rtol=1e-5, atol=1e-4)


def test_recipe_at_16k_odd_window_matches_librosa():
    """58.05 / 5.805 ms at 16 kHz: a 929-sample Hann window in a 930-point FFT, hop 93, no normalisation."""
    rng = np.random.default_rng(5)
    y = rng.standard_normal(16000) * 0.1
    fe = LogMelSpectrogram(16000)
    assert (fe.win_length, fe.n_fft, fe.hop_length, fe.normalize) == (929, 930, 93, "none")
    ours = fe(torch.from_numpy(y)[None])[0, 0].numpy()
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=16000, n_fft=930, win_length=929, hop_length=93, window="hann",
                                       pad_mode="reflect", n_mels=128, htk=True, norm=None, dtype=np.float64),
        ref=1.0, amin=1e-10, top_db=100.0,
    )
    assert ours.shape == ref.shape == (128, 1 + 16000 // 93)
    np.testing.assert_allclose(ours, ref, atol=1e-3)  # float64 both sides; float32 filter weights: 4e-4 dB


def test_instance_standardize():
    x = torch.randn(4, 1, 16, 20, dtype=torch.float64) * 7 + 3
    z = instance_standardize(x)
    torch.testing.assert_close(z.mean(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.std(dim=(1, 2, 3), unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0)


def test_frontend_rejects_wrong_shape_and_fmax():
    fe = LogMelSpectrogram(16000, win_ms=32.0, hop_ms=10.0, n_mels=40)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        fe(torch.randn(2, 1, 16000))
    with pytest.raises(ValueError, match="Nyquist"):
        LogMelSpectrogram(16000, f_max=22050.0)
    with pytest.raises(ValueError, match="shorter than the 64.0 ms window"):
        LogMelSpectrogram(16000, win_ms=64.0, n_fft=512)


def _numpy_log_power(y, n_fft=320, hop=160, eps=1e-10):
    """Direct computation: reflect-pad n_fft/2, periodic Hamming frames, |rfft|^2, log."""
    import scipy.signal

    padded = np.pad(y, n_fft // 2, mode="reflect")
    frames = 1 + len(y) // hop
    window = scipy.signal.get_window("hamming", n_fft, fftbins=True)
    stack = np.stack([padded[t * hop : t * hop + n_fft] * window for t in range(frames)], axis=1)
    return np.log(np.abs(np.fft.rfft(stack, axis=0)) ** 2 + eps)


def _reference_log_power_mvn(y, mvn_eps=1e-5):
    logp = _numpy_log_power(y)
    return (logp - logp.mean(axis=1, keepdims=True)) / (logp.std(axis=1, keepdims=True) + mvn_eps)


def test_log_power_spectrogram_matches_librosa_stft():
    from audioexp.features import log_power_spectrogram

    rng = np.random.default_rng(3)
    y = rng.standard_normal(48000) * 0.1
    ours = log_power_spectrogram(torch.from_numpy(y), 320, 160).numpy()
    S = librosa.stft(y, n_fft=320, hop_length=160, window="hamming", center=True, pad_mode="reflect")
    ref = np.log(np.abs(S) ** 2 + 1e-10)
    assert ours.shape == ref.shape == (161, 301)  # the paper's 1 x 161 x 301 for 3 s
    # float64 on both sides. librosa (0.10+) builds its last centred frame from a separately
    # padded tail, which differs from plain reflect padding; every other frame agrees
    np.testing.assert_allclose(ours[:, :-1], ref[:, :-1], atol=1e-9)
    np.testing.assert_allclose(ours, _numpy_log_power(y), atol=1e-9)


def test_log_power_frontend_with_mvn_matches_librosa_and_batches_exactly():
    from audioexp.features import LogPowerSpectrogram

    rng = np.random.default_rng(4)
    fe = LogPowerSpectrogram(16000)
    assert (fe.win_length, fe.hop_length, fe.n_fft, fe.num_bins) == (320, 160, 320, 161)
    lengths = [48000, 30011, 17000]
    y = np.zeros((3, 48000), dtype=np.float32)
    for i, n in enumerate(lengths):
        y[i, :n] = rng.standard_normal(n) * 0.1
    batched = fe(torch.from_numpy(y), torch.tensor(lengths))
    for i, n in enumerate(lengths):
        frames = 1 + n // 160
        ref = _reference_log_power_mvn(y[i, :n].astype(np.float64))
        # float32 STFT against a float64 reference, after normalisation to unit variance:
        # the log of a near-zero bin amplifies float32 rounding, hence 1e-3
        np.testing.assert_allclose(batched[i, 0, :, :frames].numpy(), ref, atol=1e-3)
        single = fe(torch.from_numpy(y[i : i + 1, :n]))
        torch.testing.assert_close(batched[i : i + 1, :, :, :frames], single, rtol=0, atol=1e-5)
        assert batched[i, :, :, frames:].abs().max() == 0 if frames < batched.shape[-1] else True


@pytest.mark.parametrize("make", [
    lambda: LogMelSpectrogram(16000, win_ms=32.0, hop_ms=10.0, n_mels=40, normalize="instance"),
    lambda: LogPowerSpectrogram(16000),
    lambda: LogFilterbank(vad="none"),
])
def test_front_ends_keep_windows_and_filters_as_buffers(make):
    """Built once, moved with the module, absent from checkpoints; the output is the functional one."""
    frontend = make()
    names = {name for name, _ in frontend.named_buffers()}
    assert names and not set(frontend.state_dict()) & names
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    # the functional transform computing its window and filters per call gives the same output
    if isinstance(frontend, LogMelSpectrogram):
        expected = F.instance_standardize(F.log_mel_spectrogram(x, 16000, 512, 160, 40, top_db=100.0)).unsqueeze(1)
    elif isinstance(frontend, LogPowerSpectrogram):
        expected = F.masked_mean_variance_normalize(F.log_power_spectrogram(x, 320, 160, window="hamming"), None).unsqueeze(1)
    else:
        expected = normalize_over_mask(log_filterbank(x), torch.ones(2, 51, dtype=torch.bool)).unsqueeze(1)
    torch.testing.assert_close(frontend(x), expected, rtol=1e-5, atol=1e-5)
