"""Tests for the procedural speech/music synthesis (audioexp.minicorpus.synth)."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
from scipy import signal

from audioexp.minicorpus import synth

SR = 16000


# --------------------------------------------------------------------------
# Level and silence measurement
# --------------------------------------------------------------------------
def test_silence_fraction_and_active_level_on_known_signal():
    # 1 s of a -20 dBFS-RMS sine, then 1 s of digital silence.
    t = np.arange(SR) / SR
    tone = np.sqrt(2) * 0.1 * np.sin(2 * np.pi * 500 * t)
    x = np.concatenate([tone, np.zeros(SR)])
    assert synth.silence_fraction(x, SR) == pytest.approx(0.5)
    # Active level ignores the silent half; the overall level would be 3 dB lower.
    assert synth.active_rms_dbfs(x, SR) == pytest.approx(-20.0, abs=0.01)
    overall = 20 * np.log10(np.sqrt(np.mean(x**2)))
    assert overall == pytest.approx(-23.01, abs=0.01)


def test_silence_threshold_is_absolute_dbfs():
    x = np.full(SR, 10 ** (-55 / 20))  # DC at -55 dBFS: below the -50 dB default
    assert synth.silence_fraction(x, SR) == 1.0
    assert synth.silence_fraction(x, SR, threshold_db=-60) == 0.0


@pytest.mark.parametrize("target", [-35.0, -26.0, -18.0])
def test_match_level_hits_target_active_rms(target):
    rng = np.random.default_rng(1)
    # Noise with a slow 20 dB level swing and two silent gaps.
    x = rng.standard_normal(3 * SR) * (0.3 + 0.7 * np.abs(np.sin(np.linspace(0, 5, 3 * SR))))
    x[SR // 2 : SR] = 0.0
    x[2 * SR : 2 * SR + SR // 3] = 0.0
    x *= 1e-3  # arbitrary input scale
    y = synth.match_level(x, target, SR)
    assert np.max(np.abs(y)) < 0.99  # headroom: clipping guard not involved
    assert synth.active_rms_dbfs(y, SR) == pytest.approx(target, abs=0.5)
    # Silent stretches stay silent and the gain is uniform.
    assert np.all(y[SR // 2 : SR] == 0.0)
    np.testing.assert_allclose(y / y[0], x / x[0], rtol=1e-10)


def test_match_level_clipping_guard():
    x = np.zeros(SR)
    x[100] = 1.0  # one huge spike on top of a quiet tone
    x += 0.001 * np.sin(2 * np.pi * 300 * np.arange(SR) / SR)
    y = synth.match_level(x, -10.0, SR)
    assert np.max(np.abs(y)) == pytest.approx(0.99)
    assert synth.active_rms_dbfs(y, SR) < -10.0


def test_match_level_leaves_all_zero_input_alone():
    x = np.zeros(SR)
    np.testing.assert_array_equal(synth.match_level(x, -20.0, SR), x)


# --------------------------------------------------------------------------
# Pause layout
# --------------------------------------------------------------------------
@pytest.mark.parametrize("frac", [0.05, 0.2, 0.35])
def test_activity_segments_total_silence(frac):
    rng = np.random.default_rng(3)
    segs = synth.activity_segments(5.0, rng, frac)
    assert segs[0][0] == 0.0 and segs[-1][1] == 5.0
    active = sum(e - s for s, e in segs)
    assert 5.0 - active == pytest.approx(frac * 5.0, abs=1e-9)
    assert all(s < e for s, e in segs)
    assert all(segs[i][1] < segs[i + 1][0] for i in range(len(segs) - 1))
    gate = synth.activity_gate(5 * SR, SR, segs)
    assert np.mean(gate == 0.0) == pytest.approx(frac, abs=2.0 / SR * len(segs))


# --------------------------------------------------------------------------
# Formant filter
# --------------------------------------------------------------------------
def _cascade_reference(x, freqs, bws):
    b = np.array([1.0])
    a = np.array([1.0])
    for f, bw in zip(freqs, bws):
        r = np.exp(-np.pi * bw / SR)
        ak = np.array([1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r])
        b = b * ak.sum()  # unity DC gain per resonator
        a = np.convolve(a, ak)
    return signal.lfilter(b, a, x)


@pytest.mark.parametrize("block_ms", [5.0, 7.3, 0.4, 0.25])  # last two: blocks <= filter order
def test_formant_filter_constant_tracks_equal_single_lfilter(block_ms):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR)
    freqs = np.array([500.0, 1500.0, 2500.0])
    bws = np.array([80.0, 110.0, 160.0])
    ref = _cascade_reference(x, freqs, bws)
    # Constant tracks given per sample still go through the block-wise path.
    per_sample = np.repeat(freqs[:, None], len(x), axis=1)
    for tracks in (freqs, per_sample):
        y = synth.formant_filter(x, tracks, bws, SR, block_ms=block_ms)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9)


def test_formant_filter_moving_formant_moves_spectral_peak():
    rng = np.random.default_rng(0)
    n = 2 * SR
    x = rng.standard_normal(n)
    track = np.concatenate([np.full(SR, 600.0), np.full(SR, 2400.0)])[None, :]
    y = synth.formant_filter(x, track, np.array([80.0]), SR)
    for half, expect in ((y[2000:SR], 600.0), (y[SR + 2000 :], 2400.0)):
        f, p = signal.welch(half, SR, nperseg=1024)
        assert abs(f[np.argmax(p)] - expect) < 50


def test_formant_filter_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        synth.formant_filter(np.zeros(100), np.array([500.0, 1500.0]), np.array([80.0]), SR)
    with pytest.raises(ValueError):
        synth.formant_filter(np.zeros(100), np.zeros((1, 50)) + 500.0, np.array([80.0]), SR)


# --------------------------------------------------------------------------
# Source and prosody
# --------------------------------------------------------------------------
def test_glottal_pulse_train_follows_f0_and_is_silent_when_unvoiced():
    rng = np.random.default_rng(0)
    f0 = np.full(SR, 150.0)
    f0[SR // 2 :] = 0.0
    g = synth.glottal_pulse_train(f0, SR, rng, jitter=0.0, shimmer=0.0, breathiness=0.0)
    assert np.all(g[SR // 2 + 200 :] == 0.0)
    voiced = g[1000 : SR // 2 - 1000]
    ac = np.correlate(voiced, voiced, mode="full")[len(voiced) - 1 :]
    lag = np.argmax(ac[40:200]) + 40  # search 80-400 Hz
    assert SR / lag == pytest.approx(150.0, rel=0.02)
    assert 0.3 < np.max(np.abs(voiced)) < 3.0  # roughly unit-scaled pulses


def test_pitch_contour_range_and_declination():
    rng = np.random.default_rng(2)
    f0 = synth.pitch_contour(2.0, SR, rng, mean_f0=120.0, f0_range=6.0, accent_times=[],
                             declination=1.0, final_rise_prob=0.0, drift_st=0.0)
    assert f0.shape == (2 * SR,)
    assert np.all(f0 > 0)
    # Baseline falls from +3 st to -3 st (plus a final fall at the very end).
    assert 12 * np.log2(f0[100] / 120.0) == pytest.approx(3.0, abs=0.1)
    assert f0[SR] < f0[100]
    assert np.median(f0) == pytest.approx(120.0, rel=0.05)


# --------------------------------------------------------------------------
# Whole signals
# --------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [synth.synth_speech, synth.synth_music])
def test_synth_is_deterministic_and_seed_dependent(fn):
    a = fn(1.5, SR, np.random.default_rng(7))
    b = fn(1.5, SR, np.random.default_rng(7))
    c = fn(1.5, SR, np.random.default_rng(8))
    assert a.shape == (int(1.5 * SR),)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.all(np.isfinite(a))
    assert synth.active_rms_dbfs(a, SR) == pytest.approx(synth.NOMINAL_LEVEL_DBFS, abs=0.5)


@pytest.mark.parametrize("fn", [synth.synth_speech, synth.synth_music])
def test_synth_pauses_follow_requested_silence_fraction(fn):
    x = fn(5.0, SR, np.random.default_rng(11), silence_fraction=0.3)
    y = synth.finish_clip(x, SR, np.random.default_rng(0), level_dbfs=-28.0)
    # Pauses give ~30% silent frames; content itself adds (almost) none.
    assert synth.silence_fraction(y, SR) == pytest.approx(0.3, abs=0.05)


def test_voice_parameters_change_pitch():
    rng = np.random.default_rng(5)
    low = synth.VoiceParams(mean_f0=100.0)
    high = dataclasses.replace(low, mean_f0=220.0, formant_scale=1.15)

    def pitch(voice):
        x = synth.synth_speech(3.0, SR, np.random.default_rng(5), voice=voice, silence_fraction=0.0)
        f0 = librosa.yin(x, fmin=60, fmax=400, sr=SR, frame_length=1024)
        return np.median(f0)

    assert pitch(low) == pytest.approx(100.0, rel=0.15)
    assert pitch(high) == pytest.approx(220.0, rel=0.15)
    assert isinstance(synth.random_voice(rng), synth.VoiceParams)


def test_broadcast_clip_level_and_noise_floor_in_range():
    x = synth.synth_broadcast_clip("music", 5.0, SR, np.random.default_rng(4))
    lo, hi = synth.LEVEL_RANGE_DBFS
    assert lo - 0.5 <= synth.active_rms_dbfs(x, SR) <= hi + 0.5
    assert np.max(np.abs(x)) <= 1.0
    # Pauses hold the noise floor, not digital silence.
    frames = synth.frame_rms(x, SR)
    quiet = 20 * np.log10(frames.min())
    assert synth.NOISE_FLOOR_RANGE_DBFS[0] - 3 <= quiet <= synth.SILENCE_THRESHOLD_DB
    with pytest.raises(ValueError):
        synth.synth_broadcast_clip("noise", 1.0, SR, np.random.default_rng(0))


def test_nuisance_sequence_covers_ranges_evenly():
    seq = [synth.nuisance_sequence((0.3, 0.6, 0.9), i) for i in range(16)]
    lo, hi = synth.SILENCE_FRACTION_RANGE
    u = (np.array([n.silence_fraction for n in seq]) - lo) / (hi - lo)
    # Base-2 component: the first 16 values fall one into each sixteenth.
    np.testing.assert_array_equal(np.bincount((u * 16).astype(int), minlength=16), np.ones(16))
    levels = np.array([n.level_dbfs for n in seq])
    assert np.all((levels >= synth.LEVEL_RANGE_DBFS[0]) & (levels < synth.LEVEL_RANGE_DBFS[1]))
    assert np.ptp(levels) > 0.8 * np.ptp(synth.LEVEL_RANGE_DBFS)
    floors = np.array([n.noise_floor_dbfs for n in seq])
    assert np.all(floors < synth.SILENCE_THRESHOLD_DB)
    # A different offset gives a different sequence; a prefix does not change.
    assert synth.nuisance_sequence((0.1, 0.6, 0.9), 3) != seq[3]
    assert synth.nuisance_sequence((0.3, 0.6, 0.9), 3) == seq[3]
    with pytest.raises(ValueError):
        synth.nuisance_sequence((0.0, 0.0, 0.0), -1)
