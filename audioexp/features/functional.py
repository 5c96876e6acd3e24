"""Pure spectral front-end functions (tensor in, tensor out).

Every function here is tested against librosa at stated tolerances
(``tests/unit/test_features.py``).
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF


def mel_spectrogram(
    waveform: torch.Tensor,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    win_length: int | None = None,
    f_min: float = 0.0,
    f_max: float | None = None,
    power: float = 2.0,
    center: bool = True,
    pad_mode: str = "reflect",
    mel_scale: str = "htk",
    norm: str | None = None,
    window: torch.Tensor | None = None,
    fbank: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mel power spectrogram with a periodic Hann window.

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    sample_rate : int
        In Hz.
    n_fft, hop_length, win_length : int
        In samples; ``win_length`` defaults to ``n_fft``.
    f_min, f_max : float
        Edges of the mel filterbank in Hz; ``f_max`` defaults to Nyquist.
    mel_scale : {"htk", "slaney"}
    norm : {None, "slaney"}
        Filter normalisation (``None``: triangles of peak 1).
    window, fbank : Tensor, optional
        The Hann window (win_length,) and the mel matrix (n_fft // 2 + 1, n_mels), when the
        caller keeps them (a module's buffers); computed here otherwise.

    Returns
    -------
    Tensor, shape (..., n_mels, frames)
        ``frames = 1 + time // hop_length`` when ``center``.

    Examples
    --------
    >>> mel_spectrogram(torch.randn(2, 16000), 16000, 1024, 256, 64).shape
    torch.Size([2, 64, 63])
    """
    win_length = win_length or n_fft
    if window is None:
        window = torch.hann_window(win_length, dtype=waveform.dtype, device=waveform.device)
    spec = stft_power(waveform, window, n_fft, hop_length, win_length, power, center, pad_mode)
    if fbank is None:
        fbank = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
    return apply_filterbank(spec, fbank)


def stft_power(
    waveform: torch.Tensor, window: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
    power: float = 2.0, center: bool = True, pad_mode: str = "reflect",
) -> torch.Tensor:
    """One-sided, unnormalised STFT magnitude to ``power`` (2: power), shape (..., n_fft // 2 + 1, frames).

    The spectrogram under every front-end of this package (``torchaudio.functional.spectrogram``).
    """
    return AF.spectrogram(
        waveform, pad=0, window=window, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        power=power, normalized=False, center=center, pad_mode=pad_mode, onesided=True,
    )


def apply_filterbank(spec: torch.Tensor, fbank: torch.Tensor) -> torch.Tensor:
    """Filter energies ``fbank^T spec``: (..., freq, frames) and (freq, filters) -> (..., filters, frames).

    ``fbank`` is moved to the device and dtype of ``spec``.
    """
    fbank = fbank.to(device=spec.device, dtype=spec.dtype)
    return torch.matmul(spec.transpose(-1, -2), fbank).transpose(-1, -2)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   mel_scale: str = "htk", norm: str | None = None) -> torch.Tensor:
    """Triangular mel filters, shape ``(n_fft // 2 + 1, n_mels)`` (``f_max`` None: Nyquist).

    >>> mel_filterbank(16000, 512, 40).shape
    torch.Size([257, 40])
    """
    f_max = float(sample_rate) / 2 if f_max is None else float(f_max)
    return AF.melscale_fbanks(n_freqs=n_fft // 2 + 1, f_min=f_min, f_max=f_max, n_mels=n_mels,
                              sample_rate=sample_rate, norm=norm, mel_scale=mel_scale)


def amplitude_to_db(
    power: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0
) -> torch.Tensor:
    """``10 log10(max(power, amin))``, floored at ``top_db`` below each item's maximum.

    The floor is taken per item over all but the batch dimension (librosa's
    ``power_to_db`` with ``ref=1.0`` does it over the whole array it is given).

    Parameters
    ----------
    power : Tensor, shape (batch, ...) or (freq, time)
        A power spectrogram.

    Returns
    -------
    Tensor, same shape as ``power``

    Examples
    --------
    >>> amplitude_to_db(torch.rand(3, 64, 10), top_db=80.0).shape
    torch.Size([3, 64, 10])
    """
    db = 10.0 * torch.log10(torch.clamp(power, min=amin))
    if top_db is not None:
        if db.dim() > 2:
            peak = db.flatten(1).amax(dim=1).view(-1, *([1] * (db.dim() - 1)))
        else:
            peak = db.amax()
        db = torch.maximum(db, peak - top_db)
    return db


def log_mel_spectrogram(
    waveform: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
    win_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, top_db: float | None = 80.0,
    window: torch.Tensor | None = None, fbank: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-mel spectrogram in dB (power, HTK mel scale, unnormalised filters).

    Parameters
    ----------
    waveform : Tensor, shape (batch, time)

    Returns
    -------
    Tensor, shape (batch, n_mels, frames)

    Examples
    --------
    >>> log_mel_spectrogram(torch.randn(2, 8000), 16000, 512, 160, 40).shape
    torch.Size([2, 40, 51])
    """
    mel = mel_spectrogram(
        waveform, sample_rate, n_fft, hop_length, n_mels, win_length, f_min, f_max, window=window, fbank=fbank
    )
    return amplitude_to_db(mel, top_db=top_db)


def instance_standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per item over all but the batch dimension.

    Parameters
    ----------
    x : Tensor, shape (batch, ...)

    Returns
    -------
    Tensor, same shape
    """
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def log_power_spectrogram(
    waveform: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hamming",
    center: bool = True,
    pad_mode: str = "reflect",
    eps: float = 1e-10,
    window_tensor: torch.Tensor | None = None,
) -> torch.Tensor:
    """Natural log of the STFT power, ``log(|X|^2 + eps)``.

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    n_fft, hop_length, win_length : int
        In samples (``win_length`` defaults to ``n_fft``).
    window : {"hamming", "hann"}
        Periodic windows, as ``scipy.signal.get_window`` (and so librosa) builds them.
    window_tensor : Tensor, optional
        That window, shape (win_length,), when the caller keeps it (a module's buffer).

    Returns
    -------
    Tensor, shape (..., n_fft // 2 + 1, 1 + time // hop_length) when ``center``

    Examples
    --------
    >>> log_power_spectrogram(torch.randn(2, 48000), 320, 160).shape
    torch.Size([2, 161, 301])
    """
    win_length = win_length or n_fft
    win = window_tensor if window_tensor is not None else periodic_window(window, win_length, waveform.dtype, waveform.device)
    power = stft_power_real(waveform, win, n_fft, hop_length, win_length, center, pad_mode)
    return torch.log(power + eps)


def stft_power_real(
    waveform: torch.Tensor, window: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
    center: bool = True, pad_mode: str = "reflect",
) -> torch.Tensor:
    """One-sided, unnormalised STFT power ``re^2 + im^2``, shape (..., n_fft // 2 + 1, frames).

    :func:`stft_power` with ``power=2``, computed on the real view of the STFT
    (``torch.view_as_real``) before any shape is read: no shape is ever taken of a complex
    tensor, which the ONNX (dynamo) exporter cannot translate (``aten.sym_size`` of a
    complex value). The power equals ``|X|^2`` to float rounding (``|X|`` is a ``hypot``).

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    window : Tensor, shape (win_length,)
    n_fft, hop_length, win_length : int
        In samples.
    center : bool
        Centred frames, the signal padded by ``n_fft // 2`` each side (``pad_mode``).

    Returns
    -------
    Tensor, shape (..., n_fft // 2 + 1, frames)

    Examples
    --------
    >>> x = torch.randn(2, 3, 4000, dtype=torch.float64)
    >>> win = torch.hamming_window(320, dtype=torch.float64)
    >>> power = stft_power_real(x, win, 320, 160, 320)
    >>> power.shape
    torch.Size([2, 3, 161, 26])
    >>> torch.allclose(power, stft_power(x, win, 320, 160, 320), rtol=1e-12, atol=0)
    True
    """
    leading = waveform.shape[:-1]
    spec = torch.stft(
        waveform.reshape(-1, waveform.shape[-1]), n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        window=window, center=center, pad_mode=pad_mode, normalized=False, onesided=True, return_complex=True,
    )
    power = torch.view_as_real(spec).pow(2).sum(dim=-1)  # (items, freq, frames): real from here on
    if len(leading) == 1:
        return power
    # the frames as -1: a size given by number would be read off the STFT's (complex) output
    return power.reshape(*leading, n_fft // 2 + 1, -1)


def periodic_window(name: str, length: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """A periodic ``hamming`` or ``hann`` window of ``length`` samples.

    >>> periodic_window("hamming", 4)
    tensor([0.0800, 0.5400, 1.0000, 0.5400])
    """
    windows = {"hamming": torch.hamming_window, "hann": torch.hann_window}
    if name not in windows:
        raise ValueError(f"window must be one of {sorted(windows)}, got {name!r}")
    return windows[name](length, periodic=True, dtype=dtype, device=device)


def reflect_pad_items(waveform: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad each item of a zero-padded batch at ITS edges, as a lone item is padded.

    Parameters
    ----------
    waveform : Tensor, shape (batch, time)
        Item ``b`` holds ``lengths[b]`` valid samples, then padding.
    lengths : Tensor of int, shape (batch,)
    pad : int
        Samples added before each item and reflected after its last valid one.

    Returns
    -------
    Tensor, shape (batch, time + 2 pad)
        Item ``b`` starts with ``torch.nn.functional.pad(x_b, (pad, pad), mode="reflect")``.

    Examples
    --------
    >>> reflect_pad_items(torch.tensor([[1.0, 2.0, 3.0, 0.0]]), torch.tensor([3]), 1)
    tensor([[2., 1., 2., 3., 2., 0.]])
    """
    if int(lengths.min()) <= pad:
        raise ValueError(f"items must be longer than {pad} samples, got {int(lengths.min())}")
    lengths = lengths.to(waveform.device)
    out = torch.nn.functional.pad(waveform, (pad, pad))
    out[:, :pad] = waveform[:, 1 : pad + 1].flip(-1)
    k = torch.arange(pad, device=waveform.device)[None, :]
    source = (lengths[:, None] - 2 - k).clamp(min=0)  # x[L-2], x[L-3], ...: reflection about x[L-1]
    return out.scatter(1, lengths[:, None] + pad + k, torch.gather(waveform, 1, source))


def masked_mean_variance_normalize(
    x: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Mean and variance normalisation over time, per item and per frequency.

    Only the first ``lengths[b]`` frames of item ``b`` enter the statistics; the padded
    frames are set to zero, so a padded batch normalises exactly as its items one by one.

    Parameters
    ----------
    x : Tensor, shape (batch, freq, frames)
    lengths : Tensor of int, shape (batch,), optional
        Valid frames per item (all frames when omitted).

    Returns
    -------
    Tensor, shape (batch, freq, frames)
    """
    if lengths is None:
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / (std + eps)
    frames = x.shape[-1]
    mask = (torch.arange(frames, device=x.device)[None, :] < lengths.to(x.device)[:, None]).to(x.dtype)
    mask = mask[:, None, :]
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
    mean = (x * mask).sum(dim=-1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=-1, keepdim=True) / count
    return (x - mean) / (var.sqrt() + eps) * mask


def check_sample_rate(audio_rate: int | None, frontend_rate: int | None, frontend: str = "the front-end") -> None:
    """Raise when audio at ``audio_rate`` Hz would reach a front-end built for ``frontend_rate`` Hz.

    Filterbank edges, window lengths in samples and mel matrices are computed from the
    front-end's rate: fed another rate they silently compute something else. Either rate
    unknown (None) passes. The configs give front-ends ``${data.sample_rate}``; this catches
    a front-end whose rate was set by hand.

    >>> check_sample_rate(16000, 16000)
    >>> check_sample_rate(8000, 16000)
    Traceback (most recent call last):
    ...
    ValueError: the data gives 8000 Hz audio, but the front-end was built for 16000 Hz: give both one rate (data.sample_rate; the front-ends' sample_rate follows it as ${data.sample_rate})
    """
    if audio_rate is None or frontend_rate is None or int(audio_rate) == int(frontend_rate):
        return
    raise ValueError(
        f"the data gives {int(audio_rate)} Hz audio, but {frontend} was built for {int(frontend_rate)} Hz: give both "
        "one rate (data.sample_rate; the front-ends' sample_rate follows it as ${data.sample_rate})"
    )


def analysis_dtype(waveform: torch.Tensor) -> torch.dtype:
    """The dtype a front-end computes in: float32 at least (the dB of half-precision power
    underflows, so fp16/bf16 input is analysed in float32), float64 when given float64
    (``trainer.precision=64-true``)."""
    return torch.promote_types(waveform.dtype, torch.float32)
