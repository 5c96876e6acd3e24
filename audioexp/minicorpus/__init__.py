"""Miniature corpora in the on-disk layouts of the real ones (tests, the demo, tutorials).

The real corpora are large and mostly not redistributable, so the recipes, tests and
tutorials run on small synthetic stand-ins written here. Each reproduces the directory
layout and file format of its corpus, so the *same* loader code is exercised, and is
byte-deterministic given a seed. This wing sits above :mod:`audioexp.data`: it may read the
corpus modules' constants, and no loader imports it. A ``*_mini`` data config hands its
DataModule :func:`prepare` as a ``_partial_`` callable, which writes the corpus on first use.

Writers are listed in :data:`WRITERS`; from the command line::

    python -m audioexp.minicorpus fm_broadcast data/fm_mini --seed 0
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from audioexp.minicorpus import asvspoof2017, emodb, fm_broadcast, iemocap, voxceleb1
from audioexp.minicorpus.common import STAMP_NAME, read_stamp

__all__ = ["STAMP_NAME", "WRITERS", "prepare", "read_stamp", "write_minicorpus"]

log = logging.getLogger(__name__)

Writer = Callable[..., Path]

#: The writer of each corpus kind (a new corpus: its module here and one line).
WRITERS: dict[str, Writer] = {
    "fm_broadcast": fm_broadcast.write_fm_broadcast,
    "voxceleb1": voxceleb1.write_voxceleb1,
    "emodb": emodb.write_emodb,
    "asvspoof2017": asvspoof2017.write_asvspoof2017,
    "iemocap": iemocap.write_iemocap,
}

#: Kinds whose synthesis has a design version: a corpus written with another is rewritten.
DESIGN_VERSIONS: dict[str, int] = {"iemocap": iemocap.DESIGN_VERSION}


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


def prepare(root: str | os.PathLike, kind: str, **options: Any) -> Path:
    """Make ``root`` hold the miniature corpus ``kind``: write it when ``root`` is missing.

    The callable a ``*_mini`` data config injects into its DataModule (``prepare:
    {_target_: audioexp.minicorpus.prepare, _partial_: true, kind: ...}``), called in
    ``prepare_data``. A root written by an older design of the writer (its stamp's
    ``design_version``) is rewritten with the stamp's own seed and parameters; any other
    existing root is left alone (a real corpus too).
    """
    root = Path(root)
    if not root.exists():
        log.info("writing the miniature %s corpus into %s", kind, root)
        return write_minicorpus(kind, root, **options)
    stamp = read_stamp(root)
    design = DESIGN_VERSIONS.get(kind)
    if design is not None and stamp and stamp.get("kind") == kind and stamp.get("design_version") != design:
        log.warning("the miniature %s corpus at %s is of an older design; rewriting it (design %d)", kind, root, design)
        return write_minicorpus(kind, root, seed=stamp["seed"], **stamp["params"])
    return root
