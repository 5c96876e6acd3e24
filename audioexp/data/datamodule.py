"""What every corpus's DataModule shares, and nothing more: the injected ``prepare`` step and
the missing-root error, the corpus table written in ``prepare_data`` and read in ``setup``,
the class count, and loaders by split.

A corpus module subclasses :class:`CorpusDataModule`, sets :attr:`corpus_name`,
:attr:`expected_layout` and :attr:`table_columns`, keeps ``root``, ``prepare``,
``cache_dir`` and ``class_names`` attributes, and implements ``table_rows()`` (parse the
protocol files, one row per file), ``table_sources()`` (what the rows are built from) and
``_loader(split)``; everything about its files and protocol stays in its own module.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
import torch
from torch.utils.data import DataLoader, Dataset

from audioexp.data.manifest import CorpusNotFoundError, ManifestError, cache_key, corpus_table, read_corpus_table
from audioexp.data.resumable import EpochSampler, SeededItems, ShardSampler, TrainingLoader, WholeBatches, whole_batch
from audioexp.data.shards import ChunkBatchSampler, ShardItems, ShardOptions, read_json_if_exists, shard_path
from audioexp.data.validate import (
    AudioChecks,
    CorpusCheck,
    MetadataError,
    check_corpus_audio,
    format_problems,
    metadata_problems,
)
from audioexp.utils.files import atomic_write_json, atomic_write_text

__all__ = ["CheckedCorpus", "CorpusDataModule", "default_cache_dir"]

log = logging.getLogger(__name__)


def read_or_rebuild_table(table_path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of the table at ``table_path()``; when it is truncated or edited, a warning and
    the rows of ``table_path(rebuild=True)``."""
    path = table_path()
    try:
        return read_corpus_table(path, columns)
    except ManifestError as err:
        log.warning("rebuilding the corpus table %s: %s", path, err)
        return read_corpus_table(table_path(rebuild=True), columns)


def default_cache_dir(root: str | os.PathLike, cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, or ``ROOT/.audioexp`` when none is given (the data configs give
    ``${paths.data_dir}/manifests``, so a read-only corpus is never written to)."""
    return Path(cache_dir) if cache_dir else Path(root) / ".audioexp"


class CheckedCorpus:
    """The checks at prepare that every corpus shares (:mod:`audioexp.data.validate`).

    A corpus sets ``root``, ``cache_dir`` and :attr:`corpus_name`, calls
    :meth:`configure_checks` in ``__init__``, implements :meth:`split_files` (and may add to
    :meth:`metadata_problems`), calls :meth:`check_files` at the end of ``prepare_data`` and
    leaves :meth:`bad_files` out in ``setup``.
    """

    corpus_name: str = "corpus"

    def table_key(self) -> Sequence[object]:
        """What besides the root the corpus's lists depend on (e.g. the protocol)."""
        return ()

    # --- checks at prepare: metadata, then every file's header (audioexp.data.validate) ------
    #: ``data.validate`` ("header" or "full"), ``data.skip_bad_files`` and the corpus's
    #: :class:`AudioChecks`; set by :meth:`configure_checks` in a subclass's ``__init__``.
    validate: str = "header"
    skip_bad_files: bool = False
    checks: AudioChecks | None = None
    #: The split whose classes every other split's must be among (None: no such check).
    train_split: str | None = "train"
    _check: dict | None = None

    def configure_checks(self, sample_rate: int, min_seconds: float = 0.0, max_seconds: float | None = None,
                         resample: str = "any", silence_db: float | None = -60.0, validate: str = "header",
                         skip_bad_files: bool = False) -> None:
        """Set what the corpus accepts (see :class:`audioexp.data.validate.AudioChecks`)."""
        self.checks = AudioChecks(sample_rate, min_seconds, max_seconds, resample, silence_db)
        self.validate, self.skip_bad_files = validate, skip_bad_files

    def split_files(self) -> Mapping[str, Sequence[tuple]]:
        """Every file a run of this corpus reads, per split: ``(absolute path, label or None[,
        list file and line])``, from the corpus table (bad files included). Empty: the corpus
        checks nothing."""
        return {}

    def metadata_problems(self, split_files: Mapping[str, Sequence[tuple]]) -> list[str]:
        """What is inconsistent in the lists (a subclass adds its corpus's own checks)."""
        return metadata_problems(split_files, train_split=self.train_split)

    def _cache_stem(self) -> Path:
        """``cache_dir/<corpus>-<key of root and lists>``: the stem of the corpus's cached files."""
        slug = self.corpus_name.lower().replace(" ", "")
        return self.cache_dir / f"{slug}-{cache_key(self.root.resolve(), *self.table_key())}"

    def check_files(self) -> CorpusCheck | None:
        """The prepare-time check: metadata errors stop here (every case listed); then every
        file's header is read (cached by size and mtime) and judged; bad files stop the run,
        or with ``skip_bad_files`` are recorded to be left out by ``setup`` on every rank."""
        if self.checks is None:
            return None
        files = self.split_files()
        if not files:
            return None
        problems = self.metadata_problems(files)
        problems += [f"{e[0]} does not exist" + (f" (named at {e[2]})" if len(e) > 2 and e[2] else "")
                     for f in files.values() for e in f if not os.path.exists(e[0])]
        base = self._cache_stem()
        if problems:
            list_file = base.with_suffix(".metadata.txt")
            atomic_write_text(list_file, "\n".join(problems) + "\n")
            raise MetadataError(f"{self.corpus_name} at {self.root}: {len(problems)} metadata problem(s), found "
                                f"before training:\n{format_problems(problems, list_file)}")
        report = check_corpus_audio(self.corpus_name, {s: [e[0] for e in f] for s, f in files.items()}, self.checks,
                                    base.with_suffix(".audio.csv"), self.validate, self.skip_bad_files)
        self._check = {"summary": report.summary(), "bad": sorted(report.bad)}
        atomic_write_json(self._check_file(), self._check)
        return report

    def _check_file(self) -> Path:
        stem = self._cache_stem()
        return stem.with_name(f"{stem.name}-check-{cache_key(self.checks, self.validate)}.json")

    def check_summary(self) -> dict:
        """``{"summary": {split/files, split/skipped_files}, "bad": [paths]}`` of the last check
        (read from the file ``prepare_data`` wrote; checked here when it is absent)."""
        if self._check is None and self.checks is not None:
            path = self._check_file()
            if path.exists():
                try:
                    self._check = json.loads(path.read_text())
                except ValueError:
                    self._check = None
            if self._check is None:
                self.check_files()
        return self._check or {"summary": {}, "bad": []}

    def bad_files(self) -> set[str]:
        """Absolute paths that the check at prepare found bad (left out with ``skip_bad_files``)."""
        return set(self.check_summary()["bad"]) if self.skip_bad_files else set()


class CorpusDataModule(CheckedCorpus, L.LightningDataModule):
    """Base of the corpus DataModules (``self.root``, ``self.prepare``, ``self.class_names``).

    ``prepare_data`` runs the injected ``prepare`` callable (the ``*_mini`` data configs
    inject :func:`audioexp.minicorpus.prepare`, which writes a miniature corpus on first
    use; this class does not know what it does), then stops with the expected layout when
    the root is missing.
    """

    #: Named in errors ("VoxCeleb1 root ... does not exist").
    corpus_name: str = "corpus"
    #: The on-disk layout, shown when the root is missing (``{root}`` is filled in).
    expected_layout: str = "{root}"
    #: Columns of the corpus table (one row per file); empty: the corpus keeps no table.
    table_columns: tuple[str, ...] = ()
    rebuild_manifest: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- where the audio comes from: files, or shards (audioexp.data.shards) -----------------
    #: ``data.format``: ``files`` (one read per item) or ``shards`` (``task=shards`` wrote them).
    data_format: str = "files"
    shards: ShardOptions = ShardOptions()
    #: The splits ``task=shards`` writes: those with a loader.
    shard_splits: tuple[str, ...] = ("train", "val", "test")

    def configure_format(self, format: str = "files", shards: Mapping | None = None) -> None:
        """Set ``data.format`` and ``data.shards`` (:class:`audioexp.data.shards.ShardOptions`);
        a corpus's ``__init__`` calls it."""
        if format not in ("files", "shards"):
            raise ValueError(f"data.format must be 'files' or 'shards', got {format!r}")
        self.data_format = format
        self.shards = ShardOptions(**dict(shards or {}))
        if format == "shards":
            self.shards.split_dir("train")  # data.shards.dir is set

    def split_dataset(self, split: str) -> Dataset:
        """The map-style dataset of ``split`` (items with ``source(i)`` and ``make_item``)."""
        return self._dataset(split)

    def split_groups(self, split: str) -> Sequence[str] | None:
        """Each item's group (recording, speaker), recorded in the shards; None: not known."""
        return None

    def check_files(self) -> CorpusCheck | None:
        """With ``data.format=shards`` the audio is not read again here: it was checked when the
        shards were written (their ``check.json``, whose bad files ``setup`` leaves out as then)."""
        if self.data_format != "shards":
            return super().check_files()
        self._check = read_json_if_exists(shard_path(self.shards.dir, "check.json")) or {"summary": {}, "bad": []}
        if self.checks is not None:
            atomic_write_json(self._check_file(), self._check)
        log.info("%s: data.format=shards, audio from %s (checked when written: %s)", self.corpus_name,
                 self.shards.dir, self._check.get("summary") or "no check recorded")
        return None

    def _shard_items(self, dataset: Dataset, split: str) -> ShardItems:
        return ShardItems(dataset, self.shards.split_dir(split), self.root, corpus=self.corpus_name, split=split,
                          cache_dir=self.shards.cache_dir)

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare(self.root)
        if not self.root.is_dir():
            raise CorpusNotFoundError(f"{self.corpus_name} root {self.root} does not exist; "
                                      + self.expected_layout.format(root=self.root))
        if self.table_columns:
            self.table_path()
        self.check_files()

    # --- the corpus table --------------------------------------------------------------
    def table_sources(self) -> Sequence[Path]:
        """The protocol files and folders the rows are read from (a change rebuilds the table)."""
        return [self.root]

    def table_rows(self) -> Iterable[Sequence[object]]:
        raise NotImplementedError(f"{type(self).__name__} keeps no corpus table")

    def table_path(self, rebuild: bool = False) -> Path:
        """Build the table (or reuse a fresh one) under ``cache_dir``; return its path."""
        return corpus_table(self._cache_stem().with_suffix(".csv"), self.table_columns, self.table_rows,
                            self.table_sources(), rebuild=self.rebuild_manifest or rebuild)

    def read_table(self) -> list[dict[str, str]]:
        """The corpus table's rows (built here when ``prepare_data`` has not run, e.g. in a
        notebook); a truncated or edited table is rebuilt with one warning."""
        return read_or_rebuild_table(self.table_path, self.table_columns)

    # --- the training order, resumable mid-epoch -------------------------------------------
    _resume_position: dict | None = None

    def state_dict(self) -> dict:
        """Where training stands in the data, saved in every checkpoint: the epoch and how many
        of its batches were trained on (the next epoch, at 0, once an epoch is complete)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        epoch = int(trainer.current_epoch)
        if done >= trainer.num_training_batches:
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = dict(state_dict) or None

    def training_loader(self, dataset: Dataset, batch_size: int, split: str = "train", **kwargs) -> DataLoader:
        """The training loader: shuffled per epoch from (seed, epoch), every item with its own
        random stream (:mod:`audioexp.data.resumable`), started where a resumed run stopped.
        The seed is the run's (``torch.initial_seed()``, set from ``seed`` by the task).

        With ``data.format=shards`` the items' audio comes from the shards; with
        ``data.shards.order=chunks`` the batches are :class:`ChunkBatchSampler`'s (chunk by
        chunk, each item once per epoch across ranks; ``drop_last`` does not apply)."""
        seed = torch.initial_seed() % 2**63
        position, self._resume_position = self._resume_position, None
        generator = torch.Generator().manual_seed(seed)
        if self.data_format == "shards":
            shard_items = self._shard_items(dataset, split)
            items = SeededItems(shard_items)
            if self.shards.order == "chunks":
                kwargs.pop("drop_last", None)
                batches = ChunkBatchSampler(shard_items.chunk_sizes, batch_size, seed=seed,
                                            buffer_chunks=self.shards.buffer_chunks)
                if position:
                    batches.resume(position["epoch"], position["batches_done"])
                return TrainingLoader(WholeBatches(items, kwargs.pop("collate_fn")), batch_size=None, sampler=batches,
                                      collate_fn=whole_batch, generator=generator, **kwargs)
        else:
            items = SeededItems(dataset)
        sampler = EpochSampler(len(dataset), shuffle=True, seed=seed)
        if position:
            sampler.resume(position["epoch"], position["batches_done"] * batch_size)
        return TrainingLoader(items, batch_size=batch_size, sampler=sampler, generator=generator, **kwargs)

    def evaluation_loader(self, dataset: Dataset, batch_size: int, split: str | None = None, **kwargs) -> DataLoader:
        """An evaluation loader: in order, each file once across DDP ranks (:class:`ShardSampler`:
        no padding), and with a generator of its own, so that creating its iterator (which
        draws the workers' base seed) takes nothing from the global RNG: a resumed run, which
        skips the sanity check, draws exactly what the uninterrupted one did. With
        ``data.format=shards``, the audio of ``split`` comes from its shards."""
        if self.data_format == "shards":
            if split is None:
                raise ValueError(f"{type(self).__name__}: an evaluation loader from shards needs its split's name")
            dataset = self._shard_items(dataset, split)
        return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset)),
                          generator=torch.Generator().manual_seed(0), **kwargs)

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError(f"{type(self).__name__} has no {split} loader")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
