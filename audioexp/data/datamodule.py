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

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
import torch
from torch.utils.data import DataLoader, Dataset

from audioexp.data.manifest import CorpusNotFoundError, cache_key, corpus_table, read_corpus_table
from audioexp.data.resumable import EpochSampler, SeededItems, ShardSampler, TrainingLoader

__all__ = ["CorpusDataModule", "default_cache_dir"]


def default_cache_dir(root: str | os.PathLike, cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, or ``ROOT/.audioexp`` when none is given (the data configs give
    ``${paths.data_dir}/manifests``, so a read-only corpus is never written to)."""
    return Path(cache_dir) if cache_dir else Path(root) / ".audioexp"


class CorpusDataModule(L.LightningDataModule):
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

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare(self.root)
        if not self.root.is_dir():
            raise CorpusNotFoundError(f"{self.corpus_name} root {self.root} does not exist; "
                                      + self.expected_layout.format(root=self.root))
        if self.table_columns:
            self.table_path()

    # --- the corpus table --------------------------------------------------------------
    def table_key(self) -> Sequence[object]:
        """What besides the root the table's rows depend on (e.g. the protocol)."""
        return ()

    def table_sources(self) -> Sequence[Path]:
        """The protocol files and folders the rows are read from (a change rebuilds the table)."""
        return [self.root]

    def table_rows(self) -> Iterable[Sequence[object]]:
        raise NotImplementedError(f"{type(self).__name__} keeps no corpus table")

    def table_path(self) -> Path:
        """Build the table (or reuse a fresh one) under ``cache_dir``; return its path."""
        slug = self.corpus_name.lower().replace(" ", "")
        name = f"{slug}-{cache_key(self.root.resolve(), *self.table_key())}.csv"
        return corpus_table(self.cache_dir / name, self.table_columns, self.table_rows, self.table_sources(),
                            rebuild=self.rebuild_manifest)

    def read_table(self) -> list[dict[str, str]]:
        """The corpus table's rows (built here when ``prepare_data`` has not run, e.g. in a notebook)."""
        return read_corpus_table(self.table_path(), self.table_columns)

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

    def training_loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        """The training loader: shuffled per epoch from (seed, epoch), every item with its own
        random stream (:mod:`audioexp.data.resumable`), started where a resumed run stopped.
        The seed is the run's (``torch.initial_seed()``, set from ``seed`` by the task)."""
        seed = torch.initial_seed() % 2**63
        sampler = EpochSampler(len(dataset), shuffle=True, seed=seed)
        if self._resume_position:
            position, self._resume_position = self._resume_position, None
            sampler.resume(position["epoch"], position["batches_done"] * batch_size)
        return TrainingLoader(SeededItems(dataset), batch_size=batch_size, sampler=sampler,
                              generator=torch.Generator().manual_seed(seed), **kwargs)

    @staticmethod
    def evaluation_loader(dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        """An evaluation loader: in order, each file once across DDP ranks (:class:`ShardSampler`:
        no padding), and with a generator of its own, so that creating its iterator (which
        draws the workers' base seed) takes nothing from the global RNG: a resumed run, which
        skips the sanity check, draws exactly what the uninterrupted one did."""
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
