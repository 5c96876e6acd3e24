"""What every miniature-corpus writer shares: the completion stamp, seeded child generators,
WAV writing, and clearing what an earlier run of the same writer left."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

#: Name of the completion stamp written last into a corpus root.
STAMP_NAME = ".minicorpus.json"
#: Bump when the synthesis changes so stale corpora are rewritten.
GENERATOR_VERSION = 1
#: Show a progress bar when writing more files than this.
PROGRESS_MIN_FILES = 8


def read_stamp(root: str | os.PathLike) -> dict[str, Any] | None:
    """Return the completion stamp of a corpus root, or ``None`` if absent/unreadable."""
    path = Path(root) / STAMP_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_complete(root: Path, expected_stamp: dict[str, Any]) -> bool:
    """True if ``root`` holds a finished corpus with exactly these parameters."""
    stamp = read_stamp(root)
    if stamp != expected_stamp:
        return False
    return all((root / rel).is_file() for rel in stamp.get("files", []))


def write_stamp(root: Path, stamp: dict[str, Any]) -> None:
    # Written last and atomically: its presence means "complete".
    tmp = root / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / STAMP_NAME)


def corpus_stamp(kind: str, seed: int, params: dict[str, Any], files: list[str] | None = None,
                 **versions: int) -> dict[str, Any]:
    """The completion stamp of a corpus: kind, seed, generator version (or ``versions``
    overriding it, plus any design versions), parameters and, when given, its files."""
    stamp = {"kind": kind, "seed": int(seed), "generator_version": GENERATOR_VERSION, **versions, "params": params}
    if files is not None:
        stamp["files"] = files
    return stamp


def duration_params(min_seconds: float, max_seconds: float, sample_rate: int) -> dict[str, Any]:
    """The stamp parameters of a writer's utterance durations and rate, once ``0 < min_seconds <= max_seconds``
    is checked."""
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    return {"min_seconds": float(min_seconds), "max_seconds": float(max_seconds), "sample_rate": int(sample_rate)}


def reuse_or_clear(root: Path, stamp: dict[str, Any],
                   remove_previous: Callable[[Path], None] | None = None) -> bool:
    """True when ``root`` already holds the complete corpus of ``stamp`` (nothing to write).

    Otherwise ``root`` is made ready for writing: created, its stamp removed first (so an
    interrupted rewrite is never taken as complete), then ``remove_previous(root)`` clears
    what an earlier run of the writer left; False is returned.
    """
    if is_complete(root, stamp):
        return True
    root.mkdir(parents=True, exist_ok=True)
    (root / STAMP_NAME).unlink(missing_ok=True)
    if remove_previous is not None:
        remove_previous(root)
    return False


def show_progress(progress: bool | None, num_files: int) -> bool:
    """Whether to show a progress bar: ``progress``, by default only for more than a few files."""
    return num_files > PROGRESS_MIN_FILES if progress is None else progress


def finish_corpus(root: Path, readme: str, stamp: dict[str, Any]) -> Path:
    """Write ``README.txt``, then the completion stamp (last); returns ``root``."""
    (root / "README.txt").write_text(readme, encoding="utf-8")
    write_stamp(root, stamp)
    return root


def child_rng(seed: int, *key: int) -> np.random.Generator:
    """Generator for one item, independent of the order items are made in.

    ``spawn_key`` places the item in the same tree that
    :meth:`numpy.random.SeedSequence.spawn` would build, without having to
    spawn its siblings first.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


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


def count_audio(root: Path) -> int:
    """Number of WAV and FLAC files below ``root``."""
    return sum(1 for p in root.rglob("*") if p.suffix.lower() in {".wav", ".flac"} and p.is_file())
