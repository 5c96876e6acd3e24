"""What every corpus's DataModule shares, and nothing more: the injected ``prepare`` step and
the missing-root error, the class count, and loaders by split.

A corpus module subclasses :class:`CorpusDataModule`, sets :attr:`corpus_name` and
:attr:`expected_layout`, keeps ``root``, ``prepare`` and ``class_names`` attributes, and
implements ``_loader(split)``; everything about its files and protocol stays in its own
module.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from audioexp.data.manifest import CorpusNotFoundError

__all__ = ["CorpusDataModule"]


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare(self.root)
        if not self.root.is_dir():
            raise CorpusNotFoundError(f"{self.corpus_name} root {self.root} does not exist; "
                                      + self.expected_layout.format(root=self.root))

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError(f"{type(self).__name__} has no {split} loader")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
