"""Map-style datasets over manifests, and a collate function that drops bad files."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from audioexp.data.audio import AudioFileError, fix_length, load_audio
from audioexp.data.manifest import Manifest

log = logging.getLogger(__name__)


class SkippingAudioReader:
    """Reads audio for a dataset; with ``skip_bad_files`` a bad file gives ``None`` and a warning.

    Shared by the datasets so that every corpus skips and counts bad files the same way
    (the count is per process: each DataLoader worker warns with its own running count).
    """

    def __init__(self, sample_rate: int, min_seconds: float = 0.0, skip_bad_files: bool = False) -> None:
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self.skip_bad_files = skip_bad_files
        self.num_skipped = 0

    def __call__(self, path) -> torch.Tensor | None:
        try:
            return load_audio(path, self.sample_rate, self.min_seconds)
        except (AudioFileError, FileNotFoundError) as err:
            if not self.skip_bad_files:
                raise
            self.num_skipped += 1
            warnings.warn(
                f"skipping bad audio file ({self.num_skipped} skipped so far in this process): {err}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None


class FixedLengthClipDataset(Dataset):
    """Clips of a manifest, cropped or zero-padded to a fixed length.

    Parameters
    ----------
    manifest : Manifest
    indices : ndarray of int
        Which manifest rows this split holds.
    labels : ndarray of int, optional
        Labels to serve instead of the manifest's (e.g. shuffled for a control run),
        aligned with ``indices``.
    sample_rate : int
    num_samples : int
        Output length.
    crop : {"start", "center", "random"}
    min_seconds : float
        Shorter files are bad files.
    skip_bad_files : bool
        Return ``None`` for a bad file (dropped by :func:`collate_skipping_bad`) and warn,
        instead of raising :class:`AudioFileError`.

    Items are dicts ``{"waveform": (num_samples,), "label": int, "index": manifest row}``.
    """

    def __init__(
        self,
        manifest: Manifest,
        indices: np.ndarray,
        sample_rate: int,
        num_samples: int,
        labels: np.ndarray | None = None,
        crop: str = "start",
        min_seconds: float = 0.0,
        skip_bad_files: bool = False,
    ) -> None:
        self.manifest = manifest
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = (
            np.asarray(labels, dtype=np.int64)
            if labels is not None
            else manifest.labels[self.indices].astype(np.int64)
        )
        if len(self.labels) != len(self.indices):
            raise ValueError("labels must align with indices")
        self.num_samples = num_samples
        self.crop = crop
        self.read = SkippingAudioReader(sample_rate, min_seconds, skip_bad_files)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict | None:
        row = int(self.indices[i])
        waveform = self.read(self.manifest.resolve(row))
        if waveform is None:
            return None
        waveform = fix_length(waveform, self.num_samples, self.crop)
        return {"waveform": waveform, "label": int(self.labels[i]), "index": row}


def collate_skipping_bad(items: list[dict | None]) -> dict | None:
    """Batch dict items, dropping ``None`` (bad files); ``"skipped"`` counts the drops.

    Waveforms of different lengths are zero-padded at the end; ``"length"`` holds each
    item's number of valid samples. Returns ``None`` when every item of the batch was bad.
    """
    good = [item for item in items if item is not None]
    if not good:
        return None
    lengths = [item["waveform"].shape[-1] for item in good]
    longest = max(lengths)
    waveform = torch.zeros(len(good), longest, dtype=good[0]["waveform"].dtype)
    for i, item in enumerate(good):
        waveform[i, : lengths[i]] = item["waveform"]
    return {
        "waveform": waveform,
        "length": torch.tensor(lengths, dtype=torch.long),
        "label": torch.tensor([item["label"] for item in good], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
        "skipped": torch.tensor(len(items) - len(good), dtype=torch.long),
    }
