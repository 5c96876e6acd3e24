"""Whole-utterance evaluation in windows: network memory bounded by the window, not the file.

The speaker (Yadav & Rai 2018) and emotion (Xi et al. 2022) networks of this package end in
an average over time of their last feature map, followed by affine layers (bottleneck,
classifier). Run on a whole 10-minute utterance, a convolutional body holds feature maps
proportional to the file (several GB). Here a long utterance's feature frames are cut into
windows, the network runs on a bounded number of windows at a time, and the window outputs
are averaged with weights equal to the number of output frames each window's own temporal
average ran over, so that

    sum_i n_i * mean_i / sum_i n_i

is the mean over all the output frames the windows produced. Since everything after the
temporal average is affine, averaging embeddings (or logits) this way equals averaging the
feature maps first.

What is exact and what is approximate
-------------------------------------
- An utterance of at most ``window_frames`` frames is one window: its output is the
  network's own output on it, untouched.
- A longer utterance: the windows tile its frames (each frame in exactly one window,
  ``hop_frames = window_frames``, the default). The result differs from the whole-utterance
  output only where a window edge cuts the network's receptive field (zero padding at the
  edges instead of the neighbouring frames) and the max-pool grid restarts: a fraction of
  about ``receptive field / window`` of the output frames. Layers that normalise over the
  whole map (the AD module's instance norm and its time-frequency attention, Xi et al.)
  see one window's statistics instead of the utterance's: a further approximation.
- With ``hop_frames < window_frames`` the windows overlap and the frames they share count
  once per window holding them.

Memory: the network's activations are those of ``windows_per_batch`` windows. What
produces the feature frames (the front-end, with its utterance-level normalisation) is
the caller's, and runs on the whole utterance; the windows hold views of its output.
Evaluate under ``torch.no_grad`` / ``torch.inference_mode`` (Lightning's evaluation and
prediction loops do), or every window's autograd graph is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["window_spans", "windowed_average", "frames_per_window"]


def frames_per_window(seconds: float, sample_rate: int, hop_length: int) -> int:
    """Feature frames in ``seconds`` of audio for a centred front-end of hop ``hop_length``
    samples (``1 + samples // hop``, the frames of an utterance that long).

    Examples
    --------
    >>> frames_per_window(60.0, 16000, 160)
    6001
    """
    if seconds <= 0:
        raise ValueError(f"a window must last more than 0 s, got {seconds}")
    return 1 + int(round(seconds * sample_rate)) // hop_length


def window_and_hop_frames(window_seconds: float, hop_seconds: float | None, sample_rate: int,
                          hop_length: int) -> tuple[int, int | None]:
    """``(window, hop)`` in front-end frames for windows of ``window_seconds`` every
    ``hop_seconds`` (None: tiled, no overlap; a hop is at least one frame, at most a window)."""
    window = frames_per_window(window_seconds, sample_rate, hop_length)
    if hop_seconds is None:
        return window, None
    return window, min(window, max(1, int(round(hop_seconds * sample_rate)) // hop_length))


def longer_than_window(waveform: torch.Tensor, lengths: torch.Tensor | None, window_seconds: float | None,
                       sample_rate: int) -> bool:
    """Whether a batch (``waveform`` (batch, time), valid ``lengths``) holds an utterance longer
    than ``window_seconds`` (None: never windowed)."""
    if window_seconds is None:
        return False
    longest = int(lengths.max()) if lengths is not None else waveform.shape[-1]
    return longest > int(round(window_seconds * sample_rate))


def window_spans(num_frames: int, window_frames: int, hop_frames: int | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` frame spans of the windows that cover ``num_frames`` frames.

    Parameters
    ----------
    num_frames : int
        Frames of the utterance.
    window_frames : int
        Longest window. An utterance of at most this many frames is one window.
    hop_frames : int, optional
        Largest distance between window starts, in ``[1, window_frames]``. ``None`` (or
        ``window_frames``): the windows tile the utterance, ``ceil(num_frames / window_frames)``
        of them with lengths differing by at most one frame (none shorter than half a
        window, so no stub of a few frames at the end). Smaller: windows of exactly
        ``window_frames`` frames, evenly spaced from the first frame to the last, at most
        ``hop_frames`` apart.

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> window_spans(50, 100)
    [(0, 50)]
    >>> window_spans(250, 100)
    [(0, 83), (83, 166), (166, 250)]
    >>> window_spans(250, 100, 60)
    [(0, 100), (50, 150), (100, 200), (150, 250)]
    """
    if window_frames < 1:
        raise ValueError(f"window_frames must be at least 1, got {window_frames}")
    hop = window_frames if hop_frames is None else int(hop_frames)
    if not 1 <= hop <= window_frames:
        raise ValueError(f"hop_frames must lie in [1, window_frames={window_frames}] (frames would be skipped), got {hop}")
    if num_frames <= window_frames:
        return [(0, num_frames)]
    if hop == window_frames:
        n = -(-num_frames // window_frames)
        bounds = [(i * num_frames) // n for i in range(n + 1)]
        return list(zip(bounds[:-1], bounds[1:]))
    n = -(-(num_frames - window_frames) // hop) + 1
    starts = [(i * (num_frames - window_frames)) // (n - 1) for i in range(n)]
    return [(s, s + window_frames) for s in starts]


def windowed_average(
    features: torch.Tensor,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | float]],
    window_frames: int,
    hop_frames: int | None = None,
    windows_per_batch: int = 1,
) -> torch.Tensor:
    """Frame-weighted average of a temporally averaging network's outputs over windows of one utterance.

    Parameters
    ----------
    features : Tensor, shape (..., frames)
        One utterance's features (no batch axis), e.g. (1, freq, frames) for a 2-D CNN.
    encode : callable
        ``encode(windows) -> (outputs, weights)``: ``windows`` of shape (k, ..., w), k
        windows of the same length stacked on a new first axis; ``outputs`` (k, D), each
        window's temporally averaged output; ``weights`` (k,) or a number: the frames each
        output is the average over (the network's output frames for ``w`` input frames).
    window_frames, hop_frames : int
        See :func:`window_spans`.
    windows_per_batch : int
        Windows stacked into one ``encode`` call: the network's memory is bounded by this
        many windows.

    Returns
    -------
    Tensor, shape (D,)
        ``encode``'s own output, untouched, when the utterance is one window; else the
        weighted mean of the window outputs (accumulated in float64, returned in their dtype).

    Examples
    --------
    >>> x = torch.arange(10.0).view(1, 10)
    >>> encode = lambda w: (w.mean(dim=-1), w.shape[-1])
    >>> windowed_average(x, encode, window_frames=4)  # windows of 3, 3, 4 frames
    tensor([4.5000])
    """
    if windows_per_batch < 1:
        raise ValueError(f"windows_per_batch must be at least 1, got {windows_per_batch}")
    spans = window_spans(features.shape[-1], window_frames, hop_frames)
    if len(spans) == 1:
        return encode(features.unsqueeze(0))[0][0]
    by_length: dict[int, list[int]] = {}
    for start, stop in spans:
        by_length.setdefault(stop - start, []).append(start)
    total = None
    weight_sum = None
    dtype = None
    for length, starts in by_length.items():
        for i in range(0, len(starts), windows_per_batch):
            chunk = torch.stack([features[..., s : s + length] for s in starts[i : i + windows_per_batch]])
            outputs, weights = encode(chunk)
            dtype = outputs.dtype
            weights = torch.as_tensor(weights, dtype=torch.float64, device=outputs.device).expand(outputs.shape[0])
            part = (outputs.to(torch.float64) * weights[:, None]).sum(dim=0)
            total = part if total is None else total + part
            weight_sum = weights.sum() if weight_sum is None else weight_sum + weights.sum()
    return (total / weight_sum).to(dtype)
