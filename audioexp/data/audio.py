"""Reading audio files with soundfile, with loud errors for bad input.

torchaudio 2.11 has no I/O backends, so audio is read with ``soundfile`` (WAV,
FLAC, OGG, ...) and resampled with ``torchaudio.functional.resample``.
"""

from __future__ import annotations

import io
import logging
import math
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioexp.data.validate import AudioChecks, check_waveform, wav_data_frames
from audioexp.utils.logging import log_once

log = logging.getLogger(__name__)


class AudioFileError(RuntimeError):
    """An audio file that cannot be used: corrupt, empty, non-finite or too short."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def to_mono_at_rate(data: np.ndarray, rate: int, sample_rate: int, source="a waveform") -> torch.Tensor:
    """``data`` (time, channels) at ``rate`` as a mono float32 waveform at ``sample_rate``:
    channels averaged, resampled (windowed sinc, torchaudio); each conversion said once in the
    log, naming the first ``source``.
    """
    if data.shape[1] > 1:
        log_once(
            log,
            f"downmix:{data.shape[1]}",
            "down-mixing %d-channel audio to mono by averaging the channels (first: %s)",
            data.shape[1],
            source,
        )
        data = data.mean(axis=1, keepdims=True)
    waveform = torch.from_numpy(np.ascontiguousarray(data[:, 0], dtype=np.float32))
    if rate != sample_rate:
        log_once(
            log,
            f"resample:{rate}->{sample_rate}",
            "resampling %d Hz audio to %d Hz (first: %s)",
            rate,
            sample_rate,
            source,
        )
        waveform = AF.resample(waveform, rate, sample_rate)
    return waveform


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    min_seconds: float = 0.0,
    checks: AudioChecks | None = None,
    data: bytes | None = None,
) -> torch.Tensor:
    """Read a file as a mono float32 waveform at ``sample_rate``.

    Multi-channel audio is down-mixed by averaging the channels and other rates are
    resampled (windowed sinc, torchaudio); each conversion is said once in the log.

    Parameters
    ----------
    path : path-like
    sample_rate : int
        Target rate in Hz.
    min_seconds : float
        Files shorter than this (before padding) raise :class:`AudioFileError`.
    checks : AudioChecks, optional
        The corpus's checks (:mod:`audioexp.data.validate`), applied to the decoded file
        whatever ``data.validate`` was at prepare: a truncated WAV, a rate the corpus refuses,
        too short or too long, NaN/Inf, digital silence or near-silence raise with the file
        name. Without them only empty, non-finite and too-short audio raise.
    data : bytes, optional
        The file's encoded bytes (e.g. from a shard) to decode instead of reading ``path``,
        which still names it in errors.

    Returns
    -------
    Tensor, shape (time,)

    Raises
    ------
    AudioFileError
        Unreadable or corrupt file, no samples, NaN/Inf samples, or too short (and with
        ``checks``, whatever they refuse).
    """
    try:
        source = io.BytesIO(data) if data is not None else os.fspath(path)
        data, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioFileError(path, f"cannot be decoded as audio ({err})") from err
    if checks is not None:
        # (the declared length of a WAV header: checked at prepare; a shard holds its file whole)
        declared = (wav_data_frames(path) if not isinstance(source, io.BytesIO)
                    and os.fspath(path).lower().endswith(".wav") else None)
        problem = check_waveform(checks, path, data, file_rate, declared[0] if declared else None)
        if problem is not None:
            raise AudioFileError(path, problem[1])
    if data.shape[0] == 0:
        raise AudioFileError(path, "has no samples (empty audio)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioFileError(path, f"contains {bad} NaN or infinite samples")
    waveform = to_mono_at_rate(data, file_rate, sample_rate, path)
    if waveform.shape[0] < math.ceil(min_seconds * sample_rate):
        raise AudioFileError(
            path,
            f"is {waveform.shape[0] / sample_rate:.3f} s long, shorter than the minimum {min_seconds} s",
        )
    return waveform


def fix_length(
    waveform: torch.Tensor, num_samples: int, mode: str = "start", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop or zero-pad the last dimension to ``num_samples``.

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    mode : {"start", "center", "random"}
        Where a longer waveform is cropped.

    Returns
    -------
    Tensor, shape (..., num_samples)
    """
    length = waveform.shape[-1]
    if length == num_samples:
        return waveform
    if length < num_samples:
        return torch.nn.functional.pad(waveform, (0, num_samples - length))
    excess = length - num_samples
    if mode == "start":
        offset = 0
    elif mode == "center":
        offset = excess // 2
    elif mode == "random":
        offset = int(torch.randint(0, excess + 1, (1,), generator=generator))
    else:
        raise ValueError(f"mode must be 'start', 'center' or 'random', got {mode!r}")
    return waveform[..., offset : offset + num_samples]
