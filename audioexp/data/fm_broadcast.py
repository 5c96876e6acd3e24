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

import logging
import os
from collections.abc import Callable
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
    cache_is_fresh,
    cache_key,
    read_manifest_csv,
    scan_audio_files,
    tree_stamp,
    write_cache_stamp,
    write_manifest_csv,
)
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


def fm_broadcast_rows(root: str | os.PathLike, class_names=CLASS_NAMES):
    """Yield ``(relative path, label, group)`` for every clip under ``root/<class>/``.

    The group is ``<class>/<first folder below it>``, or the file itself for clips
    directly in the class folder.
    """
    for label in class_names:
        class_dir = os.path.join(root, label)
        if not os.path.isdir(class_dir):
            continue
        for rel in scan_audio_files(class_dir):
            head, sep, _ = rel.partition("/")
            group = f"{label}/{head}" if sep else f"{label}/{rel}"
            yield f"{label}/{rel}", label, group


def prepare_fm_broadcast(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    class_names=CLASS_NAMES,
    rebuild: bool = False,
) -> Path:
    """Build (or reuse) the cached manifest CSV of an FM broadcast root; return its path.

    Idempotent: the manifest is rebuilt only when the modification times of the root and
    its class folders changed, or with ``rebuild=True``. Never decodes audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(
            f"FM broadcast corpus root {root} does not exist; " + EXPECTED_LAYOUT.format(root=root)
        )
    cache_dir = Path(cache_dir)
    key = cache_key(root.resolve(), AUDIO_EXTENSIONS, list(class_names))
    manifest_path = cache_dir / f"fm_broadcast-{key}.csv"
    stamp = {"root": str(root.resolve()), "mtimes": tree_stamp(root, list(class_names))}
    if not rebuild and cache_is_fresh(manifest_path, stamp):
        return manifest_path
    log.info("building the manifest of %s into %s", root, manifest_path)
    rows = tqdm(fm_broadcast_rows(root, class_names), desc="scanning clips", unit=" files", mininterval=1.0)
    n = write_manifest_csv(rows, manifest_path)
    if n == 0:
        manifest_path.unlink(missing_ok=True)
        raise CorpusNotFoundError(
            f"FM broadcast corpus root {root} holds no audio files under "
            f"{', '.join(c + '/' for c in class_names)}; " + EXPECTED_LAYOUT.format(root=root)
        )
    write_cache_stamp(manifest_path, stamp, n)
    log.info("manifest: %d clips", n)
    return manifest_path


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
    skip_bad_files : bool
        Skip corrupt/empty/NaN/too-short files with a warning (counted in ``*/skipped_files``)
        instead of stopping with an error naming the file.
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
        clip_seconds: float = 5.0, min_clip_seconds: float = 1.0,
        val_fraction: float = 0.2, test_fraction: float = 0.0, split_by: str = "random", split_seed: int = 0,
        batch_size: int = 32, num_workers: int = 2,
        skip_bad_files: bool = False, shuffle_labels: bool = False,
        prepare: Callable[[Path], object] | None = None,
        rebuild_manifest: bool = False,
    ) -> None:
        super().__init__()
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
        self.skip_bad_files = skip_bad_files
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

    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            return
        manifest = read_manifest_csv(self._manifest_path(), self.root, self.class_names)
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
        )

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        common = dict(num_workers=self.num_workers, collate_fn=collate_skipping_bad,
                      persistent_workers=self.num_workers > 0, pin_memory=False)
        if split == "train":
            # a last training batch of one clip would break BatchNorm in the head
            return self.training_loader(dataset, self.batch_size, drop_last=len(dataset) > self.batch_size, **common)
        return self.evaluation_loader(dataset, self.batch_size, **common)

    def test_dataloader(self) -> DataLoader:
        # The paper reports on its validation split; with test_fraction=0 so do we.
        return self._loader("test" if len(self.splits.get("test", ())) else "val")

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
