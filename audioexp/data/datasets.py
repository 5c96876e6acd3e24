"""Map-style datasets: fixed-length clips of a manifest, utterances of any corpus (random crops
or whole), a reader that can skip bad files, and a collate function that drops them."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from audioexp.data.audio import AudioFileError, fix_length, load_audio
from audioexp.data.manifest import Manifest
from audioexp.data.validate import AudioChecks

log = logging.getLogger(__name__)


class SkippingAudioReader:
    """Reads audio for a dataset; with ``skip_bad_files`` a bad file gives ``None`` and a warning.

    Shared by the datasets so that every corpus skips and counts bad files the same way
    (the count is per process: each DataLoader worker warns with its own running count).
    """

    def __init__(self, sample_rate: int, min_seconds: float = 0.0, skip_bad_files: bool = False,
                 checks: AudioChecks | None = None) -> None:
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self.skip_bad_files = skip_bad_files
        self.checks = checks
        self.num_skipped = 0

    def __call__(self, path, data: bytes | None = None) -> torch.Tensor | None:
        """The file at ``path``; or, given ``data``, those encoded bytes (a shard's copy of the
        file, :mod:`audioexp.data.shards`), named ``path`` in errors."""
        try:
            return load_audio(path, self.sample_rate, self.min_seconds, self.checks, data=data)
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
    checks : AudioChecks, optional
        The corpus's read-time checks (:func:`audioexp.data.audio.load_audio`).

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
        checks: AudioChecks | None = None,
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
        self.read = SkippingAudioReader(sample_rate, min_seconds, skip_bad_files, checks)

    def __len__(self) -> int:
        return len(self.indices)

    def source(self, i: int) -> str:
        """The audio file of item ``i``."""
        return self.manifest.resolve(int(self.indices[i]))

    def __getitem__(self, i: int) -> dict | None:
        return self.make_item(i, self.read(self.source(i)))

    def make_item(self, i: int, waveform: torch.Tensor | None) -> dict | None:
        """Item ``i`` from its decoded audio (``None``: a bad file, skipped)."""
        row = int(self.indices[i])
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


class UtteranceDataset(Dataset):
    """Utterances as random fixed-length crops (training) or whole (evaluation).

    Parameters
    ----------
    root : Path
        Folder the ``paths`` are relative to.
    paths : sequence of str
    labels : ndarray of int, shape (n,)
    crop_samples : int, optional
        Training crops of this length; shorter utterances are repeated to fill it.
        ``None``: whole utterances (evaluation).
    noise_prob : float
        Probability of adding white Gaussian noise to a crop.
    snr_db_min, snr_db_max : float
        Its signal-to-noise ratio, drawn uniformly (dB).
    max_samples : int, optional
        Evaluation utterances longer than this are cut (from the start).

    Items: ``{"waveform": (time,), "label": int, "index": position in paths}``.
    """

    def __init__(
        self,
        root: Path,
        paths,
        labels: np.ndarray,
        sample_rate: int,
        crop_samples: int | None = None,
        noise_prob: float = 0.0,
        snr_db_min: float = 5.0,
        snr_db_max: float = 30.0,
        min_seconds: float = 0.0,
        max_samples: int | None = None,
        skip_bad_files: bool = False,
        checks: AudioChecks | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.crop_samples = crop_samples
        self.noise_prob = noise_prob
        self.snr_db_min, self.snr_db_max = snr_db_min, snr_db_max
        self.max_samples = max_samples
        self.read = SkippingAudioReader(sample_rate, min_seconds, skip_bad_files, checks)

    def __len__(self) -> int:
        return len(self.paths)

    def _crop(self, waveform: torch.Tensor) -> torch.Tensor:
        n = self.crop_samples
        if waveform.shape[0] < n:
            waveform = waveform.repeat(math.ceil(n / waveform.shape[0]))
        offset = int(torch.randint(0, waveform.shape[0] - n + 1, (1,)))
        crop = waveform[offset : offset + n]
        if self.noise_prob > 0 and float(torch.rand(())) < self.noise_prob:
            snr = self.snr_db_min + (self.snr_db_max - self.snr_db_min) * float(torch.rand(()))
            power = crop.pow(2).mean().clamp(min=1e-10)
            crop = crop + torch.randn_like(crop) * torch.sqrt(power / 10 ** (snr / 10))
        return crop

    def source(self, i: int) -> str:
        """The audio file of item ``i``."""
        return str(self.root / self.paths[i])

    def __getitem__(self, i: int) -> dict | None:
        return self.make_item(i, self.read(self.source(i)))

    def make_item(self, i: int, waveform: torch.Tensor | None) -> dict | None:
        """Item ``i`` from its decoded audio (``None``: a bad file, skipped)."""
        if waveform is None:
            return None
        if self.crop_samples is not None:
            waveform = self._crop(waveform)
        elif self.max_samples is not None:
            waveform = waveform[: self.max_samples]
        return {"waveform": waveform, "label": int(self.labels[i]), "index": i}
