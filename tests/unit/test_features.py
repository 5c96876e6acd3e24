"""Log-mel front-end against librosa, at stated tolerances, on random audio."""

import librosa
import numpy as np
import pytest
import torch

from audioexp.features import LogMelSpectrogram, amplitude_to_db, log_mel_spectrogram, mel_spectrogram
from audioexp.features.functional import instance_standardize


@pytest.mark.parametrize(
    "sr,n_fft,hop,n_mels,fmin,fmax",
    [(16000, 2560, 256, 128, 0.0, None), (16000, 1024, 512, 64, 50.0, 7000.0), (22050, 512, 128, 40, 0.0, None)],
)
def test_mel_spectrogram_matches_librosa(sr, n_fft, hop, n_mels, fmin, fmax):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(sr * 2) * 0.1
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
    fe = LogMelSpectrogram(16000, n_fft=1024, hop_length=256, n_mels=64, top_db=100.0, normalize="none")
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


def test_instance_standardize():
    x = torch.randn(4, 1, 16, 20, dtype=torch.float64) * 7 + 3
    z = instance_standardize(x)
    torch.testing.assert_close(z.mean(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.std(dim=(1, 2, 3), unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0)


def test_frontend_rejects_wrong_shape_and_fmax():
    fe = LogMelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        fe(torch.randn(2, 1, 16000))
    with pytest.raises(ValueError, match="Nyquist"):
        LogMelSpectrogram(16000, f_max=22050.0)
