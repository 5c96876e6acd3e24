"""Use a finished run from Python: load it, embed audio files, score pairs::

    from audioexp.inference import load_run, embed_file, score_pair
    model = load_run("logs/train/runs/voxceleb_centerloss/2026-11-23_01-00-00")
    embed_file(model, "a.wav").shape            # (ndims,)
    score_pair(model, "a.wav", "b.wav")         # cosine similarity in [-1, 1]
"""

from __future__ import annotations

import os

import numpy as np
import torch

from audioexp.data.audio import load_audio
from audioexp.data.validate import AudioChecks
from audioexp.utils.runs import load_model


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", map_location: str = "cpu"):
    """The trained model of a run's output dir (its saved config plus ``checkpoint``), in eval mode.

    A run dir is code-adjacent input: its config's targets are checked and its checkpoint is
    loaded with ``weights_only=True`` (:mod:`audioexp.utils.trust`), but only load run dirs
    you trust.
    """
    return load_model(run_dir, checkpoint, map_location)


@torch.no_grad()
def embed_file(model, path: str | os.PathLike, checks: AudioChecks | None = None) -> np.ndarray:
    """The model's utterance embedding of a whole audio file, shape (dim,).

    The file is read at the model's sample rate (resampled and down-mixed if needed);
    ``checks`` (e.g. the run's own, :func:`run_checks`) refuse bad audio naming the file.
    """
    sample_rate = getattr(model.frontend, "sample_rate", 16000)
    waveform = load_audio(path, sample_rate, checks=checks)[None].to(next(model.parameters()).device)
    return model.embed(waveform)[0].float().cpu().numpy()


def cosine_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings.

    Examples
    --------
    >>> round(cosine_score(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 4)
    0.7071
    """
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def score_pair(model, path_a: str | os.PathLike, path_b: str | os.PathLike) -> float:
    """Cosine score of two files' embeddings (higher: more likely the same speaker)."""
    return cosine_score(embed_file(model, path_a), embed_file(model, path_b))


def run_checks(data_cfg) -> AudioChecks:
    """The audio checks of a run's data config (its rate, lengths, rate policy, silence)."""
    get = data_cfg.get
    return AudioChecks(int(get("sample_rate", 16000)), float(get("min_seconds", get("min_clip_seconds", 0.0)) or 0.0),
                       get("max_seconds"), get("resample", "any"), get("silence_db", -60.0))
