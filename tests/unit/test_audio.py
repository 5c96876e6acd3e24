"""Audio reading: conversions said once, bad files refused with the file named."""

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioexp.data.audio import AudioFileError, fix_length, load_audio
from audioexp.utils.logging import reset_log_once


@pytest.fixture(autouse=True)
def _fresh_log_once():
    reset_log_once()
    yield
    reset_log_once()


def test_reads_16k_mono_exactly(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", y, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "a.wav", 16000)
    np.testing.assert_array_equal(out.numpy(), y)


def test_flac_pcm16(tmp_path):
    y = np.sin(2 * np.pi * 440 * np.arange(8000) / 16000) * 0.5
    sf.write(tmp_path / "a.flac", y, 16000, subtype="PCM_16")
    out = load_audio(tmp_path / "a.flac", 16000)
    np.testing.assert_allclose(out.numpy(), y, atol=1 / 32768 + 1e-7)


def test_44k1_stereo_is_resampled_and_downmixed_and_said_once(tmp_path, caplog):
    rng = np.random.default_rng(1)
    stereo = (rng.standard_normal((44100, 2)) * 0.1).astype(np.float32)
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, stereo, 44100, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="audioexp.data.audio"):
        out = load_audio(tmp_path / "a.wav", 16000)
        load_audio(tmp_path / "b.wav", 16000)
    expected = AF.resample(torch.from_numpy(stereo.mean(axis=1)), 44100, 16000)
    assert out.shape == (16000,)
    torch.testing.assert_close(out, expected)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("down-mixing 2-channel" in m for m in messages) == 1
    assert sum("resampling 44100 Hz audio to 16000 Hz" in m for m in messages) == 1


def test_corrupt_empty_nan_and_short_files_are_named(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    nan = np.zeros(1600, dtype=np.float32)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", np.zeros(800, dtype=np.float32), 16000)
    cases = {"corrupt.wav": "cannot be decoded", "empty.wav": "no samples", "nan.wav": "NaN", "short.wav": "shorter than"}
    for name, reason in cases.items():
        with pytest.raises(AudioFileError, match=reason) as err:
            load_audio(tmp_path / name, 16000, min_seconds=0.1)
        assert str(tmp_path / name) in str(err.value)


def test_fix_length():
    x = torch.arange(10.0)
    assert fix_length(x, 10) is x
    torch.testing.assert_close(fix_length(x, 12), torch.cat([x, torch.zeros(2)]))
    torch.testing.assert_close(fix_length(x, 4), x[:4])
    torch.testing.assert_close(fix_length(x, 4, "center"), x[3:7])
    crops = {tuple(fix_length(x, 4, "random").tolist()) for _ in range(50)}
    assert len(crops) > 1 and all(len(c) == 4 and c == tuple(range(int(c[0]), int(c[0]) + 4)) for c in crops)
