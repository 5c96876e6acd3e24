"""Neural embeddings through ``Trainer.predict`` (any device, DDP), and an on-disk cache.

Under DDP every rank embeds its share of the files; :class:`IndexedPredictionWriter`
writes each rank's ``(index, embedding)`` rows and :func:`predict_embeddings` puts them back
in file order by index (:func:`audioexp.embedders.functional.reassemble_by_index`), so the
result never depends on the number of devices or on the sampler's padding.
"""

from __future__ import annotations

import json
import zipfile
import logging
import os
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn

from audioexp.data.manifest import cache_key
from audioexp.embedders.functional import reassemble_by_index
from audioexp.utils.files import atomic_open

log = logging.getLogger(__name__)


class EmbeddingPredictor(L.LightningModule):
    """Wraps a module with ``embed(waveform, lengths) -> (batch, dim)`` for ``Trainer.predict``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    @torch.no_grad()
    def predict_step(self, batch: dict | None, batch_idx: int) -> dict | None:
        if batch is None:
            return None
        embedding = self.module.embed(batch["waveform"], batch.get("length"))
        return {"index": batch["index"].cpu(), "embedding": embedding.float().cpu()}


class IndexedPredictionWriter(BasePredictionWriter):
    """Collects ``(index, embedding)`` rows; under DDP each rank writes them to ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        super().__init__(write_interval="epoch")
        self.out_dir = Path(out_dir)
        self.indices: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        items = [p for p in predictions if p is not None]
        indices = [p["index"].numpy() for p in items]
        rows = [p["embedding"].numpy() for p in items]
        if trainer.world_size > 1:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_open(self.out_dir / f"rank{trainer.global_rank}.npz", mode="wb") as handle:
                np.savez(handle, index=np.concatenate(indices) if indices else np.zeros(0, np.int64),
                         embedding=np.concatenate(rows) if rows else np.zeros((0, 0), np.float32))
        else:
            self.indices, self.rows = indices, rows


def predict_embeddings(module: nn.Module, datamodule: L.LightningDataModule, num_items: int, trainer_kwargs: dict | None = None) -> np.ndarray:
    """Embeddings of every item of ``datamodule.predict_dataloader()``, in index order.

    Parameters
    ----------
    module : nn.Module
        Has ``embed(waveform, lengths) -> (batch, dim)``.
    datamodule : LightningDataModule
        Its prediction batches carry ``waveform``, ``length`` and ``index``.
    num_items : int
        Number of items (indices ``0 .. num_items - 1``).
    trainer_kwargs : dict, optional
        For ``lightning.Trainer`` (``accelerator``, ``devices``, ``strategy``, ``precision``).

    Returns
    -------
    ndarray of float64, shape (num_items, dim)
        Rows of items skipped as bad files when read (``datamodule.skip_bad_files``) are NaN.
    """
    allow_missing = bool(getattr(datamodule, "skip_bad_files", False))
    with tempfile.TemporaryDirectory(prefix="audioexp-embed-") as tmp:
        writer = IndexedPredictionWriter(tmp)
        kwargs = {"accelerator": "cpu", "devices": 1, **(trainer_kwargs or {})}
        trainer = L.Trainer(logger=False, callbacks=[writer], enable_checkpointing=False, enable_model_summary=False, **kwargs)
        trainer.predict(EmbeddingPredictor(module.eval()), datamodule=datamodule, return_predictions=False)
        if trainer.world_size > 1:
            trainer.strategy.barrier()
            parts = [np.load(Path(tmp) / f"rank{r}.npz") for r in range(trainer.world_size)]
            return reassemble_by_index([p["index"] for p in parts], [p["embedding"] for p in parts if p["embedding"].size],
                                       num_items, allow_missing)
        return reassemble_by_index(writer.indices, writer.rows, num_items, allow_missing)


def file_stamp(root: str | os.PathLike, files: list[str]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of each file: what an embedding of it depends on."""
    out = []
    for rel in files:
        st = os.stat(Path(root) / rel)
        out.append((rel, st.st_size, st.st_mtime_ns))
    return out


class EmbeddingCache:
    """Embeddings on disk, keyed by the embedder's settings and the exact file list.

    A classifier sweep over the same embedder and files reads them back instead of
    extracting again; changing a setting, a checkpoint or a file gives a new key.
    """

    def __init__(self, cache_dir: str | os.PathLike | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def path(self, name: str, settings: dict, root: str | os.PathLike, files: list[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = cache_key(json.dumps(settings, sort_keys=True, default=str), str(Path(root).resolve()), file_stamp(root, files))
        return self.cache_dir / f"{name}-{key}.npz"

    def load(self, path: Path | None, files: list[str]) -> np.ndarray | None:
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if list(data["files"]) != list(files):
                    return None
                embeddings = data["embeddings"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("the embedding cache %s is unreadable (%s): extracting again", path, err)
            return None
        log.info("embeddings read from the cache %s", path)
        return embeddings

    def save(self, path: Path | None, files: list[str], embeddings: np.ndarray, settings: dict) -> None:
        if path is None:
            return
        with atomic_open(path, mode="wb") as handle:
            np.savez(handle, embeddings=embeddings, files=np.array(files),
                     settings=json.dumps(settings, sort_keys=True, default=str))
        log.info("embeddings cached in %s", path)
