"""Manifests: the list of a corpus's files, built once by a fast walk and cached as CSV.

A real corpus can hold millions of clips (the FM broadcast set of Han 2021 has
3.89 M), so nothing here decodes audio, the walk streams rows straight to disk,
and the in-memory table keeps paths packed in one byte buffer with integer
offsets rather than millions of Python strings. That keeps memory flat and, in
forked DataLoader workers, avoids the copy-on-access growth that lists of
Python objects cause.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioexp.utils.files import atomic_open, atomic_write_json

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")


class ManifestError(ValueError):
    """A malformed manifest: names the file and line."""


class CorpusNotFoundError(FileNotFoundError):
    """A corpus root that is missing, empty or not in the expected layout."""


def scan_audio_folders(root: str | os.PathLike,
                       extensions: Sequence[str] = AUDIO_EXTENSIONS) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(folder, names)`` for every folder below ``root`` (``folder`` relative to it,
    '/'-separated, ``""`` for ``root`` itself): the sorted names of the audio files in it.

    An iterative ``os.scandir`` walk, depth first, each folder's files before its sub-folders,
    both sorted by name, so the order is reproducible; hidden entries (``.cache``) are skipped;
    extensions match case-insensitively. Folder by folder, so that a caller handles a folder's
    files in one go (3.89 M clips: the per-file work is what a walk costs).
    """
    root = os.fspath(root)
    exts = tuple(e.lower() for e in extensions)
    stack = [""]
    while stack:
        rel = stack.pop()
        files, subdirs = [], []
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=True):
                    subdirs.append(name)
                elif name.lower().endswith(exts):
                    files.append(name)
        files.sort()
        yield rel, files
        subdirs.sort(reverse=True)
        stack.extend(f"{rel}/{d}" if rel else d for d in subdirs)


def scan_audio_files(root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> Iterator[str]:
    """Yield the paths (relative to ``root``, '/'-separated) of audio files below ``root``, in
    the order of :func:`scan_audio_folders`."""
    for rel, names in scan_audio_folders(root, extensions):
        prefix = f"{rel}/" if rel else ""
        for name in names:
            yield prefix + name


class PathTable:
    """An immutable sequence of strings stored as one UTF-8 buffer plus offsets.

    Examples
    --------
    >>> t = PathTable.from_strings(["a.wav", "b/c.flac"])
    >>> len(t), t[1]
    (2, 'b/c.flac')
    """

    def __init__(self, buffer: bytes, offsets: np.ndarray) -> None:
        self._buffer = buffer
        self._offsets = offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> "PathTable":
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8 buffer, int64 offsets)``: what :meth:`from_arrays` reads back."""
        return np.frombuffer(self._buffer, dtype=np.uint8), self._offsets

    @classmethod
    def from_arrays(cls, buffer: np.ndarray, offsets: np.ndarray) -> "PathTable":
        return cls(buffer.tobytes(), np.asarray(offsets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._buffer[self._offsets[i] : self._offsets[i + 1]].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]

    @property
    def nbytes(self) -> int:
        return len(self._buffer) + self._offsets.nbytes


@dataclass
class Manifest:
    """Files of a corpus with integer labels and groups.

    Attributes
    ----------
    paths : PathTable
        Relative to ``root`` unless absolute.
    labels : ndarray of int16, shape (n,)
        Index into ``class_names``.
    groups : ndarray of int32, shape (n,)
        Index into ``group_names`` (recording, speaker, ...): split units that must
        not straddle train and evaluation.
    """

    root: Path
    paths: PathTable
    labels: np.ndarray
    groups: np.ndarray
    class_names: list[str]
    group_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def resolve(self, i: int) -> str:
        p = self.paths[i]
        return p if os.path.isabs(p) else os.path.join(self.root, p)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


def write_manifest_csv(rows: Iterable[tuple[str, str, str]], path: str | os.PathLike) -> int:
    """Stream ``(path, label, group)`` rows to a CSV atomically; return the row count."""
    n = 0
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def read_manifest_csv(
    path: str | os.PathLike, root: str | os.PathLike, class_names: Sequence[str]
) -> Manifest:
    """Read a ``path,label[,group]`` CSV (header required) into a :class:`Manifest`.

    Rows without a group get their own group (the file itself). A cached manifest whose
    stamp records another row count is refused (:func:`check_row_count`). Raises
    :class:`ManifestError` naming the file and line of a malformed row or an unknown label.
    """
    cached = read_manifest_binary(path, root, class_names)
    if cached is not None:
        return cached
    class_index = {name: i for i, name in enumerate(class_names)}
    group_index: dict[str, int] = {}
    labels = array("h")
    groups = array("i")

    def rows() -> Iterator[str]:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:2]] != ["path", "label"]:
                raise ManifestError(f"{path}:1: expected a header 'path,label[,group]', got {header}")
            has_group = len(header) > 2 and header[2].strip() == "group"
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 2 or not row[0].strip():
                    raise ManifestError(f"{path}:{lineno}: expected 'path,label[,group]', got {row}")
                label = row[1].strip()
                if label not in class_index:
                    raise ManifestError(
                        f"{path}:{lineno}: unknown label {label!r}; expected one of {list(class_names)}"
                    )
                group = row[2].strip() if has_group and len(row) > 2 and row[2].strip() else row[0]
                labels.append(class_index[label])
                groups.append(group_index.setdefault(group, len(group_index)))
                yield row[0].strip()

    table = PathTable.from_strings(rows())
    check_row_count(path, len(table))
    return Manifest(
        root=Path(root),
        paths=table,
        labels=np.frombuffer(labels, dtype=np.int16).copy(),
        groups=np.frombuffer(groups, dtype=np.int32).copy(),
        class_names=list(class_names),
        group_names=list(group_index),
    )


def _binary_path(csv_path: str | os.PathLike) -> Path:
    return Path(csv_path).with_suffix(".npz")


def _csv_identity(csv_path: str | os.PathLike, class_names: Sequence[str]) -> np.ndarray:
    st = os.stat(csv_path)
    return np.frombuffer(json.dumps([st.st_size, st.st_mtime_ns, list(class_names)]).encode(), dtype=np.uint8)


def write_manifest_binary(csv_path: str | os.PathLike, paths: PathTable, labels: np.ndarray, groups: np.ndarray,
                          group_names: Sequence[str], class_names: Sequence[str]) -> Path:
    """Beside a manifest CSV, the same rows as arrays (``.npz``), read back in a fraction of a
    second by :func:`read_manifest_csv` while the CSV is unchanged (its size and mtime are
    recorded): at 3.89 M clips, parsing the CSV takes ~10 s and loading these ~0.2 s."""
    out = _binary_path(csv_path)
    names = group_names if isinstance(group_names, PathTable) else PathTable.from_strings(group_names)
    path_buffer, path_offsets = paths.arrays()
    group_buffer, group_offsets = names.arrays()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, path_buffer=path_buffer, path_offsets=path_offsets, labels=np.asarray(labels, dtype=np.int16),
             groups=np.asarray(groups, dtype=np.int32), group_buffer=group_buffer, group_offsets=group_offsets,
             identity=_csv_identity(csv_path, class_names))
    os.replace(tmp, out)
    return out


def read_manifest_binary(csv_path: str | os.PathLike, root: str | os.PathLike,
                         class_names: Sequence[str]) -> "Manifest | None":
    """The manifest from the arrays beside ``csv_path`` when they were written from the CSV as
    it is now (and for the same classes); None otherwise (then the CSV is parsed)."""
    binary = _binary_path(csv_path)
    if not binary.exists():
        return None
    try:
        with np.load(binary, allow_pickle=False) as z:
            if not np.array_equal(z["identity"], _csv_identity(csv_path, class_names)):
                return None
            paths = PathTable.from_arrays(z["path_buffer"], z["path_offsets"])
            manifest = Manifest(root=Path(root), paths=paths, labels=z["labels"], groups=z["groups"],
                                class_names=list(class_names),
                                group_names=PathTable.from_arrays(z["group_buffer"], z["group_offsets"]))
    except (OSError, ValueError, KeyError) as err:
        log.warning("ignoring the unreadable %s (the CSV is read instead): %s", binary, err)
        return None
    check_row_count(csv_path, len(manifest))
    return manifest


def cache_key(*parts: object) -> str:
    """A short stable hash of the things a cached file depends on."""
    text = json.dumps([str(p) for p in parts])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def folder_stamp(root: str | os.PathLike, folders: Iterable[str]) -> dict[str, int]:
    """Modification times (ns) of ``root``'s sub-folders ``folders`` ('.' is the root; -1: missing).

    A folder's time changes when an entry is added to it, removed or renamed, so the times of
    every folder that holds a corpus's files (and of their parents) tell whether a walk of
    the corpus would list the same files, without walking it.
    """
    stamp = {}
    for sub in folders:
        try:
            stamp[sub] = os.stat(os.path.join(root, sub)).st_mtime_ns
        except OSError:
            stamp[sub] = -1
    return stamp


def folders_of(paths: Iterable[str]) -> list[str]:
    """Every folder (and parent folder) of '/'-separated relative ``paths``, with '.' first (a
    path ending in '/' is a folder).

    >>> folders_of(["speech/r1/a.wav", "music/b.wav"])
    ['.', 'music', 'speech', 'speech/r1']
    >>> folders_of(["speech/r1/"])
    ['.', 'speech', 'speech/r1']
    """
    folders = {"."}
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]))
    return sorted(folders, key=lambda f: (f != ".", f))


def cache_is_fresh(cache_file: str | os.PathLike, stamp: dict) -> bool:
    """Whether ``cache_file`` exists and its ``.json`` stamp holds the same values as ``stamp``
    (every key but ``root``, which only says where the cache came from)."""
    cache_file = Path(cache_file)
    stamp_path = cache_file.with_suffix(".json")
    if not (cache_file.exists() and stamp_path.exists()):
        return False
    try:
        saved = json.loads(stamp_path.read_text())
    except ValueError:
        return False
    return all(saved.get(key) == value for key, value in stamp.items() if key != "root")


def write_cache_stamp(cache_file: str | os.PathLike, stamp: dict, num_files: int) -> None:
    """Record what ``cache_file`` was built from, beside it (read by :func:`cache_is_fresh`)."""
    atomic_write_json(Path(cache_file).with_suffix(".json"), {**stamp, "num_files": num_files})


#: Bumped when the columns of a corpus table change meaning, so old tables are rebuilt.
TABLE_FORMAT = 1


def sources_stamp(sources: Sequence[str | os.PathLike]) -> dict[str, list[int]]:
    """``[mtime_ns, size]`` of each file or folder a table is built from (``[-1, -1]`` when missing)."""
    stamp = {}
    for source in sources:
        try:
            st = os.stat(source)
            stamp[os.fspath(source)] = [st.st_mtime_ns, st.st_size]
        except FileNotFoundError:
            stamp[os.fspath(source)] = [-1, -1]
    return stamp


def corpus_table(
    path: str | os.PathLike,
    columns: Sequence[str],
    build: Callable[[], Iterable[Sequence[object]]],
    sources: Sequence[str | os.PathLike],
    rebuild: bool = False,
) -> Path:
    """Write (or reuse) a corpus's table: a CSV of ``columns``, one row per file, built by ``build``.

    Every corpus's ``prepare_data`` makes one, from its protocol files and folders
    (``sources``), and its ``setup`` reads it back with :func:`read_corpus_table`: what was
    parsed and checked once is not parsed again by every rank, and a protocol error is found
    at prepare time. The table is rebuilt when a source's modification time or size
    changed, when the columns changed, or with ``rebuild=True``; it is written atomically
    with a ``.json`` stamp beside it.
    """
    path = Path(path)
    stamp = {"format": TABLE_FORMAT, "columns": list(columns), "mtimes": sources_stamp(sources)}
    if not rebuild and cache_is_fresh(path, stamp):
        return path
    rows = iter(build())
    first = next(rows, None)  # a missing root raises here, before the cache folder is made
    n = 0
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in ([] if first is None else itertools.chain([first], rows)):
            if len(row) != len(columns):
                raise ValueError(f"a row of {path.name} has {len(row)} fields for the columns {list(columns)}: {row}")
            writer.writerow(["" if v is None else v for v in row])
            n += 1
    write_cache_stamp(path, stamp, n)
    return path


def read_corpus_table(path: str | os.PathLike, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a table written by :func:`corpus_table` (empty fields are ``""``).

    Raises :class:`ManifestError` naming the file and line when the header is not
    ``columns`` or a row has another number of fields (a truncated or edited table).
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != list(columns):
            raise ManifestError(f"{path}:1: expected the header {','.join(columns)}, got {header}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(columns):
                raise ManifestError(f"{path}:{lineno}: expected {len(columns)} fields ({','.join(columns)}), got {row}")
            rows.append(dict(zip(columns, row)))
    check_row_count(path, len(rows))
    return rows


def check_row_count(path: str | os.PathLike, rows: int) -> None:
    """Raise :class:`ManifestError` when a cached table holds another number of rows than its
    ``.json`` stamp says were written (a truncated or edited cache; no stamp: no check)."""
    stamp_path = Path(path).with_suffix(".json")
    if not stamp_path.exists():
        return
    try:
        expected = json.loads(stamp_path.read_text()).get("num_files")
    except (ValueError, AttributeError):
        expected = None
    if expected is not None and expected != rows:
        raise ManifestError(f"{path}: it holds {rows} rows but {expected} were written (a truncated or edited "
                            f"table: delete it and {stamp_path.name} to rebuild)")


__all__ = [
    "AUDIO_EXTENSIONS",
    "TABLE_FORMAT",
    "corpus_table",
    "read_corpus_table",
    "sources_stamp",
    "CorpusNotFoundError",
    "cache_is_fresh",
    "check_row_count",
    "write_cache_stamp",
    "Manifest",
    "ManifestError",
    "PathTable",
    "cache_key",
    "read_manifest_csv",
    "scan_audio_files",
    "scan_audio_folders",
    "write_manifest_binary",
    "folder_stamp",
    "folders_of",
    "write_manifest_csv",
]

