"""Procedural speech-like and music-like audio for miniature test corpora.

Everything here is pure NumPy/SciPy and deterministic given a
:class:`numpy.random.Generator`, so that corpora written from a seed are
byte-identical across runs.  The generators are *not* meant to sound natural;
they are meant to carry the acoustic properties that separate the classes in
real data (moving formants, syllabic rhythm and intonation for speech; stable
harmonic pitches, chords and percussion on a metric grid for music) while the
nuisance properties that make a classifier cheat -- overall loudness, amount
of silence, background noise -- are drawn from the *same* distributions for
both classes (see :func:`synth_broadcast_clip`).

Conventions
-----------
* Signals are 1-D ``float64`` arrays of shape ``(n_samples,)`` in ``[-1, 1]``.
* Levels are RMS in dBFS, ``20 * log10(rms)``, i.e. relative to a full-scale
  square wave (a full-scale sine is -3 dBFS).
* Silence/activity is judged on non-overlapping 20 ms frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import signal

__all__ = [
    "FRAME_SECONDS",
    "LEVEL_RANGE_DBFS",
    "NOISE_FLOOR_RANGE_DBFS",
    "NOMINAL_LEVEL_DBFS",
    "SILENCE_FRACTION_RANGE",
    "SILENCE_THRESHOLD_DB",
    "ClipNuisance",
    "MusicStyle",
    "Timbre",
    "VoiceParams",
    "activity_gate",
    "activity_segments",
    "active_rms_dbfs",
    "background_noise",
    "draw_level_dbfs",
    "draw_silence_fraction",
    "finish_clip",
    "formant_filter",
    "frame_rms",
    "glottal_pulse_train",
    "match_level",
    "nuisance_sequence",
    "pitch_contour",
    "random_music_style",
    "random_voice",
    "silence_fraction",
    "synth_broadcast_clip",
    "synth_music",
    "synth_speech",
]

# --------------------------------------------------------------------------
# Shared nuisance distributions.  Both classes draw from these so that level,
# silence and noise floor carry no information about the label.
# --------------------------------------------------------------------------
FRAME_SECONDS: float = 0.02
SILENCE_THRESHOLD_DB: float = -50.0
LEVEL_RANGE_DBFS: tuple[float, float] = (-30.0, -18.0)
SILENCE_FRACTION_RANGE: tuple[float, float] = (0.05, 0.35)
NOISE_FLOOR_RANGE_DBFS: tuple[float, float] = (-68.0, -60.0)
NOMINAL_LEVEL_DBFS: float = -23.0

_EPS = 1e-12


# ==========================================================================
# Level and silence measurement
# ==========================================================================
def frame_rms(
    x: np.ndarray, sample_rate: int, frame_seconds: float = FRAME_SECONDS
) -> np.ndarray:
    """RMS of consecutive non-overlapping frames.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Signal.
    sample_rate : int
        Sampling rate in Hz.
    frame_seconds : float
        Frame length in seconds.

    Returns
    -------
    np.ndarray, shape (n_frames,)
        Linear RMS per frame.  A trailing partial frame is dropped (it would
        otherwise weigh as much as a full frame); a signal shorter than one
        frame yields a single frame over the whole signal.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(frame_seconds * sample_rate)))
    n_frames = len(x) // hop
    if n_frames == 0:
        return np.array([np.sqrt(np.mean(x**2))]) if len(x) else np.zeros(1)
    frames = x[: n_frames * hop].reshape(n_frames, hop)
    return np.sqrt(np.mean(frames**2, axis=1))


def _to_db(rms: np.ndarray | float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(rms, _EPS))


def silence_fraction(
    x: np.ndarray,
    sample_rate: int,
    threshold_db: float = SILENCE_THRESHOLD_DB,
    frame_seconds: float = FRAME_SECONDS,
) -> float:
    """Fraction of 20 ms frames whose RMS is below ``threshold_db`` dBFS.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Signal in full-scale units.
    sample_rate : int
        Sampling rate in Hz.
    threshold_db : float
        Absolute threshold in dBFS (relative to full scale, not to the clip).
    frame_seconds : float
        Frame length in seconds.

    Returns
    -------
    float
        Value in ``[0, 1]``.
    """
    db = _to_db(frame_rms(x, sample_rate, frame_seconds))
    return float(np.mean(db < threshold_db))


def active_rms_dbfs(
    x: np.ndarray, sample_rate: int, threshold_db: float = SILENCE_THRESHOLD_DB, frame_seconds: float = FRAME_SECONDS
) -> float:
    """RMS level in dBFS over the non-silent frames only.

    Parameters
    ----------
    x, sample_rate, frame_seconds
        As in :func:`silence_fraction`.
    threshold_db : float
        Frames at or above this absolute level (dBFS) count as active.

    Returns
    -------
    float
        Power-averaged level of active frames.  If no frame is active the
        level of the whole signal is returned (it is then below
        ``threshold_db`` by construction).
    """
    rms = frame_rms(x, sample_rate, frame_seconds)
    active = _to_db(rms) >= threshold_db
    power = rms[active] ** 2 if np.any(active) else rms**2
    return float(10.0 * np.log10(max(float(np.mean(power)), _EPS**2)))


def match_level(
    x: np.ndarray,
    target_rms_dbfs: float,
    sample_rate: int = 16000,
    threshold_db: float = SILENCE_THRESHOLD_DB,
    max_peak: float = 0.99,
    frame_seconds: float = FRAME_SECONDS,
) -> np.ndarray:
    """Scale ``x`` so its active-frame RMS equals ``target_rms_dbfs``.

    Only non-silent frames enter the RMS, so pauses do not pull the level of
    a sparse clip up after normalisation.  Which frames are "silent" depends
    on the gain itself (the threshold is absolute), so the gain is found by a
    short fixed-point iteration; it starts from frames within 40 dB of the
    loudest one, which does not depend on the input scale.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Signal at any scale.
    target_rms_dbfs : float
        Desired :func:`active_rms_dbfs` of the output.
    sample_rate : int
        Sampling rate in Hz (sets the 20 ms frame length).
    threshold_db : float
        Absolute activity threshold in dBFS, as in :func:`active_rms_dbfs`.
    max_peak : float
        Clipping guard: if the scaled peak would exceed this, the gain is
        reduced so that ``max(abs(y)) == max_peak`` (the level then ends up
        below the target).
    frame_seconds : float
        Frame length in seconds.

    Returns
    -------
    np.ndarray, shape (n_samples,)
        Scaled copy (``float64``).  An all-zero input is returned unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    rms = frame_rms(x, sample_rate, frame_seconds)
    peak_frame = float(rms.max()) if rms.size else 0.0
    if peak_frame <= _EPS:
        return x.copy()
    target = 10.0 ** (target_rms_dbfs / 20.0)
    # Scale-invariant first guess: frames within 40 dB of the loudest frame.
    active = rms >= peak_frame * 10.0 ** (-40.0 / 20.0)
    gain = target / np.sqrt(np.mean(rms[active] ** 2))
    threshold = 10.0 ** (threshold_db / 20.0)
    for _ in range(6):
        active = rms * gain >= threshold
        if not np.any(active):
            break
        new_gain = target / np.sqrt(np.mean(rms[active] ** 2))
        if abs(new_gain / gain - 1.0) < 1e-9:
            gain = new_gain
            break
        gain = new_gain
    peak = float(np.max(np.abs(x)))
    if peak * gain > max_peak:
        gain = max_peak / peak
    return x * gain


# ==========================================================================
# Shared nuisance: levels, pauses, background noise
# ==========================================================================
def draw_level_dbfs(rng: np.random.Generator) -> float:
    """Draw a target active RMS level (dBFS) from the class-independent range."""
    return float(rng.uniform(*LEVEL_RANGE_DBFS))


def draw_silence_fraction(rng: np.random.Generator) -> float:
    """Draw a target pause fraction from the class-independent range."""
    return float(rng.uniform(*SILENCE_FRACTION_RANGE))


def activity_segments(
    duration_s: float,
    rng: np.random.Generator,
    silence_fraction: float,
    min_gap_s: float = 0.2,
    min_active_s: float = 0.4,
    max_gaps: int = 3,
) -> list[tuple[float, float]]:
    """Split a clip into active stretches separated by pauses.

    The pauses add up to ``silence_fraction * duration_s``.  Speech uses the
    active stretches as phrases, music as passages between rests; using the
    same layout generator for both keeps the amount and shape of silence
    identical in distribution across classes.

    Parameters
    ----------
    duration_s : float
        Clip duration in seconds.
    rng : np.random.Generator
        Random source.
    silence_fraction : float
        Total pause time as a fraction of the clip, in ``[0, 1)``.
    min_gap_s, min_active_s : float
        Shortest pause and shortest active stretch in seconds.
    max_gaps : int
        Upper bound on the number of pauses.

    Returns
    -------
    list of (float, float)
        ``(start_s, end_s)`` of each active stretch, in order.  The clip
        starts and ends inside an active stretch (clips are cut from a
        continuous broadcast).
    """
    total_silence = float(np.clip(silence_fraction, 0.0, 0.95)) * duration_s
    total_active = duration_s - total_silence
    n_max = min(
        max_gaps,
        int(total_silence // min_gap_s),
        int(total_active // min_active_s) - 1,
    )
    if n_max < 1:
        return [(0.0, float(duration_s))]
    n_gaps = int(rng.integers(1, n_max + 1))
    gaps = min_gap_s + rng.dirichlet(np.ones(n_gaps)) * (total_silence - n_gaps * min_gap_s)
    actives = min_active_s + rng.dirichlet(np.full(n_gaps + 1, 2.0)) * (
        total_active - (n_gaps + 1) * min_active_s
    )
    segments: list[tuple[float, float]] = []
    t = 0.0
    for i, active in enumerate(actives):
        segments.append((t, t + float(active)))
        t += float(active)
        if i < n_gaps:
            t += float(gaps[i])
    # Remove floating-point drift so the last stretch ends exactly at the end.
    segments[-1] = (segments[-1][0], float(duration_s))
    return segments


def activity_gate(
    n_samples: int,
    sample_rate: int,
    segments: Sequence[tuple[float, float]],
    fade_s: float = 0.015,
) -> np.ndarray:
    """Gain curve that is 1 inside ``segments`` and 0 elsewhere.

    Raised-cosine fades of ``fade_s`` lie *inside* each segment so that the
    pauses stay exactly as long as laid out (no fade leaks into them).

    Returns
    -------
    np.ndarray, shape (n_samples,)
    """
    gate = np.zeros(n_samples)
    n_fade = max(1, int(round(fade_s * sample_rate)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_fade) + 0.5) / n_fade)
    for start_s, end_s in segments:
        a = int(round(start_s * sample_rate))
        b = min(n_samples, int(round(end_s * sample_rate)))
        if b <= a:
            continue
        gate[a:b] = 1.0
        k = min(n_fade, (b - a) // 2)
        if a > 0:
            gate[a : a + k] = ramp[:k]
        if b < n_samples:
            gate[b - k : b] = ramp[:k][::-1]
    return gate


def background_noise(
    n_samples: int, rng: np.random.Generator, level_dbfs: float
) -> np.ndarray:
    """Stationary hiss + rumble at a given RMS level (dBFS).

    The same noise process is added to every clip of every class, so its
    spectrum is not a class cue; only its level varies (from a shared range).

    Returns
    -------
    np.ndarray, shape (n_samples,)
    """
    if n_samples <= 0:
        return np.zeros(0)
    white = rng.standard_normal(n_samples)
    # One-pole low-pass gives a 1/f^2-ish rumble component under the hiss.
    rumble = signal.lfilter([1.0], [1.0, -0.97], rng.standard_normal(n_samples))
    rumble /= np.std(rumble) + _EPS
    noise = 0.6 * white + 0.8 * rumble
    noise *= 10.0 ** (level_dbfs / 20.0) / (np.sqrt(np.mean(noise**2)) + _EPS)
    return noise


def finish_clip(
    x: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    level_dbfs: float | None = None,
    noise_floor_dbfs: float | None = None,
) -> np.ndarray:
    """Apply the class-independent "broadcast chain": level, then noise floor.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Clean clip (any level).
    sample_rate : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Random source for the level, the noise level and the noise itself.
    level_dbfs, noise_floor_dbfs : float, optional
        Override the drawn active level / noise floor.

    Returns
    -------
    np.ndarray, shape (n_samples,)
        Clip in ``[-1, 1]``.
    """
    level = draw_level_dbfs(rng) if level_dbfs is None else float(level_dbfs)
    floor = (
        float(rng.uniform(*NOISE_FLOOR_RANGE_DBFS))
        if noise_floor_dbfs is None
        else float(noise_floor_dbfs)
    )
    y = match_level(x, level, sample_rate)
    y = y + background_noise(len(y), rng, floor)
    return np.clip(y, -1.0, 1.0)


# ==========================================================================
# Speech
# ==========================================================================
# Vowel targets F1, F2, F3 (Hz) of an adult male reference voice (textbook
# American-English averages, rounded); voices rescale them.
_VOWEL_FORMANTS = np.array(
    [
        [270.0, 2290.0, 3010.0],  # i
        [390.0, 1990.0, 2550.0],  # I
        [530.0, 1840.0, 2480.0],  # E
        [660.0, 1720.0, 2410.0],  # ae
        [730.0, 1090.0, 2440.0],  # a
        [570.0, 840.0, 2410.0],  # o
        [440.0, 1020.0, 2240.0],  # U
        [300.0, 870.0, 2240.0],  # u
        [640.0, 1190.0, 2390.0],  # V
        [490.0, 1350.0, 1690.0],  # er
    ]
)
_HIGHER_FORMANTS = np.array([3500.0, 4500.0])
_BASE_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0, 260.0])
# F2 loci of labial, alveolar and velar consonants (reference voice).
_F2_LOCI = np.array([900.0, 1750.0, 2200.0])
# Share of a syllable taken by its onset: none, fricative, stop, sonorant.
_ONSET_SHARE = ((0.0, 0.0), (0.25, 0.4), (0.15, 0.25), (0.15, 0.3))


@dataclass(frozen=True)
class VoiceParams:
    """Parameters of a synthetic speaker and of its speaking style.

    Speaker identity lives mostly in ``mean_f0``, ``formant_scale``,
    ``vowel_shift``, ``bandwidth_scale`` and the glottal parameters; prosody
    (what changes with emotion) lives in ``f0_range``, ``speaking_rate``,
    ``accent_strength``, ``intensity_variation`` and ``brightness``.  Use
    :func:`dataclasses.replace` to derive emotional variants of a speaker.

    Attributes
    ----------
    mean_f0 : float
        Mean fundamental frequency in Hz.
    f0_range : float
        Typical pitch span of a phrase in semitones.
    formant_scale : float
        Multiplies all formant frequencies (vocal tract length; ~1.0 male,
        ~1.15 female).
    speaking_rate : float
        Syllables per second.
    jitter, shimmer : float
        Relative cycle-to-cycle perturbation of period and amplitude.
    breathiness : float
        Level of pulsed aspiration noise relative to the glottal pulses.
    open_quotient, speed_quotient : float
        Rosenberg glottal-pulse shape; lower open quotient = more pressed.
    bandwidth_scale : float
        Multiplies formant bandwidths.
    brightness : float
        First-order spectral tilt of the source in ``[-0.9, 0.9]``: positive
        = more high-frequency energy (high vocal effort), negative = softer.
    intensity_variation : float
        Amplitude contrast between stressed and unstressed syllables, 0..1.
    accent_strength : float
        Height of pitch accents as a fraction of ``f0_range``.
    declination : float
        Fraction of ``f0_range`` the baseline falls over a phrase.
    vowel_shift : tuple of float
        Per-formant (F1, F2, F3) multipliers: the speaker's vowel space.
    fricative_level : float
        RMS of fricative noise relative to the voiced speech.
    """

    mean_f0: float = 120.0
    f0_range: float = 6.0
    formant_scale: float = 1.0
    speaking_rate: float = 4.5
    jitter: float = 0.01
    shimmer: float = 0.05
    breathiness: float = 0.03
    open_quotient: float = 0.6
    speed_quotient: float = 2.5
    bandwidth_scale: float = 1.0
    brightness: float = 0.0
    intensity_variation: float = 0.5
    accent_strength: float = 0.5
    declination: float = 0.5
    vowel_shift: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fricative_level: float = 0.25


def random_voice(rng: np.random.Generator) -> VoiceParams:
    """Draw a random speaker with a neutral speaking style.

    Roughly half the voices are low-pitched with long vocal tracts and half
    high-pitched with short ones, so speakers differ in both pitch and timbre.
    """
    high = bool(rng.random() < 0.5)
    if high:
        mean_f0 = float(np.clip(rng.normal(205.0, 25.0), 160.0, 270.0))
        formant_scale = float(rng.uniform(1.08, 1.22))
        breathiness = float(rng.uniform(0.03, 0.09))
    else:
        mean_f0 = float(np.clip(rng.normal(115.0, 15.0), 80.0, 160.0))
        formant_scale = float(rng.uniform(0.92, 1.05))
        breathiness = float(rng.uniform(0.01, 0.05))
    return VoiceParams(
        mean_f0=mean_f0,
        f0_range=float(rng.uniform(3.0, 9.0)),
        formant_scale=formant_scale,
        speaking_rate=float(rng.uniform(3.5, 5.5)),
        jitter=float(rng.uniform(0.004, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.08)),
        breathiness=breathiness,
        open_quotient=float(rng.uniform(0.5, 0.75)),
        speed_quotient=float(rng.uniform(1.8, 3.5)),
        bandwidth_scale=float(rng.uniform(0.85, 1.25)),
        brightness=float(rng.uniform(-0.3, 0.3)),
        intensity_variation=float(rng.uniform(0.3, 0.7)),
        accent_strength=float(rng.uniform(0.3, 0.7)),
        declination=float(rng.uniform(0.3, 0.7)),
        vowel_shift=tuple(float(v) for v in 1.0 + rng.uniform(-0.06, 0.06, 3)),  # type: ignore[arg-type]
        fricative_level=float(rng.uniform(0.25, 0.5)),
    )


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average of length ``n``; same length, O(len(x)).

    Near the edges the average is taken over the samples that exist, so a
    constant signal stays constant.
    """
    x = np.asarray(x, dtype=np.float64)
    if n <= 1 or len(x) == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(len(x))
    lo = np.clip(idx - n // 2, 0, len(x))
    hi = np.clip(idx - n // 2 + n, 0, len(x))
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def glottal_pulse_train(
    f0_contour: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    jitter: float = 0.01,
    shimmer: float = 0.05,
    open_quotient: float = 0.6,
    speed_quotient: float = 2.5,
    breathiness: float = 0.03,
    unvoiced_noise: float = 0.0,
) -> np.ndarray:
    """Glottal flow derivative (Rosenberg pulses) following an f0 contour.

    Phase is accumulated from the per-sample f0, so the pitch can move
    smoothly; each period is shaped by a Rosenberg pulse (raised-cosine
    opening, quarter-cosine closing, closed phase) and differentiated to
    include lip radiation, which gives the usual ~-6 dB/octave source tilt
    with a sharp excitation at glottal closure.

    Parameters
    ----------
    f0_contour : np.ndarray, shape (n_samples,)
        Instantaneous f0 in Hz per sample; ``0`` marks unvoiced samples.
    sample_rate : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Random source for jitter, shimmer and noise.
    jitter : float
        Std of the relative per-cycle period perturbation.
    shimmer : float
        Std of the relative per-cycle amplitude perturbation.
    open_quotient : float
        Fraction of the period during which the glottis is open.
    speed_quotient : float
        Ratio of opening to closing duration.
    breathiness : float
        Aspiration noise, modulated by the glottal flow, relative to the
        pulse peak.
    unvoiced_noise : float
        Level of white noise in unvoiced stretches (``0`` = silence).

    Returns
    -------
    np.ndarray, shape (n_samples,)
        Source signal with pulse peaks of roughly unit magnitude.
    """
    f0 = np.asarray(f0_contour, dtype=np.float64).reshape(-1)
    n = len(f0)
    f0 = np.maximum(f0, 0.0)
    voiced = f0 > 0
    if n == 0:
        return np.zeros(0)
    # Per-cycle jitter: index cycles with the nominal phase, then rebuild the
    # phase from the perturbed f0 (cycle boundaries move only slightly).
    nominal_cycle = np.floor(np.cumsum(f0) / sample_rate).astype(np.int64)
    n_cycles = int(nominal_cycle[-1]) + 2
    period_factor = 1.0 + jitter * np.clip(rng.standard_normal(n_cycles), -3.0, 3.0)
    f0_eff = f0 / period_factor[nominal_cycle]
    phase = np.cumsum(f0_eff) / sample_rate
    cycle = np.floor(phase).astype(np.int64)
    frac = phase - cycle
    t_open = open_quotient * speed_quotient / (1.0 + speed_quotient)
    t_close = open_quotient / (1.0 + speed_quotient)
    flow = np.where(
        frac < t_open,
        0.5 * (1.0 - np.cos(np.pi * frac / t_open)),
        np.where(
            frac < t_open + t_close,
            np.cos(0.5 * np.pi * (frac - t_open) / t_close),
            0.0,
        ),
    )
    amp = 1.0 + shimmer * np.clip(rng.standard_normal(int(cycle[-1]) + 2), -3.0, 3.0)
    flow = flow * amp[cycle]
    # Differentiate (lip radiation).  During unvoiced stretches the phase
    # stalls, the flow is constant and the derivative is exactly zero.
    d_flow = np.diff(flow, prepend=flow[0])
    ref_f0 = float(np.median(f0[voiced])) if np.any(voiced) else 100.0
    # Normalise by the steepest closing slope so pulse peaks are ~1.
    d_flow *= sample_rate * t_close / (0.5 * np.pi * ref_f0)
    noise = rng.standard_normal(n)
    out = d_flow + breathiness * noise * flow
    # Smooth voicing on/offsets (5 ms) to avoid clicks at voicing changes.
    voicing = _smooth(voiced.astype(np.float64), max(1, int(0.005 * sample_rate)))
    out *= voicing
    if unvoiced_noise > 0:
        out += unvoiced_noise * rng.standard_normal(n) * (1.0 - voicing)
    return out


def pitch_contour(
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
    mean_f0: float,
    f0_range: float,
    syllable_rate: float = 4.5,
    accent_times: Sequence[float] | None = None,
    accent_strength: float = 0.5,
    declination: float = 0.5,
    final_rise_prob: float = 0.15,
    drift_st: float = 0.4,
) -> np.ndarray:
    """Intonation contour of one phrase.

    The contour is built in semitones around ``mean_f0``: a declining
    baseline, rise-fall pitch accents on some syllables, a phrase-final fall
    (or, sometimes, a question-like rise) and a slow random drift.

    Parameters
    ----------
    duration_s : float
        Phrase duration in seconds.
    sample_rate : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Random source.
    mean_f0 : float
        Mean f0 in Hz.
    f0_range : float
        Pitch span in semitones.
    syllable_rate : float
        Syllables per second; used to place accents when ``accent_times`` is
        not given and to set the accent width.
    accent_times : sequence of float, optional
        Centres (s, relative to the phrase start) of accented syllables.  If
        ``None``, roughly a third of the syllable slots get an accent.
    accent_strength : float
        Accent height as a fraction of ``f0_range``.
    declination : float
        Fraction of ``f0_range`` the baseline falls over the phrase.
    final_rise_prob : float
        Probability of a final rise instead of a final fall.
    drift_st : float
        Std of the slow random drift in semitones.

    Returns
    -------
    np.ndarray, shape (round(duration_s * sample_rate),)
        f0 in Hz, strictly positive (voicing is decided by the caller).
    """
    n = int(round(duration_s * sample_rate))
    if n == 0:
        return np.zeros(0)
    t = np.arange(n) / sample_rate
    dur = max(duration_s, 1e-3)
    semitones = f0_range * declination * (0.5 - t / dur)
    syl = 1.0 / max(syllable_rate, 0.5)
    if accent_times is None:
        slots = np.arange(0.5 * syl, dur, syl)
        accent_times = slots[rng.random(len(slots)) < 0.35]
    width = 0.45 * syl
    for centre in accent_times:
        height = accent_strength * f0_range * rng.uniform(0.5, 1.0)
        lo = max(0, int((centre - 3 * width) * sample_rate))
        hi = min(n, int((centre + 3 * width) * sample_rate) + 1)
        # Peak slightly after the syllable centre, as in many accent types.
        tau = (t[lo:hi] - centre - 0.15 * syl) / width
        semitones[lo:hi] += height * np.exp(-0.5 * tau**2)
    # Phrase-final movement over the last ~300 ms.
    tail = np.clip((t - (dur - 0.3)) / 0.3, 0.0, 1.0)
    final = f0_range * rng.uniform(0.3, 0.6)
    semitones += final * tail**2 * (1.0 if rng.random() < final_rise_prob else -1.0)
    # Slow drift: a few random knots, linearly interpolated then smoothed.
    n_knots = max(2, int(dur * 3) + 2)
    knots = rng.normal(0.0, drift_st, n_knots)
    semitones += np.interp(t, np.linspace(0.0, dur, n_knots), knots)
    return mean_f0 * 2.0 ** (semitones / 12.0)


def _resonator_coefficients(
    freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unity-DC-gain 2-pole resonator: y = g x - a1 y[-1] - a2 y[-2]."""
    freqs = np.clip(freqs, 20.0, 0.47 * sample_rate)
    r = np.exp(-np.pi * np.maximum(bandwidths, 1.0) / sample_rate)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / sample_rate)
    a2 = r * r
    return 1.0 + a1 + a2, a1, a2


def formant_filter(
    source: np.ndarray,
    formant_tracks: np.ndarray,
    bandwidths: np.ndarray,
    sample_rate: int,
    block_ms: float = 5.0,
) -> np.ndarray:
    """Cascade of time-varying 2nd-order resonators.

    The signal is processed in blocks of ``block_ms``; in each block every
    resonator uses the centre frequency and bandwidth found at the block
    centre, and the filter state is carried from block to block with
    :func:`scipy.signal.lfilter` (``zi``, rebuilt from the last outputs).
    This keeps the cost at one compiled filter call per block rather than a
    Python loop per sample, and with constant tracks it is exactly a single
    ``lfilter`` over the whole signal (the cascade multiplied out).

    Parameters
    ----------
    source : np.ndarray, shape (n_samples,)
        Excitation signal.
    formant_tracks : np.ndarray, shape (n_formants,) or (n_formants, n_samples)
        Centre frequencies in Hz, constant or per sample.
    bandwidths : np.ndarray, shape (n_formants,) or (n_formants, n_samples)
        -3 dB bandwidths in Hz, constant or per sample.
    sample_rate : int
        Sampling rate in Hz.
    block_ms : float
        Block length in milliseconds over which coefficients are held.

    Returns
    -------
    np.ndarray, shape (n_samples,)
        Filtered signal (``float64``).  Each resonator has unity gain at DC.
    """
    x = np.asarray(source, dtype=np.float64).reshape(-1)
    n = len(x)
    tracks = np.asarray(formant_tracks, dtype=np.float64)
    bws = np.asarray(bandwidths, dtype=np.float64)
    if tracks.ndim == 1:
        tracks = tracks[:, None]
    if bws.ndim == 1:
        bws = bws[:, None]
    n_formants = tracks.shape[0]
    if bws.shape[0] != n_formants:
        raise ValueError(
            f"bandwidths has {bws.shape[0]} rows but formant_tracks has {n_formants}"
        )
    for name, arr in (("formant_tracks", tracks), ("bandwidths", bws)):
        if arr.shape[1] not in (1, n):
            raise ValueError(f"{name} must have 1 or {n} columns, got {arr.shape[1]}")
    if n == 0 or n_formants == 0:
        return x.copy()
    block = max(1, int(round(block_ms * 1e-3 * sample_rate)))
    starts = np.arange(0, n, block)
    centres = np.minimum(starts + block // 2, n - 1)

    def at_centres(arr: np.ndarray) -> np.ndarray:
        return arr[:, centres] if arr.shape[1] == n else np.repeat(arr, len(starts), axis=1)

    gain, a1, a2 = _resonator_coefficients(at_centres(tracks), at_centres(bws), sample_rate)
    # Multiply the resonators into one all-pole filter per block,
    # A_i(z) = prod_k (1 + a1 z^-1 + a2 z^-2), so each block costs a single
    # compiled lfilter call (per-resonator calls would be 5x the overhead).
    order = 2 * n_formants
    n_blocks = len(starts)
    poly = np.ones((n_blocks, 1))
    for k in range(n_formants):
        nxt = np.zeros((n_blocks, poly.shape[1] + 2))
        nxt[:, :-2] += poly
        nxt[:, 1:-1] += poly * a1[k][:, None]
        nxt[:, 2:] += poly * a2[k][:, None]
        poly = nxt
    total_gain = np.prod(gain, axis=0)
    # State: the filter is y[n] = g x[n] - sum_j a_j y[n-j], so its memory is
    # the last `order` outputs.  lfilter's transposed-direct-form state for a
    # numerator g alone is z_k = -sum_{j>k} a_j y[n+k-j]; rebuilding it from
    # the output history with the *new* block's coefficients gives the
    # time-varying recursion exactly (as a per-sample loop would) and, with
    # constant coefficients, one lfilter over the whole signal.
    kk, mm = np.meshgrid(np.arange(order), np.arange(order), indexing="ij")
    lag = kk + 1 + mm  # coefficient index multiplying y[n-1-m] in z_k
    valid = lag <= order
    state_mats = poly[:, np.minimum(lag, order)] * valid  # (n_blocks, order, order)
    out = np.empty(n)
    history = np.zeros(order)  # y[n-1], y[n-2], ..., y[n-order]
    b = np.zeros(1)
    for i, s in enumerate(starts):
        b[0] = total_gain[i]
        zi = -(state_mats[i] @ history)
        y, _ = signal.lfilter(b, poly[i], x[s : s + block], zi=zi)
        out[s : s + block] = y
        if len(y) >= order:
            history = y[: -order - 1 : -1].copy()
        else:
            history = np.concatenate([y[::-1], history])[:order]
    return out


def _bandpass_sos(low: float, high: float, sample_rate: int) -> np.ndarray:
    return _cached_bandpass(float(low), float(high), int(sample_rate))


@lru_cache(maxsize=64)
def _cached_bandpass(low: float, high: float, sample_rate: int) -> np.ndarray:
    nyq = 0.5 * sample_rate
    high = min(high, 0.95 * nyq)
    low = min(low, 0.9 * high)
    return signal.butter(2, [low / nyq, high / nyq], btype="bandpass", output="sos")


def _raised_window(n: int) -> np.ndarray:
    """Hann-like window of length ``n`` without zero end points."""
    if n <= 0:
        return np.zeros(0)
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


def _pause_layout(
    duration_s: float, sample_rate: int, rng: np.random.Generator, silence_fraction: float | None
) -> tuple[int, list[tuple[float, float]]]:
    """Samples of a clip and its active stretches (:func:`activity_segments`; none for an empty clip).

    A ``silence_fraction`` of ``None`` is drawn first (:func:`draw_silence_fraction`), so
    :func:`synth_speech` and :func:`synth_music` draw in the same order.
    """
    if silence_fraction is None:
        silence_fraction = draw_silence_fraction(rng)
    n = int(round(duration_s * sample_rate))
    if n == 0:
        return 0, []
    return n, activity_segments(duration_s, rng, silence_fraction)


def synth_speech(
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
    voice: VoiceParams | None = None,
    silence_fraction: float | None = None,
) -> np.ndarray:
    """Speech-like audio: phrases of syllables separated by pauses.

    Each phrase is a sequence of CV syllables at ``voice.speaking_rate``.
    Vowels are Rosenberg pulse trains (following an intonation contour from
    :func:`pitch_contour`) through five moving formant resonators whose F1-F3
    glide between vowel targets and consonant loci; onsets are fricatives
    (band-passed noise), stops (closure + burst) or voiced sonorants.
    Syllable envelopes give a ~3-6 Hz amplitude modulation.

    Parameters
    ----------
    duration_s : float
        Duration in seconds.
    sample_rate : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Random source.
    voice : VoiceParams, optional
        Speaker and style; drawn with :func:`random_voice` if ``None``.
    silence_fraction : float, optional
        Pause fraction passed to :func:`activity_segments`; drawn from the
        shared distribution if ``None``.

    Returns
    -------
    np.ndarray, shape (round(duration_s * sample_rate),)
        Clean speech at :data:`NOMINAL_LEVEL_DBFS` active RMS, exact zeros in
        the pauses (add noise with :func:`finish_clip`).
    """
    voice = random_voice(rng) if voice is None else voice
    n, segments = _pause_layout(duration_s, sample_rate, rng, silence_fraction)
    if n == 0:
        return np.zeros(0)

    f0 = np.zeros(n)
    amp = np.zeros(n)
    fric = np.zeros(n)
    fric_kind = np.zeros(n, dtype=np.int8)  # 0 none, 1 's', 2 'sh', 3 'f', 4 burst
    knot_t: list[float] = []
    knot_f: list[np.ndarray] = []
    vowel_space = (
        _VOWEL_FORMANTS * np.asarray(voice.vowel_shift)[None, :] * voice.formant_scale
    )
    loci = _F2_LOCI * voice.formant_scale

    for seg_start, seg_end in segments:
        seg_dur = seg_end - seg_start
        # Syllable durations: log-normal around 1/rate, phrase-final
        # lengthening, then rescaled to fill the phrase exactly.
        durs: list[float] = []
        while sum(durs) < seg_dur:
            durs.append(rng.lognormal(0.0, 0.25) / voice.speaking_rate)
        if len(durs) > 1 and sum(durs) - seg_dur > 0.5 * durs[-1]:
            durs.pop()
        d = np.asarray(durs)
        d[-1] *= 1.4
        d *= seg_dur / d.sum()
        onsets = seg_start + np.concatenate([[0.0], np.cumsum(d)[:-1]])
        stressed = rng.random(len(d)) < 0.35
        if not stressed.any():
            stressed[int(rng.integers(len(d)))] = True
        kinds = rng.choice(4, size=len(d), p=[0.3, 0.3, 0.2, 0.2])  # none/fric/stop/son
        accent_centres: list[float] = []

        for k in range(len(d)):
            s0, sd = float(onsets[k]), float(d[k])
            kind = int(kinds[k])
            cons = sd * rng.uniform(*_ONSET_SHARE[kind])
            v0 = s0 + cons
            vowel = vowel_space[int(rng.integers(len(vowel_space)))]
            # Formant knots: consonant locus, then vowel target.
            if kind:
                f2_locus = loci[int(rng.integers(3))]
                knot_t.append(s0 + 0.5 * cons)
                knot_f.append(np.array([300.0 * voice.formant_scale, f2_locus,
                                        2500.0 * voice.formant_scale]))
            knot_t.append(v0 + 0.5 * (sd - cons))
            knot_f.append(vowel)
            # Voiced amplitude of the vowel (and of a sonorant onset).
            # Unstressed syllables are weaker, but not so weak that they drop
            # into "silence" (that would make speech sparser than music).
            iv = float(np.clip(voice.intensity_variation, 0.0, 0.9))
            level = 1.0 if stressed[k] else 1.0 - 0.6 * iv * rng.uniform(0.3, 1.0)
            a = int(round(v0 * sample_rate))
            b = min(n, int(round((s0 + sd) * sample_rate)))
            if b > a:
                u = (np.arange(b - a) + 0.5) / (b - a)
                amp[a:b] = level * (0.45 + 0.55 * np.sin(np.pi * u) ** 0.7)
                f0[a:b] = 1.0  # mark voiced; real f0 filled per phrase below
            c0 = int(round(s0 * sample_rate))
            if kind == 3 and a > c0:  # sonorant: voiced, weak, low F1
                amp[c0:a] = 0.4 * level
                f0[c0:a] = 1.0
            elif kind == 1 and a > c0:  # fricative
                fric[c0:a] = (0.5 + 0.5 * _raised_window(a - c0)) * level * rng.uniform(0.7, 1.2)
                fric_kind[c0:a] = int(rng.integers(1, 4))
            elif kind == 2 and a > c0:  # stop: closure, then burst at release
                # Closure carries a weak "voice bar" (low F1 murmur), as in
                # voiced stops, instead of dropping to digital silence.
                amp[c0:a] = 0.12 * level
                f0[c0:a] = 1.0
                burst = min(a - c0, int(rng.uniform(0.008, 0.015) * sample_rate))
                fric[a - burst : a] = 1.2 * level * np.exp(-np.arange(burst) / (0.3 * burst))
                fric_kind[a - burst : a] = 4
            if stressed[k]:
                accent_centres.append(v0 + 0.3 * (sd - cons) - seg_start)

        a = int(round(seg_start * sample_rate))
        b = min(n, a + int(round(seg_dur * sample_rate)))
        contour = pitch_contour(
            (b - a) / sample_rate, sample_rate, rng, voice.mean_f0, voice.f0_range,
            syllable_rate=voice.speaking_rate, accent_times=accent_centres,
            accent_strength=voice.accent_strength, declination=voice.declination,
        )
        f0[a:b] *= contour[: b - a]

    # Voiced part: glottal source -> spectral tilt -> moving formants, then
    # the syllable envelope.
    source = glottal_pulse_train(
        f0, sample_rate, rng, jitter=voice.jitter, shimmer=voice.shimmer,
        open_quotient=voice.open_quotient, speed_quotient=voice.speed_quotient,
        breathiness=voice.breathiness,
    )
    tilt = float(np.clip(voice.brightness, -0.9, 0.9))
    source = signal.lfilter([1.0, -tilt], [1.0], source)
    t = np.arange(n) / sample_rate
    if knot_t:
        kt = np.asarray(knot_t)
        kf = np.asarray(knot_f)
        order = np.argsort(kt, kind="stable")
        f123 = np.stack([np.interp(t, kt[order], kf[order, j]) for j in range(3)])
    else:
        f123 = np.repeat(vowel_space[8][:, None], n, axis=1)
    higher = np.repeat((_HIGHER_FORMANTS * voice.formant_scale)[:, None], n, axis=1)
    tracks = np.vstack([f123, higher])
    bws = _BASE_BANDWIDTHS * voice.bandwidth_scale
    voiced_out = formant_filter(source, tracks, bws, sample_rate)
    # Impose the syllable envelope on the *output* loudness: how much energy
    # a vowel gets through the resonators depends on where its harmonics
    # fall relative to the formants (high voices can lose >20 dB), which
    # would otherwise punch "silent" frames into phrases at random.
    local_rms = np.sqrt(_smooth(voiced_out**2, max(1, int(0.03 * sample_rate))))
    floor = 1e-3 * (float(local_rms.max()) + _EPS)
    voiced_out = voiced_out / np.maximum(local_rms, floor)
    voiced_out *= _smooth(amp, max(1, int(0.01 * sample_rate)))

    # Unvoiced part: shaped noise, scaled relative to the voiced speech.
    out = voiced_out
    if np.any(fric_kind):
        bands = {1: (3800.0, 7500.0), 2: (2000.0, 4500.0), 3: (1200.0, 7500.0),
                 4: (500.0, 7000.0)}
        white = rng.standard_normal(n)
        noise = np.zeros(n)
        for kind_id, (lo, hi) in bands.items():
            mask = fric_kind == kind_id
            if mask.any():
                band = signal.sosfilt(_bandpass_sos(lo, hi, sample_rate), white)
                band /= np.std(band) + _EPS
                noise[mask] = band[mask]
        active = amp > 0.1
        ref = np.sqrt(np.mean(voiced_out[active] ** 2)) if active.any() else 1.0
        out = voiced_out + voice.fricative_level * ref * fric * noise

    out = out * activity_gate(n, sample_rate, segments)
    return match_level(out, NOMINAL_LEVEL_DBFS, sample_rate)


# ==========================================================================
# Music
# ==========================================================================
@dataclass(frozen=True)
class Timbre:
    """Additive-synthesis instrument.

    Attributes
    ----------
    n_partials : int
        Number of harmonics (those above 0.45 * sample rate are dropped).
    rolloff : float
        Partial ``k`` has amplitude ``k ** -rolloff``.
    even_gain : float
        Extra gain of even partials (< 1 gives a hollow, clarinet-like tone).
    inharmonicity : float
        Stiffness coefficient ``B``: partial ``k`` sits at
        ``k f0 sqrt(1 + B k^2)``.
    partial_decay : float
        Extra exponential decay rate (1/s) per partial index, so bright
        attacks mellow out as in plucked/struck strings.
    attack, decay, sustain, release : float
        ADSR envelope (seconds, seconds, level, seconds).
    """

    n_partials: int = 8
    rolloff: float = 1.2
    even_gain: float = 1.0
    inharmonicity: float = 0.0
    partial_decay: float = 0.0
    attack: float = 0.01
    decay: float = 0.3
    sustain: float = 0.4
    release: float = 0.15


@dataclass(frozen=True)
class MusicStyle:
    """Piece-level parameters shared by all clips of one "recording".

    Attributes
    ----------
    tempo_bpm : float
        Tempo in beats per minute.
    key_root : int
        MIDI number of the tonic in the bass octave.
    minor : bool
        Natural minor instead of major scale.
    progression : tuple of int
        Scale degrees (0-based) of the chord of each bar, cycled.
    lead, pad, bass : Timbre
        Instruments.
    drums : bool
        Whether the piece has a drum kit.
    lead_density : float
        Probability that a lead note starts on an eighth-note slot.
    levels : tuple of float
        Relative gains of (lead, pad, bass, drums).
    """

    tempo_bpm: float = 110.0
    key_root: int = 48
    minor: bool = False
    progression: tuple[int, ...] = (0, 5, 3, 4)
    lead: Timbre = field(default_factory=Timbre)
    pad: Timbre = field(
        default_factory=lambda: Timbre(n_partials=6, rolloff=1.6, attack=0.25, decay=0.5,
                                       sustain=0.8, release=0.4)
    )
    bass: Timbre = field(
        default_factory=lambda: Timbre(n_partials=5, rolloff=1.5, attack=0.005, decay=0.25,
                                       sustain=0.5, release=0.08)
    )
    drums: bool = True
    lead_density: float = 0.5
    levels: tuple[float, float, float, float] = (1.0, 0.5, 0.7, 0.8)


_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 4, 5, 3), (0, 3, 0, 4), (1, 4, 0, 0))


def random_music_style(rng: np.random.Generator) -> MusicStyle:
    """Draw a random piece: tempo, key, mode, chord progression, instruments."""
    plucked = bool(rng.random() < 0.5)
    if plucked:  # piano/guitar-like: sharp attack, decaying, slightly stiff
        lead = Timbre(
            n_partials=int(rng.integers(6, 12)), rolloff=float(rng.uniform(0.8, 1.5)),
            even_gain=float(rng.uniform(0.7, 1.0)),
            inharmonicity=float(rng.uniform(0.0, 4e-4)),
            partial_decay=float(rng.uniform(0.5, 2.0)), attack=float(rng.uniform(0.003, 0.01)),
            decay=float(rng.uniform(0.3, 0.9)), sustain=float(rng.uniform(0.15, 0.4)),
            release=float(rng.uniform(0.1, 0.3)),
        )
    else:  # organ/wind-like: soft attack, sustained
        lead = Timbre(
            n_partials=int(rng.integers(4, 10)), rolloff=float(rng.uniform(0.9, 2.0)),
            even_gain=float(rng.uniform(0.3, 1.0)), inharmonicity=0.0, partial_decay=0.0,
            attack=float(rng.uniform(0.02, 0.08)), decay=float(rng.uniform(0.1, 0.3)),
            sustain=float(rng.uniform(0.6, 0.9)), release=float(rng.uniform(0.05, 0.2)),
        )
    pad = Timbre(
        n_partials=int(rng.integers(4, 8)), rolloff=float(rng.uniform(1.2, 2.2)),
        even_gain=float(rng.uniform(0.5, 1.0)), attack=float(rng.uniform(0.1, 0.4)),
        decay=0.5, sustain=float(rng.uniform(0.6, 0.9)), release=float(rng.uniform(0.2, 0.5)),
    )
    bass = Timbre(
        n_partials=int(rng.integers(3, 7)), rolloff=float(rng.uniform(1.0, 2.0)),
        attack=float(rng.uniform(0.003, 0.02)), decay=float(rng.uniform(0.15, 0.4)),
        sustain=float(rng.uniform(0.3, 0.7)), release=0.08, partial_decay=1.0,
    )
    return MusicStyle(
        tempo_bpm=float(rng.uniform(70.0, 160.0)),
        key_root=int(rng.integers(40, 52)),
        minor=bool(rng.random() < 0.4),
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        lead=lead,
        pad=pad,
        bass=bass,
        drums=bool(rng.random() < 0.75),
        lead_density=float(rng.uniform(0.35, 0.75)),
        levels=(
            float(rng.uniform(0.7, 1.0)),
            float(rng.uniform(0.35, 0.7)),
            float(rng.uniform(0.5, 0.9)),
            float(rng.uniform(0.5, 1.0)),
        ),
    )


def _midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _adsr(n: int, n_on: int, timbre: Timbre, sample_rate: int) -> np.ndarray:
    """ADSR envelope over ``n`` samples, key released after ``n_on``."""
    t = np.arange(n) / sample_rate
    att = max(timbre.attack, 1e-3)
    env = np.where(
        t < att,
        t / att,
        timbre.sustain + (1.0 - timbre.sustain) * np.exp(-(t - att) / max(timbre.decay, 1e-3)),
    )
    if n_on < n:
        level_at_release = env[max(n_on - 1, 0)]
        rel = (t[n_on:] - t[n_on]) / max(timbre.release, 1e-3)
        env[n_on:] = level_at_release * np.exp(-5.0 * rel)
    return env


def _render_note(
    out: np.ndarray,
    start: int,
    n_on: int,
    midi: float,
    gain: float,
    timbre: Timbre,
    sample_rate: int,
    rng: np.random.Generator,
) -> None:
    """Add one additive-synthesis note to ``out`` in place (clipped to it)."""
    n_tail = int(timbre.release * sample_rate * 1.2)
    n_total = n_on + n_tail
    lo, hi = max(start, 0), min(start + n_total, len(out))
    if hi <= lo:
        return
    f0 = _midi_to_hz(midi)
    k = np.arange(1, timbre.n_partials + 1, dtype=np.float64)
    freqs = k * f0 * np.sqrt(1.0 + timbre.inharmonicity * k**2)
    keep = freqs < 0.45 * sample_rate
    k, freqs = k[keep], freqs[keep]
    if not len(k):
        return
    amps = k**-timbre.rolloff * np.where(k % 2 == 0, timbre.even_gain, 1.0)
    phases = rng.uniform(0.0, 2.0 * np.pi, len(k))
    t = (np.arange(lo, hi) - start) / sample_rate
    partials = np.sin(2.0 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
    if timbre.partial_decay > 0:
        partials *= np.exp(-timbre.partial_decay * (k[:, None] - 1.0) * t[None, :])
    env = _adsr(n_total, n_on, timbre, sample_rate)[lo - start : hi - start]
    out[lo:hi] += gain * env * (amps @ partials) / amps.sum()


def synth_music(
    duration_s: float, sample_rate: int, rng: np.random.Generator,
    style: MusicStyle | None = None, silence_fraction: float | None = None,
) -> np.ndarray:
    """Music-like audio: chords, bass, a melody and drums on a metric grid.

    A clip is cut from a longer "piece" at a random bar phase.  Each bar
    carries one chord of ``style.progression`` played as a sustained pad; the
    bass plays chord roots on beats, the lead plays scale notes on an
    eighth-note grid (chord tones on strong beats), and the drum kit plays
    kick (decaying sine sweep), snare (band-passed noise + tone) and hi-hat
    (high-passed noise).  Rests are pauses laid out by
    :func:`activity_segments` with the same distribution as speech pauses.

    Parameters
    ----------
    duration_s, sample_rate, rng
        As in :func:`synth_speech`.
    style : MusicStyle, optional
        Piece parameters; drawn with :func:`random_music_style` if ``None``.
    silence_fraction : float, optional
        Rest fraction; drawn from the shared distribution if ``None``.

    Returns
    -------
    np.ndarray, shape (round(duration_s * sample_rate),)
        Clean music at :data:`NOMINAL_LEVEL_DBFS` active RMS with exact zeros
        in the rests.
    """
    style = random_music_style(rng) if style is None else style
    n, segments = _pause_layout(duration_s, sample_rate, rng, silence_fraction)
    if n == 0:
        return np.zeros(0)
    beat = 60.0 / style.tempo_bpm
    bar = 4 * beat
    scale = _MINOR if style.minor else _MAJOR
    offset = rng.uniform(0.0, bar)  # clip starts this far into a bar
    n_bars = int(np.ceil((duration_s + offset) / bar)) + 1
    first_bar = int(rng.integers(len(style.progression)))
    lead_gain, pad_gain, bass_gain, drum_gain = style.levels

    def degree_to_midi(degree: int, octave: int) -> float:
        return float(style.key_root + 12 * (octave + degree // 7) + scale[degree % 7])

    def sample_at(time_s: float) -> int:
        return int(round((time_s - offset) * sample_rate))

    tonal = np.zeros(n)
    drums = np.zeros(n)
    melody_degree = int(rng.integers(0, 7))
    hit_noise = rng.standard_normal(max(n, 2 * sample_rate))  # longer than any hit
    snare_band = signal.sosfilt(_bandpass_sos(900.0, 5000.0, sample_rate), hit_noise)
    hat_band = signal.sosfilt(_bandpass_sos(5500.0, 7800.0, sample_rate), hit_noise[::-1])

    for b in range(n_bars):
        t_bar = b * bar
        chord_root = style.progression[(first_bar + b) % len(style.progression)]
        chord = [chord_root, chord_root + 2, chord_root + 4]
        n_bar = int(round(bar * sample_rate))
        # Pad: the triad held through the bar (overlapping the next release).
        for deg in chord:
            _render_note(tonal, sample_at(t_bar), n_bar, degree_to_midi(deg, 1),
                         pad_gain / 3.0, style.pad, sample_rate, rng)
        # Bass: root (sometimes the fifth) on every beat.
        for q in range(4):
            deg = chord_root + (4 if (q == 2 and rng.random() < 0.3) else 0)
            _render_note(tonal, sample_at(t_bar + q * beat), int(0.8 * beat * sample_rate),
                         degree_to_midi(deg, 0), bass_gain, style.bass, sample_rate, rng)
        # Lead: eighth-note grid, random walk on the scale.
        slot = 0
        while slot < 8:
            if rng.random() < style.lead_density:
                length = int(rng.choice([1, 1, 2, 2, 3, 4]))
                if slot % 2 == 0 and rng.random() < 0.6:
                    melody_degree = int(rng.choice(chord)) + 7 * int(melody_degree >= 7)
                else:
                    melody_degree = int(np.clip(melody_degree + rng.choice([-2, -1, 1, 2]), 0, 11))
                _render_note(tonal, sample_at(t_bar + slot * beat / 2),
                             int(length * 0.5 * beat * sample_rate * 0.95),
                             degree_to_midi(melody_degree, 2),
                             lead_gain * rng.uniform(0.8, 1.0), style.lead, sample_rate, rng)
                slot += length
            else:
                slot += 1
        if not style.drums:
            continue
        for e in range(8):  # eighth-note slots
            t_hit = t_bar + e * beat / 2
            s = sample_at(t_hit)
            vel = drum_gain * rng.uniform(0.8, 1.0)
            if e in (0, 4) or (e % 2 == 1 and rng.random() < 0.1):
                _add_kick(drums, s, vel, sample_rate, rng)
            if e in (2, 6):
                _add_hit(drums, s, snare_band, 0.4 * vel, rng.uniform(0.08, 0.16), sample_rate,
                         tone_hz=rng.uniform(170.0, 220.0))
            _add_hit(drums, s, hat_band, 0.25 * vel * (1.0 if e % 2 == 0 else 0.6),
                     rng.uniform(0.025, 0.06), sample_rate)

    out = tonal + drums
    out = out * activity_gate(n, sample_rate, segments)
    return match_level(out, NOMINAL_LEVEL_DBFS, sample_rate)


def _add_kick(
    out: np.ndarray, start: int, gain: float, sample_rate: int, rng: np.random.Generator
) -> None:
    """Kick drum: exponentially falling sine sweep with an exponential decay."""
    length = int(0.35 * sample_rate)
    lo, hi = max(start, 0), min(start + length, len(out))
    if hi <= lo:
        return
    t = np.arange(length) / sample_rate
    f_hi, f_lo = rng.uniform(120.0, 180.0), rng.uniform(40.0, 60.0)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / 0.03)
    phase = 2.0 * np.pi * np.cumsum(freq) / sample_rate
    kick = np.sin(phase) * np.exp(-t / rng.uniform(0.08, 0.15))
    out[lo:hi] += gain * kick[lo - start : hi - start]


def _add_hit(
    out: np.ndarray,
    start: int,
    noise: np.ndarray,
    gain: float,
    decay_s: float,
    sample_rate: int,
    tone_hz: float | None = None,
) -> None:
    """Noise-burst drum (snare/hi-hat) cut from a pre-filtered noise buffer."""
    length = int(5 * decay_s * sample_rate)
    lo, hi = max(start, 0), min(start + length, len(out))
    if hi <= lo:
        return
    t = np.arange(lo - start, hi - start) / sample_rate
    env = np.exp(-t / decay_s)
    # Read the noise at a position tied to the hit so hits differ.
    offset = (start * 7919) % max(1, len(noise) - length)
    burst = noise[offset + (lo - start) : offset + (hi - start)] / (np.std(noise) + _EPS)
    if tone_hz is not None:
        burst = burst + 1.5 * np.sin(2.0 * np.pi * tone_hz * t)
    out[lo:hi] += gain * env * burst


# ==========================================================================
# Whole clips
# ==========================================================================
@dataclass(frozen=True)
class ClipNuisance:
    """Class-independent properties of one clip.

    Attributes
    ----------
    silence_fraction : float
        Pause fraction for :func:`activity_segments`.
    level_dbfs : float
        Target active RMS level (:func:`active_rms_dbfs`).
    noise_floor_dbfs : float
        RMS level of the background noise.
    """

    silence_fraction: float
    level_dbfs: float
    noise_floor_dbfs: float

    @classmethod
    def from_unit(cls, u: Sequence[float]) -> ClipNuisance:
        """Map three numbers in ``[0, 1)`` onto the shared ranges (uniformly)."""
        def lerp(bounds: tuple[float, float], v: float) -> float:
            return float(bounds[0] + (bounds[1] - bounds[0]) * v)

        return cls(
            silence_fraction=lerp(SILENCE_FRACTION_RANGE, u[0]),
            level_dbfs=lerp(LEVEL_RANGE_DBFS, u[1]),
            noise_floor_dbfs=lerp(NOISE_FLOOR_RANGE_DBFS, u[2]),
        )

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ClipNuisance:
        """Independent uniform draw from the shared ranges."""
        return cls.from_unit(rng.random(3))


def _radical_inverse(index: int, base: int) -> float:
    """Van der Corput radical inverse: the base-``base`` digits of ``index``
    mirrored behind the radix point (0 -> 0, 1 -> 1/b, 2 -> 2/b, ...)."""
    result, scale = 0.0, 1.0 / base
    while index > 0:
        index, digit = divmod(index, base)
        result += digit * scale
        scale /= base
    return result


_HALTON_BASES = (2, 3, 5)


def nuisance_sequence(offset: Sequence[float], index: int) -> ClipNuisance:
    """The ``index``-th element of an evenly spread sequence of nuisances.

    The sequence is a Halton sequence (bases 2, 3, 5), shifted modulo 1 by
    ``offset``: every prefix of it covers each range evenly (the first 2**k
    pause fractions fall one into each of 2**k equal bins, for instance).
    Giving clip ``i`` of *every* class element ``i`` (same ``offset``) makes
    the empirical level / pause / noise-floor distributions of the classes
    practically identical even in a corpus of a few clips, while a clip
    still depends only on its own index, not on the corpus size.

    Parameters
    ----------
    offset : sequence of 3 floats in [0, 1)
        Random shift (e.g. drawn once per corpus seed).
    index : int
        Clip index, ``>= 0``.

    Returns
    -------
    ClipNuisance
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    u = [
        (_radical_inverse(index, base) + float(o)) % 1.0
        for base, o in zip(_HALTON_BASES, offset, strict=True)
    ]
    return ClipNuisance.from_unit(u)


def synth_broadcast_clip(
    label: str,
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
    voice: VoiceParams | None = None,
    style: MusicStyle | None = None,
    nuisance: ClipNuisance | None = None,
) -> np.ndarray:
    """One finished speech or music clip with class-independent nuisances.

    Pause fraction, active level and noise floor come from ``nuisance`` or,
    if it is ``None``, are drawn from the shared distributions
    (:data:`SILENCE_FRACTION_RANGE`, :data:`LEVEL_RANGE_DBFS`,
    :data:`NOISE_FLOOR_RANGE_DBFS`) *before* the class-specific content, the
    same way for both classes.

    Parameters
    ----------
    label : {"speech", "music"}
        Class to synthesise.
    duration_s, sample_rate, rng
        As in :func:`synth_speech`.
    voice : VoiceParams, optional
        Speaker for ``"speech"`` (random if ``None``).
    style : MusicStyle, optional
        Piece for ``"music"`` (random if ``None``).
    nuisance : ClipNuisance, optional
        Fixed pause fraction / level / noise floor (see
        :func:`nuisance_sequence`).

    Returns
    -------
    np.ndarray, shape (round(duration_s * sample_rate),)
        Clip in ``[-1, 1]``.
    """
    if label not in ("speech", "music"):
        raise ValueError(f"label must be 'speech' or 'music', got {label!r}")
    if nuisance is None:
        nuisance = ClipNuisance.draw(rng)
    frac = nuisance.silence_fraction
    if label == "speech":
        clean = synth_speech(duration_s, sample_rate, rng, voice=voice, silence_fraction=frac)
    else:
        clean = synth_music(duration_s, sample_rate, rng, style=style, silence_fraction=frac)
    return finish_clip(
        clean,
        sample_rate,
        rng,
        level_dbfs=nuisance.level_dbfs,
        noise_floor_dbfs=nuisance.noise_floor_dbfs,
    )
