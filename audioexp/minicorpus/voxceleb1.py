"""Miniature VoxCeleb1 in the real on-disk layout (synthetic voices).

What it mimics
--------------
VoxCeleb1 (Nagrani, Chung and Zisserman, "VoxCeleb: a large-scale speaker
identification dataset", Interspeech 2017) holds speech of 1,251 celebrities
cut from YouTube interviews: several videos per speaker, several utterances
per video, 16 kHz mono 16-bit PCM WAV.  The audio and lists are distributed
under the Creative Commons Attribution 4.0 licence (copyright of the videos
stays with their owners).  Nothing of the real corpus is used here: the
voices are synthesised by :mod:`audioexp.minicorpus.synth`, the names are
invented, and only the layout and protocol files are reproduced, so that
reader, split and trial-list code written for the real corpus runs
unchanged on this one::

    ROOT/wav/<speaker id>/<video id>/<utterance>.wav
    ROOT/iden_split.txt     identification split
    ROOT/veri_test.txt      verification trials (VoxCeleb1-O)
    ROOT/veri_test2.txt     cleaned trial list (VoxCeleb1-O cleaned)
    ROOT/vox1_meta.csv      speaker metadata, tab-separated
    ROOT/README.txt         how the corpus was generated
    ROOT/.minicorpus.json   completion stamp (see :mod:`audioexp.minicorpus`)

Ids and list conventions (as in the real corpus)
------------------------------------------------
* Speaker ids are ``id1NNNN``; the real ones run ``id10001``-``id11251``.
  The 40 speakers of the verification *test* set are ``id10270``-``id10309``
  (their VGGFace1 names all start with "E"); everybody else is ``dev``.
  Here the ``num_test_speakers`` test speakers are ``id10270``,
  ``id10271``, ... and the others ``id10001``, ``id10002``, ..., skipping
  the test range, so code that recognises the test set by id range
  (:func:`is_verification_test_speaker`) works on the miniature too.
* Video ids are 11-character YouTube-like ids (``[A-Za-z0-9_-]``, a
  leading ``-`` included, as in the real ids); utterances of a video are
  ``00001.wav``, ``00002.wav``, ...
* ``iden_split.txt``: one line per utterance, ``<set> <spk>/<video>/<utt>``
  with set 1 = train, 2 = validation, 3 = test.  For every speaker the
  utterances of one video are test, those of another video validation and
  the rest train, so identification is always judged across videos.
  Every speaker (test speakers included) appears in it.
* ``veri_test.txt``: ``<label> <enrolment> <test>`` with label 1 = same
  speaker, 0 = different, among the test speakers only; target trials pair
  utterances of *different* videos; targets and non-targets are balanced
  and listed grouped by enrolment utterance, target then non-target, as in
  the real list.  ``veri_test2.txt`` is the same list with a few trials
  dropped (the real cleaned list has 37,611 trials against 37,720).
* ``vox1_meta.csv``: header ``VoxCeleb1 ID, VGGFace1 ID, Gender,
  Nationality, Set`` (tab-separated), gender ``m``/``f``, set
  ``dev``/``test``.

Audio
-----
Each speaker has one synthetic voice (:class:`synth.VoiceParams`), fixed
within an utterance.  Mean f0 and formant scale are laid out on a
stratified (Latin-hypercube) grid over wide ranges within each gender, and
the other voice parameters (speaking rate, vowel space, formant
bandwidths, spectral tilt, breathiness, glottal pulse shape, ...) on one
across all speakers, so that speakers are far apart and no two are
near-duplicates.  Each video adds a mild channel shared by its utterances:
a gentle random EQ (high-pass, low-pass, two broad peaking filters of at
most +-1.5 dB), a small shift of the speaker's speaking style (about 1.5 %
in f0, 2 % in speaking rate), and a noise floor.  The identity is thus
carried by the voice, consistently across videos: on the default corpus a
logistic regression on per-utterance MFCC mean and standard deviation
trained on split 1 identifies the speakers of split 3 (another video)
with 97-100 % accuracy, and an LDA trained on the dev speakers scores
``veri_test.txt`` at an EER of 3-7 % (seeds 0-2).  Loudness does not identify
the speaker: utterance ``k`` of *every* speaker gets element ``k`` of one
low-discrepancy sequence of active levels and pause fractions
(:func:`synth.nuisance_sequence`).
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from audioexp.minicorpus import synth
from audioexp.minicorpus.common import (
    GENERATOR_VERSION, child_rng, corpus_stamp, duration_params, finish_corpus, remove_own_entries, reuse_or_clear,
    show_progress, write_wav,
)

__all__ = [
    "ID_RANGE",
    "LIST_FILES",
    "META_HEADER",
    "TEST_ID_RANGE",
    "VoxSpeaker",
    "is_verification_test_speaker",
    "speaker_ids",
    "write_voxceleb1",
]

#: Numeric range (inclusive) of real VoxCeleb1 speaker ids.
ID_RANGE: tuple[int, int] = (10001, 11251)
#: Numeric range (inclusive) of the 40 verification test speakers.
TEST_ID_RANGE: tuple[int, int] = (10270, 10309)
#: Protocol files written next to ``wav/``.
LIST_FILES: tuple[str, ...] = ("iden_split.txt", "veri_test.txt", "veri_test2.txt", "vox1_meta.csv")
#: Header of ``vox1_meta.csv`` (tab-separated).
META_HEADER: tuple[str, ...] = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")

_SPEAKER_DIR_RE = re.compile(r"^id\d{5}$")
_VIDEO_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VIDEO_ID_LENGTH = 11

# Version of the voice and channel design below; it is part of the
# completion stamp, so a corpus written with an older design is rewritten.
_VOICE_DESIGN = 2

# spawn-key branches: corpus design, per video, per utterance, nuisance
# offset, split choice, trial lists.
_DESIGN_KEY, _VIDEO_KEY, _UTT_KEY, _NUISANCE_KEY, _SPLIT_KEY, _TRIAL_KEY = range(6)

# Gender-specific ranges of the identity parameters (mean f0 in Hz, formant
# scale): the f0 ranges are disjoint, so "m"/"f" in the metadata agrees with
# the pitch.  Both are wide, so that the speakers of one gender are spread
# far apart in pitch and in vocal-tract length.
_F0_RANGE = {"m": (80.0, 155.0), "f": (170.0, 270.0)}
_FORMANT_RANGE = {"m": (0.82, 1.08), "f": (1.02, 1.32)}
# Shared ranges of the other voice parameters.
_VOICE_RANGES: dict[str, tuple[float, float]] = {
    "f0_range": (3.0, 8.0), "speaking_rate": (3.0, 6.5),
    "jitter": (0.004, 0.02), "shimmer": (0.02, 0.08), "breathiness": (0.005, 0.25),
    "open_quotient": (0.45, 0.8), "speed_quotient": (1.6, 4.0), "bandwidth_scale": (0.5, 2.0),
    "brightness": (-0.7, 0.7), "intensity_variation": (0.3, 0.7), "accent_strength": (0.3, 0.7),
    "declination": (0.3, 0.7), "fricative_level": (0.15, 0.6),
    "vowel_shift_1": (0.82, 1.18), "vowel_shift_2": (0.82, 1.18), "vowel_shift_3": (0.82, 1.18),
}
# Per-video change of speaking style (standard deviations): log mean f0,
# log f0 range, log speaking rate, brightness.  Small, so that a speaker
# sounds like the same person in every video.
_VIDEO_STYLE_SD = {"mean_f0": 0.015, "f0_range": 0.05, "speaking_rate": 0.02, "brightness": 0.02}
# Per-video channel: noise floor (dBFS), EQ corner frequencies and gains of
# two broad peaking filters (dB, +-; quality factor range).
_VIDEO_NOISE_FLOOR_DBFS = (-72.0, -60.0)
_HIGHPASS_HZ = (50.0, 120.0)
_LOWPASS_HZ = (7000.0, 7600.0)
_PEAK_HZ = (250.0, 4000.0)
_PEAK_GAIN_DB = 1.5
_PEAK_Q = (0.4, 0.8)

_FIRST_NAMES = {
    "m": (
        "Aaron Adrian Alan Albert Andre Ben Boris Bruno Carl Cedric Colin Dante Dario "
        "Declan Felix Frank Gavin Hugo Ian Igor Ivan Jack Jonas Kai Karl Leon Liam Luca "
        "Marco Milan Nikolai Noah Omar Oscar Pablo Paul Rafael Ravi Rowan Sam Sean Tariq "
        "Theo Tom Victor Wade Yusuf Zane"
    ).split(),
    "f": (
        "Ada Alice Amara Anna Bella Carla Chloe Clara Dana Diana Fiona Grace Hana Helen "
        "Ines Iris Jade Julia Kara Lena Lucia Maya Mina Nadia Nina Olga Paula Priya Rosa "
        "Ruth Sara Sofia Tara Una Vera Wanda Yara Zoe"
    ).split(),
}
_E_FIRST_NAMES = {
    "m": (
        "Eamon Earl Eddie Edgar Edmund Edwin Elias Elliot Emil Emmett Enzo Eric Ernest "
        "Ethan Evan Ezra"
    ).split(),
    "f": (
        "Edith Eileen Elaine Eleanor Elena Elif Eliza Ella Elsa Emily Emma Erin Estelle "
        "Esther Eva Evelyn"
    ).split(),
}
_SURNAMES = (
    "Abbott Baker Brennan Castillo Costa Dalton Dubois Duarte Ferreira Fischer Gallagher "
    "Garner Haas Hale Ito Jansen Kowalski Kumar Larsen Lindqvist Mendes Moreau Nakamura "
    "Nguyen Novak Okafor Olsen Patel Petrov Quinn Rossi Santos Schmidt Silva Tanaka Varga "
    "Walsh Weber Young Zhou"
).split()
_NATIONALITIES = (
    ("USA", 0.40), ("UK", 0.15), ("Canada", 0.06), ("Australia", 0.06), ("India", 0.06),
    ("Ireland", 0.04), ("Germany", 0.03), ("France", 0.03), ("Italy", 0.03), ("Spain", 0.03),
    ("Mexico", 0.02), ("Brazil", 0.02), ("Norway", 0.02), ("Sweden", 0.02),
    ("Netherlands", 0.01), ("New Zealand", 0.01), ("Philippines", 0.01),
)


@dataclass(frozen=True)
class VoxSpeaker:
    """One speaker of the miniature corpus.

    Attributes
    ----------
    speaker_id : str
        VoxCeleb1 id, e.g. ``"id10270"``.
    name : str
        Invented VGGFace1-style name (``First_Last``; starts with "E" for
        test speakers).
    gender : {"m", "f"}
        Agrees with ``voice.mean_f0`` (below 160 Hz for "m", above for "f").
    nationality : str
        Invented nationality.
    test : bool
        Whether the speaker belongs to the verification test set.
    voice : synth.VoiceParams
        The speaker's voice; each video perturbs it slightly.
    """

    speaker_id: str
    name: str
    gender: str
    nationality: str
    test: bool
    voice: synth.VoiceParams


def is_verification_test_speaker(speaker_id: str) -> bool:
    """Whether ``speaker_id`` (``"id10270"`` or ``"id10270/..."``) is a VoxCeleb1-O test speaker.

    >>> is_verification_test_speaker("id10270"), is_verification_test_speaker("id10001/abc/00001.wav")
    (True, False)
    """
    number = int(speaker_id.split("/", 1)[0][2:])
    return TEST_ID_RANGE[0] <= number <= TEST_ID_RANGE[1]


def speaker_ids(num_speakers: int, num_test_speakers: int) -> tuple[list[str], list[str]]:
    """Dev and test speaker ids of a miniature corpus, in the real id ranges.

    Parameters
    ----------
    num_speakers : int
        All speakers, test speakers included.
    num_test_speakers : int
        Speakers placed in the verification test range ``id10270``-``id10309``.

    Returns
    -------
    (list of str, list of str)
        Dev ids (``id10001`` upwards, skipping the test range) and test ids
        (``id10270`` upwards).

    >>> speaker_ids(4, 2)
    (['id10001', 'id10002'], ['id10270', 'id10271'])
    """
    n_test_max = TEST_ID_RANGE[1] - TEST_ID_RANGE[0] + 1
    n_dev_max = ID_RANGE[1] - ID_RANGE[0] + 1 - n_test_max
    num_dev = num_speakers - num_test_speakers
    if not 0 <= num_test_speakers <= n_test_max:
        raise ValueError(f"num_test_speakers must be in [0, {n_test_max}], got {num_test_speakers}")
    if not 0 <= num_dev <= n_dev_max:
        raise ValueError(
            f"num_speakers - num_test_speakers must be in [0, {n_dev_max}], got {num_dev}"
        )
    test = [f"id{TEST_ID_RANGE[0] + i}" for i in range(num_test_speakers)]
    dev_numbers = [
        n for n in range(ID_RANGE[0], ID_RANGE[1] + 1)
        if not TEST_ID_RANGE[0] <= n <= TEST_ID_RANGE[1]
    ]
    return [f"id{n}" for n in dev_numbers[:num_dev]], test


# --------------------------------------------------------------------------
# Corpus design: speakers, videos
# --------------------------------------------------------------------------
def _stratified(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points in (0, 1), one per stratum ``[i/n, (i+1)/n)``, in random order.

    The jitter stays in the middle 60 % of each stratum so neighbours are at
    least ``0.4 / n`` apart.
    """
    return (rng.permutation(n) + rng.uniform(0.2, 0.8, n)) / max(n, 1)


def _log_lerp(bounds: tuple[float, float], u: np.ndarray) -> np.ndarray:
    lo, hi = bounds
    return lo * (hi / lo) ** u


def _design_speakers(
    rng: np.random.Generator, dev_ids: list[str], test_ids: list[str]
) -> list[VoxSpeaker]:
    """Voices and metadata of all speakers (dev first, then test)."""
    ids = dev_ids + test_ids
    n, n_dev = len(ids), len(dev_ids)
    used: set[str] = set()
    queues: dict[int, list[str]] = {}

    def draw_name(first_names: list[str]) -> str:
        # First names are dealt from a shuffled deck so they repeat only
        # once the list is used up; the full name is unique.
        while True:
            deck = queues.setdefault(id(first_names), [])
            if not deck:
                deck.extend(first_names[int(i)] for i in rng.permutation(len(first_names)))
            name = f"{deck.pop()}_{_SURNAMES[int(rng.integers(len(_SURNAMES)))]}"
            if name not in used:
                used.add(name)
                return name

    # Half of each set (rounded down) is female.  Names are unique
    # ``First_Last``; test speakers' start with "E", and dev names follow
    # the ids alphabetically, as in the real metadata.
    def draw_group(size: int, first_names: dict[str, list[str]]) -> list[tuple[str, str]]:
        genders = ["f" if i < size // 2 else "m" for i in range(size)]
        return [(draw_name(first_names[g]), g) for g in genders]

    dev = sorted(draw_group(n_dev, _FIRST_NAMES))
    test = draw_group(n - n_dev, _E_FIRST_NAMES)
    test = [test[int(i)] for i in rng.permutation(len(test))]
    names = [name for name, _ in dev + test]
    genders = [g for _, g in dev + test]
    genders_arr = np.array(genders)
    # Identity parameters: a Latin hypercube per gender, on a log scale.
    mean_f0 = np.zeros(n)
    formant = np.zeros(n)
    for g in ("m", "f"):
        idx = np.flatnonzero(genders_arr == g)
        mean_f0[idx] = _log_lerp(_F0_RANGE[g], _stratified(rng, len(idx)))
        formant[idx] = _log_lerp(_FORMANT_RANGE[g], _stratified(rng, len(idx)))
    # Everything else: a Latin hypercube across all speakers.
    other = {
        key: lo + (hi - lo) * _stratified(rng, n) for key, (lo, hi) in _VOICE_RANGES.items()
    }
    countries = [c for c, _ in _NATIONALITIES]
    weights = np.array([w for _, w in _NATIONALITIES])
    nationality = rng.choice(len(countries), size=n, p=weights / weights.sum())

    speakers = []
    for i, spk in enumerate(ids):
        voice = synth.VoiceParams(
            mean_f0=float(mean_f0[i]),
            f0_range=float(other["f0_range"][i]),
            formant_scale=float(formant[i]),
            speaking_rate=float(other["speaking_rate"][i]),
            jitter=float(other["jitter"][i]),
            shimmer=float(other["shimmer"][i]),
            breathiness=float(other["breathiness"][i]),
            open_quotient=float(other["open_quotient"][i]),
            speed_quotient=float(other["speed_quotient"][i]),
            bandwidth_scale=float(other["bandwidth_scale"][i]),
            brightness=float(other["brightness"][i]),
            intensity_variation=float(other["intensity_variation"][i]),
            accent_strength=float(other["accent_strength"][i]),
            declination=float(other["declination"][i]),
            vowel_shift=(
                float(other["vowel_shift_1"][i]),
                float(other["vowel_shift_2"][i]),
                float(other["vowel_shift_3"][i]),
            ),
            fricative_level=float(other["fricative_level"][i]),
        )
        speakers.append(
            VoxSpeaker(
                speaker_id=spk,
                name=names[i],
                gender=genders[i],
                nationality=countries[int(nationality[i])],
                test=i >= n_dev,
                voice=voice,
            )
        )
    return speakers


@dataclass(frozen=True)
class _Video:
    video_id: str
    voice: synth.VoiceParams  # the speaker's voice in this session
    eq_sos: np.ndarray  # channel EQ, second-order sections
    noise_floor_dbfs: float


def _peaking_sos(freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """Peaking-EQ biquad (R. Bristow-Johnson, "Audio EQ Cookbook") as one SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * a, -2.0 * np.cos(w0), 1.0 - alpha * a])
    den = np.array([1.0 + alpha / a, -2.0 * np.cos(w0), 1.0 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def _draw_video(
    rng: np.random.Generator, speaker: VoxSpeaker, taken: set[str], sample_rate: int
) -> _Video:
    """Video id, session voice and channel of one video."""
    while True:
        video_id = "".join(
            _VIDEO_ALPHABET[k] for k in rng.integers(len(_VIDEO_ALPHABET), size=_VIDEO_ID_LENGTH)
        )
        if video_id not in taken:
            taken.add(video_id)
            break
    v = speaker.voice
    # The same person sounds a little different from one interview to the
    # next; f0 stays inside the gender's range so the metadata stays true.
    f0_lo, f0_hi = _F0_RANGE[speaker.gender]
    sd = _VIDEO_STYLE_SD
    voice = replace(
        v,
        mean_f0=float(
            np.clip(v.mean_f0 * np.exp(rng.normal(0.0, sd["mean_f0"])), 0.97 * f0_lo, 1.03 * f0_hi)
        ),
        f0_range=float(v.f0_range * np.exp(rng.normal(0.0, sd["f0_range"]))),
        speaking_rate=float(v.speaking_rate * np.exp(rng.normal(0.0, sd["speaking_rate"]))),
        brightness=float(np.clip(v.brightness + rng.normal(0.0, sd["brightness"]), -0.9, 0.9)),
    )
    nyq = 0.5 * sample_rate
    hp = float(_log_lerp(_HIGHPASS_HZ, rng.random()))
    lp = float(min(rng.uniform(*_LOWPASS_HZ), 0.95 * nyq))
    sections = [
        signal.butter(2, hp / nyq, btype="highpass", output="sos"),
        signal.butter(4, lp / nyq, btype="lowpass", output="sos"),
    ]
    for _ in range(2):
        sections.append(
            _peaking_sos(
                float(_log_lerp(_PEAK_HZ, rng.random())),
                float(rng.uniform(-_PEAK_GAIN_DB, _PEAK_GAIN_DB)),
                float(rng.uniform(*_PEAK_Q)),
                sample_rate,
            )
        )
    return _Video(
        video_id=video_id,
        voice=voice,
        eq_sos=np.vstack(sections),
        noise_floor_dbfs=float(rng.uniform(*_VIDEO_NOISE_FLOOR_DBFS)),
    )


def _synth_utterance(
    rng: np.random.Generator,
    video: _Video,
    nuisance: synth.ClipNuisance,
    min_seconds: float,
    max_seconds: float,
    sample_rate: int,
) -> np.ndarray:
    """Speech through the video's channel, at the nuisance level, plus its noise floor."""
    n = int(round(rng.uniform(min_seconds, max_seconds) * sample_rate))
    n = min(max(n, int(np.ceil(min_seconds * sample_rate))), int(np.floor(max_seconds * sample_rate)))
    clean = synth.synth_speech(
        n / sample_rate, sample_rate, rng, voice=video.voice,
        silence_fraction=nuisance.silence_fraction,
    )
    speech = synth.match_level(signal.sosfilt(video.eq_sos, clean), nuisance.level_dbfs, sample_rate)
    # Room and line noise go through the same channel as the voice.
    noise = signal.sosfilt(video.eq_sos, synth.background_noise(n, rng, 0.0))
    noise *= 10.0 ** (video.noise_floor_dbfs / 20.0) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    return np.clip(speech + noise, -1.0, 1.0)


def _write_utterance(job: tuple) -> str:
    """Synthesise and write one file; module-level so worker processes can run it."""
    path, seed, s, v, u, video, nuisance, min_seconds, max_seconds, sample_rate = job
    audio = _synth_utterance(
        child_rng(seed, _UTT_KEY, s, v, u), video, nuisance, min_seconds, max_seconds, sample_rate
    )
    write_wav(Path(path), audio, sample_rate)
    return path


# Files below which ``workers=None`` writes in this process (starting
# workers would cost more than it saves).
_PARALLEL_MIN_FILES = 64
_MAX_AUTO_WORKERS = 4


def _auto_workers(n_files: int) -> int:
    """Worker processes for ``workers=None``: the free cores (at most 4) for a big corpus."""
    if n_files < _PARALLEL_MIN_FILES or not _can_fork():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_AUTO_WORKERS, cores))


def _can_fork() -> bool:
    # Forked workers start at once (no re-import of __main__, which may be a
    # heavy training script); fork is safe on Linux for this NumPy/SciPy work.
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


# --------------------------------------------------------------------------
# Protocol lists
# --------------------------------------------------------------------------
def _verification_trials(
    rng: np.random.Generator,
    utterances: dict[str, dict[str, list[str]]],
    test_ids: list[str],
    trials_per_speaker: int,
) -> list[tuple[int, str, str]]:
    """Balanced target / non-target trials among the test speakers.

    For each test speaker, ``trials_per_speaker // 2`` target pairs (fewer
    if the speaker has fewer cross-video pairs) are drawn without
    replacement from its pairs of utterances of *different* videos; each
    target trial gets a non-target partner with the same enrolment
    utterance and an utterance of another test speaker.  No unordered pair
    occurs twice.
    """
    used: set[frozenset[str]] = set()
    trials: list[tuple[int, str, str]] = []
    for spk in test_ids:
        videos = utterances[spk]
        own = [(u, vid) for vid in sorted(videos) for u in videos[vid]]
        pairs = [
            (own[i][0], own[j][0])
            for i in range(len(own))
            for j in range(i + 1, len(own))
            if own[i][1] != own[j][1]
        ]
        others = [
            u for other in test_ids if other != spk for vid in sorted(utterances[other])
            for u in utterances[other][vid]
        ]
        k = min(trials_per_speaker // 2, len(pairs))
        for p in rng.permutation(len(pairs))[:k]:
            a, b = pairs[int(p)]
            if rng.random() < 0.5:
                a, b = b, a
            if frozenset((a, b)) in used:
                continue
            candidates = [u for u in others if frozenset((a, u)) not in used]
            if not candidates:
                continue
            c = candidates[int(rng.integers(len(candidates)))]
            used.update((frozenset((a, b)), frozenset((a, c))))
            trials.extend([(1, a, b), (0, a, c)])
    # Grouped by enrolment utterance, target before non-target, as in the real list.
    order = sorted(range(len(trials)), key=lambda i: (trials[i][1], i))
    return [trials[i] for i in order]


def _format_trials(trials: list[tuple[int, str, str]]) -> str:
    return "".join(f"{label} {a} {b}\n" for label, a, b in trials)


def _remove_previous(root: Path) -> None:
    """Delete speaker folders and lists a previous (different) run may have left.

    Only ``wav/idNNNNN`` folders and our list files are touched.
    """
    remove_own_entries(root / "wav", lambda p: p.is_dir() and bool(_SPEAKER_DIR_RE.match(p.name)))
    for name in LIST_FILES:
        (root / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------
def write_voxceleb1(
    root: str | os.PathLike,
    seed: int = 0,
    num_speakers: int = 20,
    num_test_speakers: int = 6,
    videos_per_speaker: int = 4,
    utterances_per_video: int = 6,
    min_seconds: float = 2.0, max_seconds: float = 4.0, sample_rate: int = 16000,
    trials_per_speaker: int = 40,
    progress: bool | None = None,
    workers: int | None = None,
) -> Path:
    """Write a miniature VoxCeleb1 (layout and protocol files of the real one).

    See the module docstring for the layout and list conventions.  The
    default corpus has 20 speakers (6 of them verification test speakers)
    x 4 videos x 6 utterances = 480 files of 2-4 s, about 1,440 s of audio,
    and 6 x 40 = 240 verification trials.

    Parameters
    ----------
    root : str or os.PathLike
        Output directory (the corpus root; ``wav/`` is created inside).
    seed : int
        Seed.  Every video and utterance has its own child generator keyed
        by ``(speaker, video[, utterance])``, so the same seed gives
        byte-identical files.  The voices are laid out over all speakers at
        once, so they change with ``num_speakers``/``num_test_speakers``.
    num_speakers : int
        All speakers, test speakers included.
    num_test_speakers : int
        Speakers of the verification test set (``id10270`` upwards), 2 to 40.
    videos_per_speaker : int
        Videos per speaker, at least 3 (one test, one validation, the rest
        train in ``iden_split.txt``).
    utterances_per_video : int
        Utterances per video.
    min_seconds, max_seconds : float
        Range of utterance durations (uniform, whole samples).
    sample_rate : int
        Sampling rate in Hz (the real corpus is 16 kHz).
    trials_per_speaker : int
        Verification trials per test speaker as enrolment side, half target
        and half non-target (fewer targets if the speaker has fewer pairs of
        utterances from different videos).
    progress : bool, optional
        Show a progress bar; by default only when writing more than a few
        files.
    workers : int, optional
        Processes that synthesise the audio (forked, Linux only; 1 = in this
        process).  By default the available cores, at most 4, for corpora of
        64 files or more, else 1.  The files are byte-identical whatever the
        number: every utterance has its own generator.

    Returns
    -------
    pathlib.Path
        ``root``.  If it already holds a complete corpus written with the
        same parameters it is returned untouched.
    """
    dev_ids, test_ids = speaker_ids(num_speakers, num_test_speakers)
    if num_test_speakers < 2:
        raise ValueError(f"num_test_speakers must be >= 2 for non-target trials, got {num_test_speakers}")
    if videos_per_speaker < 3:
        raise ValueError(f"videos_per_speaker must be >= 3 (train, val, test), got {videos_per_speaker}")
    if utterances_per_video < 1:
        raise ValueError(f"utterances_per_video must be >= 1, got {utterances_per_video}")
    durations = duration_params(min_seconds, max_seconds, sample_rate)
    if sample_rate <= 0 or trials_per_speaker < 2:
        raise ValueError("sample_rate must be positive and trials_per_speaker >= 2")
    root = Path(root)
    params = {
        "num_speakers": int(num_speakers),
        "num_test_speakers": int(num_test_speakers),
        "videos_per_speaker": int(videos_per_speaker),
        "utterances_per_video": int(utterances_per_video),
        **durations,
        "trials_per_speaker": int(trials_per_speaker),
    }

    # The design (ids, voices, videos) is cheap; it is needed to know the
    # file names, so it is made before the completeness check.
    speakers = _design_speakers(child_rng(seed, _DESIGN_KEY), dev_ids, test_ids)
    taken: set[str] = set()
    videos = {
        s: [
            _draw_video(child_rng(seed, _VIDEO_KEY, s, v), spk, taken, sample_rate)
            for v in range(videos_per_speaker)
        ]
        for s, spk in enumerate(speakers)
    }
    plan = [
        (s, v, u, f"{spk.speaker_id}/{videos[s][v].video_id}/{u + 1:05d}.wav")
        for s, spk in enumerate(speakers)
        for v in range(videos_per_speaker)
        for u in range(utterances_per_video)
    ]
    files = [f"wav/{rel}" for *_, rel in plan] + list(LIST_FILES)
    stamp = corpus_stamp("voxceleb1", seed, params, files, voice_design=_VOICE_DESIGN)
    if reuse_or_clear(root, stamp, _remove_previous):
        return root

    offset = child_rng(seed, _NUISANCE_KEY).random(3)
    show = show_progress(progress, len(plan))
    jobs = [
        (
            str(root / "wav" / rel), seed, s, v, u, videos[s][v],
            synth.nuisance_sequence(offset, v * utterances_per_video + u),
            float(min_seconds), float(max_seconds), int(sample_rate),
        )
        for s, v, u, rel in plan
    ]
    n_workers = _auto_workers(len(jobs)) if workers is None else int(workers)
    if n_workers > 1 and not _can_fork():
        n_workers = 1
    if n_workers <= 1:
        for job in tqdm(jobs, desc="voxceleb1", unit="utt", disable=not show):
            _write_utterance(job)
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            # map() submits every job, so the workers are forked here, before
            # the progress bar starts its monitor thread.
            done = pool.map(_write_utterance, jobs, chunksize=4)
            for _ in tqdm(done, total=len(jobs), desc="voxceleb1", unit="utt", disable=not show):
                pass

    # Identification split: one test video and one validation video per speaker.
    split_of: dict[tuple[int, int], int] = {}
    for s in range(len(speakers)):
        test_v, val_v = child_rng(seed, _SPLIT_KEY, s).permutation(videos_per_speaker)[:2]
        for v in range(videos_per_speaker):
            split_of[s, v] = 3 if v == test_v else 2 if v == val_v else 1
    iden = sorted((rel, split_of[s, v]) for s, v, _, rel in plan)
    (root / "iden_split.txt").write_text("".join(f"{k} {rel}\n" for rel, k in iden), encoding="utf-8")

    utterances: dict[str, dict[str, list[str]]] = {}
    for s, v, _, rel in plan:
        spk = speakers[s].speaker_id
        utterances.setdefault(spk, {}).setdefault(videos[s][v].video_id, []).append(rel)
    trial_rng = child_rng(seed, _TRIAL_KEY)
    trials = _verification_trials(trial_rng, utterances, test_ids, trials_per_speaker)
    (root / "veri_test.txt").write_text(_format_trials(trials), encoding="utf-8")
    # The cleaned list drops a few trials (real: 37,720 -> 37,611).
    n_drop = min(3, max(1, len(trials) // 20))
    dropped = set(trial_rng.choice(len(trials), size=n_drop, replace=False).tolist())
    cleaned = [t for i, t in enumerate(trials) if i not in dropped]
    (root / "veri_test2.txt").write_text(_format_trials(cleaned), encoding="utf-8")

    rows = [
        (spk.speaker_id, spk.name, spk.gender, spk.nationality, "test" if spk.test else "dev")
        for spk in sorted(speakers, key=lambda sp: sp.speaker_id)
    ]
    (root / "vox1_meta.csv").write_text(
        "".join("\t".join(row) + "\n" for row in [META_HEADER, *rows]), encoding="utf-8"
    )

    defaults = {
        name: p.default
        for name, p in inspect.signature(write_voxceleb1).parameters.items()
        if name in params
    }
    changed = {k: v for k, v in params.items() if v != defaults[k]}
    kwargs = "".join(f", {k}={v!r}" for k, v in changed.items())
    command = (
        f"python -m audioexp.minicorpus voxceleb1 OUT_DIR --seed {seed}"
        if not changed
        else "(not expressible on the command line; use the Python call below)"
    )
    durations = f"{min_seconds:g}-{max_seconds:g}"
    # No absolute path in here, so the whole tree is byte-identical per seed.
    return finish_corpus(
        root,
        "Miniature VoxCeleb1 -- GENERATED synthetic voices, not real recordings.\n"
        "\n"
        f"Written by audioexp.minicorpus.voxceleb1 (kind=voxceleb1, seed={seed}, "
        f"generator version {GENERATOR_VERSION}).\n"
        f"Command (OUT_DIR = this directory): {command}\n"
        f"Python: audioexp.minicorpus.write_minicorpus('voxceleb1', OUT_DIR, seed={seed}{kwargs})\n"
        f"Parameters: {json.dumps(params, sort_keys=True)}\n"
        "\n"
        f"{len(speakers)} speakers ({len(test_ids)} verification test speakers "
        f"{test_ids[0]}-{test_ids[-1]}) x {videos_per_speaker} videos x "
        f"{utterances_per_video} utterances, {durations} s each,\n"
        f"{sample_rate} Hz, mono, 16-bit PCM WAV, in the real layout:\n"
        "  wav/<speaker id>/<video id>/<NNNNN>.wav\n"
        "  iden_split.txt   <1 train|2 val|3 test> <spk>/<video>/<utt>.wav "
        "(one test and one val video per speaker)\n"
        f"  veri_test.txt    <1 same|0 different> <enrol> <test>  ({len(trials)} trials, "
        "test speakers only)\n"
        f"  veri_test2.txt   cleaned list: veri_test.txt minus {n_drop} trials\n"
        "  vox1_meta.csv    VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set (tab-separated)\n"
        "Each speaker has one synthetic voice; each video a mild channel (EQ, noise floor)\n"
        "and a slight change of speaking style.  Utterance k of every speaker gets the same\n"
        "active level and pause fraction, so loudness does not identify the speaker.\n"
        "Speaker names are invented.\n",
        stamp,
    )
