"""Miniature EmoDB in the real on-disk layout (synthetic voices acting seven emotions).

What it mimics: the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech
2005; see :mod:`audioexp.data.emodb`): ten actors (speakers 03, 08-16, five female) saying
short German sentences (text codes a01 ... b10) in seven emotions, 16 kHz mono 16-bit WAV,
all in one folder::

    ROOT/wav/<speaker><text><emotion letter><version>.wav    e.g. ROOT/wav/03a01Fa.wav
    ROOT/README.txt          how the corpus was generated
    ROOT/.minicorpus.json    completion stamp (see :mod:`audioexp.minicorpus`)

Nothing of the real corpus is used. Every speaker gets one synthetic voice
(:class:`audioexp.minicorpus.synth.VoiceParams`; pitch and vocal-tract length by gender, other
parameters spread over the speakers) and acts each emotion by changing its prosody the
way the acoustic literature describes the emotions of EmoDB (e.g. Burkhardt & Sendlmeier
2000; Scherer 2003): anger and happiness high and wide pitch, fast, bright and loud; fear
high, fast, jittery; sadness and boredom low, narrow, slow, soft and dark; disgust slow
and breathy. Each utterance varies the acted prosody a little (a few per cent in pitch and
tempo, +-1.5 dB in level), so emotions overlap somewhat, and pauses do not carry the
emotion: utterance ``k`` of every emotion of a speaker gets element ``k`` of one
low-discrepancy sequence of pause fractions and noise floors
(:func:`audioexp.minicorpus.synth.nuisance_sequence`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audioexp.minicorpus import synth
from audioexp.data.emodb import EMOTIONS, FEMALE_SPEAKERS, SPEAKERS, TEXTS
from audioexp.minicorpus.common import (
    GENERATOR_VERSION, child_rng, corpus_stamp, duration_params, finish_corpus, remove_own_entries, reuse_or_clear,
    show_progress, write_wav,
)

__all__ = ["EMOTION_PROSODY", "write_emodb"]

#: How each emotion changes a speaker's neutral voice: multipliers of mean f0, f0 range and
#: speaking rate; additions to brightness (spectral tilt), breathiness and intensity
#: variation; multiplier of jitter; active level offset in dB.
EMOTION_PROSODY: dict[str, dict[str, float]] = {
    "W": dict(f0=1.30, f0_range=1.7, rate=1.15, brightness=0.45, breathiness=0.0, intensity=0.25, jitter=1.0, level_db=5.0),
    "L": dict(f0=0.92, f0_range=0.45, rate=0.80, brightness=-0.25, breathiness=0.02, intensity=-0.2, jitter=1.0, level_db=-3.0),
    "E": dict(f0=0.97, f0_range=1.1, rate=0.72, brightness=0.0, breathiness=0.15, intensity=0.0, jitter=1.5, level_db=0.0),
    "A": dict(f0=1.40, f0_range=1.2, rate=1.30, brightness=0.15, breathiness=0.08, intensity=0.0, jitter=2.5, level_db=1.0),
    "F": dict(f0=1.22, f0_range=1.9, rate=1.08, brightness=0.25, breathiness=0.0, intensity=0.15, jitter=1.0, level_db=3.0),
    "T": dict(f0=0.85, f0_range=0.6, rate=0.70, brightness=-0.45, breathiness=0.12, intensity=-0.25, jitter=1.3, level_db=-5.0),
    "N": dict(f0=1.00, f0_range=1.0, rate=1.00, brightness=0.0, breathiness=0.0, intensity=0.0, jitter=1.0, level_db=0.0),
}
# Per-utterance spread of the acted prosody (standard deviations; log scale for ratios).
_UTTERANCE_SD = {"f0": 0.04, "f0_range": 0.10, "rate": 0.05, "level_db": 1.5}
_F0_RANGE = {"m": (95.0, 140.0), "f": (180.0, 240.0)}
_FORMANT_RANGE = {"m": (0.92, 1.04), "f": (1.08, 1.22)}
_BASE_LEVEL_DBFS = -26.0
_DESIGN_KEY, _UTT_KEY, _NUISANCE_KEY = range(3)


def _speaker_voices(seed: int, speakers: list[str]) -> dict[str, synth.VoiceParams]:
    """A neutral voice per speaker: gender-appropriate pitch and formants, stratified."""
    rng = child_rng(seed, _DESIGN_KEY)
    voices = {}
    by_gender = {g: [s for s in speakers if (s in FEMALE_SPEAKERS) == (g == "f")] for g in ("m", "f")}
    for gender, group in by_gender.items():
        n = len(group)
        u_f0 = (rng.permutation(n) + rng.uniform(0.2, 0.8, n)) / max(n, 1)
        u_fs = (rng.permutation(n) + rng.uniform(0.2, 0.8, n)) / max(n, 1)
        for i, spk in enumerate(group):
            base = synth.random_voice(rng)
            lo, hi = _F0_RANGE[gender]
            flo, fhi = _FORMANT_RANGE[gender]
            voices[spk] = replace(
                base,
                mean_f0=float(lo * (hi / lo) ** u_f0[i]),
                formant_scale=float(flo + (fhi - flo) * u_fs[i]),
                f0_range=float(rng.uniform(4.0, 6.0)),
                speaking_rate=float(rng.uniform(4.0, 5.0)),
                brightness=float(rng.uniform(-0.15, 0.15)),
            )
    return voices


def acted_voice(voice: synth.VoiceParams, emotion: str, rng: np.random.Generator) -> tuple[synth.VoiceParams, float]:
    """The speaker's voice acting ``emotion`` in one utterance, and its level offset (dB)."""
    p = EMOTION_PROSODY[emotion]
    sd = _UTTERANCE_SD
    acted = replace(
        voice,
        mean_f0=float(voice.mean_f0 * p["f0"] * np.exp(rng.normal(0.0, sd["f0"]))),
        f0_range=float(voice.f0_range * p["f0_range"] * np.exp(rng.normal(0.0, sd["f0_range"]))),
        speaking_rate=float(voice.speaking_rate * p["rate"] * np.exp(rng.normal(0.0, sd["rate"]))),
        brightness=float(np.clip(voice.brightness + p["brightness"], -0.9, 0.9)),
        breathiness=float(voice.breathiness + p["breathiness"]),
        intensity_variation=float(np.clip(voice.intensity_variation + p["intensity"], 0.05, 0.9)),
        jitter=float(voice.jitter * p["jitter"]),
    )
    return acted, float(p["level_db"] + rng.normal(0.0, sd["level_db"]))


def _remove_previous(root: Path) -> None:
    """Delete EmoDB-named wavs a previous (different) run may have left; nothing else."""
    remove_own_entries(root / "wav", _is_emodb_name)


def _is_emodb_name(path: Path) -> bool:
    from audioexp.data.emodb import EmoDBNameError, parse_emodb_name

    try:
        parse_emodb_name(path.name)
    except EmoDBNameError:
        return False
    return True


def write_emodb(
    root: str | os.PathLike, seed: int = 0, num_speakers: int = 10, texts_per_emotion: int = 3,
    min_seconds: float = 1.2, max_seconds: float = 2.0, sample_rate: int = 16000, progress: bool | None = None,
) -> Path:
    """Write a miniature EmoDB: ``num_speakers`` x 7 emotions x ``texts_per_emotion`` files.

    The default corpus has 10 speakers x 7 x 3 = 210 files of 1.2-2 s (about 340 s of audio).

    Parameters
    ----------
    root : str or os.PathLike
        Corpus root (``wav/`` is created inside).
    seed : int
        Seed; every utterance has its own child generator, so the same seed gives
        byte-identical files.
    num_speakers : int
        The first ``num_speakers`` EmoDB speaker ids (03, 08, 09, ...), 2 to 10.
    texts_per_emotion : int
        Sentences per speaker and emotion (text codes a01, a02, ...), 1 to 10; version 'a'.
    min_seconds, max_seconds : float
        Range of utterance durations.
    sample_rate : int
    progress : bool, optional
        Progress bar; by default only for more than a few files.

    Returns
    -------
    pathlib.Path
        ``root``; left untouched if it already holds a complete corpus with these parameters.
    """
    if not 2 <= num_speakers <= len(SPEAKERS):
        raise ValueError(f"num_speakers must be in [2, {len(SPEAKERS)}], got {num_speakers}")
    if not 1 <= texts_per_emotion <= len(TEXTS):
        raise ValueError(f"texts_per_emotion must be in [1, {len(TEXTS)}], got {texts_per_emotion}")
    durations = duration_params(min_seconds, max_seconds, sample_rate)
    root = Path(root)
    speakers = list(SPEAKERS[:num_speakers])
    emotions = list(EMOTIONS)
    plan = [
        (s, e, t, f"{spk}{TEXTS[t]}{letter}a.wav")
        for s, spk in enumerate(speakers)
        for e, letter in enumerate(emotions)
        for t in range(texts_per_emotion)
    ]
    params = {
        "num_speakers": int(num_speakers),
        "texts_per_emotion": int(texts_per_emotion),
        **durations,
    }
    stamp = corpus_stamp("emodb", seed, params, [f"wav/{name}" for *_, name in plan])
    if reuse_or_clear(root, stamp, _remove_previous):
        return root

    voices = _speaker_voices(seed, speakers)
    offset = child_rng(seed, _NUISANCE_KEY).random(3)
    for s, e, t, name in tqdm(plan, desc="emodb", unit="utt", disable=not show_progress(progress, len(plan))):
        rng = child_rng(seed, _UTT_KEY, s, e, t)
        voice, level_offset = acted_voice(voices[speakers[s]], emotions[e], rng)
        # the same pause fraction and noise floor for utterance t of every emotion
        nuisance = synth.nuisance_sequence(offset, s * len(TEXTS) + t)
        seconds = rng.uniform(min_seconds, max_seconds)
        clean = synth.synth_speech(seconds, sample_rate, rng, voice=voice, silence_fraction=nuisance.silence_fraction * 0.5)
        audio = synth.finish_clip(clean, sample_rate, rng, level_dbfs=_BASE_LEVEL_DBFS + level_offset, noise_floor_dbfs=nuisance.noise_floor_dbfs)
        write_wav(root / "wav" / name, audio, sample_rate)

    return finish_corpus(
        root,
        "Miniature EmoDB -- GENERATED synthetic voices, not real recordings.\n\n"
        f"Written by audioexp.minicorpus.emodb (kind=emodb, seed={seed}, generator version {GENERATOR_VERSION}).\n"
        f"Python: audioexp.minicorpus.write_minicorpus('emodb', OUT_DIR, seed={seed}, **{json.dumps(params, sort_keys=True)})\n\n"
        f"{num_speakers} speakers ({', '.join(speakers)}) x 7 emotions x {texts_per_emotion} texts, "
        f"{min_seconds:g}-{max_seconds:g} s, {sample_rate} Hz mono 16-bit WAV, in the real layout:\n"
        "  wav/<speaker><text><emotion letter>a.wav   (W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral)\n"
        "Each speaker has one synthetic voice and acts the emotions through pitch level and range,\n"
        "tempo, spectral tilt, breathiness, jitter and level; pauses and noise floor do not depend\n"
        "on the emotion.\n",
        stamp,
    )
