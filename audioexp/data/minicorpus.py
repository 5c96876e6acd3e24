"""Write miniature corpora in the on-disk layouts of the real ones.

The real corpora are large and mostly not redistributable, so the recipes,
tests and tutorials run on small synthetic stand-ins written here.  Each
stand-in reproduces the directory layout and file format of the real corpus
so the *same* reader code is exercised, and is deterministic given a seed.

Each kind is a writer function registered in :data:`WRITERS`::

    @register("fm_broadcast")
    def write_fm_broadcast(root, seed=0, ...) -> Path: ...

and is reachable from :func:`write_minicorpus` and the command line::

    python -m audioexp.data.minicorpus fm_broadcast data/fm_mini --seed 0
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from audioexp.data import synth

__all__ = [
    "FM_CLASSES",
    "STAMP_NAME",
    "WRITERS",
    "main",
    "read_stamp",
    "register",
    "remove_own_entries",
    "write_fm_broadcast",
    "write_minicorpus",
]

Writer = Callable[..., Path]

#: Registered writers, by corpus kind.  Later corpora register themselves
#: with :func:`register`.
WRITERS: dict[str, Writer] = {}

#: Name of the completion stamp written last into a corpus root.
STAMP_NAME = ".minicorpus.json"
#: Bump when the synthesis changes so stale corpora are rewritten.
GENERATOR_VERSION = 1
#: Show a progress bar when writing more files than this.
_PROGRESS_MIN_FILES = 8


def register(kind: str) -> Callable[[Writer], Writer]:
    """Decorator adding a writer to :data:`WRITERS` under ``kind``."""

    def decorator(fn: Writer) -> Writer:
        if kind in WRITERS and WRITERS[kind] is not fn:
            raise ValueError(f"a minicorpus writer for {kind!r} is already registered")
        WRITERS[kind] = fn
        return fn

    return decorator


def write_minicorpus(kind: str, root: str | os.PathLike, seed: int = 0, **kwargs: Any) -> Path:
    """Write a miniature corpus of ``kind`` under ``root``.

    Parameters
    ----------
    kind : str
        A key of :data:`WRITERS` (e.g. ``"fm_broadcast"``).
    root : str or os.PathLike
        Output directory (created if needed).
    seed : int
        Seed; the same seed gives byte-identical files.
    **kwargs
        Passed on to the writer (e.g. ``clips_per_class``).

    Returns
    -------
    pathlib.Path
        The corpus root.

    Raises
    ------
    ValueError
        If ``kind`` is not registered; the message lists the known kinds.
    """
    try:
        writer = WRITERS[kind]
    except KeyError:
        known = ", ".join(sorted(WRITERS)) or "(none)"
        raise ValueError(f"unknown minicorpus kind {kind!r}; known kinds: {known}") from None
    return writer(root, seed=seed, **kwargs)


# --------------------------------------------------------------------------
# Shared helpers for writers
# --------------------------------------------------------------------------
def read_stamp(root: str | os.PathLike) -> dict[str, Any] | None:
    """Return the completion stamp of a corpus root, or ``None`` if absent/unreadable."""
    path = Path(root) / STAMP_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _is_complete(root: Path, expected_stamp: dict[str, Any]) -> bool:
    """True if ``root`` holds a finished corpus with exactly these parameters."""
    stamp = read_stamp(root)
    if stamp != expected_stamp:
        return False
    return all((root / rel).is_file() for rel in stamp.get("files", []))


def _write_stamp(root: Path, stamp: dict[str, Any]) -> None:
    # Written last and atomically: its presence means "complete".
    tmp = root / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / STAMP_NAME)


def _child_rng(seed: int, *key: int) -> np.random.Generator:
    """Generator for one item, independent of the order items are made in.

    ``spawn_key`` places the item in the same tree that
    :meth:`numpy.random.SeedSequence.spawn` would build, without having to
    spawn its siblings first.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


# --------------------------------------------------------------------------
# FM broadcast speech/music
# --------------------------------------------------------------------------
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


def remove_own_entries(directory: Path, is_ours: Callable[[Path], bool]) -> None:
    """Delete the entries of ``directory`` that ``is_ours`` accepts, files or folders.

    Writers call it to clear what a previous (different) run left; entries named unlike
    theirs are never touched, so pointing a writer at a directory with other content is safe.
    """
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if not is_ours(child):
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _remove_previous_fm(root: Path) -> None:
    """Delete recording folders (``speech_recNN``/``music_recNN``) a previous run may have left."""
    for label in FM_CLASSES:
        remove_own_entries(root / label, lambda p: p.is_dir() and bool(_FM_RECORDING_RE.match(p.name)))


@register("fm_broadcast")
def write_fm_broadcast(
    root: str | os.PathLike,
    seed: int = 0,
    clips_per_class: int = 60,
    recordings_per_class: int = 6,
    clip_seconds: float = 5.0,
    sample_rate: int = 16000,
    progress: bool | None = None,
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
    stamp = {
        "kind": "fm_broadcast",
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "files": [rel for *_, rel in plan],
    }
    if _is_complete(root, stamp):
        return root

    root.mkdir(parents=True, exist_ok=True)
    # Invalidate first, so an interrupted rewrite is never taken as complete.
    (root / STAMP_NAME).unlink(missing_ok=True)
    _remove_previous_fm(root)

    # Per-recording parameters: one voice / one piece per recording.
    voices = {
        rec: synth.random_voice(_child_rng(seed, 0, _RECORDING_KEY, rec))
        for rec in range(recordings_per_class)
    }
    styles = {
        rec: synth.random_music_style(_child_rng(seed, 1, _RECORDING_KEY, rec))
        for rec in range(recordings_per_class)
    }
    offset = _child_rng(seed, _NUISANCE_KEY).random(3)
    show = len(plan) > _PROGRESS_MIN_FILES if progress is None else progress
    for ci, clip, rec, rel in tqdm(plan, desc="fm_broadcast", unit="clip", disable=not show):
        rng = _child_rng(seed, ci, _CLIP_KEY, clip)
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
        _write_wav(root / rel, audio, sample_rate)

    # No absolute path in here, so the whole tree is byte-identical per seed.
    command = (
        f"python -m audioexp.data.minicorpus fm_broadcast OUT_DIR --seed {seed} "
        f"--clips-per-class {clips_per_class}"
    )
    extra = {k: v for k, v in params.items() if k != "clips_per_class"}
    (root / "README.txt").write_text(
        "Miniature FM broadcast speech/music corpus -- GENERATED, not real recordings.\n"
        "\n"
        f"Written by audioexp.data.minicorpus (kind=fm_broadcast, seed={seed}, "
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
        encoding="utf-8",
    )
    _write_stamp(root, stamp)
    return root


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def _count_audio(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.suffix.lower() in {".wav", ".flac"} and p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``audioexp-minicorpus``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` if ``None``.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="audioexp-minicorpus",
        description="Write a miniature synthetic corpus in the on-disk layout of a real one.",
    )
    parser.add_argument("kind", help=f"corpus kind; one of: {', '.join(sorted(WRITERS))}")
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--clips-per-class",
        type=int,
        default=None,
        help="clips per class (default: the writer's default); ignored, with a warning, "
        "by kinds that have no such parameter (voxceleb1: all its sizes are the writer's defaults)",
    )
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.clips_per_class is not None:
        writer = WRITERS.get(args.kind)
        if writer is None or "clips_per_class" in inspect.signature(writer).parameters:
            kwargs["clips_per_class"] = args.clips_per_class
        else:
            print(f"warning: --clips-per-class is ignored for kind {args.kind!r}", file=sys.stderr)
    try:
        root = write_minicorpus(args.kind, args.out_dir, seed=args.seed, **kwargs)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.kind} minicorpus to {root} ({_count_audio(root)} audio files, seed {args.seed})")
    return 0


# Corpus writers kept in their own modules register themselves on import.
from audioexp.data import minicorpus_voxceleb  # noqa: E402,F401  (kind "voxceleb1")
from audioexp.data import minicorpus_asvspoof  # noqa: E402,F401  (kind "asvspoof2017")
from audioexp.data import minicorpus_iemocap  # noqa: E402,F401  (kind "iemocap")
from audioexp.data import minicorpus_emodb  # noqa: E402,F401  (kind "emodb")

if __name__ == "__main__":
    # Under ``python -m`` this file runs as ``__main__``, a second copy of the
    # module; the writers above registered in the imported copy's WRITERS.
    from audioexp.data.minicorpus import main as _main

    sys.exit(_main())
