"""VGG-style speaker networks A and B with feature averaging (Yadav & Rai 2018, Table 1).

"Learning Discriminative Features for Speaker Identification and Verification"
(Interspeech 2018), section 3.1. Network A follows VGG config A (VGG11) and
Network B config B (VGG13), with the large fully connected layers replaced by

    feature averaging (batch, 512) -> dropout(0.4) -> FC-ndims (bottleneck)
    -> dropout(0.4) -> FC-num_classes (logits)

Every convolution is 3x3 with stride 1 and padding 1 and is followed by ReLU
and then BatchNorm ("Batch Normalization after every Conv-ReLU pair"). The first
max-pool is 3x3 with stride 2, the other four are 2x2 with stride 2 (no padding,
floor rounding, PyTorch's defaults). The input is a (batch, 1, 161, frames)
log-spectrogram (20 ms Hamming window, 10 ms hop, 160-point FFT at 16 kHz; 301
frames for a 3-s training crop).

Choices the paper leaves open, and what is done here:

- *Feature averaging*: "the output features from the convolutional layers (final
  maxpool layers) are collapsed over the feature map dimensions and then
  averaged". The (batch, 512, 5, T') map is averaged over frequency, then over
  the valid time frames, which gives the (batch, 512) of Table 1 (for unpadded
  input this is a global average pool). Only this reading gives the paper's
  9.6 M parameters: flattening frequency into channels would make the
  bottleneck FC five times larger.
- *No nonlinearity after the bottleneck FC*: Table 1 shows none, and center
  loss acts on the raw bottleneck (eq. 1), so the embedding is a plain affine
  map of the averaged features; a ReLU there would pin every embedding to the
  positive orthant.
- *Initialisation*: PyTorch's defaults (the paper, written in PyTorch, names none).

Variable length
---------------
Training uses fixed 3-s crops (section 3.4), so batches are unpadded. At test
time utterances of different lengths may be zero-padded into one batch and
``lengths`` (the valid input frames of each item) passed to ``forward``. A
pool with kernel ``k`` and stride ``s`` maps ``n`` valid frames to
``(n - k) // s + 1`` valid frames (the output frames whose window lies wholly in
the valid region), so through the five pools

    n -> (n - 3) // 2 + 1 -> // 2 -> // 2 -> // 2 -> // 2

(301 -> 150 -> 75 -> 37 -> 18 -> 9); every length must be at least 33. The padded
frames of the input are set to zero (so any padding value works), and those of
the feature map after every conv-ReLU-BN block (BN adds its shift to the zeros) and after
every pool (a window straddling the boundary mixes valid and padded frames), so
each convolution sees at the edge of the valid region exactly the zero padding
it sees when the item is run alone, and the batched embedding of an item equals
its per-item embedding to float rounding. This holds in eval mode, where
BatchNorm is a fixed per-channel affine map; in train mode the batch statistics
would include the padded positions, which does not arise because training uses
unpadded fixed-length crops.
"""

from __future__ import annotations

import torch
from torch import nn

# channels of each conv layer, "M" for a max-pool (Simonyan & Zisserman 2014, Table 1)
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
}
# (kernel, stride) of the five max-pools, identical on frequency and time
POOLS: tuple[tuple[int, int], ...] = ((3, 2), (2, 2), (2, 2), (2, 2), (2, 2))


def pooled_length(num_frames, pools: tuple[tuple[int, int], ...] = POOLS):
    """Frames left after the max-pools: ``n -> (n - k) // s + 1`` for each pool.

    Parameters
    ----------
    num_frames : int or Tensor of int
    pools : sequence of (kernel, stride)

    Returns
    -------
    int or Tensor
        Same type as ``num_frames``; meaningful only for ``num_frames >= min_input_length()``.

    Examples
    --------
    >>> pooled_length(301), pooled_length(33), pooled_length(torch.tensor([301, 250]))
    (9, 1, tensor([9, 7]))
    """
    for kernel, stride in pools:
        num_frames = (num_frames - kernel) // stride + 1
    return num_frames


def min_input_length(pools: tuple[tuple[int, int], ...] = POOLS) -> int:
    """The fewest input frames (or frequency bins) that leave one frame after all pools.

    Going backwards from one output frame, a pool needs ``(m - 1) * s + k`` inputs
    for ``m`` outputs: 1 <- 2 <- 4 <- 8 <- 16 <- 33.

    Examples
    --------
    >>> min_input_length()
    33
    """
    needed = 1
    for kernel, stride in reversed(pools):
        needed = (needed - 1) * stride + kernel
    return needed


class ConvReLUBN(nn.Sequential):
    """3x3 convolution (stride 1, padding 1), ReLU, BatchNorm2d: shape-preserving in (freq, time)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_channels),
        )


def _time_mask(lengths: torch.Tensor, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, 1, num_frames) with ones on the first ``lengths[b]`` frames, zeros after."""
    frames = torch.arange(num_frames, device=lengths.device)
    return (frames < lengths[:, None]).to(dtype)[:, None, None, :]


class VGGSpeakerNet(nn.Module):
    """Network A or B of Yadav & Rai (2018): VGG body, feature averaging, bottleneck, classifier.

    Parameters
    ----------
    config : {"A", "B"}
        VGG configuration: "A" has 8 convolutions (VGG11), "B" 10 (VGG13).
    num_classes : int
        Speakers in the softmax layer (1251 for VoxCeleb1 identification, 1211
        for the verification development set).
    ndims : int
        Width of the bottleneck FC, the embedding on which center loss acts.
    dropout : float
        Drop rate before and after the bottleneck (0.4 in the paper).
    width : float
        Channel multiplier, not in the paper: every conv layer has
        ``max(1, round(width * c))`` channels. 1.0 is the paper's network (64-512
        channels); smaller values give miniature networks for tests.

    Shapes
    ------
    input (batch, 1, freq, frames) with freq and frames >= ``min_frames`` (33);
    logits (batch, num_classes); embedding (batch, ndims).

    Examples
    --------
    >>> net = VGGSpeakerNet("A", num_classes=10, ndims=8).eval()
    >>> logits, embedding = net(torch.randn(2, 1, 161, 120))
    >>> logits.shape, embedding.shape
    (torch.Size([2, 10]), torch.Size([2, 8]))
    >>> VGGSpeakerNet.output_frames(301)
    9
    """

    min_frames = min_input_length()

    def __init__(
        self,
        config: str = "B",
        num_classes: int = 1251,
        ndims: int = 128,
        dropout: float = 0.4,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"config must be one of {tuple(VGG_CONFIGS)}, got {config!r}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        layers: list[nn.Module] = []
        pools = iter(POOLS)
        in_channels = 1
        for item in VGG_CONFIGS[config]:
            if item == "M":
                kernel, stride = next(pools)
                layers.append(nn.MaxPool2d(kernel_size=kernel, stride=stride))
            else:
                out_channels = max(1, round(width * int(item)))
                layers.append(ConvReLUBN(in_channels, out_channels))
                in_channels = out_channels
        self.config = config
        self.features = nn.Sequential(*layers)
        self.dropout_in = nn.Dropout(dropout)
        self.bottleneck = nn.Linear(in_channels, ndims)
        self.dropout_out = nn.Dropout(dropout)
        self.classifier = nn.Linear(ndims, num_classes)

    @staticmethod
    def output_frames(num_frames: int) -> int:
        """Frames of the final feature map for ``num_frames`` input frames (see ``pooled_length``).

        Raises
        ------
        ValueError
            If ``num_frames`` is below ``min_frames`` (33): nothing would survive the pools.
        """
        if num_frames < VGGSpeakerNet.min_frames:
            raise ValueError(
                f"VGGSpeakerNet needs at least {VGGSpeakerNet.min_frames} frames, got {num_frames}"
            )
        return int(pooled_length(num_frames))

    def _check_input(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, freq, frames) input, got shape {tuple(x.shape)}")
        if x.shape[2] < self.min_frames or x.shape[3] < self.min_frames:
            raise ValueError(
                f"VGGSpeakerNet needs at least {self.min_frames} frequency bins and frames to "
                f"survive its five max-pools, got input shape {tuple(x.shape)}"
            )
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.shape != (x.shape[0],) or lengths.is_floating_point():
            raise ValueError(
                f"lengths must be integers of shape ({x.shape[0]},), got {lengths.dtype} "
                f"of shape {tuple(lengths.shape)}"
            )
        shortest, longest = int(lengths.min()), int(lengths.max())
        if shortest < self.min_frames or longest > x.shape[3]:
            raise ValueError(
                f"lengths must lie in [{self.min_frames}, {x.shape[3]}] (the padded width), "
                f"got min {shortest}, max {longest}"
            )
        return lengths

    def _average_features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(batch, 1, freq, frames) -> (batch, channels): conv body, mean over frequency and valid time."""
        if lengths is None:
            return self.features(x).mean(dim=(2, 3))
        mask = _time_mask(lengths, x.shape[3], x.dtype)
        x = x * mask
        pools = iter(POOLS)
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                kernel, stride = next(pools)
                lengths = (lengths - kernel) // stride + 1
                mask = _time_mask(lengths, x.shape[3], x.dtype)
            x = x * mask
        # padded frames are zero, so the time sum over all frames is the sum over valid ones
        return x.mean(dim=2).sum(dim=2) / lengths[:, None].to(x.dtype)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Bottleneck embedding, before the second dropout.

        Parameters
        ----------
        x : Tensor, shape (batch, 1, freq, frames)
            Zero-padded on the right when ``lengths`` is given.
        lengths : Tensor of int, shape (batch,), optional
            Valid input frames of each item; ``None`` means all ``frames`` are valid.

        Returns
        -------
        Tensor, shape (batch, ndims)
        """
        lengths = self._check_input(x, lengths)
        return self.bottleneck(self.dropout_in(self._average_features(x, lengths)))

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and bottleneck embedding (center loss needs the latter).

        Parameters
        ----------
        x : Tensor, shape (batch, 1, freq, frames)
        lengths : Tensor of int, shape (batch,), optional

        Returns
        -------
        logits : Tensor, shape (batch, num_classes)
        embedding : Tensor, shape (batch, ndims)
        """
        embedding = self.embed(x, lengths)
        return self.classifier(self.dropout_out(embedding)), embedding
