"""The embedders a probe can use, one per option of the ``embedder`` config group.

Each has ``name``, ``settings()`` (what its output depends on: the cache key),
``embed(datamodule, trainer_kwargs) -> ndarray (files, dim)`` over the datamodule's
``files`` in order, and ``embed_waveform(waveform, sample_rate) -> ndarray (dim,)`` for one
clip (what a saved probe predicts with, :mod:`audioexp.systems.probe_predictor`): the same
numbers as ``embed`` gives that clip's row.

- :class:`OpenSmileEmbedder`: openSMILE functionals through the ``opensmile`` package
  (ComParE_2016: 6,373 values; eGeMAPSv02: 88), one clip at a time, on the CPU.
- :class:`ByolsEmbedder`: hybrid BYOL-S (:mod:`audioexp.embedders.byols`), 2,048 values.
- :class:`RunEmbedder`: the ``embed`` output of any finished audioexp run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from audioexp.embedders.byols import SAMPLE_RATE, CHECKPOINT_HELP, ByolsCvT, ByolsFrontend, HybridByols, load_byols_checkpoint
from audioexp.embedders.extract import predict_embeddings
from audioexp.embedders.functional import LOG_EPS
from audioexp.inference import read_waveform

log = logging.getLogger(__name__)

OPENSMILE_DIMS = {"ComParE_2016": 6373, "eGeMAPSv02": 88}


def _file_info(path: str | os.PathLike | None) -> dict:
    if not path:
        return {"path": None}
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class OpenSmileEmbedder:
    """openSMILE functionals of each whole clip (the ``opensmile`` package, audEERING).

    Parameters
    ----------
    feature_set : str
        An ``opensmile.FeatureSet`` name: ``ComParE_2016`` (6,373) or ``eGeMAPSv02`` (88), ...
    name : str
        Row name in the results table.
    """

    def __init__(self, feature_set: str = "ComParE_2016", name: str | None = None) -> None:
        import opensmile

        if feature_set not in opensmile.FeatureSet.__members__:
            raise ValueError(f"unknown openSMILE feature set {feature_set!r}; one of {list(opensmile.FeatureSet.__members__)}")
        self.feature_set = feature_set
        self.name = name or feature_set
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set], feature_level=opensmile.FeatureLevel.Functionals)

    @property
    def dim(self) -> int:
        return len(self.smile.feature_names)

    def settings(self) -> dict:
        import opensmile

        return {"embedder": "opensmile", "feature_set": self.feature_set, "level": "functionals", "opensmile": opensmile.__version__}

    def embed_waveform(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """(time,) -> (dim,) float64."""
        values = self.smile.process_signal(np.asarray(waveform, dtype=np.float32), sample_rate).to_numpy()
        if values.shape != (1, self.dim):
            raise RuntimeError(f"openSMILE returned shape {values.shape}, expected (1, {self.dim})")
        return values[0].astype(np.float64)

    def embed(self, datamodule, trainer_kwargs: dict | None = None) -> np.ndarray:
        dataset = datamodule.predict_dataloader().dataset
        out = np.full((len(dataset), self.dim), np.nan)
        for i in tqdm(range(len(dataset)), desc=f"openSMILE {self.feature_set}", unit="file", mininterval=2.0):
            item = dataset[i]  # None: a bad file skipped when read (data.skip_bad_files): its row stays NaN
            if item is not None:
                out[item["index"]] = self.embed_waveform(item["waveform"].numpy(), datamodule.sample_rate)
        return out


class _ClipStatistics(nn.Module):
    """Per-clip mean and standard deviation of BYOL-S log-mels (the "dataset" normalisation)."""

    def __init__(self, frontend: ByolsFrontend) -> None:
        super().__init__()
        self.frontend = frontend

    def embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = lengths if lengths is not None else torch.full((len(waveform),), waveform.shape[-1])
        stats = []
        for w, n in zip(waveform, lengths):
            lms = self.frontend.log_mel(w[None, : int(n)])
            stats.append(torch.stack([lms.mean(), lms.std()]))
        return torch.stack(stats)


class ByolsEmbedder:
    """Hybrid BYOL-S scene embeddings (2,048 values) of each whole clip.

    Parameters
    ----------
    checkpoint : path
        The published weights (required: without them it stops with where to get them).
    normalization : {"dataset", "fixed"}
        ``dataset`` (serab-byols): the log-mels are normalised by the mean over the files
        being embedded of each file's mean and standard deviation, so an embedding depends on
        the other files. ``fixed``: by ``mean`` and ``std`` as given.
    mean, std : float, optional
        The fixed statistics.
    batch_size : int
        Must stay 1 unless the clips have equal lengths (the attention would see padding;
        the module then falls back to one clip at a time anyway).

    Attributes
    ----------
    corpus_mean, corpus_std : float or None
        With ``normalization="dataset"``: the log-mel statistics :meth:`embed` (or
        :meth:`corpus_statistics`) computed over the files it embedded. A saved probe keeps
        them and predicts with ``normalization="fixed"`` and these numbers, so that one file's
        embedding does not depend on the other files given with it.
    device : str
        Where :meth:`embed_waveform` runs the network (``cpu`` by default).
    """

    def __init__(self, checkpoint: str | None = None, normalization: str = "dataset", mean: float | None = None, std: float | None = None, name: str = "hybrid_byols") -> None:
        if normalization not in ("dataset", "fixed"):
            raise ValueError(f"normalization must be 'dataset' or 'fixed', got {normalization!r}")
        if normalization == "fixed" and (mean is None or std is None or std <= 0):
            raise ValueError("normalization=fixed needs embedder.mean and embedder.std (> 0)")
        if not checkpoint:
            raise FileNotFoundError(CHECKPOINT_HELP)
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"embedder.checkpoint={checkpoint} does not exist; " + CHECKPOINT_HELP)
        self.checkpoint = str(checkpoint)
        self.normalization = normalization
        self.mean, self.std = mean, std
        self.name = name
        self.corpus_mean: float | None = None
        self.corpus_std: float | None = None
        self.device = "cpu"
        self._model: HybridByols | None = None

    def settings(self) -> dict:
        return {"embedder": "hybrid_byols", "checkpoint": _file_info(self.checkpoint), "normalization": self.normalization,
                "mean": self.mean, "std": self.std, "log_eps": LOG_EPS}

    def build(self) -> HybridByols:
        network = load_byols_checkpoint(ByolsCvT(), self.checkpoint)
        return HybridByols(network, ByolsFrontend(self.mean or 0.0, self.std or 1.0)).eval()

    def corpus_statistics(self, datamodule, trainer_kwargs: dict | None = None) -> tuple[float, float]:
        """The ``dataset`` normalisation's log-mel statistics over the datamodule's files: the
        mean of the per-clip means and of the per-clip standard deviations (serab-byols), files
        skipped as bad left out; recorded as :attr:`corpus_mean` and :attr:`corpus_std`."""
        n = len(datamodule.files)
        stats = predict_embeddings(_ClipStatistics(ByolsFrontend()), datamodule, n, trainer_kwargs)
        read = np.isfinite(stats).all(axis=1)  # NaN rows: files skipped when read (data.skip_bad_files)
        if not read.any():
            raise RuntimeError("BYOL-S dataset normalisation: no file could be read")
        self.corpus_mean, self.corpus_std = float(stats[read, 0].mean()), float(stats[read, 1].mean())
        log.info("BYOL-S log-mel statistics over the %d files: mean %.4f, std %.4f", int(read.sum()), self.corpus_mean, self.corpus_std)
        return self.corpus_mean, self.corpus_std

    def embed(self, datamodule, trainer_kwargs: dict | None = None) -> np.ndarray:
        model = self.build()
        if self.normalization == "dataset":
            model.frontend.mean, model.frontend.std = self.corpus_statistics(datamodule, trainer_kwargs)
        return predict_embeddings(model, datamodule, len(datamodule.files), trainer_kwargs)

    def _normalization_statistics(self) -> tuple[float, float]:
        if self.normalization == "fixed":
            return float(self.mean), float(self.std)
        if self.corpus_mean is None or self.corpus_std is None:
            raise ValueError(
                "BYOL-S normalization=dataset normalises by statistics of the files embedded together, so one "
                "file has none: embed a corpus first (embed() records them) or use normalization=fixed with "
                "embedder.mean and embedder.std"
            )
        return self.corpus_mean, self.corpus_std

    @torch.no_grad()
    def embed_waveform(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """(time,) mono at ``sample_rate`` (resampled to 16 kHz if it differs) -> (2048,) float64.

        Normalised by ``mean``/``std`` (``fixed``) or by the statistics the last :meth:`embed`
        recorded (``dataset``: :attr:`corpus_mean`, :attr:`corpus_std`; without them it
        raises, saying why).
        """
        mean, std = self._normalization_statistics()
        if self._model is None:
            self._model = self.build()
        model = self._model.to(self.device)
        model.frontend.mean, model.frontend.std = mean, std
        x = read_waveform(waveform, sample_rate, SAMPLE_RATE)
        return model.embed(x[None].to(self.device))[0].float().cpu().numpy().astype(np.float64)


class RunEmbedder:
    """Embeddings of a finished audioexp run (its model's ``embed(waveform, lengths)``).

    Parameters
    ----------
    run_dir : path
        Output dir of a ``task=train`` run (``resolved_config.yaml``, ``checkpoints/``). A run
        dir is code-adjacent input: its checkpoint is loaded with ``weights_only=True`` and its
        config's targets are checked against an allowlist (:mod:`audioexp.utils.trust`), but
        only load run dirs you trust.
    checkpoint : str
        ``best``, ``last`` or a path.

    Attributes
    ----------
    device : str
        Where :meth:`embed_waveform` runs the model (``cpu`` by default).
    """

    def __init__(self, run_dir: str | None = None, checkpoint: str = "best", name: str | None = None) -> None:
        if not run_dir:
            raise ValueError("the audioexp embedder needs embedder.run_dir=<output dir of a task=train run>")
        self.run_dir = Path(run_dir)
        self.checkpoint = checkpoint
        self.name = name or f"audioexp:{self.run_dir.name}"
        self.device = "cpu"
        self._model = None

    def _checkpoint_path(self) -> Path:
        from audioexp.utils.runs import find_checkpoint

        return find_checkpoint(self.run_dir, self.checkpoint)

    def settings(self) -> dict:
        return {"embedder": "audioexp", "run_dir": str(self.run_dir.resolve()), "checkpoint": _file_info(self._checkpoint_path())}

    def _load(self):
        from audioexp.inference import load_run

        model = load_run(self.run_dir, self.checkpoint)
        if not hasattr(model, "embed"):
            raise TypeError(f"the model of {self.run_dir} ({type(model).__name__}) has no embed(waveform, lengths) method")
        return model

    @staticmethod
    def _rate(model) -> int:
        return int(getattr(getattr(model, "frontend", None), "sample_rate", 16000))

    @torch.no_grad()
    def embed_waveform(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """(time,) mono at ``sample_rate`` (resampled to the run's front-end rate if it
        differs) -> (dim,) float64: the run's ``model.embed`` of the whole clip."""
        if self._model is None:
            self._model = self._load()
        model = self._model.to(self.device)
        x = read_waveform(waveform, sample_rate, self._rate(model))
        return model.embed(x[None].to(self.device))[0].float().cpu().numpy().astype(np.float64)

    def embed(self, datamodule, trainer_kwargs: dict | None = None) -> np.ndarray:
        model = self._load()
        rate = self._rate(model)
        if rate != datamodule.sample_rate:
            raise ValueError(f"the run's front-end expects {rate} Hz audio; set data.sample_rate={rate}")
        return predict_embeddings(model, datamodule, len(datamodule.files), trainer_kwargs)
