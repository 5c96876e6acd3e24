"""Miniature IEMOCAP in the real on-disk layout (synthetic actors and emotions).

What it mimics
--------------
IEMOCAP (Busso et al., 2008): five sessions, each a female and a male actor in dyadic
dialogs, improvised (``Ses01F_impro01``) and scripted (``Ses01F_script01_1``), cut into
utterances labelled by annotators (see :mod:`audioexp.data.iemocap`). Nothing of the real
corpus is used: the voices are synthesised by :mod:`audioexp.minicorpus.synth`; only the layout
and the EmoEvaluation format are reproduced, so the reader written for the real corpus
runs unchanged::

    ROOT/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav
    ROOT/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
    ROOT/README.txt, ROOT/.minicorpus.json

Each session has two improvised dialogs (one per actor wearing the markers, as the real
dialog names say) and one scripted dialog; both actors speak in every dialog. Besides the
four classes, a few ``exc``, ``fru`` and ``xxx`` utterances exercise the label filtering.

Audio
-----
Each actor has one voice (:class:`synth.VoiceParams`): mean f0 and formant scale from
gender-specific ranges laid out on a stratified grid, the other parameters drawn per
actor. An emotion changes the speaking style relative to the actor's own
(:data:`EMOTION_STYLE`), as acted emotions do: happy raises the pitch (x1.3) and more than
doubles its range, angry raises it less (x1.15), speaks much faster (x1.4) with a bright,
pressed, irregular phonation and a strong stress contrast, sad lowers it (x0.85), flattens
it (range x0.3), slows down (x0.6) and sounds dark and breathy with a flat energy contour;
each utterance varies a little around these. Within a gender the actors' mean pitches
span about 15 %, their rates about 9 %, and the glottal and prosodic parameters that
emotions move (phonation, stress contrast, accents, perturbation, spectral tilt) vary even
less between actors, so an emotion moves a voice further than the actors differ and a
classifier that learns the emotion relative to the voice generalises to unseen actors
(what :mod:`audioexp.data.iemocap`'s leave-one-speaker-out folds measure). Speaker
identity remains in pitch, vocal-tract length, vowel space and consonants (the
dual-space loss's speaker head). Loudness does not give the emotion away: utterance
``k`` of every actor gets element ``k`` of one low-discrepancy sequence of active levels
and pause fractions (:func:`synth.nuisance_sequence`), and the recipes normalise every
filter per utterance.

Design version 2 (:data:`DESIGN_VERSION`, in the stamp): version 1 spread the actors'
pitch and voice quality over more than the emotions moved them, and the held-out actors
at the ends of that spread were barely learnable (a leave-one-speaker-out logistic
regression on log-filterbank means and spreads: weighted F1 0.21 for the worst actor);
:func:`audioexp.minicorpus.prepare` (injected into the IEMOCAP DataModule) rewrites a generated corpus of an older
design with its own seed and parameters.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audioexp.minicorpus import synth
from audioexp.minicorpus.common import (
    GENERATOR_VERSION, child_rng, corpus_stamp, duration_params, finish_corpus, remove_own_entries, reuse_or_clear,
    show_progress, write_wav,
)

__all__ = ["DESIGN_VERSION", "EMOTION_STYLE", "write_iemocap"]

#: Bumped whenever the voices or emotions change, so that older corpora are rewritten.
DESIGN_VERSION = 2

_DESIGN_KEY, _UTT_KEY, _NUISANCE_KEY, _PLAN_KEY = range(4)
_SESSION_DIR_RE = re.compile(r"^Session[1-5]$")
_F0_RANGE = {"F": (195.0, 225.0), "M": (107.0, 125.0)}
_FORMANT_RANGE = {"F": (1.10, 1.18), "M": (0.95, 1.02)}

#: How each emotion changes an actor's style: multiplicative ("*") or additive ("+").
EMOTION_STYLE: dict[str, dict[str, tuple[str, float]]] = {
    "neu": {},
    "hap": {"mean_f0": ("*", 1.3), "f0_range": ("*", 2.5), "speaking_rate": ("*", 1.05),
            "accent_strength": ("+", 0.35), "brightness": ("+", 0.3), "intensity_variation": ("+", 0.2)},
    "ang": {"mean_f0": ("*", 1.15), "f0_range": ("*", 1.2), "speaking_rate": ("*", 1.45),
            "brightness": ("+", 0.8), "open_quotient": ("*", 0.6), "intensity_variation": ("+", 0.35),
            "jitter": ("*", 1.6), "shimmer": ("*", 1.5)},
    "sad": {"mean_f0": ("*", 0.85), "f0_range": ("*", 0.3), "speaking_rate": ("*", 0.6),
            "brightness": ("+", -0.6), "breathiness": ("*", 4.0), "accent_strength": ("*", 0.4),
            "intensity_variation": ("*", 0.4), "open_quotient": ("*", 1.25)},
}
EMOTION_STYLE["exc"] = EMOTION_STYLE["hap"]  # excited sounds like happy (merged by merge_excited)
EMOTION_STYLE["fru"] = {"speaking_rate": ("*", 1.1), "brightness": ("+", 0.25), "f0_range": ("*", 0.8)}
EMOTION_STYLE["xxx"] = {}
_BOUNDS = {"brightness": (-0.9, 0.9), "accent_strength": (0.0, 1.0), "intensity_variation": (0.0, 0.9),
           "open_quotient": (0.35, 0.85)}
_SPREAD = 0.06  # per-utterance log-normal spread of every emotional change
# Ranges of the actors' other voice parameters, drawn in this order; the voice-quality and
# prosody parameters that emotions move vary less between actors than the emotions move them.
_ACTOR_RANGES = {
    "f0_range": (4.5, 6.0), "speaking_rate": (4.3, 4.7), "brightness": (-0.15, 0.15), "breathiness": (0.03, 0.05),
    "open_quotient": (0.58, 0.66), "intensity_variation": (0.45, 0.55), "accent_strength": (0.45, 0.55),
    "jitter": (0.008, 0.012), "shimmer": (0.04, 0.06), "speed_quotient": (2.4, 2.9), "bandwidth_scale": (0.95, 1.1),
}


def _emotional_voice(voice: synth.VoiceParams, emotion: str, rng: np.random.Generator) -> synth.VoiceParams:
    changes = {}
    for name, (op, amount) in EMOTION_STYLE[emotion].items():
        value = getattr(voice, name)
        wobble = float(np.exp(rng.normal(0.0, _SPREAD)))
        value = value * amount ** wobble if op == "*" else value + amount * wobble
        lo, hi = _BOUNDS.get(name, (-np.inf, np.inf))
        changes[name] = float(np.clip(value, lo, hi))
    # every utterance, neutral included, varies a little around the actor's style
    changes["speaking_rate"] = changes.get("speaking_rate", voice.speaking_rate) * float(np.exp(rng.normal(0, 0.04)))
    changes["mean_f0"] = changes.get("mean_f0", voice.mean_f0) * float(np.exp(rng.normal(0, 0.03)))
    return replace(voice, **changes)


def _design_actors(rng: np.random.Generator) -> dict[str, synth.VoiceParams]:
    """Voices of the ten actors ``Ses01F`` ... ``Ses05M``."""
    voices = {}
    strata = {g: (rng.permutation(5) + rng.uniform(0.2, 0.8, 5)) / 5 for g in "FM"}
    strata_formant = {g: (rng.permutation(5) + rng.uniform(0.2, 0.8, 5)) / 5 for g in "FM"}
    for s in range(5):
        for g in "FM":
            base = synth.random_voice(rng)
            lo, hi = _F0_RANGE[g]
            flo, fhi = _FORMANT_RANGE[g]
            voices[f"Ses0{s + 1}{g}"] = replace(
                base,
                mean_f0=float(lo * (hi / lo) ** strata[g][s]),
                formant_scale=float(flo + (fhi - flo) * strata_formant[g][s]),
                **{name: float(rng.uniform(*bounds)) for name, bounds in _ACTOR_RANGES.items()},
            )
    return voices


def _plan(seed: int, utterances_per_emotion: int, scripted_per_actor: int, extra_labels: tuple[str, ...]):
    """``(session, dialog, utterance id, actor, emotion, actor's utterance number)`` rows."""
    rows = []
    for s in range(1, 6):
        rng = child_rng(seed, _PLAN_KEY, s)
        dialogs = [f"Ses0{s}F_impro01", f"Ses0{s}M_impro02"]
        for g in "FM":
            labels = [e for e in ("neu", "hap", "ang", "sad") for _ in range(utterances_per_emotion)] + list(extra_labels)
            labels = [labels[i] for i in rng.permutation(len(labels))]
            scripted = [("neu", "hap", "ang", "sad")[int(i)] for i in rng.integers(0, 4, scripted_per_actor)]
            jobs = [(dialogs[i % 2], e) for i, e in enumerate(labels)] + [(f"Ses0{s}F_script01_1", e) for e in scripted]
            counters: dict[str, int] = {}
            for k, (dialog, emotion) in enumerate(jobs):
                n = counters.get(dialog, 0)
                counters[dialog] = n + 1
                rows.append((s, dialog, f"{dialog}_{g}{n:03d}", f"Ses0{s}{g}", emotion, k))
    return rows


_VAD = {"neu": (2.5, 2.5, 2.5), "hap": (4.0, 3.5, 3.0), "exc": (4.0, 4.0, 3.5), "ang": (1.5, 4.0, 4.0),
        "sad": (1.5, 1.5, 2.0), "fru": (2.0, 3.5, 3.5), "xxx": (2.5, 3.0, 3.0)}


def _remove_previous(root: Path) -> None:
    """Delete ``SessionN`` folders a previous (different) run may have left."""
    remove_own_entries(root, lambda p: p.is_dir() and bool(_SESSION_DIR_RE.match(p.name)))


def write_iemocap(
    root: str | os.PathLike,
    seed: int = 0,
    utterances_per_emotion: int = 15,
    scripted_per_actor: int = 2,
    extra_labels: tuple[str, ...] = ("exc", "exc", "fru", "xxx"),
    min_seconds: float = 1.5,
    max_seconds: float = 3.0,
    sample_rate: int = 16000,
    progress: bool | None = None,
) -> Path:
    """Write a miniature IEMOCAP (layout and EmoEvaluation files of the real one).

    The default corpus: 10 actors x (4 emotions x 15 improvised utterances + 4 other
    labels + 2 scripted) = 660 files of 1.5-3 s; 600 improvised four-class utterances.

    Parameters
    ----------
    root : str or os.PathLike
    seed : int
        Every utterance has its own generator keyed by (actor, utterance number): the same
        seed gives byte-identical files.
    utterances_per_emotion : int
        Improvised utterances per actor and class.
    scripted_per_actor : int
        Scripted utterances per actor (random classes).
    extra_labels : tuple of str
        Further improvised utterances per actor with these labels (``exc``, ``fru``, ...).
    min_seconds, max_seconds : float
    sample_rate : int
    progress : bool, optional

    Returns
    -------
    pathlib.Path
        ``root``; returned untouched if it holds a complete corpus with the same parameters.
    """
    if utterances_per_emotion < 1:
        raise ValueError(f"utterances_per_emotion must be >= 1, got {utterances_per_emotion}")
    unknown = [e for e in extra_labels if e not in EMOTION_STYLE]
    if unknown:
        raise ValueError(f"extra_labels {unknown} are not among {sorted(EMOTION_STYLE)}")
    durations = duration_params(min_seconds, max_seconds, sample_rate)
    root = Path(root)
    params = {
        "utterances_per_emotion": int(utterances_per_emotion),
        "scripted_per_actor": int(scripted_per_actor),
        "extra_labels": list(extra_labels),
        **durations,
    }
    plan = _plan(seed, utterances_per_emotion, scripted_per_actor, tuple(extra_labels))
    wav = {utt: f"Session{s}/sentences/wav/{dialog}/{utt}.wav" for s, dialog, utt, *_ in plan}
    dialogs = sorted({(s, dialog) for s, dialog, *_ in plan})
    evaluations = [f"Session{s}/dialog/EmoEvaluation/{dialog}.txt" for s, dialog in dialogs]
    stamp = corpus_stamp("iemocap", seed, params, sorted(wav.values()) + evaluations, design_version=DESIGN_VERSION)
    if reuse_or_clear(root, stamp, _remove_previous):
        return root

    voices = _design_actors(child_rng(seed, _DESIGN_KEY))
    offset = child_rng(seed, _NUISANCE_KEY).random(3)
    durations: dict[str, float] = {}
    show = show_progress(progress, len(plan))
    for s, dialog, utt, actor, emotion, k in tqdm(plan, desc="iemocap", unit="utt", disable=not show):
        rng = child_rng(seed, _UTT_KEY, s, "FM".index(actor[-1]), k)
        nuisance = synth.nuisance_sequence(offset, k)
        n = int(round(rng.uniform(min_seconds, max_seconds) * sample_rate))
        clean = synth.synth_speech(
            n / sample_rate, sample_rate, rng, voice=_emotional_voice(voices[actor], emotion, rng),
            silence_fraction=0.5 * nuisance.silence_fraction,
        )
        audio = synth.match_level(clean, nuisance.level_dbfs, sample_rate)
        audio = audio + synth.background_noise(n, rng, nuisance.noise_floor_dbfs)
        write_wav(root / wav[utt], audio, sample_rate)
        durations[utt] = n / sample_rate

    # EmoEvaluation: utterances in dialog order with running times, as in the release
    by_dialog: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for s, dialog, utt, _, emotion, _ in plan:
        by_dialog.setdefault((s, dialog), []).append((utt, emotion))
    for (s, dialog), items in by_dialog.items():
        rng = child_rng(seed, _PLAN_KEY, 100 + s, len(dialog))
        order = rng.permutation(len(items))
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        t = 1.0
        for i in order:
            utt, emotion = items[int(i)]
            end = t + durations[utt]
            v, a, d = _VAD[emotion]
            lines.append(f"[{t:.4f} - {end:.4f}]\t{utt}\t{emotion}\t[{v:.4f}, {a:.4f}, {d:.4f}]")
            lines.append(f"C-E1:\t{emotion.capitalize()};\t()")
            lines.append(f"A-E1:\tval {v:.0f}; act {a:.0f}; dom  {d:.0f};\t()")
            lines.append("")
            t = end + float(rng.uniform(0.3, 1.5))
        path = root / f"Session{s}/dialog/EmoEvaluation/{dialog}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    improvised = sum(1 for _, d, _, _, e, _ in plan if "_impro" in d and e in ("neu", "hap", "ang", "sad"))
    return finish_corpus(
        root,
        "Miniature IEMOCAP -- GENERATED synthetic actors and emotions, not real recordings.\n\n"
        f"Written by audioexp.minicorpus.iemocap (kind=iemocap, seed={seed}, generator version {GENERATOR_VERSION}, design {DESIGN_VERSION}).\n"
        f"Python: audioexp.minicorpus.write_minicorpus('iemocap', OUT_DIR, seed={seed}, ...)\n"
        f"Parameters: {json.dumps(params, sort_keys=True)}\n\n"
        f"{len(plan)} utterances of 10 actors in 5 sessions ({improvised} improvised of the four classes), "
        f"{min_seconds:g}-{max_seconds:g} s, {sample_rate} Hz, mono, 16-bit PCM WAV, in the real layout:\n"
        "  Session{1..5}/sentences/wav/<dialog>/<utterance>.wav\n"
        "  Session{1..5}/dialog/EmoEvaluation/<dialog>.txt\n"
        "Emotions change each actor's pitch level and range, speaking rate, spectral tilt and phonation;\n"
        "loudness and pauses follow one sequence for every actor and so carry no label.\n",
        stamp,
    )
