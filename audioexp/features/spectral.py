"""Spectral front-ends as ``nn.Module`` s, run inside the model on its device.

Windows and hops are given in milliseconds and turned into samples at the data's rate by
:func:`ms_to_samples`.
"""

from __future__ import annotations

import torch
from torch import nn

from audioexp.features import functional as F


def ms_to_samples(ms: float, sample_rate: int) -> int:
    """A duration in milliseconds as a whole number of samples at ``sample_rate`` (rounded).

    Front-end configs give windows and hops in milliseconds so that a recipe means the same
    at any sample rate; this is the one place they become samples.

    Parameters
    ----------
    ms : float
        Duration in milliseconds.
    sample_rate : int
        In Hz.

    Returns
    -------
    int
        ``round(ms * sample_rate / 1000)``, at least 1.

    Examples
    --------
    >>> ms_to_samples(58.05, 44100), ms_to_samples(58.05, 16000), ms_to_samples(10.0, 16000)
    (2560, 929, 160)
    """
    samples = int(round(ms * sample_rate / 1000))
    if samples < 1:
        raise ValueError(f"{ms} ms at {sample_rate} Hz is less than one sample")
    return samples


class LogMelSpectrogram(nn.Module):
    """Waveform to a one-channel log-mel "image" for a 2-D CNN.

    The recipe of the speech/music paper (Han 2021), which used fastai audio v1:
    power mel spectrogram (Hann window) on an HTK mel scale with unnormalised triangles,
    in dB with a ``top_db`` floor, not standardised (the library's ``standardize=False``);
    see ``experiments/speech_music.md`` for which values are the library's defaults and
    which are ours.

    Parameters
    ----------
    sample_rate : int
        Expected input rate in Hz.
    win_ms, hop_ms : float
        Window and hop in milliseconds, turned into samples at ``sample_rate``
        (:func:`ms_to_samples`). The defaults, 58.05 and 5.805 ms, are fastai audio v1's
        2,560 and 256 samples at 44.1 kHz, the rate its ``f_max=22050`` is built for.
    n_mels : int
    n_fft : int, optional
        FFT size in samples; ``None``: the window length (the library's ``n_fft`` is its
        window), plus one sample of zero padding when the window is odd (929 samples at
        16 kHz): torchaudio's mel filters place the last FFT bin at Nyquist, which only
        an even FFT size has. At least the window length.
    f_min, f_max : float
        In Hz; ``f_max=None`` means Nyquist.
    top_db : float or None
    normalize : {"none", "instance"}
        ``instance`` standardises each spectrogram to zero mean, unit variance (ours).

    Shapes
    ------
    input (batch, time) -> output (batch, 1, n_mels, 1 + time // hop_length)

    Examples
    --------
    >>> LogMelSpectrogram(16000, win_ms=64.0, hop_ms=32.0, n_mels=64)(torch.randn(2, 16000)).shape
    torch.Size([2, 1, 64, 32])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        win_ms: float = 58.05,
        hop_ms: float = 5.805,
        n_mels: int = 128,
        n_fft: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 100.0,
        normalize: str = "none",
    ) -> None:
        super().__init__()
        if normalize not in ("instance", "none"):
            raise ValueError(f"normalize must be 'instance' or 'none', got {normalize!r}")
        if f_max is not None and f_max > sample_rate / 2:
            raise ValueError(
                f"f_max={f_max} Hz is above the Nyquist frequency {sample_rate / 2} Hz"
            )
        self.sample_rate = sample_rate
        self.win_ms, self.hop_ms = win_ms, hop_ms
        self.win_length = ms_to_samples(win_ms, sample_rate)
        self.hop_length = ms_to_samples(hop_ms, sample_rate)
        self.n_fft = n_fft or self.win_length + self.win_length % 2
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft={self.n_fft} is shorter than the {win_ms} ms window ({self.win_length} samples)")
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.top_db = top_db
        self.normalize = normalize
        # built once and moved with the module; not saved (checkpoints hold no front-end tensors)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer(
            "fbank", F.mel_filterbank(sample_rate, self.n_fft, n_mels, f_min, f_max), persistent=False
        )

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
            dtype = F.analysis_dtype(waveform)
            x = F.log_mel_spectrogram(
                waveform.to(dtype),
                self.sample_rate,
                self.n_fft,
                self.hop_length,
                self.n_mels,
                self.win_length,
                self.f_min,
                self.f_max,
                self.top_db,
                window=self.window.to(dtype),  # float32 at least, even if the module was cast (bf16-true)
                fbank=self.fbank.to(dtype),
            )
            if self.normalize == "instance":
                x = F.instance_standardize(x)
        return x.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, win_ms={self.win_ms} ({self.win_length} samples), "
            f"hop_ms={self.hop_ms} ({self.hop_length} samples), n_fft={self.n_fft}, "
            f"n_mels={self.n_mels}, top_db={self.top_db}, normalize={self.normalize}"
        )


class LogPowerSpectrogram(nn.Module):
    """Log-power spectrogram with per-frequency mean and variance normalisation.

    The front-end of Yadav & Rai (2018) after VoxCeleb (Nagrani et al. 2017): Hamming
    window of 20 ms, hop 10 ms, normalised per frequency over the utterance. The paper says
    "a 160 point fft" but reports 1 x 161 x 301 for 3 s, which needs a 320-point FFT
    (161 bins) and centred frames (1 + 48000 // 160 = 301): we follow the reported shape.

    Parameters
    ----------
    sample_rate : int
    win_ms, hop_ms : float
        Window and hop in milliseconds.
    n_fft : int, optional
        Defaults to the window length in samples (320 at 16 kHz: 161 bins).
    window : {"hamming", "hann"}
    normalize : bool
        Mean and variance normalisation per frequency over the (valid) frames.

    Shapes
    ------
    input (batch, time) [+ lengths (batch,) in samples] -> (batch, 1, n_fft // 2 + 1, frames)

    With ``lengths``, each item is transformed at its own length (as it would be alone),
    padded frames are zero and excluded from the normalisation: batched equals per-item.

    Examples
    --------
    >>> LogPowerSpectrogram(16000)(torch.randn(2, 48000)).shape
    torch.Size([2, 1, 161, 301])
    """

    def __init__(
        self, sample_rate: int = 16000, win_ms: float = 20.0, hop_ms: float = 10.0, n_fft: int | None = None,
        window: str = "hamming", normalize: bool = True, eps: float = 1e-10,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = ms_to_samples(win_ms, sample_rate)
        self.hop_length = ms_to_samples(hop_ms, sample_rate)
        self.n_fft = n_fft or self.win_length
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft={self.n_fft} is shorter than the {win_ms} ms window ({self.win_length} samples)")
        self.window = window
        self.normalize = normalize
        self.eps = eps
        self.register_buffer("window_tensor", F.periodic_window(window, self.win_length), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int | torch.Tensor):
        """Frames for ``num_samples`` samples (centred STFT): ``1 + num_samples // hop``."""
        return 1 + num_samples // self.hop_length

    def _spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        return F.log_power_spectrogram(
            waveform, self.n_fft, self.hop_length, self.win_length, self.window, eps=self.eps,
            window_tensor=self.window_tensor.to(waveform.dtype),
        )

    def _spectrogram_padded(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One batched STFT whose frames equal each item's own centred STFT.

        Each item is reflect-padded at ITS edges (as ``torch.stft(center=True)`` pads a lone
        item): the reflected tail of each item is written after its last sample, then the
        batch is framed without centring.
        """
        half = self.n_fft // 2
        if int(lengths.min()) <= half:
            raise ValueError(f"utterances must be longer than {half} samples, got {int(lengths.min())}")
        padded = F.reflect_pad_items(waveform, lengths, half)
        spec = F.log_power_spectrogram(
            padded, self.n_fft, self.hop_length, self.win_length, self.window, center=False, eps=self.eps,
            window_tensor=self.window_tensor.to(waveform.dtype),
        )
        frames = self.num_frames(lengths)
        keep = torch.arange(spec.shape[-1], device=spec.device)[None, :] < frames[:, None]
        return spec * keep[:, None, :]

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(
                f"LogPowerSpectrogram expects (batch, time) waveforms, got shape {tuple(waveform.shape)}"
            )
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.to(F.analysis_dtype(waveform))
            if lengths is None:
                spec = self._spectrogram(waveform)
                frame_lengths = None
            else:
                frame_lengths = self.num_frames(lengths.to(waveform.device))
                spec = self._spectrogram_padded(waveform, lengths.to(waveform.device))
            if self.normalize:
                spec = F.masked_mean_variance_normalize(spec, frame_lengths)
        return spec.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, win_length={self.win_length}, hop_length={self.hop_length}, "
            f"n_fft={self.n_fft}, window={self.window}, normalize={self.normalize}"
        )
