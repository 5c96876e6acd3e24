"""FM broadcast speech/music clips (Han 2021, "Speech-Music Discrimination Using Deep Learning").

What: 5-second clips cut from a Korean FM music station (89.8 MHz): 2,401,040 speech and
1,489,168 music clips, 3,890,208 in all; labelled by the folder a clip is in.
Licence: the corpus is not public; point ``data.root`` at your own copy.
Protocol (paper): a random 80/20 train/validation split, results reported on the
validation part. We add an optional held-out test part and a grouped split (by recording),
since adjacent 5-s clips of one broadcast leak across a random split.

On-disk layout read here::

    ROOT/speech/**/<clip>.wav|flac    any depth; the first folder below the class
    ROOT/music/**/<clip>.wav|flac     folder (if any) is the clip's recording (group)

or a CSV manifest ``path,label[,group]`` (paths relative to ROOT or absolute).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from audioexp.data.datamodule import CorpusDataModule
from audioexp.data.datasets import FixedLengthClipDataset, collate_skipping_bad
from audioexp.data.manifest import (
    AUDIO_EXTENSIONS,
    CorpusNotFoundError,
    Manifest,
    PathTable,
    ManifestError,
    cache_key,
    folder_stamp,
    folders_of,
    read_manifest_csv,
    scan_audio_folders,
    write_cache_stamp,
    write_manifest_binary,
)
from audioexp.utils.files import atomic_open
from audioexp.data.splits import grouped_split, random_split

log = logging.getLogger(__name__)

CLASS_NAMES = ("speech", "music")

EXPECTED_LAYOUT = """\
expected the FM broadcast layout:
  {root}/
    speech/**/*.wav|*.flac   (any depth; a folder below speech/ is taken as the recording)
    music/**/*.wav|*.flac
or data.manifest=FILE.csv with the header 'path,label[,group]'.
To try the recipe without the corpus, write a miniature one:
  python -m audioexp.minicorpus fm_broadcast {root}"""


def fm_broadcast_folders(root: str | os.PathLike, class_names=CLASS_NAMES):
    """Yield ``(label, folder, paths, groups)`` for every folder under ``root/<class>/`` that
    holds clips, one folder at a time (:func:`~audioexp.data.manifest.scan_audio_folders`):
    the folder and its clips' paths relative to ``root``, and each clip's group:
    ``<class>/<first folder below it>``, or the file itself for clips directly in the class folder.
    """
    for label in class_names:
        class_dir = os.path.join(root, label)
        if not os.path.isdir(class_dir):
            continue
        for rel, names in scan_audio_folders(class_dir):
            if not names:
                continue
            folder = f"{label}/{rel}" if rel else label
            paths = [f"{folder}/{name}" for name in names]
            yield label, folder, paths, [f"{label}/{rel.partition('/')[0]}"] * len(paths) if rel else paths


def fm_broadcast_rows(root: str | os.PathLike, class_names=CLASS_NAMES):
    """Yield ``(relative path, label, group)`` for every clip under ``root/<class>/``
    (:func:`fm_broadcast_folders`, row by row)."""
    for label, _, paths, groups in fm_broadcast_folders(root, class_names):
        yield from zip(paths, [label] * len(paths), groups)


def prepare_fm_broadcast(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    class_names=CLASS_NAMES,
    rebuild: bool = False,
) -> Path:
    """Build (or reuse) the cached manifest CSV of an FM broadcast root; return its path.

    Idempotent: the manifest is rebuilt when a folder holding clips (at any depth), or its
    parent, changed (a clip added, removed or renamed anywhere), or with ``rebuild=True``
    (a truncated cache is found when it is read: :meth:`FMBroadcastDataModule._read_manifest`).
    Never decodes audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(
            f"FM broadcast corpus root {root} does not exist; " + EXPECTED_LAYOUT.format(root=root)
        )
    cache_dir = Path(cache_dir)
    key = cache_key(root.resolve(), AUDIOEXP_MANIFEST_FORMAT, AUDIO_EXTENSIONS, list(class_names))
    manifest_path = cache_dir / f"fm_broadcast-{key}.csv"
    if not rebuild:
        stale = _manifest_staleness(root, manifest_path)
        if stale is None:
            return manifest_path
        if stale:
            log.warning("rebuilding the manifest %s: %s", manifest_path, stale)
    log.info("building the manifest of %s into %s", root, manifest_path)
    paths: list[str] = []
    labels = array("h")
    group_index: dict[str, int] = {}
    groups = array("i")
    clip_folders = []
    class_index = {label: i for i, label in enumerate(class_names)}
    with atomic_open(manifest_path, newline="") as handle, \
            tqdm(desc="scanning clips", unit=" files", mininterval=1.0) as bar:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        # folder by folder: one write per folder; what csv would quote goes through csv
        for label, folder, rels, clip_groups in fm_broadcast_folders(root, class_names):
            if any(_CSV_SPECIAL.search(p) for p in rels) or _CSV_SPECIAL.search(clip_groups[0]):
                writer.writerows(zip(rels, [label] * len(rels), clip_groups))
            else:
                handle.write("".join(f"{p},{label},{g}\r\n" for p, g in zip(rels, clip_groups)))
            paths.extend(rels)
            labels.extend([class_index[label]] * len(rels))
            groups.extend(group_index.setdefault(g, len(group_index)) for g in clip_groups)
            clip_folders.append(folder)
            bar.update(len(rels))
    n = len(paths)
    if n == 0:
        manifest_path.unlink(missing_ok=True)
        raise CorpusNotFoundError(
            f"FM broadcast corpus root {root} holds no audio files under "
            f"{', '.join(c + '/' for c in class_names)}; " + EXPECTED_LAYOUT.format(root=root)
        )
    write_manifest_binary(manifest_path, PathTable.from_strings(paths), np.frombuffer(labels, dtype=np.int16),
                          np.frombuffer(groups, dtype=np.int32), list(group_index), class_names)
    folders = folders_of(f"{folder}/" for folder in clip_folders)
    folders += [c for c in class_names if c not in folders]
    write_cache_stamp(manifest_path, {"root": str(root.resolve()), "folders": folder_stamp(root, folders)}, n)
    log.info("manifest: %d clips", n)
    return manifest_path


#: Characters that make csv quote a field (then the row is written by csv itself).
_CSV_SPECIAL = re.compile(r'[,"\r\n]')


#: Bumped when the cached manifest's meaning changes (2: stamped by every folder's mtime).
AUDIOEXP_MANIFEST_FORMAT = 2


def _manifest_staleness(root: Path, manifest_path: Path) -> str | None:
    """None when the cached manifest can be used; otherwise why not ("" when there is none)."""
    stamp_path = manifest_path.with_suffix(".json")
    if not (manifest_path.exists() and stamp_path.exists()):
        return ""
    try:
        saved = json.loads(stamp_path.read_text())
        folders = dict(saved["folders"])
    except (ValueError, KeyError, TypeError):
        return f"its stamp {stamp_path.name} is unreadable"
    changed = [f for f, t in folder_stamp(root, folders).items() if t != folders[f]]
    return "" if changed else None  # the corpus changed: a rebuild is expected, not a fault


class FMBroadcastDataModule(CorpusDataModule):
    """Speech/music clips from an FM broadcast root (or a manifest), 80/20 by default.

    Parameters
    ----------
    root : path
        Corpus root (see the module docstring for the layout).
    manifest : path, optional
        CSV ``path,label[,group]`` used instead of walking ``root``.
    cache_dir : path, optional
        Where the walked manifest is cached (default ``<root>/.audioexp``).
    sample_rate : int
        Clips at other rates are resampled, stereo is down-mixed (said once in the log).
    clip_seconds : float
        Clips are cropped (training: at random; evaluation: from the start) or zero-padded.
    min_clip_seconds : float
        Shorter files are bad files.
    val_fraction, test_fraction : float
        Fractions of all clips. The paper: 0.2 and 0 (it reports on validation).
    split_by : {"random", "group"}
        ``group`` keeps every recording in one part.
    split_seed : int
    max_seconds : float, optional
        Longer files are bad files (``None``: no limit).
    resample : {"any", "down", "never"}
        Files at another rate than ``sample_rate``: resampled (said once), resampled from
        higher rates only, or refused (:class:`audioexp.data.validate.AudioChecks`).
    silence_db : float, optional
        Files whose RMS is below this (dBFS) are bad (near-silent); digital silence always is.
    validate : {"header", "full"}
        At prepare, read every file's header (the default), or decode every file once (also
        finds NaN/Inf and silence, which otherwise surface when the file is read).
    skip_bad_files : bool
        Leave the bad files that prepare finds out of every split (counted in the summary and
        in ``data/*_skipped_files``; files that fail when read are dropped from their batch
        and counted in ``*/skipped_files``) instead of stopping with the list.
    shuffle_labels : bool
        Control experiment: permute the training labels (validation and test keep theirs).
    prepare : callable, optional
        Called with ``root`` in ``prepare_data`` before anything is read: a ``*_mini`` data
        config injects :func:`audioexp.minicorpus.prepare` here, which writes a miniature
        corpus on first use. This module does not know what it does.
    """

    def __init__(
        self,
        root: str,
        manifest: str | None = None,
        cache_dir: str | None = None,
        class_names: list[str] | tuple[str, ...] = CLASS_NAMES,
        num_classes: int | None = None,
        sample_rate: int = 16000,
        clip_seconds: float = 5.0, min_clip_seconds: float = 1.0, max_seconds: float | None = None,
        resample: str = "any", silence_db: float | None = -60.0, validate: str = "header",
        val_fraction: float = 0.2, test_fraction: float = 0.0, split_by: str = "random", split_seed: int = 0,
        batch_size: int = 32, num_workers: int = 2,
        skip_bad_files: bool = False, shuffle_labels: bool = False,
        prepare: Callable[[Path], object] | None = None,
        rebuild_manifest: bool = False,
        format: str = "files",
        shards: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.configure_format(format, shards)
        self.class_names = list(class_names)
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(f"num_classes={num_classes} but class_names={self.class_names}")
        if split_by not in ("random", "group"):
            raise ValueError(f"split_by must be 'random' or 'group', got {split_by!r}")
        self.root = Path(root)
        self.manifest_file = Path(manifest) if manifest else None
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".audioexp"
        self.sample_rate = sample_rate
        self.num_samples = int(round(clip_seconds * sample_rate))
        self.min_clip_seconds = min_clip_seconds
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_by = split_by
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.configure_checks(sample_rate, min_clip_seconds, max_seconds, resample, silence_db, validate,
                              skip_bad_files)
        self.shuffle_labels = shuffle_labels
        self.prepare = prepare
        self.rebuild_manifest = rebuild_manifest
        self.manifest: Manifest | None = None
        self.splits: dict[str, np.ndarray] = {}

    corpus_name = "FM broadcast"
    expected_layout = EXPECTED_LAYOUT

    def _manifest_path(self) -> Path:
        if self.manifest_file is not None:
            if not self.manifest_file.exists():
                raise CorpusNotFoundError(f"manifest {self.manifest_file} does not exist")
            return self.manifest_file
        return prepare_fm_broadcast(self.root, self.cache_dir, self.class_names, self.rebuild_manifest)

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare(self.root)
        self._manifest_path()
        self.check_files()

    def _read_manifest(self) -> Manifest:
        path = self._manifest_path()
        try:
            return read_manifest_csv(path, self.root, self.class_names)
        except ManifestError as err:
            if self.manifest_file is not None:
                raise
            log.warning("rebuilding the cached manifest %s: %s", path, err)
            return read_manifest_csv(prepare_fm_broadcast(self.root, self.cache_dir, self.class_names, True),
                                     self.root, self.class_names)

    def split_files(self) -> dict[str, list[tuple[str, str]]]:
        """Every clip, before the split (made in ``setup`` from the clips that are not bad, so
        that a bad file does not move a clean one to another part)."""
        manifest = self._read_manifest()
        lines = [""] * len(manifest)
        if self.manifest_file is not None:  # a user's CSV: name its lines in messages
            with open(self.manifest_file, newline="", encoding="utf-8") as handle:
                numbered = [n for n, row in enumerate(csv.reader(handle), start=1) if row and n > 1]
            lines = [f"{self.manifest_file.name}:{n}" for n in numbered]
        return {"all": [(manifest.resolve(i), manifest.class_names[manifest.labels[i]], lines[i])
                        for i in range(len(manifest))]}

    def metadata_problems(self, split_files) -> list[str]:
        problems = super().metadata_problems(split_files)
        counts = Counter(entry[1] for entry in split_files["all"])
        problems += [f"class {c!r} has no clips" for c in self.class_names if not counts[c]]
        if self.manifest_file is None and self.root.is_dir():
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir() or entry.name in self.class_names:
                    continue
                same = [c for c in self.class_names if c.lower() == entry.name.lower()]
                hint = (f"it differs from the class {same[0]!r} only in case" if same
                        else f"it is not one of the classes {self.class_names}")
                problems.append(f"folder {entry.path}/ is not read: {hint} (rename it, or set data.class_names)")
        return problems

    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            return
        manifest = self._read_manifest()
        bad = self.bad_files()
        if bad:
            keep = np.array([manifest.resolve(i) not in bad for i in range(len(manifest))])
            manifest = Manifest(manifest.root, PathTable.from_strings(p for p, k in zip(manifest.paths, keep) if k),
                                manifest.labels[keep], manifest.groups[keep], manifest.class_names, manifest.group_names)
            log.info("%s: %d bad clips left out before the split (data.skip_bad_files=true)", self.root, int((~keep).sum()))
        if len(manifest) == 0:
            raise CorpusNotFoundError(f"the manifest of {self.root} lists no clips")
        if self.split_by == "group":
            if len(manifest.group_names) == len(manifest):
                log.warning(
                    "split_by=group but every clip is its own group (no recording folders or "
                    "group column): the split is the same as a random one"
                )
            train, val, test = grouped_split(
                manifest.groups, self.val_fraction, self.test_fraction, self.split_seed
            )
        else:
            train, val, test = random_split(
                len(manifest), self.val_fraction, self.test_fraction, self.split_seed
            )
        self.manifest = manifest
        self.splits = {"train": train, "val": val, "test": test}
        log.info(
            "%s: %d clips %s; split (%s, seed %d): train %d, val %d, test %d",
            self.root,
            len(manifest),
            manifest.class_counts(),
            self.split_by,
            self.split_seed,
            len(train),
            len(val),
            len(test),
        )

    def _dataset(self, split: str) -> FixedLengthClipDataset:
        if self.manifest is None:
            self.setup()
        indices = self.splits[split]
        labels = None
        if split == "train" and self.shuffle_labels:
            rng = np.random.default_rng(self.split_seed + 1)
            labels = rng.permutation(self.manifest.labels[indices].astype(np.int64))
        return FixedLengthClipDataset(
            self.manifest,
            indices,
            self.sample_rate,
            self.num_samples,
            labels=labels,
            crop="random" if split == "train" else "start",
            min_seconds=self.min_clip_seconds,
            skip_bad_files=self.skip_bad_files,
            checks=self.checks,
        )

    def split_groups(self, split: str) -> list[str]:
        """Each clip's recording (``<class>/<folder>``, or the manifest's group column)."""
        self._dataset(split)
        names = self.manifest.group_names
        return [str(names[g]) for g in self.manifest.groups[self.splits[split]]]

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        common = dict(num_workers=self.num_workers, collate_fn=collate_skipping_bad,
                      persistent_workers=self.num_workers > 0, pin_memory=False)
        if split == "train":
            # a last training batch of one clip would break BatchNorm in the head
            return self.training_loader(dataset, self.batch_size, split, drop_last=len(dataset) > self.batch_size, **common)
        return self.evaluation_loader(dataset, self.batch_size, split, **common)

    def test_dataloader(self) -> DataLoader:
        # The paper reports on its validation split; with test_fraction=0 so do we.
        return self._loader("test" if len(self.splits.get("test", ())) else "val")

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
