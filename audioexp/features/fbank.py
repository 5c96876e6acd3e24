"""Log mel filterbanks with an energy-based voice activity detector (Xi et al., ICASSP 2022).

"Frontend attributes disentanglement for speech emotion recognition", section 4.1:
"41-dim filter-banks ... extracted over 40 ms Hamming windows with a 10 ms shift between
windows, and a VAD applied. Emotional data were processed in exactly the same way" (as the
VoxCeleb1 pre-training data). The paper names neither the filterbank scale nor the VAD,
nor whether its 41 dimensions are 41 mel filters or, in Kaldi's convention
(``compute-fbank-feats --num-mel-bins=40 --use-energy=true``), 40 filters with the frame's
log energy in front. Both are here (``energy``); what is done (see ``experiments/iemocap.md``):

- power spectrum of 40 ms Hamming frames every 10 ms, zero-padded to a 1,024-point FFT
  (the next power of two, as Kaldi's ``compute-fbank-feats`` pads a 640-sample window),
  centred frames with reflected edges (torch / librosa convention);
- 41 triangular filters on the HTK mel scale (Kaldi's scale) from 20 Hz (Kaldi's default
  ``low-freq``) to Nyquist, natural log with a floor (default); or, with ``energy=True``
  and 40 filters, Kaldi's layout: the natural log of the frame's raw energy (sum of squared
  samples before the window, Kaldi's default ``--raw-energy=true``) as feature 0, then the
  40 log filterbank energies;
- energy VAD: a frame is speech when its windowed energy lies within ``vad_top_db`` dB of
  the loudest frame of its utterance (ours: 30 dB); non-speech frames are removed and the
  speech frames of each item are packed to the front (looped to the common length of the
  batch, so a batch stays one tensor and needs no mask downstream);
- mean and variance normalisation per filter over the speech frames of each utterance.

Pure functions first; :class:`LogFilterbank` runs them inside the model, on its device.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from audioexp.features.functional import (
    analysis_dtype, apply_filterbank, mel_filterbank, periodic_window, reflect_pad_items, stft_power,
)
from audioexp.features.spectral import ms_to_samples
from audioexp.utils.logging import log_once

log = logging.getLogger(__name__)

__all__ = [
    "LogFilterbank",
    "energy_vad_mask",
    "frame_energy_db",
    "frame_log_energy",
    "log_filterbank",
    "normalize_over_mask",
    "pack_voiced_frames",
    "reflect_pad_items",
]


def _capturing_graph() -> bool:
    """Whether the code runs under ``torch.jit.trace``, ``torch.export`` or ``torch.compile``,
    where a tensor's value cannot steer Python (it would be frozen into the graph, or refused)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def _hamming(win_length: int, like: torch.Tensor) -> torch.Tensor:
    return periodic_window("hamming", win_length, like.dtype, like.device)


def _htk_filters(sample_rate: int, n_fft: int, n_filters: int, f_min: float, f_max: float | None) -> torch.Tensor:
    return mel_filterbank(sample_rate, n_fft, n_filters, f_min, f_max, mel_scale="htk", norm=None)


def log_filterbank(
    waveform: torch.Tensor, sample_rate: int = 16000, n_filters: int = 41, win_ms: float = 40.0, hop_ms: float = 10.0,
    n_fft: int = 1024, f_min: float = 20.0, f_max: float | None = None, floor: float = 1e-10, center: bool = True,
    window: torch.Tensor | None = None, fbank: torch.Tensor | None = None,
) -> torch.Tensor:
    """Natural log of HTK-mel filterbank energies of Hamming-windowed power spectra.

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    sample_rate : int
        In Hz (the paper's corpora, VoxCeleb1 and IEMOCAP: 16000).
    n_filters : int
        Triangular filters (41 in the paper).
    win_ms, hop_ms : float
        Window and shift in milliseconds (40 and 10 in the paper).
    n_fft : int
        FFT size; the window is zero-padded (centred) to it.
    f_min, f_max : float
        Filterbank edges in Hz (``f_max=None``: Nyquist).
    floor : float
        Energies are clamped to at least this before the log.
    center : bool
        Centred frames with reflected edges (``False``: the input is already padded by
        ``n_fft // 2`` each side, e.g. by :func:`reflect_pad_items`).
    window, fbank : Tensor, optional
        The Hamming window (win_length,) and the HTK mel matrix (n_fft // 2 + 1, n_filters),
        when the caller keeps them (:class:`LogFilterbank`'s buffers); computed here otherwise.

    Returns
    -------
    Tensor, shape (..., n_filters, 1 + time // hop)

    Examples
    --------
    >>> log_filterbank(torch.randn(2, 16000)).shape
    torch.Size([2, 41, 101])
    """
    win_length = ms_to_samples(win_ms, sample_rate)
    hop_length = ms_to_samples(hop_ms, sample_rate)
    if n_fft < win_length:
        raise ValueError(f"n_fft={n_fft} is shorter than the {win_ms} ms window ({win_length} samples)")
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got {f_min}, {f_max}")
    power = stft_power(waveform, _hamming(win_length, waveform) if window is None else window, n_fft, hop_length,
                       win_length, 2.0, center, "reflect")
    if fbank is None:
        fbank = _htk_filters(sample_rate, n_fft, n_filters, f_min, f_max)
    return torch.log(apply_filterbank(power, fbank).clamp(min=floor))


def _frame_power(
    waveform: torch.Tensor, win_length: int, hop_length: int, center: bool, window: torch.Tensor | None,
) -> torch.Tensor:
    """Sum of squared (windowed, if ``window``) samples of each frame, (..., 1 + time // hop).

    Frames of exactly the window length (no FFT padding), centred on ``t * hop`` with
    reflected edges; with ``center=False`` the input is already padded by half a window
    each side.
    """
    half = win_length // 2
    if center:
        padded = torch.nn.functional.pad(waveform.unsqueeze(-2), (half, half), mode="reflect").squeeze(-2)
    else:
        padded, waveform = waveform, waveform[..., half : waveform.shape[-1] - half]
    frames = padded.unfold(-1, win_length, hop_length)
    if window is not None:
        frames = frames * window
    n_frames = 1 + waveform.shape[-1] // hop_length
    return frames.pow(2).sum(dim=-1)[..., :n_frames]


def frame_energy_db(
    waveform: torch.Tensor, sample_rate: int = 16000, win_ms: float = 40.0, hop_ms: float = 10.0, floor: float = 1e-10,
    center: bool = True, window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Energy of each Hamming-windowed frame in dB, ``10 log10(sum_n (w[n] x[t H + n])^2)``.

    The frames are those of :func:`log_filterbank` (centred, reflected edges; with
    ``center=False`` the input is already padded by half a window each side).

    Parameters
    ----------
    waveform : Tensor, shape (..., time)

    Returns
    -------
    Tensor, shape (..., 1 + time // hop)
    """
    win_length = ms_to_samples(win_ms, sample_rate)
    hop_length = ms_to_samples(hop_ms, sample_rate)
    if window is None:
        window = _hamming(win_length, waveform)
    energy = _frame_power(waveform, win_length, hop_length, center, window)
    return 10.0 * torch.log10(energy.clamp(min=floor))


def frame_log_energy(
    waveform: torch.Tensor, sample_rate: int = 16000, win_ms: float = 40.0, hop_ms: float = 10.0, floor: float = 1e-10,
    center: bool = True,
) -> torch.Tensor:
    """Natural log of each frame's raw energy, ``log(max(sum_n x[t H + n]^2, floor))``.

    Kaldi's ``--use-energy`` feature with its default ``--raw-energy=true`` (the energy of
    the frame before the window), without Kaldi's dither, DC removal and pre-emphasis, which
    :func:`log_filterbank` does not apply either. The frames are those of
    :func:`log_filterbank` and :func:`frame_energy_db`.

    Parameters
    ----------
    waveform : Tensor, shape (..., time)
    sample_rate : int
    win_ms, hop_ms : float
    floor : float
        Energies are clamped to at least this before the log (Kaldi's default
        ``--energy-floor=0`` keeps only a float epsilon).
    center : bool
        ``False``: the input is already padded by half a window each side.

    Returns
    -------
    Tensor, shape (..., 1 + time // hop)

    Examples
    --------
    >>> frame_log_energy(torch.randn(2, 16000)).shape
    torch.Size([2, 101])
    """
    win_length = ms_to_samples(win_ms, sample_rate)
    hop_length = ms_to_samples(hop_ms, sample_rate)
    return torch.log(_frame_power(waveform, win_length, hop_length, center, None).clamp(min=floor))


def energy_vad_mask(
    energy_db: torch.Tensor, top_db: float = 30.0, num_frames: torch.Tensor | None = None
) -> torch.Tensor:
    """Speech frames: those within ``top_db`` dB of the loudest valid frame of their item.

    Parameters
    ----------
    energy_db : Tensor, shape (batch, frames)
        From :func:`frame_energy_db`.
    top_db : float
        Threshold below each item's loudest frame.
    num_frames : Tensor of int, shape (batch,), optional
        Valid frames per item (a padded batch); later frames are never speech.

    Returns
    -------
    Tensor of bool, shape (batch, frames)

    Examples
    --------
    >>> energy_vad_mask(torch.tensor([[-10.0, -45.0, -20.0]]), top_db=30.0)
    tensor([[ True, False,  True]])
    """
    if energy_db.dim() != 2:
        raise ValueError(f"energy_db must be (batch, frames), got shape {tuple(energy_db.shape)}")
    valid = torch.ones_like(energy_db, dtype=torch.bool)
    if num_frames is not None:
        valid = torch.arange(energy_db.shape[1], device=energy_db.device)[None, :] < num_frames.to(energy_db.device)[:, None]
    peak = energy_db.masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True)
    return valid & (energy_db > peak - top_db)


def normalize_over_mask(features: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean and variance normalisation per feature over the masked frames of each item.

    Parameters
    ----------
    features : Tensor, shape (batch, n_features, frames)
    mask : Tensor of bool, shape (batch, frames)

    Returns
    -------
    Tensor, same shape (unmasked frames are normalised with the same statistics)
    """
    m = mask.to(features.dtype)[:, None, :]
    count = m.sum(dim=-1, keepdim=True).clamp(min=1)
    mean = (features * m).sum(dim=-1, keepdim=True) / count
    var = (((features - mean) * m) ** 2).sum(dim=-1, keepdim=True) / count
    return (features - mean) / (var.sqrt() + eps)


def pack_voiced_frames(
    features: torch.Tensor, mask: torch.Tensor, num_out: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop non-speech frames: each item's speech frames, in order, packed to the front.

    Items with fewer speech frames than ``num_out`` repeat theirs cyclically to fill the
    output, so a batch stays one unpadded tensor.

    The default output length is computed by tensor ops (a boolean selection of the frame
    positions below the largest count), not read into Python: a traced or exported graph
    (``torch.jit.trace``, ``torch.onnx.export``) keeps it a function of its input instead of
    freezing the count of the example it was built on. No sort either (ONNX has no stable one).

    Parameters
    ----------
    features : Tensor, shape (batch, n_features, frames)
    mask : Tensor of bool, shape (batch, frames)
        Speech frames; every item needs at least one.
    num_out : int, optional
        Output frames; default: the largest speech-frame count of the batch.

    Returns
    -------
    packed : Tensor, shape (batch, n_features, num_out)
    counts : Tensor of int, shape (batch,)
        Speech frames per item.

    Examples
    --------
    >>> x = torch.arange(5.0).view(1, 1, 5)
    >>> pack_voiced_frames(x, torch.tensor([[True, False, True, False, False]]), 3)[0]
    tensor([[[0., 2., 0.]]])
    """
    counts = mask.sum(dim=1)
    if not _capturing_graph() and bool((counts == 0).any()):
        raise ValueError("pack_voiced_frames: an item has no speech frame")
    if num_out is None:  # 0 .. max(counts) - 1, a length the graph computes (see above)
        positions = torch.arange(mask.shape[1], device=features.device)
        positions = positions[positions < counts.max()]
        if not torch.jit.is_tracing():  # (a trace's sizes are tensors)
            # every item has a speech frame (checked above): tells an exporter the length is positive
            torch._check(positions.shape[0] >= 1)
    else:
        positions = torch.arange(int(num_out), device=features.device)
    # the frames in the stable-sorted order of ~mask: the speech frames first, in their order,
    # then the others; each frame's place in it is a running count of its kind
    frames = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
    place = torch.where(mask, mask.cumsum(dim=1) - 1, counts[:, None] + (~mask).cumsum(dim=1) - 1)
    order = torch.zeros_like(frames).scatter(1, place, frames)
    t = positions[None, :] % counts[:, None]
    source = torch.gather(order, 1, t)
    packed = torch.gather(features, 2, source[:, None, :].expand(-1, features.shape[1], -1))
    return packed, counts


class LogFilterbank(nn.Module):
    """41-dim log filterbanks (41 mel, or 40 mel + log energy) with energy VAD, as
    one-channel "images" for a 2-D CNN.

    Parameters
    ----------
    sample_rate : int
    n_filters : int
        Mel filters (41 by default; 40 with ``energy=True`` for Kaldi's 41-dim layout).
    win_ms, hop_ms : float
    n_fft : int
    f_min, f_max : float
    energy : bool
        Put the log raw energy of each frame (:func:`frame_log_energy`) in front of the
        filterbanks, as Kaldi's ``--use-energy=true``: ``n_filters + 1`` features.
    vad : {"energy", "none"}
        Drop frames more than ``vad_top_db`` dB below the utterance's loudest frame.
    vad_top_db : float
    normalize : bool
        Mean and variance normalisation per feature (the energy too) over the speech frames.

    Shapes
    ------
    input (batch, time) [+ lengths (batch,) in samples] -> (batch, 1, num_features, frames'),
    ``num_features = n_filters + energy``,
    ``frames'`` the largest number of speech frames in the batch (``1 + time // hop``
    without VAD). An item with padding (``lengths``) is analysed on its valid frames only.

    Examples
    --------
    >>> LogFilterbank(vad="none")(torch.randn(2, 16000)).shape
    torch.Size([2, 1, 41, 101])
    """

    def __init__(
        self, sample_rate: int = 16000, n_filters: int = 41, win_ms: float = 40.0, hop_ms: float = 10.0,
        n_fft: int = 1024, f_min: float = 20.0, f_max: float | None = None, energy: bool = False,
        vad: str = "energy", vad_top_db: float = 30.0, normalize: bool = True,
    ) -> None:
        super().__init__()
        if vad not in ("energy", "none"):
            raise ValueError(f"vad must be 'energy' or 'none', got {vad!r}")
        self.sample_rate = sample_rate
        self.n_filters = n_filters
        self.win_ms, self.hop_ms = win_ms, hop_ms
        self.hop_length = ms_to_samples(hop_ms, sample_rate)
        self.win_length = ms_to_samples(win_ms, sample_rate)
        self.n_fft = n_fft
        self.f_min, self.f_max = f_min, f_max
        self.energy = bool(energy)
        self.vad = vad
        self.vad_top_db = vad_top_db
        self.normalize = normalize
        # fail at construction, not at the first batch
        log_filterbank(torch.zeros(1, n_fft), sample_rate, n_filters, win_ms, hop_ms, n_fft, f_min, f_max)
        # built once and moved with the module; not saved (checkpoints hold no front-end tensors)
        self.register_buffer("window", torch.hamming_window(self.win_length, periodic=True), persistent=False)
        self.register_buffer("fbank", _htk_filters(sample_rate, n_fft, n_filters, f_min, f_max), persistent=False)

    @property
    def num_features(self) -> int:
        """Feature rows of the output: the filters, plus one for the log energy."""
        return self.n_filters + int(self.energy)

    def num_frames(self, num_samples):
        """Frames before VAD for ``num_samples`` samples: ``1 + num_samples // hop``."""
        return 1 + num_samples // self.hop_length

    def speech_mask(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames) bool: the frames the VAD keeps (all valid frames with ``vad="none"``)."""
        frames = self.num_frames(waveform.shape[-1])
        n_valid = self.num_frames(lengths.to(waveform.device)) if lengths is not None else None
        if self.vad == "none":
            mask = torch.ones(waveform.shape[0], frames, dtype=torch.bool, device=waveform.device)
            if n_valid is not None:
                mask &= torch.arange(frames, device=waveform.device)[None, :] < n_valid[:, None]
            return mask
        window = self.window.to(waveform)
        if lengths is None:
            energy = frame_energy_db(waveform, self.sample_rate, self.win_ms, self.hop_ms, window=window)
        else:
            half = self.win_length // 2
            padded = reflect_pad_items(waveform, lengths, half)
            energy = frame_energy_db(padded, self.sample_rate, self.win_ms, self.hop_ms, center=False, window=window)
        return energy_vad_mask(energy, self.vad_top_db, n_valid)

    def _log_energy(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(batch, frames): :func:`frame_log_energy`, each padded item reflected at its own edges."""
        if lengths is None:
            return frame_log_energy(waveform, self.sample_rate, self.win_ms, self.hop_ms)
        padded = reflect_pad_items(waveform, lengths, self.win_length // 2)
        return frame_log_energy(padded, self.sample_rate, self.win_ms, self.hop_ms, center=False)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"LogFilterbank expects (batch, time) waveforms, got shape {tuple(waveform.shape)}")
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.to(analysis_dtype(waveform))
            # a padded item is analysed as it would be alone: reflected at its own edges
            source = waveform if lengths is None else reflect_pad_items(waveform, lengths, self.n_fft // 2)
            feats = log_filterbank(
                source, self.sample_rate, self.n_filters, self.win_ms, self.hop_ms, self.n_fft, self.f_min, self.f_max,
                center=lengths is None, window=self.window.to(waveform.dtype), fbank=self.fbank.to(waveform.dtype),
            )
            if self.energy:  # Kaldi's layout: log energy first
                feats = torch.cat([self._log_energy(waveform, lengths).unsqueeze(1), feats], dim=1)
            mask = self.speech_mask(waveform, lengths)
            if self.normalize:
                feats = normalize_over_mask(feats, mask)
            if self.vad != "none" or lengths is not None:
                # digital silence: keep its frames rather than fail (a no-op for the other
                # items, so applied unconditionally: a traced graph keeps it)
                silent = mask.sum(dim=1) == 0
                if not _capturing_graph() and bool(silent.any()):
                    log_once(log, "vad:silent", "LogFilterbank: an utterance has no frame above the VAD threshold; keeping all its frames")
                mask = mask | silent[:, None]
                feats, _ = pack_voiced_frames(feats, mask)
        return feats.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_filters={self.n_filters}, energy={self.energy}, win_ms={self.win_ms}, hop_ms={self.hop_ms}, "
            f"n_fft={self.n_fft}, f_min={self.f_min}, vad={self.vad}, vad_top_db={self.vad_top_db}, normalize={self.normalize}"
        )
