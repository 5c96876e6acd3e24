"""Spectral front-ends as ``nn.Module`` s, run inside the model on its device."""

from __future__ import annotations

import torch
from torch import nn

from audioexp.features import functional as F


class LogMelSpectrogram(nn.Module):
    """Waveform to a one-channel log-mel "image" for a 2-D CNN.

    The recipe of the speech/music paper (Han 2021), which used fastai audio v1:
    power mel spectrogram on an HTK mel scale with unnormalised triangles, in dB
    with a ``top_db`` floor; see ``experiments/speech_music.md`` for which values
    are the library's defaults and which are ours.

    Parameters
    ----------
    sample_rate : int
        Expected input rate in Hz.
    n_fft, hop_length, win_length : int
        In samples.
    n_mels : int
    f_min, f_max : float
        In Hz; ``f_max=None`` means Nyquist.
    top_db : float or None
    normalize : {"instance", "none"}
        ``instance`` standardises each spectrogram to zero mean, unit variance.

    Shapes
    ------
    input (batch, time) -> output (batch, 1, n_mels, 1 + time // hop_length)

    Examples
    --------
    >>> LogMelSpectrogram(16000, n_fft=1024, hop_length=512, n_mels=64)(torch.randn(2, 16000)).shape
    torch.Size([2, 1, 64, 32])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 2560,
        hop_length: int = 256,
        n_mels: int = 128,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 100.0,
        normalize: str = "instance",
    ) -> None:
        super().__init__()
        if normalize not in ("instance", "none"):
            raise ValueError(f"normalize must be 'instance' or 'none', got {normalize!r}")
        if f_max is not None and f_max > sample_rate / 2:
            raise ValueError(
                f"f_max={f_max} Hz is above the Nyquist frequency {sample_rate / 2} Hz"
            )
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.win_length = win_length or n_fft
        self.f_min = f_min
        self.f_max = f_max
        self.top_db = top_db
        self.normalize = normalize

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples (centred STFT)."""
        return 1 + num_samples // self.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(
                f"LogMelSpectrogram expects (batch, time) waveforms, got shape {tuple(waveform.shape)}"
            )
        # float32 STFT even under mixed precision: dB of fp16 power underflows
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            x = F.log_mel_spectrogram(
                waveform.float(),
                self.sample_rate,
                self.n_fft,
                self.hop_length,
                self.n_mels,
                self.win_length,
                self.f_min,
                self.f_max,
                self.top_db,
            )
            if self.normalize == "instance":
                x = F.instance_standardize(x)
        return x.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"n_mels={self.n_mels}, top_db={self.top_db}, normalize={self.normalize}"
        )
