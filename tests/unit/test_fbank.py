"""41-dim log filterbank (41 mel, or 40 mel + log energy) and energy VAD against librosa, Kaldi
(torchaudio.compliance.kaldi) and NumPy references on random audio."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from audioexp.features.fbank import (
    LogFilterbank,
    energy_vad_mask,
    frame_energy_db,
    frame_log_energy,
    log_filterbank,
    normalize_over_mask,
    pack_voiced_frames,
    reflect_pad_items,
)


@pytest.mark.parametrize("sr,n_fft,f_min,f_max", [(16000, 1024, 20.0, None), (16000, 640, 0.0, 7600.0), (8000, 512, 20.0, None)])
def test_log_filterbank_matches_librosa(sr, n_fft, f_min, f_max):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(sr + 123) * 0.1
    ours = log_filterbank(torch.from_numpy(y), sr, 41, 40.0, 10.0, n_fft, f_min, f_max).numpy()
    win, hop = int(0.04 * sr), int(0.01 * sr)
    ref = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, win_length=win, hop_length=hop, window="hamming", center=True,
        pad_mode="reflect", power=2.0, n_mels=41, fmin=f_min, fmax=f_max, htk=True, norm=None, dtype=np.float64,
    )
    assert ours.shape == ref.shape == (41, 1 + len(y) // hop)
    # float64 STFT on both sides; torchaudio's filterbank weights are float32: 1e-4 relative = 1e-4 in log
    np.testing.assert_allclose(ours, np.log(np.maximum(ref, 1e-10)), atol=2e-4)


def test_log_filterbank_batched_equals_single_and_rejects_bad_settings():
    x = torch.randn(3, 8000, dtype=torch.float64)
    batched = log_filterbank(x)
    for i in range(3):
        torch.testing.assert_close(batched[i], log_filterbank(x[i]))
    with pytest.raises(ValueError, match="shorter than the 40.0 ms window"):
        log_filterbank(x, n_fft=512)
    with pytest.raises(ValueError, match="f_min < f_max"):
        log_filterbank(x, f_max=9000.0)


def test_frame_energy_matches_numpy_frames():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(5000)
    ours = frame_energy_db(torch.from_numpy(y)).numpy()
    padded = np.pad(y, 320, mode="reflect")
    frames = librosa.util.frame(padded, frame_length=640, hop_length=160, axis=0)[: 1 + len(y) // 160]
    window = scipy.signal.get_window("hamming", 640, fftbins=True)
    ref = 10 * np.log10(((frames * window) ** 2).sum(axis=1))
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_energy_vad_finds_speech_bursts_in_silence():
    rng = np.random.default_rng(2)
    sr = 16000
    y = rng.standard_normal(3 * sr) * 1e-4  # -80 dB floor
    y[sr // 2 : sr] += rng.standard_normal(sr // 2) * 0.1  # 0.5-1.0 s
    y[2 * sr : int(2.5 * sr)] += rng.standard_normal(sr // 2) * 0.05  # 2.0-2.5 s
    mask = energy_vad_mask(frame_energy_db(torch.from_numpy(y))[None], top_db=30.0)[0].numpy()
    t = np.arange(len(mask)) * 0.01
    inside = ((t > 0.53) & (t < 0.97)) | ((t > 2.03) & (t < 2.47))
    outside = (t < 0.47) | ((t > 1.03) & (t < 1.97)) | (t > 2.53)
    assert mask[inside].all() and not mask[outside].any()


def test_energy_vad_mask_ignores_padding_and_uses_top_db():
    energy = torch.tensor([[-10.0, -35.0, -45.0, 50.0], [-60.0, -20.0, -49.0, -51.0]])
    mask = energy_vad_mask(energy, top_db=30.0, num_frames=torch.tensor([3, 4]))
    # item 0: peak -10 among the 3 valid frames (the padded +50 is ignored); item 1: peak -20
    assert mask.tolist() == [[True, True, False, False], [False, True, True, False]]


def test_pack_voiced_frames_drops_silence_and_loops():
    x = torch.randn(2, 3, 6)
    mask = torch.tensor([[False, True, True, False, True, False], [True, False, False, False, False, True]])
    packed, counts = pack_voiced_frames(x, mask)
    assert counts.tolist() == [3, 2] and packed.shape == (2, 3, 3)
    torch.testing.assert_close(packed[0], x[0][:, [1, 2, 4]])
    torch.testing.assert_close(packed[1], x[1][:, [0, 5, 0]])
    with pytest.raises(ValueError, match="no speech frame"):
        pack_voiced_frames(x, torch.zeros(2, 6, dtype=torch.bool))


def test_normalize_over_mask_uses_masked_frames_only():
    x = torch.randn(2, 4, 10, dtype=torch.float64)
    mask = torch.rand(2, 10) > 0.4
    mask[:, 0] = True
    out = normalize_over_mask(x, mask, eps=0.0)
    for b in range(2):
        sel = x[b][:, mask[b]]
        ref = (x[b] - sel.mean(1, keepdim=True)) / sel.std(1, unbiased=False, keepdim=True)
        torch.testing.assert_close(out[b], ref)


def test_module_output_is_normalised_speech_frames_and_batched_equals_single():
    rng = np.random.default_rng(3)
    sr = 16000
    y = rng.standard_normal((2, 2 * sr)) * 1e-4
    y[0, : sr // 2] += rng.standard_normal(sr // 2) * 0.1
    y[1, sr:] += rng.standard_normal(sr) * 0.1
    x = torch.from_numpy(y).float()
    fe = LogFilterbank()
    out = fe(x)
    # item 1 has about twice the speech of item 0, which is looped to the batch's length
    n0 = int(fe.speech_mask(x[:1]).sum())
    n1 = int(fe.speech_mask(x[1:]).sum())
    assert 45 <= n0 <= 56 and 95 <= n1 <= 106 and out.shape == (2, 1, 41, n1)
    single0 = fe(x[:1])
    assert single0.shape == (1, 1, 41, n0)
    torch.testing.assert_close(out[0, :, :, :n0], single0[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, :, :, n0 : 2 * n0], single0[0, :, :, : min(n0, n1 - n0)], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], fe(x[1:])[0], atol=1e-5, rtol=1e-5)
    # per filter: zero mean, unit variance over the speech frames
    torch.testing.assert_close(single0.mean(dim=-1), torch.zeros(1, 1, 41), atol=1e-4, rtol=0)
    # padded batch: each item analysed on its own samples
    padded = torch.zeros(2, 2 * sr)
    padded[0, :sr] = x[0, :sr]
    padded[1] = x[1]
    both = fe(padded, torch.tensor([sr, 2 * sr]))
    alone = fe(x[:1, :sr])
    torch.testing.assert_close(both[0, :, :, : alone.shape[-1]], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        fe(torch.randn(16000))


def test_reflect_pad_items_equals_padding_each_item_alone():
    x = torch.randn(3, 900)
    lengths = torch.tensor([900, 700, 513])
    for i in range(3):
        x[i, lengths[i]:] = 0
    out = reflect_pad_items(x, lengths, 512)
    for i in range(3):
        alone = torch.nn.functional.pad(x[i : i + 1, : lengths[i]][None], (512, 512), mode="reflect")[0, 0]
        torch.testing.assert_close(out[i, : len(alone)], alone)
    with pytest.raises(ValueError, match="longer than 512 samples"):
        reflect_pad_items(x, torch.tensor([900, 700, 512]), 512)


@pytest.mark.parametrize("vad", ["none", "energy"])
def test_padded_batch_equals_items_alone_without_vad_loss_at_edges(vad):
    torch.manual_seed(4)
    x = torch.randn(2, 16000) * torch.linspace(0.01, 1.0, 16000)  # loud at the end: edge frames are speech
    x[0, 11000:] = 0
    fe = LogFilterbank(vad=vad)
    both = fe(x, torch.tensor([11000, 16000]))
    for i, n in enumerate((11000, 16000)):
        alone = fe(x[i : i + 1, :n])
        torch.testing.assert_close(both[i, :, :, : alone.shape[-1]], alone[0], atol=1e-5, rtol=1e-5)


def test_energy_layout_matches_kaldi_fbank_use_energy():
    """40 filters + log energy against torchaudio.compliance.kaldi.fbank(use_energy=True), float64.

    Kaldi with our framing's options (Hamming, no dither, DC removal or pre-emphasis, energy
    floor 0): its frame j (snip_edges) spans samples [160 j, 160 j + 640), our centred frame
    j + 2. The log raw energy (feature 0, where Kaldi puts it unless --htk-compat) agrees to
    1e-9. The filters differ by design (ours triangular in Hz, Kaldi's in mel, and its
    Hamming is symmetric): within 0.03 in natural log on random audio.
    """
    from torchaudio.compliance.kaldi import fbank as kaldi_fbank

    rng = np.random.default_rng(5)
    y = torch.from_numpy(rng.standard_normal(16000 + 123) * 0.1)
    ref = kaldi_fbank(
        y[None], num_mel_bins=40, frame_length=40.0, frame_shift=10.0, use_energy=True, raw_energy=True,
        dither=0.0, remove_dc_offset=False, preemphasis_coefficient=0.0, energy_floor=0.0, window_type="hamming",
        low_freq=20.0, high_freq=0.0, sample_frequency=16000.0, snip_edges=True,
    )
    fe = LogFilterbank(n_filters=40, energy=True, vad="none", normalize=False)
    ours = fe(y[None])[0, 0].T  # (frames, 41)
    assert fe.num_features == 41 and ours.shape == (101, 41) and ref.shape == (97, 41)
    aligned = ours[2 : 2 + len(ref)]
    torch.testing.assert_close(aligned[:, 0], ref[:, 0], rtol=0, atol=1e-9)
    torch.testing.assert_close(aligned[:, 1:], ref[:, 1:], rtol=0, atol=3e-2)
    # the filterbank rows are log_filterbank's at 40 filters (the module keeps a float32 window: 1e-5);
    # the default has no energy row
    torch.testing.assert_close(ours[:, 1:].T, log_filterbank(y, n_filters=40), rtol=0, atol=1e-5)
    torch.testing.assert_close(ours[:, 0], frame_log_energy(y))
    assert LogFilterbank(vad="none", normalize=False)(y[None]).shape == (1, 1, 41, 101)


def test_energy_row_of_a_padded_batch_equals_items_alone():
    torch.manual_seed(6)
    x = torch.randn(2, 16000) * torch.linspace(0.01, 1.0, 16000)
    x[0, 11000:] = 0
    fe = LogFilterbank(n_filters=40, energy=True)
    both = fe(x, torch.tensor([11000, 16000]))
    for i, n in enumerate((11000, 16000)):
        alone = fe(x[i : i + 1, :n])
        assert alone.shape[2] == 41
        torch.testing.assert_close(both[i, :, :, : alone.shape[-1]], alone[0], atol=1e-5, rtol=1e-5)


def test_fbank_options_of_the_features_group():
    """fbank41 (default: 41 mel filters) and fbank40_energy (Kaldi's 40 + log energy) both give 41 rows."""
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "audioexp" / "conf" / "features"
    default = OmegaConf.load(conf / "fbank41.yaml")
    kaldi = OmegaConf.merge(default, {k: v for k, v in OmegaConf.load(conf / "fbank40_energy.yaml").items() if k != "defaults"})
    assert (default.n_filters, default.energy, kaldi.n_filters, kaldi.energy) == (41, False, 40, True)
    for node in (default, kaldi):
        kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if k not in ("_target_", "sample_rate")}
        assert LogFilterbank(16000, **kwargs).num_features == 41
