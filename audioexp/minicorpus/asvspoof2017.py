"""Miniature ASVspoof 2017 (version 2.0 layout): genuine and replayed synthetic speech.

Nothing of the real corpus is used; only its layout and protocol format are reproduced
(see :mod:`audioexp.data.asvspoof2017`)::

    ROOT/ASVspoof2017_V2_{train,dev,eval}/{T,D,E}_1NNNNNN.wav     16 kHz mono 16-bit
    ROOT/protocol_V2/ASVspoof2017_V2_train.trn.txt, _dev.trl.txt, _eval.trl.txt
    ROOT/README.txt, ROOT/.minicorpus.json

Genuine utterances: a synthetic speaker (:mod:`audioexp.minicorpus.synth`) saying a "phrase"
(S01-S10: a fixed seed per speaker and phrase, so every take of a phrase is similar),
picked up by the ASV system's own microphone (a gentle random EQ) with a noise floor.
Replayed utterances: another take, played through a loudspeaker (band-limited with a
resonance, soft saturation), a room (exponentially decaying noise impulse response of
RT60 0.15-0.6 s mixed with the direct path), recorded by an attacker's microphone (its own
band limits) and a noise floor, then picked up as genuine speech is. Each split has its
own environments (E), playback (P) and recording (R) devices drawn once from the seed; eval
reuses some and adds unseen ones, as the real eval set does. Levels and noise floors are
drawn from the same ranges for both classes, so loudness does not reveal the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from audioexp.minicorpus import synth
from audioexp.minicorpus.common import child_rng, corpus_stamp, finish_corpus, reuse_or_clear, write_wav

GENERATOR_VERSION = 1
SPLIT_PREFIX = {"train": "T", "dev": "D", "eval": "E"}
PROTOCOL_NAMES = {"train": "ASVspoof2017_V2_train.trn.txt", "dev": "ASVspoof2017_V2_dev.trl.txt",
                  "eval": "ASVspoof2017_V2_eval.trl.txt"}


@dataclass(frozen=True)
class _Device:
    sos: np.ndarray
    drive: float = 0.0  # loudspeaker soft saturation


def _band_sos(rng: np.random.Generator, low: tuple[float, float], high: tuple[float, float], order: int,
              sample_rate: int, peak: bool) -> np.ndarray:
    lo = rng.uniform(*low)
    hi = rng.uniform(*high)
    sos = [signal.butter(order, lo, "highpass", fs=sample_rate, output="sos"),
           signal.butter(order, hi, "lowpass", fs=sample_rate, output="sos")]
    if peak:  # a cabinet or capsule resonance
        f0, gain_db, q = rng.uniform(800, 4000), rng.uniform(3, 9), rng.uniform(1.5, 4)
        b, a = _peaking(f0, gain_db, q, sample_rate)
        sos.append(signal.tf2sos(b, a))
    return np.concatenate(sos)


def _peaking(freq: float, gain_db: float, q: float, sample_rate: int):
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def _room_ir(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.6)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = signal.sosfilt(signal.butter(2, rng.uniform(2500, 6000), "lowpass", fs=sample_rate, output="sos"), tail)
    ir = 0.3 * rng.uniform(0.5, 1.5) * tail / np.sqrt(np.sum(tail**2))
    ir[0] += 1.0
    return ir


def _devices(rng: np.random.Generator, sample_rate: int, n_env: int, n_play: int, n_rec: int):
    envs = [_room_ir(rng, sample_rate) for _ in range(n_env)]
    plays = [_Device(_band_sos(rng, (150, 400), (3500, 7000), 4, sample_rate, True), rng.uniform(1.0, 4.0))
             for _ in range(n_play)]
    recs = [_Device(_band_sos(rng, (60, 250), (4000, 7500), 2, sample_rate, rng.random() < 0.5))
            for _ in range(n_rec)]
    return envs, plays, recs


def _asv_mic(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The ASV system's microphone: mild, different per utterance (shared by both classes)."""
    return _band_sos(rng, (40, 80), (7000, 7800), 1, sample_rate, False)


def _utterance(seed: int, speaker: int, phrase: int, take: int, seconds: float, voice, sample_rate: int):
    rng = child_rng(seed, 11, speaker, phrase, take)
    return synth.synth_speech(seconds, sample_rate, rng, voice=voice, silence_fraction=0.1)


def write_asvspoof2017(
    root,
    seed: int = 0,
    num_speakers: int = 4,
    utterances_per_class: dict | None = None,
    seconds: tuple[float, float] = (1.0, 1.6),
    sample_rate: int = 16000,
) -> Path:
    """Write the miniature ASVspoof 2017 v2 corpus (see the module docstring).

    Parameters
    ----------
    root : path
    seed : int
    num_speakers : int
    utterances_per_class : dict, optional
        Genuine (= spoof) utterances per split; default ``{"train": 16, "dev": 10, "eval": 12}``.
    seconds : (float, float)
        Utterance duration range.

    Returns
    -------
    pathlib.Path
        ``root``; an existing complete corpus with the same parameters is left untouched.
    """
    counts = dict(utterances_per_class or {"train": 16, "dev": 10, "eval": 12})
    root = Path(root)
    params = {"num_speakers": num_speakers, "utterances_per_class": counts, "seconds": list(seconds),
              "sample_rate": sample_rate}
    stamp = corpus_stamp("asvspoof2017", seed, params, generator_version=GENERATOR_VERSION)
    if reuse_or_clear(root, stamp):
        return root
    rng = child_rng(seed, 1)
    voices = [synth.random_voice(child_rng(seed, 2, s)) for s in range(num_speakers)]
    envs, plays, recs = _devices(rng, sample_rate, 4, 5, 5)
    # conditions (environment, playback, recorder) per split; eval adds unseen devices
    conditions = {"train": [(0, 0, 0), (1, 1, 1), (0, 2, 1)], "dev": [(1, 0, 2), (2, 1, 0), (0, 2, 2)],
                  "eval": [(0, 0, 1), (3, 3, 3), (2, 4, 4), (1, 1, 0)]}
    lines_out = {}
    for si, split in enumerate(("train", "dev", "eval")):
        folder = root / f"ASVspoof2017_V2_{split}"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.wav"):
            old.unlink()
        lines = []
        n = counts[split]
        for i in range(2 * n):
            spoof = i >= n
            j = i - n if spoof else i
            speaker, phrase = j % num_speakers, (j * 7 + si) % 10
            urng = child_rng(seed, 3, si, i)
            dur = urng.uniform(*seconds)
            take = 2 * (si * 1000 + j) + int(spoof)
            x = _utterance(seed, speaker, phrase, take, dur, voices[speaker], sample_rate)
            if spoof:
                e, p, r = conditions[split][j % len(conditions[split])]
                y = signal.sosfilt(plays[p].sos, x / (np.max(np.abs(x)) + 1e-9))
                y = np.tanh(plays[p].drive * y) / plays[p].drive
                y = signal.fftconvolve(y, envs[e])[: len(x)]
                y = signal.sosfilt(recs[r].sos, y)
                y = y + synth.background_noise(len(y), urng, -55.0) * (np.std(y) / 10 ** (-55 / 20) * 10 ** (-30 / 20))
                fields = f"E{e + 1:02d} P{p + 1:02d} R{r + 1:02d}"
            else:
                y, fields = x, "- - -"
            y = signal.sosfilt(_asv_mic(urng, sample_rate), y)
            y = synth.finish_clip(y, sample_rate, urng)
            name = f"{SPLIT_PREFIX[split]}_{1000001 + i}.wav"
            write_wav(folder / name, y, sample_rate)
            lines.append(f"{name} {'spoof' if spoof else 'genuine'} M{speaker + 1:04d} S{phrase + 1:02d} {fields}")
        lines_out[split] = lines
    (root / "protocol_V2").mkdir(exist_ok=True)
    for split, lines in lines_out.items():
        (root / "protocol_V2" / PROTOCOL_NAMES[split]).write_text("\n".join(lines) + "\n")
    return finish_corpus(
        root,
        "Miniature ASVspoof 2017 v2 -- GENERATED, not real recordings.\n"
        f"Written by audioexp.minicorpus (kind=asvspoof2017, seed={seed}, generator version "
        f"{GENERATOR_VERSION}).\nParameters: {json.dumps(params, sort_keys=True)}\n"
        "Replayed = loudspeaker + room + attacker microphone + noise; see audioexp/minicorpus/asvspoof2017.py.\n",
        stamp,
    )
