"""Miniature FM broadcast speech/music corpus (the layout of Han 2021's clips).

``ROOT/speech/speech_recNN/*.wav`` and ``ROOT/music/music_recNN/*.wav``: 5-s, 16 kHz clips;
speech is glottal pulses through moving formants with pauses, music notes, chords and
drums, both matched in loudness, pauses and noise floor (so only the spectrum tells them
apart).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tqdm.auto import tqdm

from audioexp.minicorpus import synth
from audioexp.minicorpus.common import (
    GENERATOR_VERSION, child_rng, corpus_stamp, finish_corpus, remove_own_entries, reuse_or_clear, show_progress,
    write_wav,
)

FM_CLASSES: tuple[str, str] = ("speech", "music")
_FM_RECORDING_RE = re.compile(r"^(speech|music)_rec\d+$")
_RECORDING_KEY = 1  # spawn-key branch for per-recording parameters
_CLIP_KEY = 0  # spawn-key branch for per-clip content
_NUISANCE_KEY = 1000  # spawn key of the corpus-wide nuisance sequence offset


def _fm_files(clips_per_class: int, recordings_per_class: int) -> list[tuple[int, int, int, str]]:
    """Plan ``(class_index, clip_index, recording_index, relative path)``.

    Clips are dealt to recordings in contiguous runs, like consecutive
    5-second cuts of one broadcast, and numbered from 0 within a recording.
    """
    plan = []
    for ci, label in enumerate(FM_CLASSES):
        counters = [0] * recordings_per_class
        for clip in range(clips_per_class):
            rec = clip * recordings_per_class // clips_per_class
            rec_id = f"{label}_rec{rec:02d}"
            rel = f"{label}/{rec_id}/{rec_id}_{counters[rec]:04d}.wav"
            counters[rec] += 1
            plan.append((ci, clip, rec, rel))
    return plan


def _remove_previous_fm(root: Path) -> None:
    """Delete recording folders (``speech_recNN``/``music_recNN``) a previous run may have left."""
    for label in FM_CLASSES:
        remove_own_entries(root / label, lambda p: p.is_dir() and bool(_FM_RECORDING_RE.match(p.name)))


def write_fm_broadcast(
    root: str | os.PathLike, seed: int = 0, clips_per_class: int = 60, recordings_per_class: int = 6,
    clip_seconds: float = 5.0, sample_rate: int = 16000, progress: bool | None = None,
) -> Path:
    """Write a miniature FM-broadcast speech/music corpus.

    Layout (16-bit PCM mono WAV, ``clip_seconds`` long each)::

        root/README.txt
        root/.minicorpus.json                          completion stamp
        root/speech/speech_recNN/speech_recNN_XXXX.wav
        root/music/music_recNN/music_recNN_XXXX.wav

    All clips of a speech recording share one voice (:func:`synth.random_voice`)
    and all clips of a music recording one piece (key, mode, tempo,
    instruments; :func:`synth.random_music_style`), so a split grouped by
    recording is meaningfully harder than a random one.

    Level, pause fraction and noise floor must not give the label away:
    clip ``i`` of *each* class gets element ``i`` of one low-discrepancy
    sequence over the shared ranges (:func:`synth.nuisance_sequence`), so
    the two classes have practically the same distribution of these
    properties even in a corpus of a handful of clips.

    Parameters
    ----------
    root : str or os.PathLike
        Output directory.
    seed : int
        Seed.  Every recording and clip gets its own child generator keyed by
        ``(class, recording)`` / ``(class, clip)``, so the output does not
        depend on generation order, and the same seed gives byte-identical
        files.
    clips_per_class : int
        Number of clips per class.
    recordings_per_class : int
        Number of recordings per class (capped at ``clips_per_class``).
    clip_seconds : float
        Clip duration in seconds.
    sample_rate : int
        Sampling rate in Hz.
    progress : bool, optional
        Show a progress bar; by default only when writing more than a few
        files.

    Returns
    -------
    pathlib.Path
        ``root``.  If ``root`` already holds a complete corpus written with
        the same parameters it is returned untouched.
    """
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    if recordings_per_class < 1:
        raise ValueError(f"recordings_per_class must be >= 1, got {recordings_per_class}")
    if clip_seconds <= 0 or sample_rate <= 0:
        raise ValueError("clip_seconds and sample_rate must be positive")
    root = Path(root)
    recordings_per_class = min(recordings_per_class, clips_per_class)
    plan = _fm_files(clips_per_class, recordings_per_class)
    params = {
        "clips_per_class": int(clips_per_class),
        "recordings_per_class": int(recordings_per_class),
        "clip_seconds": float(clip_seconds),
        "sample_rate": int(sample_rate),
    }
    stamp = corpus_stamp("fm_broadcast", seed, params, [rel for *_, rel in plan])
    if reuse_or_clear(root, stamp, _remove_previous_fm):
        return root

    # Per-recording parameters: one voice / one piece per recording.
    voices = {
        rec: synth.random_voice(child_rng(seed, 0, _RECORDING_KEY, rec))
        for rec in range(recordings_per_class)
    }
    styles = {
        rec: synth.random_music_style(child_rng(seed, 1, _RECORDING_KEY, rec))
        for rec in range(recordings_per_class)
    }
    offset = child_rng(seed, _NUISANCE_KEY).random(3)
    show = show_progress(progress, len(plan))
    for ci, clip, rec, rel in tqdm(plan, desc="fm_broadcast", unit="clip", disable=not show):
        rng = child_rng(seed, ci, _CLIP_KEY, clip)
        label = FM_CLASSES[ci]
        audio = synth.synth_broadcast_clip(
            label,
            clip_seconds,
            sample_rate,
            rng,
            voice=voices[rec] if label == "speech" else None,
            style=styles[rec] if label == "music" else None,
            nuisance=synth.nuisance_sequence(offset, clip),
        )
        write_wav(root / rel, audio, sample_rate)

    # No absolute path in here, so the whole tree is byte-identical per seed.
    command = (
        f"python -m audioexp.minicorpus fm_broadcast OUT_DIR --seed {seed} "
        f"--clips-per-class {clips_per_class}"
    )
    extra = {k: v for k, v in params.items() if k != "clips_per_class"}
    return finish_corpus(
        root,
        "Miniature FM broadcast speech/music corpus -- GENERATED, not real recordings.\n"
        "\n"
        f"Written by audioexp.minicorpus (kind=fm_broadcast, seed={seed}, "
        f"generator version {GENERATOR_VERSION}).\n"
        f"Command (OUT_DIR = this directory): {command}\n"
        f"Other parameters: {json.dumps(extra, sort_keys=True)}\n"
        "\n"
        f"{clips_per_class} clips per class in {recordings_per_class} recordings per class,\n"
        f"{clip_seconds:g} s each, {sample_rate} Hz, mono, 16-bit PCM WAV:\n"
        "  speech/speech_recNN/speech_recNN_XXXX.wav  (one synthetic voice per recording)\n"
        "  music/music_recNN/music_recNN_XXXX.wav     (one key/tempo/instrument set per recording)\n"
        "Loudness (active RMS), pause fraction and noise floor follow the same\n"
        "distribution in both classes (clip i of each class gets the same values),\n"
        "so they do not reveal the label.\n",
        stamp,
    )


