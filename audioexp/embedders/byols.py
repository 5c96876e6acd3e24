"""Hybrid BYOL-S: the CvT encoder of serab-byols and its preprocessing, written for audioexp.

Elbanna, Biryukov, Scheidwasser-Clow, Orlandic, Mainar, Kegler, Beckmann & Cernak,
"Hybrid Handcrafted and Learnable Audio Representation for Analysis of Speech Under
Cognitive and Physical Load", Interspeech 2022. Published code and weights:
github.com/GasserElbanna/serab-byols (MIT), read at commit
115fd81235d2c14ddab4bcf55ed79250711c2a2c (``byol_a/models/cvt.py``, ``serab_byols/``).

The encoder is a Convolutional vision Transformer (Wu et al., "CvT: Introducing
Convolutions to Vision Transformers", ICCV 2021) of three stages, each a strided
convolutional token embedding, a channel layer norm and one transformer block whose
query/key/value projections are depthwise-separable convolutions (keys and values with
stride 2). Module and parameter names follow the published model so that its checkpoint
(``cvt_s1-d1-e64_s2-d1-e256_s3-d1-e512_BYOLAs64x96-osandbyolaloss6373-e100-bs256-lr0003-rs42.pth``)
loads with strict key matching; ``tests/fixtures/byols_cvt_state_dict.json`` lists the
names and shapes the upstream definition produces.

Input: a normalised log-mel spectrogram (batch, 1, 64, frames); output of the encoder:
(batch, 512, 4, frames / 16); scene embedding: time mean + time max, 2,048 values.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchaudio
from torch import nn

from audioexp.embedders.functional import log_mel, mean_plus_max_pool

#: Preprocessing of serab_byols/config.yaml.
SAMPLE_RATE = 16000
N_FFT = 1024
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 64
F_MIN = 60.0
F_MAX = 7800.0

CHECKPOINT_NAME = "cvt_s1-d1-e64_s2-d1-e256_s3-d1-e512_BYOLAs64x96-osandbyolaloss6373-e100-bs256-lr0003-rs42.pth"
CHECKPOINT_HELP = (
    "the hybrid BYOL-S embedder needs the published weights: download\n"
    f"  https://github.com/GasserElbanna/serab-byols/raw/main/checkpoints/{CHECKPOINT_NAME}\n"
    "and give embedder.checkpoint=/path/to/that.pth (random weights are not an embedding)"
)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of a (batch, channels, H, W) map (biased variance,
    epsilon added to the standard deviation, as the published CvT)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        std = x.var(dim=1, unbiased=False, keepdim=True).sqrt()
        return (x - mean) / (std + self.eps) * self.g + self.b


class PreNorm(nn.Module):
    """``fn(norm(x))``."""

    def __init__(self, channels: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class SeparableProjection(nn.Module):
    """Depthwise convolution, batch norm, pointwise convolution (no biases): CvT's projection."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim_in, dim_in, kernel_size, padding=kernel_size // 2, stride=stride, groups=dim_in, bias=False),
            nn.BatchNorm2d(dim_in),
            nn.Conv2d(dim_in, dim_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvAttention(nn.Module):
    """Multi-head self-attention over the positions of a map, with convolutional projections.

    Keys and values are projected with stride ``kv_stride`` (fewer positions); queries keep
    every position, so the output has the input's shape.
    """

    def __init__(self, dim: int, heads: int, dim_head: int = 64, kernel_size: int = 3, kv_stride: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = SeparableProjection(dim, inner, kernel_size, stride=1)
        self.to_kv = SeparableProjection(dim, 2 * inner, kernel_size, stride=kv_stride)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        # (b, heads * d, h, w) -> (b * heads, h * w, d); channel index = head * d + j
        b, hd, h, w = t.shape
        return t.reshape(b, self.heads, hd // self.heads, h * w).transpose(2, 3).reshape(b * self.heads, h * w, hd // self.heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self._split_heads(self.to_q(x))
        k, v = (self._split_heads(t) for t in self.to_kv(x).chunk(2, dim=1))
        attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)
        out = attn @ v  # (b * heads, h * w, d)
        d = out.shape[-1]
        out = out.reshape(b, self.heads, h * w, d).transpose(2, 3).reshape(b, self.heads * d, h, w)
        return self.to_out(out)


class ConvFeedForward(nn.Module):
    """Pointwise MLP: 1x1 conv to ``mult * dim``, GELU, 1x1 conv back."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1), nn.GELU(), nn.Dropout(dropout), nn.Conv2d(dim * mult, dim, 1), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlocks(nn.Module):
    """``depth`` pre-norm blocks: x + attention(x), then x + feed-forward(x)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_mult: int, kernel_size: int = 3, kv_stride: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, ConvAttention(dim, heads, kernel_size=kernel_size, kv_stride=kv_stride, dropout=dropout)),
                    PreNorm(dim, ConvFeedForward(dim, mlp_mult, dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return x


class ByolsCvT(nn.Module):
    """The hybrid BYOL-S CvT encoder (3 stages, depth 1 each, 64/256/512 channels).

    Parameters
    ----------
    dims, depths, heads, mlp_mults : sequences of 3 ints
        Per stage; the defaults are the published model's (serab-byols config.yaml plus the
        CvT defaults it keeps: 1/3/6 heads of 64 dimensions).
    kernels, strides : sequences of 3 ints
        Token-embedding convolution per stage (7/4, 3/2, 3/2: 64 mel bins become 4).

    Examples
    --------
    >>> net = ByolsCvT().eval()
    >>> net(torch.randn(2, 1, 64, 96)).shape
    torch.Size([2, 2048])
    """

    embedding_size = 2048

    def __init__(
        self,
        dims=(64, 256, 512),
        depths=(1, 1, 1),
        heads=(1, 3, 6),
        mlp_mults=(4, 4, 4),
        kernels=(7, 3, 3),
        strides=(4, 2, 2),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = 1
        for dim, depth, nh, mult, k, s in zip(dims, depths, heads, mlp_mults, kernels, strides, strict=True):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, dim, kernel_size=k, padding=k // 2, stride=s),
                    ChannelLayerNorm(dim),
                    TransformerBlocks(dim, depth, nh, mult, dropout=dropout),
                )
            )
            channels = dim
        # upstream appends an Identity "pool" for mean+max; it holds no parameters
        self.layers = nn.Sequential(*stages, nn.Identity())
        self.total_stride = 1
        for s in strides:
            self.total_stride *= s

    def feature_map(self, lms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, mels, frames) -> (batch, 512, mels / 16, ceil-ish(frames / 16))."""
        if lms.dim() != 4 or lms.shape[1] != 1:
            raise ValueError(f"expected a (batch, 1, mels, frames) log-mel spectrogram, got shape {tuple(lms.shape)}")
        return self.layers(lms)

    def forward(self, lms: torch.Tensor) -> torch.Tensor:
        """Scene embeddings, shape (batch, 2048): time mean + time max of the encoder map."""
        return mean_plus_max_pool(self.feature_map(lms))


def load_byols_checkpoint(network: ByolsCvT, path: str | os.PathLike | None) -> ByolsCvT:
    """Load the published weights into ``network`` with strict key matching.

    Raises
    ------
    FileNotFoundError
        No path, or a path that does not exist: the message says where to get the weights.
    """
    if not path:
        raise FileNotFoundError(CHECKPOINT_HELP)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedder.checkpoint={path} does not exist; " + CHECKPOINT_HELP)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{path} is not a hybrid BYOL-S CvT checkpoint ({CHECKPOINT_NAME}): {err}") from err
    return network


class ByolsFrontend(nn.Module):
    """Waveform -> normalised log-mel spectrogram, as serab-byols.

    ``mean``/``std`` normalise ``log(mel + eps)``; serab-byols computes them over the clips
    being embedded (:func:`audioexp.embedders.functional.clip_statistics`).
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=WIN_LENGTH, hop_length=HOP_LENGTH,
            n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX, power=2.0,
        )
        self.mean, self.std = float(mean), float(std)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, time) -> (batch, 64, frames), un-normalised."""
        return log_mel(self.mel(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, time) -> (batch, 1, 64, frames)."""
        return ((self.log_mel(waveform) - self.mean) / self.std).unsqueeze(1)


class HybridByols(nn.Module):
    """Front-end plus encoder: ``embed(waveform, lengths) -> (batch, 2048)``.

    Clips are embedded one at a time when they differ in length (the attention would
    otherwise see the padding); equal-length batches go through at once.
    """

    def __init__(self, network: ByolsCvT, frontend: ByolsFrontend) -> None:
        super().__init__()
        self.network = network
        self.frontend = frontend

    def embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None or bool((lengths == waveform.shape[-1]).all()):
            return self.network(self.frontend(waveform))
        return torch.cat([self.network(self.frontend(w[None, : int(n)])) for w, n in zip(waveform, lengths)])

